"""Ingest: Markdown, HTML, past cases and FAQs in; normalised :class:`Document` out.

Formats (``sitemesh kb add NAME SOURCE --format ...``):

``markdown``
    A ``.md`` file or a folder of them (recursively); one document per heading
    (:func:`~sitemesh.knowledge.split_markdown`). ``doc_id`` is the path relative to
    the folder without its suffix.
``html``
    An ``.html``/``.htm`` file or a folder of them; text per heading
    (:func:`~sitemesh.knowledge.split_html`, standard-library parser).
``cases``
    JSON Lines of past cases, one object per line:
    ``{"text": str, "resolution" | "reply": str, "url"?: str, "intent"?: str,
    "tenant"?: str, "article"?: str, "id"?: str, "customer"?: str}``. The text and
    the reply are pseudonymised (:class:`~sitemesh.knowledge.Pseudonymiser`; the
    ``url`` is kept, ``customer`` is replaced wherever it occurs).
``faq``
    CSV with a header, or JSON Lines: ``intent``, ``answer``, ``url``?,
    ``questions``? (JSON: a list of strings; CSV: ``|``-separated). Several rows of
    one intent are merged (their questions joined; their answers must agree).

``auto`` picks by suffix (``.md``, ``.html``, ``.csv``: FAQ) and, for ``.jsonl``,
by the first record's fields (``intent`` + ``answer``: FAQ; ``text``: cases); a
folder is Markdown and/or HTML by the files in it.

Every error is an :class:`~sitemesh.knowledge.IngestError` naming the file, the line
and the field and saying what was expected.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from ._docs import Document
from ._errors import IngestError
from ._pseudonymise import Pseudonymiser
from ._records import (
    case_records,
    cases_to_docs,
    faq_records,
    faq_to_docs,
    jsonl_records,
    read_text,
)
from ._split import Section, split_html, split_markdown

Format = Literal["auto", "markdown", "html", "cases", "faq"]
FORMATS: Final = ("auto", "markdown", "html", "cases", "faq")

MARKDOWN_SUFFIXES: Final = (".md", ".markdown")
HTML_SUFFIXES: Final = (".html", ".htm")
_SKIP_FILES: Final = frozenset({"_index.md", "SOURCE.md", "LICENSE.md"})

FAQ_URL_BASE: Final = "https://help.example.com/banking"
"""Base of the bundled FAQ's article URLs (``<base>/<intent>``). Configurable: rebuild
with ``examples/make_kb.py --url-base URL``, or override the bundled KB at a site
with ``sitemesh kb add banking-faq bundled:banking-faq --url-base URL``."""


@dataclass(frozen=True, slots=True)
class Ingested:
    """What an ingest produced.

    Attributes:
        docs: the normalised documents, in source order.
        format: the format used (``auto`` resolved: ``markdown``, ``markdown,html``...).
        files: how many files were read.
    """

    docs: list[Document]
    format: str
    files: int = 1


def _label(path: Path, root: Path | None = None) -> str:
    if root is not None:
        try:
            return path.relative_to(root.parent).as_posix()
        except ValueError:
            pass
    return path.name


def _files(source: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(
        p
        for p in source.rglob("*")
        if p.is_file() and p.suffix.lower() in suffixes and p.name not in _SKIP_FILES
    )


def _article_docs(
    source: Path,
    suffixes: tuple[str, ...],
    url_base: str | None,
) -> tuple[list[Document], int]:
    docs: list[Document] = []
    files = _files(source, suffixes)
    base = source if source.is_dir() else source.parent
    for path in files:
        shown = _label(path, source if source.is_dir() else None)
        rel = path.relative_to(base).as_posix()
        doc_id = rel.rsplit(".", 1)[0]
        text = read_text(path, shown)
        splitter: Callable[..., list[Section]] = (
            split_html if path.suffix.lower() in HTML_SUFFIXES else split_markdown
        )
        sections = splitter(text, doc_id=doc_id, source=shown)
        if not sections:
            raise IngestError(shown, "at least one heading or paragraph with text")
        for s in sections:
            url = None
            if url_base:
                slug = s.passage_id.split("#", 1)[1]
                url = f"{url_base.rstrip('/')}/{doc_id}" + (
                    "" if slug == "overview" else f"#{slug}"
                )
            docs.append(
                Document(
                    id=s.passage_id,
                    doc_id=s.doc_id,
                    doc_kind="article",
                    title=s.title,
                    section=s.section,
                    text=s.text,
                    url=url,
                    source=s.source,
                )
            )
    return docs, len(files)


def read_articles(
    source: Path,
    fmt: Literal["markdown", "html"],
    *,
    url_base: str | None = None,
    both: bool = False,
) -> Ingested:
    """Markdown and/or HTML documents from a file or a folder.

    Args:
        source: a file or a folder (searched recursively).
        fmt: ``markdown`` or ``html``.
        url_base: when given, each section's ``url`` is ``<url_base>/<doc_id>#<slug>``.
        both: read Markdown and HTML files of a folder alike (``auto``).

    Raises:
        IngestError: no such files, a file is not UTF-8, or a file has no text.
    """
    suffixes = (
        MARKDOWN_SUFFIXES + HTML_SUFFIXES
        if both
        else (MARKDOWN_SUFFIXES if fmt == "markdown" else HTML_SUFFIXES)
    )
    docs, n = _article_docs(source, suffixes, url_base)
    if n == 0:
        raise IngestError(source.name or str(source), f"{'/'.join(suffixes)} files in the folder")
    kinds = sorted(
        {"html" if d.source.lower().endswith(HTML_SUFFIXES) else "markdown" for d in docs},
        reverse=True,
    )
    return Ingested(docs=docs, format=",".join(kinds) if both else fmt, files=n)


# -- format detection ------------------------------------------------------------------


def detect_format(source: Path) -> str:
    """The format ``auto`` resolves to for ``source`` (see the module docstring).

    Raises:
        IngestError: nothing to go by (unknown suffix, empty folder, first JSON
            record with neither ``intent`` + ``answer`` nor ``text``).
    """
    shown = source.name or str(source)
    if source.is_dir():
        md = bool(_files(source, MARKDOWN_SUFFIXES))
        html = bool(_files(source, HTML_SUFFIXES))
        if md and html:
            return "markdown,html"
        if md or html:
            return "markdown" if md else "html"
        raise IngestError(shown, "a folder with .md or .html files")
    suffix = source.suffix.lower()
    if suffix in MARKDOWN_SUFFIXES:
        return "markdown"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix == ".csv":
        return "faq"
    if suffix in (".jsonl", ".json", ".ndjson"):
        n, first = jsonl_records(source, shown)[0]
        if "intent" in first and "answer" in first:
            return "faq"
        if "text" in first:
            return "cases"
        raise IngestError(
            shown,
            "a past case {text, resolution|reply} or an FAQ entry {intent, answer}",
            line=n,
            got=f"fields {sorted(first)}",
        )
    raise IngestError(
        shown,
        "a .md/.html file or folder, a .jsonl of cases or FAQ entries, "
        "or an FAQ .csv (or pass --format)",
        got=f"suffix {suffix or 'none'!r}",
    )


def ingest(
    source: Path,
    fmt: str = "auto",
    *,
    url_base: str | None = None,
    pseudonymiser: Pseudonymiser | None = None,
) -> Ingested:
    """Read ``source`` in ``fmt`` into normalised documents.

    Args:
        source: a file or folder.
        fmt: one of :data:`FORMATS`.
        url_base: base of article URLs (Markdown/HTML: ``<base>/<doc_id>``; FAQ:
            ``<base>/<intent>`` for entries without a ``url``).
        pseudonymiser: for cases (``None``: a default one, loading Presidio).

    Raises:
        IngestError: ``source`` is missing or invalid for the format.
        PiiAnalyzerError: pseudonymising cases failed (nothing is returned).
    """
    shown = source.name or str(source)
    if not source.exists():
        raise IngestError(str(source), "an existing file or folder", got="nothing there")
    if fmt not in FORMATS:
        raise IngestError(shown, f"--format one of {', '.join(FORMATS)}", got=repr(fmt))
    resolved = detect_format(source) if fmt == "auto" else fmt
    if resolved in ("markdown", "html", "markdown,html"):
        if fmt == "auto" and resolved == "markdown,html":
            return read_articles(source, "markdown", url_base=url_base, both=True)
        return read_articles(
            source, "html" if resolved == "html" else "markdown", url_base=url_base
        )
    if source.is_dir():
        raise IngestError(shown, f"a file for --format {resolved}", got="a folder")
    if resolved == "cases":
        records = case_records(source, shown)
        docs = cases_to_docs(records, pseudonymiser or Pseudonymiser())
        return Ingested(docs=docs, format="cases")
    faq = faq_records(source, shown)
    return Ingested(docs=faq_to_docs(faq, url_base=url_base, source=shown), format="faq")
