"""Split Markdown and HTML documents into one section per heading."""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Final

from ._text import slugify


@dataclass(frozen=True, slots=True)
class Section:
    """One heading's worth of a document.

    Attributes:
        passage_id: ``<doc_id>#<section slug>``, unique in the knowledge base.
        doc_id: document path relative to the knowledge base root, without its
            suffix (``prometheus/etcd/etcdMembersDown``).
        title: the document's H1 (HTML: its ``<title>`` or first ``<h1>``), or its
            file stem when it has none.
        section: the heading text (the title for text before the first sub-heading).
        path: the chain of headings from the H1 down to this one.
        text: the section body, Markdown as written (code blocks included) or the
            HTML's text, stripped.
        source: where the document came from (upstream URL or relative path).
        order: position of the section in its document (0-based).
    """

    passage_id: str
    doc_id: str
    title: str
    section: str
    path: tuple[str, ...]
    text: str
    source: str
    order: int


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _strip_front_matter(text: str) -> str:
    if text.startswith("---\n"):
        end = text.find("\n---", 4)
        if end != -1:
            return text[end + 4 :].lstrip("\n")
    return text


def _sections(
    chunks: list[tuple[int, str, str]], *, doc_id: str, title: str, source: str
) -> list[Section]:
    """Sections from ``(level, heading, body)`` chunks in document order."""
    sections: list[Section] = []
    seen: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for level, heading, body in chunks:
        heading = heading or title
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
        if not body:
            continue
        slug = slugify(heading) if level > 1 else "overview"
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        sections.append(
            Section(
                passage_id=f"{doc_id}#{slug}",
                doc_id=doc_id,
                title=title,
                section=heading,
                path=tuple(h for _, h in stack),
                text=body,
                source=source,
                order=len(sections),
            )
        )
    return sections


def split_markdown(text: str, *, doc_id: str, source: str) -> list[Section]:
    """Split a Markdown document into sections at its headings.

    Headings inside fenced code blocks are not headings (shell comments start with
    ``#``). Hugo front matter is dropped. Sections with an empty body are dropped;
    duplicate heading slugs within a document get ``-2``, ``-3``... suffixes; text
    before the first sub-heading is the ``overview`` section.

    Args:
        text: the Markdown file content.
        doc_id: the document's id (path relative to the knowledge-base root, no ``.md``).
        source: upstream URL or path, for attribution.

    Returns:
        The sections in document order.
    """
    text = _strip_front_matter(text)
    title: str | None = None
    chunks: list[tuple[int, str, list[str]]] = [(1, "", [])]  # (level, heading, body lines)
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            level, heading = len(match.group(1)), match.group(2).strip()
            if level == 1 and title is None:
                title = heading
            chunks.append((level, heading, []))
        else:
            chunks[-1][2].append(line)
    title = title or doc_id.rsplit("/", 1)[-1]
    joined = [(lvl, h, "\n".join(body).strip()) for lvl, h, body in chunks]
    return _sections(joined, doc_id=doc_id, title=title, source=source)


_HTML_HEADINGS: Final = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_HTML_SKIP: Final = frozenset({"script", "style", "nav", "header", "footer", "noscript", "svg"})
_HTML_BLOCKS: Final = frozenset(
    {"p", "div", "li", "br", "tr", "pre", "blockquote", "section", "article", "table", "dd", "dt"}
)


class _HtmlSections(HTMLParser):
    """Collects ``(level, heading, body)`` chunks and the ``<title>`` of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[tuple[int, str, list[str]]] = [(1, "", [])]
        self.title = ""
        self._skip = 0
        self._heading: tuple[int, list[str]] | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HTML_SKIP:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _HTML_HEADINGS and not self._skip:
            self._heading = (_HTML_HEADINGS[tag], [])
        elif tag == "li" and not self._skip:
            self.chunks[-1][2].append("\n- ")
        elif tag in _HTML_BLOCKS and not self._skip:
            self.chunks[-1][2].append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _HTML_SKIP:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _HTML_HEADINGS and self._heading is not None:
            level, words = self._heading
            self._heading = None
            heading = " ".join("".join(words).split())
            if heading:
                if level == 1 and not self.title:
                    self.title = heading
                self.chunks.append((level, heading, []))
        elif tag in _HTML_BLOCKS and not self._skip:
            self.chunks[-1][2].append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = self.title or " ".join(data.split())
        elif self._skip:
            return
        elif self._heading is not None:
            self._heading[1].append(data)
        else:
            self.chunks[-1][2].append(data)


def split_html(text: str, *, doc_id: str, source: str) -> list[Section]:
    """Split an HTML page into sections at its ``<h1>``..``<h6>`` headings.

    Parsed with the standard library's :class:`html.parser.HTMLParser` (no
    dependency). The text of ``script``, ``style``, ``nav``, ``header``,
    ``footer``, ``noscript`` and ``svg`` elements is dropped; block elements
    (``p``, ``li``, ``div``...) become line breaks; whitespace within a line is
    collapsed. The title is the page's ``<title>``, else its first ``<h1>``, else
    the file stem. Sections are then formed as in :func:`split_markdown`.

    Args:
        text: the HTML content.
        doc_id: the document's id (path relative to the knowledge-base root, no suffix).
        source: upstream URL or path, for attribution.

    Returns:
        The sections in document order.
    """
    parser = _HtmlSections()
    parser.feed(text)
    parser.close()
    title = parser.title or doc_id.rsplit("/", 1)[-1]
    chunks = []
    for level, heading, parts in parser.chunks:
        lines = (" ".join(line.split()) for line in "".join(parts).splitlines())
        chunks.append((level, heading, "\n".join(line for line in lines if line)))
    return _sections(chunks, doc_id=doc_id, title=title, source=source)
