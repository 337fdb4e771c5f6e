"""The normalised documents of a knowledge base, its routing spec, and their codec.

Every ingest format (Markdown, HTML, past cases, FAQ) ends up as a list of
:class:`Document`; a site's knowledge base is stored as their JSON Lines encoding
(``kb/<name>`` in the site's artifact bucket), its :class:`KbSpec` as the object's
metadata. The bundled knowledge bases ship the same encoding in
``sitemesh/knowledge/data/<name>/docs.jsonl``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Literal

import msgspec

from ._errors import KnowledgeError

DocKind = Literal["runbook", "article", "case", "faq"]
"""What a document is (``Passage.doc_kind``)."""

Origin = Literal["bundled", "site"]
"""Where a knowledge base comes from: the package, or the site's artifact bucket."""

NAME_RE: Final = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
"""A knowledge-base name: lower-case letters, digits, ``-`` and ``_``, at most 63."""

KIND_RE: Final = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
"""A task kind token (``support_ticket``)."""


class Document(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One retrievable unit: a section of an article or runbook, a past case, an FAQ answer."""

    id: str
    """Unique in its knowledge base; becomes ``Passage.passage_id`` (``<doc_id>#<part>``)."""
    doc_id: str
    """The document the unit belongs to: an article id for cases (several past cases
    share it), the intent for FAQs, the relative path for articles."""
    doc_kind: DocKind
    title: str
    section: str = ""
    text: str
    """The indexed text (pseudonymised for cases)."""
    answer: str = ""
    """For cases: the reply that resolved it (pseudonymised); for FAQs: the answer."""
    url: str | None = None
    """The article URL a customer can be sent, when there is one."""
    source: str = ""
    """Where the unit came from, for attribution (upstream URL, file path)."""
    intent: str | None = None
    """Intent or category the unit answers, when labelled."""
    label: str | None = None
    """What retrieval treats as *the answer's identity*: documents with the same label
    are one answer (the article URL for cases, the intent for FAQs). Labelled
    knowledge bases are calibrated by leave-one-out (``sitemesh.knowledge``'s
    calibration); ``None`` for articles and runbooks."""
    tenant: str | None = None
    """The tenant the unit belongs to; ``None``: every tenant. Retrieval for a task
    considers only units of the task's tenant (case-insensitive) and untenanted ones."""
    questions: tuple[str, ...] = ()
    """For FAQs: example questions, each indexed on its own."""


class KbSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A knowledge base's name, routing and provenance.

    Routing: a task of kind ``k`` and tenant ``t`` searches the knowledge base when
    ``k`` is in :attr:`kinds` and ``t`` matches one of :attr:`tenants`
    (``fnmatch`` globs, case-insensitive: ``bank*``, ``*``).
    """

    name: str
    kinds: tuple[str, ...]
    """Task kinds routed here (``support_ticket``, ``telemetry_alert``)."""
    tenants: tuple[str, ...] = ("*",)
    """Tenant globs routed here."""
    format: str
    """How it was ingested: ``markdown``, ``html``, ``markdown,html``, ``cases``, ``faq``."""
    origin: Origin = "site"
    description: str = ""
    docs: int = 0
    """Number of documents."""
    sha256: str = ""
    """SHA-256 (hex) of the encoded documents."""

    def to_meta(self) -> dict[str, str]:
        """String metadata for the artifact store (``kinds``/``tenants`` comma-joined)."""
        return {
            "kinds": ",".join(self.kinds),
            "tenants": ",".join(self.tenants),
            "format": self.format,
            "docs": str(self.docs),
            "sha256": self.sha256,
            "description": self.description,
        }

    @classmethod
    def from_meta(cls, name: str, meta: Mapping[str, str]) -> KbSpec:
        """The spec of a stored site knowledge base from its metadata.

        Raises:
            KnowledgeError: a field is missing or malformed.
        """
        kinds = tuple(k for k in meta.get("kinds", "").split(",") if k)
        tenants = tuple(t for t in meta.get("tenants", "").split(",") if t) or ("*",)
        if not kinds:
            raise KnowledgeError(f"knowledge base {name!r}: stored without kinds")
        try:
            docs = int(meta.get("docs", "0"))
        except ValueError as exc:
            raise KnowledgeError(f"knowledge base {name!r}: docs is not a number") from exc
        return cls(
            name=name,
            kinds=kinds,
            tenants=tenants,
            format=meta.get("format", ""),
            origin="site",
            description=meta.get("description", ""),
            docs=docs,
            sha256=meta.get("sha256", ""),
        )


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(Document)


def encode_docs(docs: Iterable[Document]) -> bytes:
    """JSON Lines, one :class:`Document` per line, in order (deterministic)."""
    return b"".join(_ENCODER.encode(d) + b"\n" for d in docs)


def decode_docs(data: bytes, *, source: str) -> list[Document]:
    """Read what :func:`encode_docs` wrote.

    Args:
        data: JSON Lines bytes.
        source: a name for error messages (``kb/support-cases``).

    Raises:
        KnowledgeError: a line is not a valid document (names the line and field).
    """
    docs: list[Document] = []
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            docs.append(_DECODER.decode(line))
        except msgspec.ValidationError as exc:
            raise KnowledgeError(f"{source}:{n}: not a knowledge-base document: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise KnowledgeError(f"{source}:{n}: not JSON: {exc}") from exc
    return docs


def content_sha256(data: bytes) -> str:
    """Hex SHA-256 of encoded documents (``KbSpec.sha256``)."""
    return hashlib.sha256(data).hexdigest()


def check_name(name: str) -> str:
    """``name`` if it is a valid knowledge-base name (:data:`NAME_RE`).

    Raises:
        KnowledgeError: it is not.
    """
    if not NAME_RE.match(name):
        raise KnowledgeError(
            f"knowledge-base name {name!r}: expected lower-case letters, digits, '-' or '_' "
            "(at most 63, starting with a letter or digit)"
        )
    return name


def check_routing(kinds: Sequence[str], tenants: Sequence[str]) -> None:
    """Validate routing values.

    Raises:
        KnowledgeError: no kind, a kind that is not a kind token, or an empty tenant
            glob / one with a comma.
    """
    if not kinds:
        raise KnowledgeError("expected at least one --kind")
    for k in kinds:
        if not KIND_RE.match(k):
            raise KnowledgeError(f"--kind {k!r}: expected a task kind such as support_ticket")
    for t in tenants:
        if not t.strip() or "," in t:
            raise KnowledgeError(f"--tenant {t!r}: expected a tenant name or glob without commas")
