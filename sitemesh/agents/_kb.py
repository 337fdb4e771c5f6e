"""The runbook knowledge base: load the packaged Markdown, split it, index it with BM25.

The corpus is the copy of two Apache-2.0 runbook collections shipped in
``sitemesh/agents/kb/`` (see each corpus' ``SOURCE.md``). Runtime code reads only
that package copy. Each runbook is split into one section per Markdown heading;
sections are ranked with Okapi BM25 (Robertson & Zaragoza, "The Probabilistic
Relevance Framework: BM25 and Beyond", 2009) as implemented by ``bm25s``
(Lucene variant, ``k1=1.5``, ``b=0.75``).

The index is built once per process on first use (:func:`default_kb`) and takes
about a second for the ~390 runbooks. The text processing (:func:`tokenize`,
:func:`split_markdown`...) is :mod:`sitemesh.knowledge`'s, shared with the site's
own knowledge bases; it is re-exported here. In ``sitemesh kb list`` this
knowledge base is ``runbooks``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Final

import bm25s
import numpy as np

from ..knowledge import (
    MAX_PASSAGE_CHARS,
    Section,
    slugify,
    split_camel,
    split_markdown,
    stem,
    tokenize,
    trim,
)

__all__ = [
    "CORPORA",
    "KB_ROOT",
    "MAX_INDEXED_CHARS",
    "MAX_PASSAGE_CHARS",
    "Corpus",
    "Hit",
    "KnowledgeBase",
    "Section",
    "default_kb",
    "slugify",
    "split_camel",
    "split_markdown",
    "stem",
    "tokenize",
    "trim",
]

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

MAX_INDEXED_CHARS: Final = 4000
"""Only the first this-many characters of a section are indexed, so one very long
section cannot dominate through sheer term frequency."""

_SKIP_FILES: Final = frozenset({"_index.md", "SOURCE.md"})


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
