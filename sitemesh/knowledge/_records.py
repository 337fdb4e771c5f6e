"""Past cases and FAQ entries: read and validate their records, make them documents.

The ``cases`` and ``faq`` formats of :func:`sitemesh.knowledge.ingest` (field lists in
its module docstring). Every error is an :class:`~sitemesh.knowledge.IngestError`
naming the file, the line and the field.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._articles import article_key, article_url
from ._docs import Document
from ._errors import IngestError
from ._pseudonymise import Pseudonymiser

MAX_TEXT_CHARS: Final = 16384
"""Longest case text or answer accepted, in characters (``SupportTicket.body``'s limit)."""


def read_text(path: Path, shown: str) -> str:
    """``path``'s UTF-8 text.

    Raises:
        IngestError: not UTF-8, or unreadable.
    """
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise IngestError(shown, "UTF-8 text") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise IngestError(shown, "a readable file", got=why) from None


@dataclass(frozen=True, slots=True)
class CaseRecord:
    """One past case before pseudonymisation (the ``cases`` format's fields).

    Attributes:
        text: what the customer wrote.
        answer: the reply that resolved it.
        url: the article the reply links, if any (an archived link is accepted).
        intent: its category, if labelled.
        tenant: the tenant it belongs to, if any.
        article: the article's id, if known.
        id: the case's id (default: ``case-<line>``).
        customer: identifiers of the customer to replace wherever they occur.
        source: where the record came from, for attribution.
    """

    text: str
    answer: str
    url: str | None = None
    intent: str | None = None
    tenant: str | None = None
    article: str | None = None
    id: str | None = None
    customer: tuple[str, ...] = ()
    source: str = ""


@dataclass(slots=True)
class FaqRecord:
    """One FAQ entry (the ``faq`` format's fields, rows of one intent merged)."""

    intent: str
    answer: str
    url: str | None = None
    questions: list[str] = field(default_factory=list)
    line: int = 0


# -- JSON Lines and CSV records --------------------------------------------------------


def jsonl_records(path: Path, shown: str) -> list[tuple[int, dict[str, Any]]]:
    """``(line, object)`` of each non-empty line of a JSON Lines file.

    Raises:
        IngestError: a line is not a JSON object, or there is none.
    """
    rows: list[tuple[int, dict[str, Any]]] = []
    for n, line in enumerate(read_text(path, shown).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise IngestError(
                shown, "a JSON object", line=n, got=f"invalid JSON ({exc.msg})"
            ) from None
        if not isinstance(obj, dict):
            raise IngestError(shown, "a JSON object", line=n, got=type(obj).__name__)
        rows.append((n, obj))
    if not rows:
        raise IngestError(shown, "at least one record")
    return rows


def _text_field(
    obj: dict[str, Any],
    name: str,
    shown: str,
    line: int,
    *,
    required: bool,
    limit: int = MAX_TEXT_CHARS,
) -> str | None:
    value = obj.get(name)
    if value is None or (isinstance(value, str) and not value.strip() and not required):
        if required:
            raise IngestError(shown, "a non-empty string", line=line, field=name, got="nothing")
        return None
    if not isinstance(value, str):
        raise IngestError(shown, "a string", line=line, field=name, got=type(value).__name__)
    if required and not value.strip():
        raise IngestError(shown, "a non-empty string", line=line, field=name, got="an empty one")
    if len(value) > limit:
        raise IngestError(
            shown, f"at most {limit} characters", line=line, field=name, got=str(len(value))
        )
    return value.strip()


_URL_FIELD = re.compile(r"^https?://\S+$")


def _url_field(obj: dict[str, Any], shown: str, line: int) -> str | None:
    url = _text_field(obj, "url", shown, line, required=False, limit=2048)
    if url is not None and not _URL_FIELD.match(url):
        raise IngestError(shown, "an http(s) URL", line=line, field="url", got=repr(url[:60]))
    return url


def case_records(path: Path, shown: str | None = None) -> list[CaseRecord]:
    """Read and validate a JSON Lines file of past cases (see the module docstring).

    Raises:
        IngestError: a line is not a JSON object, or a field is missing or of the
            wrong type (the message names the line and the field).
    """
    shown = shown or path.name
    out: list[CaseRecord] = []
    for n, obj in jsonl_records(path, shown):
        text = _text_field(obj, "text", shown, n, required=True)
        answer = None
        for name in ("resolution", "reply"):
            answer = answer or _text_field(obj, name, shown, n, required=False)
        if answer is None:
            raise IngestError(
                shown,
                "a non-empty string in 'resolution' or 'reply'",
                line=n,
                field="resolution",
                got="nothing",
            )
        customer = obj.get("customer")
        if customer is not None and not isinstance(customer, str):
            raise IngestError(
                shown, "a string", line=n, field="customer", got=type(customer).__name__
            )
        out.append(
            CaseRecord(
                text=text or "",
                answer=answer,
                url=_url_field(obj, shown, n),
                intent=_text_field(obj, "intent", shown, n, required=False, limit=128),
                tenant=_text_field(obj, "tenant", shown, n, required=False, limit=256),
                article=_text_field(obj, "article", shown, n, required=False, limit=256),
                id=_text_field(obj, "id", shown, n, required=False, limit=128),
                customer=(customer.lstrip("@"),) if customer else (),
                source=f"{shown}:{n}",
            )
        )
    return out


def cases_to_docs(records: Sequence[CaseRecord], pseudonymiser: Pseudonymiser) -> list[Document]:
    """Pseudonymise past cases and make them documents.

    Per case: ``label`` (the answer's identity) is :func:`article_key` of its URL,
    else its ``article``, else its ``intent`` (``None``: unlabelled); ``doc_id`` is
    its ``article``, else that key, else the intent, else the case id; ``id`` is
    ``<doc_id>#<case id>``. ``url`` is :func:`article_url` (an archived link's
    original); the reply's archived links are rewritten to it.

    Args:
        records: the cases.
        pseudonymiser: replaces identifiers in text and reply (one Presidio batch).

    Raises:
        PiiAnalyzerError: the analyzer failed; nothing is returned (fail closed).
    """
    urls = [article_url(r.url) if r.url else None for r in records]
    answers = [
        r.answer.replace(r.url, u) if r.url and u else r.answer
        for r, u in zip(records, urls, strict=True)
    ]
    keep = [[u] if u else [] for u in urls]
    texts = pseudonymiser.pseudonymise_many(
        [r.text for r in records] + answers,
        keep=keep + keep,
        known=[list(r.customer) for r in records] * 2,
    )
    n = len(records)
    docs: list[Document] = []
    for i, (r, url) in enumerate(zip(records, urls, strict=True)):
        key = article_key(url) if url else None
        label = key or r.article or r.intent
        case_id = r.id or f"case-{i + 1}"
        doc_id = r.article or key or r.intent or case_id
        docs.append(
            Document(
                id=f"{doc_id}#{case_id}",
                doc_id=doc_id,
                doc_kind="case",
                title=f"past case ({r.tenant})" if r.tenant else "past case",
                section="case",
                text=texts[i],
                answer=texts[n + i],
                url=url,
                source=r.source,
                intent=r.intent,
                label=label,
                tenant=r.tenant,
            )
        )
    return docs


def intent_slug(intent: str) -> str:
    """The URL path segment of an intent: lower-cased, only ``a-z``, ``0-9``, ``_``
    kept (``reverted_card_payment?`` -> ``reverted_card_payment``)."""
    return re.sub(r"[^a-z0-9_]", "", intent.lower()) or "faq"


def humanise(intent: str) -> str:
    """``card_arrival`` -> ``Card arrival`` (an FAQ document's title)."""
    words = re.sub(r"[_?]+", " ", intent).strip()
    return words[:1].upper() + words[1:].lower() if words else intent


def _faq_rows(path: Path, shown: str) -> list[tuple[int, dict[str, Any]]]:
    if path.suffix.lower() != ".csv":
        return jsonl_records(path, shown)
    text = read_text(path, shown)
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    for need in ("intent", "answer"):
        if need not in header:
            raise IngestError(
                shown, f"a CSV header with {need!r}", line=1, got=",".join(header) or "no header"
            )
    rows: list[tuple[int, dict[str, Any]]] = []
    for row in reader:
        line = reader.line_num
        obj: dict[str, Any] = {k: v for k, v in row.items() if k is not None}
        q = obj.get("questions")
        obj["questions"] = [s.strip() for s in q.split("|") if s.strip()] if q else []
        rows.append((line, obj))
    if not rows:
        raise IngestError(shown, "at least one record")
    return rows


def faq_records(path: Path, shown: str | None = None) -> list[FaqRecord]:
    """Read and validate an FAQ (CSV or JSON Lines; see the module docstring).

    Raises:
        IngestError: a field is missing or of the wrong type, or two rows of one
            intent give different answers or URLs.
    """
    shown = shown or path.name
    merged: dict[str, FaqRecord] = {}
    for n, obj in _faq_rows(path, shown):
        intent = _text_field(obj, "intent", shown, n, required=True, limit=128) or ""
        answer = _text_field(obj, "answer", shown, n, required=True) or ""
        url = _url_field(obj, shown, n)
        questions = obj.get("questions") or []
        if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
            raise IngestError(
                shown, "a list of strings", line=n, field="questions", got=type(questions).__name__
            )
        rec = merged.get(intent)
        if rec is None:
            merged[intent] = FaqRecord(
                intent, answer, url, [q.strip() for q in questions if q.strip()], n
            )
            continue
        if rec.answer != answer or (url and rec.url and url != rec.url):
            raise IngestError(
                shown,
                f"the same answer and url as line {rec.line} for intent {intent!r}",
                line=n,
                field="answer",
            )
        rec.url = rec.url or url
        rec.questions += [q.strip() for q in questions if q.strip()]
    return list(merged.values())


def faq_to_docs(
    records: Sequence[FaqRecord], *, url_base: str | None = None, source: str = ""
) -> list[Document]:
    """FAQ entries as documents: ``id`` ``<intent>#faq``, ``doc_id`` = ``label`` =
    ``intent``; ``url`` the entry's, else ``<url_base>/<intent_slug(intent)>`` when
    ``url_base`` is given; questions deduplicated (case-insensitive), in order."""
    docs = []
    for r in records:
        url = r.url or (f"{url_base.rstrip('/')}/{intent_slug(r.intent)}" if url_base else None)
        seen: set[str] = set()
        questions = []
        for q in r.questions:
            if q.casefold() not in seen:
                seen.add(q.casefold())
                questions.append(q)
        docs.append(
            Document(
                id=f"{r.intent}#faq",
                doc_id=r.intent,
                doc_kind="faq",
                title=humanise(r.intent),
                section="FAQ",
                text=r.answer,
                answer=r.answer,
                url=url,
                source=f"{source}:{r.line}" if source else "",
                intent=r.intent,
                label=r.intent,
                questions=tuple(questions),
            )
        )
    return docs
