"""The runbook knowledge base: load the packaged Markdown, split it, index it with BM25.

The corpus is the copy of two Apache-2.0 runbook collections shipped in
``sitemesh/agents/kb/`` (see each corpus' ``SOURCE.md``). Runtime code reads only
that package copy. Each runbook is split into one section per Markdown heading;
sections are ranked with Okapi BM25 (Robertson & Zaragoza, "The Probabilistic
Relevance Framework: BM25 and Beyond", 2009) as implemented by ``bm25s``
(Lucene variant, ``k1=1.5``, ``b=0.75``).

The index is built once per process on first use (:func:`default_kb`) and takes
about a second for the ~390 runbooks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN_PLUS

KB_ROOT: Final = Path(__file__).parent / "kb"
"""Root of the packaged knowledge base (one sub-folder per corpus)."""


@dataclass(frozen=True, slots=True)
class Corpus:
    """One upstream runbook collection copied under :data:`KB_ROOT`.

    Attributes:
        name: folder name under the knowledge-base root, also the ``doc_id`` prefix.
        repo: upstream GitHub repository (``owner/name``).
        commit: the upstream commit the files were copied from.
        prefix: upstream folder the files sit in (``content/runbooks/``).
    """

    name: str
    repo: str
    commit: str
    prefix: str

    def source(self, relpath: str) -> str:
        """Upstream URL of a file, ``relpath`` relative to the corpus folder."""
        return f"https://github.com/{self.repo}/blob/{self.commit}/{self.prefix}{relpath}"


CORPORA: Final[tuple[Corpus, ...]] = (
    Corpus(
        name="prometheus",
        repo="prometheus-operator/runbooks",
        commit="a685d14cf5128bb30e2bf935c3983decd772d885",
        prefix="content/runbooks/",
    ),
    Corpus(
        name="openshift",
        repo="openshift/runbooks",
        commit="82bd2d9d3789e76f8a8202f8a9ee0f0639cc5b73",
        prefix="alerts/",
    ),
)
"""The packaged corpora, values from their ``SOURCE.md``."""

MAX_PASSAGE_CHARS: Final = 1200
"""Passage text sent on the wire is cut to this many characters (at a word boundary)."""

MAX_INDEXED_CHARS: Final = 4000
"""Only the first this-many characters of a section are indexed, so one very long
section cannot dominate through sheer term frequency."""

_SKIP_FILES: Final = frozenset({"_index.md", "SOURCE.md"})

# --- text processing ---------------------------------------------------------------

_CAMEL_1 = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_2 = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")
_TOKEN = re.compile(r"[a-z0-9]+")
_KEEP: Final = frozenset({"down", "up", "off", "out", "over", "under", "above", "below"})
_STOPWORDS: Final = (frozenset(STOPWORDS_EN_PLUS) - _KEEP) | frozenset(
    {"please", "thanks", "thank", "hi", "hello", "hey", "dear", "regards"}
)
"""bm25s' extended English list, minus direction words that matter in alert names
("members down", "filling up"), plus greetings common in tickets."""


def split_camel(text: str) -> str:
    """Split CamelCase alert names into words: ``etcdMembersDown`` -> ``etcd Members Down``.

    Args:
        text: any text.

    Returns:
        ``text`` with a space at each lower->upper and acronym->word boundary.
    """
    return _CAMEL_2.sub(" ", _CAMEL_1.sub(" ", text))


def stem(word: str) -> str:
    """A small suffix-stripping stemmer (lower-case input).

    ``bm25s`` only stems through the optional PyStemmer package, which is not a
    dependency, so this strips the common English inflections (a subset of
    Porter's step 1, Porter 1980): plural ``-ies/-es/-s``, ``-ing``, ``-ed``, and
    ``-ly``, keeping stems of at least three letters (``restarting`` ->
    ``restart``, ``members`` -> ``member``). Stems need not be words; queries go
    through the same function, so only consistency matters.

    Args:
        word: one lower-case token.

    Returns:
        The stem.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + repl
            break
    else:
        if word.endswith("es") and word[-3:-2] in {"s", "x", "z"} and len(word) > 4:
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # "running" -> "runn" -> "run"
    return word


def tokenize(text: str) -> list[str]:
    """Tokens for BM25: CamelCase split, lower-cased, English stop words removed, stemmed.

    Args:
        text: any text.

    Returns:
        Stemmed tokens of at least two characters, in text order (repeats kept).
    """
    words = _TOKEN.findall(split_camel(text).lower())
    return [stem(w) for w in words if len(w) > 1 and w not in _STOPWORDS]


def slugify(text: str) -> str:
    """A URL-style slug: ``"General etcd health"`` -> ``"general-etcd-health"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "section"


def trim(text: str, limit: int = MAX_PASSAGE_CHARS) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, adding ``…``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


# --- splitting ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    """One heading's worth of a runbook.

    Attributes:
        passage_id: ``<doc_id>#<section slug>``, unique in the knowledge base.
        doc_id: runbook path relative to the knowledge base root, without ``.md``
            (``prometheus/etcd/etcdMembersDown``).
        title: the runbook's H1, or its file stem when it has none.
        section: the heading text (the title for text before the first sub-heading).
        path: the chain of headings from the H1 down to this one.
        text: the section body, Markdown as written (code blocks included), stripped.
        source: upstream URL of the runbook file.
        order: position of the section in its runbook (0-based).
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


def split_markdown(text: str, *, doc_id: str, source: str) -> list[Section]:
    """Split a runbook into sections at its Markdown headings.

    Headings inside fenced code blocks are not headings (shell comments start with
    ``#``). Hugo front matter is dropped. Sections with an empty body are dropped;
    duplicate heading slugs within a runbook get ``-2``, ``-3``... suffixes.

    Args:
        text: the Markdown file content.
        doc_id: the runbook's id (path relative to the knowledge-base root, no ``.md``).
        source: upstream URL for attribution.

    Returns:
        The sections in document order.
    """
    text = _strip_front_matter(text)
    stem_title = doc_id.rsplit("/", 1)[-1]
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
    title = title or stem_title

    sections: list[Section] = []
    seen: dict[str, int] = {}
    stack: list[tuple[int, str]] = []
    for level, heading, body in chunks:
        heading = heading or title
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, heading))
        body_text = "\n".join(body).strip()
        if not body_text:
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
                text=body_text,
                source=source,
                order=len(sections),
            )
        )
    return sections


# --- the index ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """A ranked section.

    Attributes:
        section: the matching section.
        score: its BM25 score (higher is better, not normalised), rounded to 4 digits.
        matched_terms: how many distinct query terms occur in the section's indexed text.
    """

    section: Section
    score: float
    matched_terms: int


class KnowledgeBase:
    """A BM25 index over runbook sections.

    Args:
        sections: the sections to index, in a stable order (ties are broken by it).

    Attributes:
        sections: the indexed sections.
        index_version: first 12 hex digits of the SHA-256 of the sections (ids and
            texts), so a changed corpus or splitter gives a new version.
    """

    def __init__(self, sections: Sequence[Section]) -> None:
        self.sections: tuple[Section, ...] = tuple(sections)
        self._by_id = {s.passage_id: s for s in self.sections}
        self._by_doc: dict[str, list[Section]] = {}
        for s in self.sections:
            self._by_doc.setdefault(s.doc_id, []).append(s)
        digest = hashlib.sha256()
        for s in self.sections:
            digest.update(f"{s.passage_id}\0{s.text}\0".encode())
        self.index_version = digest.hexdigest()[:12]
        # Title and heading go in front of the body so alert-name queries hit every
        # section of the matching runbook.
        corpus_tokens = [
            tokenize(f"{s.title} {s.section} {s.text[:MAX_INDEXED_CHARS]}") for s in self.sections
        ]
        self._token_sets = [frozenset(t) for t in corpus_tokens]
        self._bm25 = bm25s.BM25()
        self._bm25.index(corpus_tokens, show_progress=False)
        self._vocab: dict[str, int] = self._bm25.vocab_dict

    @classmethod
    def load(cls, root: Path = KB_ROOT, corpora: Iterable[Corpus] = CORPORA) -> KnowledgeBase:
        """Load and index every runbook under ``root``.

        Args:
            root: the knowledge-base folder (one sub-folder per corpus).
            corpora: which corpora to load.

        Returns:
            The indexed knowledge base.
        """
        sections: list[Section] = []
        for corpus in corpora:
            base = root / corpus.name
            for path in sorted(base.rglob("*.md")):
                if path.name in _SKIP_FILES:
                    continue
                rel = path.relative_to(base).as_posix()
                doc_id = f"{corpus.name}/{rel.removesuffix('.md')}"
                text = path.read_text(encoding="utf-8")
                sections.extend(split_markdown(text, doc_id=doc_id, source=corpus.source(rel)))
        return cls(sections)

    def __len__(self) -> int:
        return len(self.sections)

    def get(self, passage_id: str) -> Section | None:
        """The section with this ``passage_id``, or ``None``."""
        return self._by_id.get(passage_id)

    def doc_sections(self, doc_id: str) -> list[Section]:
        """All sections of one runbook in document order (empty if unknown)."""
        return list(self._by_doc.get(doc_id, ()))

    def search(self, query: str, k: int = 5) -> tuple[list[Hit], list[str]]:
        """Rank sections for a query.

        Args:
            query: free text; tokenised like the corpus.
            k: how many hits to return.

        Returns:
            ``(hits, terms)``: up to ``k`` hits with a positive score, best first
            (ties broken by corpus order, so the result is deterministic), and the
            distinct query terms that exist in the index vocabulary.
        """
        terms = sorted({t for t in tokenize(query) if t in self._vocab})
        if not terms or k <= 0:
            return [], terms
        scores = np.asarray(self._bm25.get_scores(list(terms)), dtype=np.float64)
        order = np.lexsort((np.arange(len(scores)), -np.round(scores, 6)))[:k]
        hits = []
        for i in order:
            score = float(scores[i])
            if score <= 0.0:
                break
            matched = sum(1 for t in terms if t in self._token_sets[i])
            hits.append(Hit(section=self.sections[i], score=round(score, 4), matched_terms=matched))
        return hits, terms


@cache
def default_kb() -> KnowledgeBase:
    """The packaged knowledge base, loaded and indexed once per process."""
    return KnowledgeBase.load()
