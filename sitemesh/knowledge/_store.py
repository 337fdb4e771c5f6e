"""Site knowledge bases in the site's artifact bucket (``kb/<name>``).

Content: the documents' JSON Lines (:func:`~sitemesh.knowledge.encode_docs`);
metadata: the :class:`~sitemesh.knowledge.KbSpec` (kinds, tenants, format, docs,
sha256, description) and the calibration summary measured when it was added.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ._docs import (
    Document,
    KbSpec,
    check_name,
    check_routing,
    content_sha256,
    decode_docs,
    encode_docs,
)
from ._errors import KbNotFound, KnowledgeError

if TYPE_CHECKING:
    from ..bus import ArtifactInfo, SiteArtifacts

KB_KIND: Final = "kb"
"""Artifact kind of knowledge bases (``kb/<name>``)."""


def artifact_name(name: str) -> str:
    """``kb/<name>``."""
    return f"{KB_KIND}/{name}"


def kb_name(artifact: str) -> str | None:
    """``support-cases`` for ``kb/support-cases``; ``None`` for other artifacts."""
    kind, _, rest = artifact.partition("/")
    return rest if kind == KB_KIND and rest else None


async def publish_kb(
    artifacts: SiteArtifacts,
    name: str,
    docs: Sequence[Document],
    *,
    kinds: Sequence[str],
    tenants: Sequence[str],
    fmt: str,
    description: str = "",
    calibration: str = "",
) -> KbSpec:
    """Store a site knowledge base (replacing one of the same name).

    Args:
        artifacts: the site's bucket (``SiteArtifacts.open(js, site, create=True)``).
        name: the knowledge base's name (:data:`~sitemesh.knowledge.NAME_RE`).
        docs: its documents (already pseudonymised where needed).
        kinds: task kinds routed to it.
        tenants: tenant globs routed to it.
        fmt: the ingest format.
        description: one line for ``kb list``.
        calibration: the calibration summary to show in ``kb list``.

    Returns:
        The stored spec.

    Raises:
        KnowledgeError: invalid name or routing, or no documents.
    """
    check_name(name)
    check_routing(kinds, tenants)
    if not docs:
        raise KnowledgeError(f"knowledge base {name!r}: no documents to store")
    data = encode_docs(docs)
    spec = KbSpec(
        name=name,
        kinds=tuple(kinds),
        tenants=tuple(tenants) or ("*",),
        format=fmt,
        origin="site",
        description=description,
        docs=len(docs),
        sha256=content_sha256(data),
    )
    await artifacts.put(artifact_name(name), data, spec.to_meta() | {"calibration": calibration})
    return spec


def _spec(info: ArtifactInfo) -> KbSpec:
    return KbSpec.from_meta(info.short, info.meta)


async def fetch_kb(artifacts: SiteArtifacts, name: str) -> tuple[KbSpec, list[Document]]:
    """A stored site knowledge base: its spec and documents.

    Raises:
        KbNotFound: no ``kb/<name>`` at the site.
        KnowledgeError: the content does not match its recorded SHA-256, or is not
            valid documents.
    """
    from ..bus import ArtifactNotFound

    try:
        data, info = await artifacts.get(artifact_name(name))
    except ArtifactNotFound as exc:
        raise KbNotFound(name, f"no site knowledge base {name!r} at site {artifacts.site}") from exc
    spec = _spec(info)
    if spec.sha256 and content_sha256(data) != spec.sha256:
        raise KnowledgeError(f"knowledge base {name!r}: content does not match its sha256")
    return spec, decode_docs(data, source=artifact_name(name))


async def list_site_kbs(artifacts: SiteArtifacts) -> list[tuple[KbSpec, str]]:
    """``(spec, calibration summary)`` of every site knowledge base, by name."""
    return [(_spec(a), a.meta.get("calibration", "")) for a in await artifacts.list(KB_KIND)]


async def remove_kb(artifacts: SiteArtifacts, name: str) -> None:
    """Delete ``kb/<name>``.

    Raises:
        KbNotFound: there is none.
    """
    from ..bus import ArtifactNotFound

    try:
        await artifacts.delete(artifact_name(name))
    except ArtifactNotFound as exc:
        raise KbNotFound(name, f"no site knowledge base {name!r} at site {artifacts.site}") from exc
