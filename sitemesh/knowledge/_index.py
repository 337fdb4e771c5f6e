"""The BM25 index of one knowledge base, with its calibrated confidence.

Rows, not documents, are indexed: one row per document (title, section, text; for
past cases also the answer, which describes the fix), plus one row per example
question of an FAQ document, so a question matches the FAQ as well as its own
answer does. A document's score is the best score of its rows. Ranking is Okapi
BM25 (Robertson & Zaragoza 2009) as implemented by ``bm25s`` (Lucene variant,
``k1=1.5``, ``b=0.75``) over :func:`sitemesh.knowledge.tokenize` tokens;
placeholders and contact details are removed before indexing
(:func:`~sitemesh.knowledge.index_text`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import bm25s
import numpy as np

from ._calibrate import HEURISTIC, VOTE_K, Calibration, Features, fit_platt
from ._docs import Document, KbSpec
from ._routing import visible
from ._text import cap_query, index_text, tokenize

MAX_INDEXED_CHARS = 4000
"""Only the first this-many characters of a row are indexed, so one very long
document cannot dominate through sheer term frequency."""

_EMPTY = "\x00"
"""The token of a row with no indexable words (``bm25s`` needs one per row)."""


@dataclass(frozen=True, slots=True)
class KbHit:
    """One ranked answer.

    Attributes:
        doc: the best-scoring document of the answer.
        score: its BM25 score (higher is better, not normalised), 4 digits.
        rank: 1-based position among the distinct answers of the ranking.
        matched_terms: distinct query terms found in its best row.
    """

    doc: Document
    score: float
    rank: int
    matched_terms: int


@dataclass(frozen=True, slots=True)
class Ranking:
    """The result of :meth:`KbIndex.search`.

    Attributes:
        hits: distinct answers, best first: one per label for labelled documents,
            one per document otherwise.
        features: what the ranking says about its top answer (``None``: no match).
        confidence: the calibrated P(the top answer is right), 0..1.
        terms: distinct query terms known to the index.
    """

    hits: list[KbHit]
    features: Features | None
    confidence: float
    terms: list[str]


def _key(doc: Document) -> str:
    return doc.label if doc.label is not None else f"\x00{doc.doc_id}"


def _hit_key(doc: Document) -> str:
    return doc.label if doc.label is not None else f"\x00{doc.id}"


class KbIndex:
    """BM25 over a knowledge base's documents, calibrated at construction.

    Args:
        spec: the knowledge base's spec.
        docs: its documents, in a stable order (ties are broken by it).
        calibrate: fit the leave-one-out calibration now (``False``: use the
            heuristic; for tests and tools that only search).

    Attributes:
        spec: as given.
        docs: the documents.
        version: first 12 hex digits of the SHA-256 of the documents' ids and texts.
        calibration: the fitted :class:`~sitemesh.knowledge.Calibration`.
    """

    def __init__(self, spec: KbSpec, docs: Sequence[Document], *, calibrate: bool = True) -> None:
        self.spec = spec
        self.docs: tuple[Document, ...] = tuple(docs)
        digest = hashlib.sha256()
        rows: list[list[str]] = []
        row_doc: list[int] = []
        question_rows: list[tuple[int, str]] = []
        for i, d in enumerate(self.docs):
            digest.update(f"{d.id}\0{d.text}\0{d.answer}\0".encode())
            body = d.text if d.doc_kind != "case" else f"{d.text}\n{d.answer}"
            rows.append(tokenize(index_text(f"{d.title} {d.section} {body}")[:MAX_INDEXED_CHARS]))
            row_doc.append(i)
            for q in d.questions:
                question_rows.append((len(rows), q))
                rows.append(tokenize(index_text(q)))
                row_doc.append(i)
        self.version = digest.hexdigest()[:12]
        self._row_doc = np.asarray(row_doc, dtype=np.int64)
        self._row_key = [_key(self.docs[i]) for i in row_doc]
        self._row_tokens = [frozenset(r) for r in rows]
        self._row_tenant = np.asarray(
            [(self.docs[i].tenant or "").casefold() for i in row_doc], dtype=object
        )
        self._hidden_by_tenant: dict[str, np.ndarray] = {}
        self._questions = question_rows
        self._by_label: dict[str, Document] = {}
        for d in self.docs:
            if d.label is not None:
                self._by_label.setdefault(d.label, d)
        self._bm25 = bm25s.BM25()
        self._bm25.index([r or [_EMPTY] for r in rows], show_progress=False)
        self._vocab: dict[str, int] = self._bm25.vocab_dict
        self.calibration: Calibration = HEURISTIC
        if calibrate:
            self.calibration = self._leave_one_out()

    def __len__(self) -> int:
        return len(self.docs)

    @property
    def labelled(self) -> bool:
        """Whether any document carries a label."""
        return bool(self._by_label)

    def by_label(self, label: str) -> Document | None:
        """The first document with this label (an FAQ's intent), or ``None``."""
        return self._by_label.get(label)

    def _hidden(self, tenant: str) -> np.ndarray:
        """Boolean mask of the rows a task of ``tenant`` may not see (cached)."""
        folded = tenant.casefold()
        mask = self._hidden_by_tenant.get(folded)
        if mask is None:
            mask = (self._row_tenant != "") & (self._row_tenant != folded)
            self._hidden_by_tenant[folded] = mask
        return mask

    def _scores(self, terms: list[str]) -> np.ndarray:
        scores: np.ndarray = np.asarray(self._bm25.get_scores(terms), dtype=np.float64)
        return scores

    def _rank(
        self, terms: list[str], n_query_terms: int, tenant: str | None, exclude: int | None, k: int
    ) -> Ranking:
        scores = self._scores(terms)
        if tenant is not None:
            scores[self._hidden(tenant)] = 0.0
        if exclude is not None:
            scores[exclude] = 0.0
        positive = np.flatnonzero(scores > 0.0)
        if len(positive) == 0:
            return Ranking(hits=[], features=None, confidence=0.0, terms=terms)
        order = positive[np.lexsort((positive, -np.round(scores[positive], 6)))]
        top_row = int(order[0])
        top_key = self._row_key[top_row]
        s1 = float(scores[top_row])
        s2 = next((float(scores[r]) for r in order if self._row_key[r] != top_key), 0.0)
        votes = order[:VOTE_K]
        share = sum(1 for r in votes if self._row_key[r] == top_key) / len(votes)
        covered = sum(1 for t in terms if t in self._row_tokens[top_row])
        features = Features(
            top_score=round(s1, 4),
            margin=round((s1 - s2) / s1, 4),
            vote_share=round(share, 4),
            coverage=round(min(1.0, covered / max(1, n_query_terms)), 4),
        )
        hits: list[KbHit] = []
        seen: set[str] = set()
        for r in order:
            doc = self.docs[int(self._row_doc[r])]
            key = _hit_key(doc)
            if key in seen:
                continue
            seen.add(key)
            matched = sum(1 for t in terms if t in self._row_tokens[r])
            hits.append(
                KbHit(
                    doc=doc,
                    score=round(float(scores[r]), 4),
                    rank=len(hits) + 1,
                    matched_terms=matched,
                )
            )
            if len(hits) >= k:
                break
        return Ranking(
            hits=hits,
            features=features,
            confidence=self.calibration.predict(features),
            terms=terms,
        )

    def search(self, query: str, *, tenant: str | None = None, k: int = 5) -> Ranking:
        """Rank the knowledge base for a query.

        Args:
            query: free text (already scrubbed of contact details by the caller;
                tokenised like the documents); only its first
                :data:`~sitemesh.knowledge.MAX_QUERY_CHARS` characters count.
            tenant: only documents of this tenant or of none (``None``: all).
            k: how many distinct answers to return.

        Returns:
            The ranking; empty with confidence 0.0 when no query term is indexed.
        """
        tokens = tokenize(cap_query(query))
        terms = sorted({t for t in tokens if t in self._vocab})
        if not terms or k <= 0:
            return Ranking(hits=[], features=None, confidence=0.0, terms=terms)
        return self._rank(terms, len(set(tokens)), tenant, None, k)

    def score_of(self, query: str, label: str, *, tenant: str | None = None) -> float:
        """The best BM25 score of any row of ``label`` for ``query`` (0.0: none)."""
        terms = sorted({t for t in tokenize(cap_query(query)) if t in self._vocab})
        if not terms:
            return 0.0
        scores = self._scores(terms)
        rows = [
            r
            for r, key in enumerate(self._row_key)
            if key == label and visible(self.docs[int(self._row_doc[r])].tenant, tenant)
        ]
        return round(float(scores[rows].max()), 4) if rows else 0.0

    def loo_queries(self) -> list[tuple[str, int, Document]]:
        """The leave-one-out queries: ``(text, row to leave out, its document)`` for
        every example question of a labelled FAQ document and, for labelled
        documents without questions, their own text (their row left out)."""
        out: list[tuple[str, int, Document]] = []
        if self._questions:
            for row, q in self._questions:
                doc = self.docs[int(self._row_doc[row])]
                if doc.label is not None:
                    out.append((q, row, doc))
            return out
        doc_row = {int(d): r for r, d in reversed(list(enumerate(self._row_doc)))}
        for i, d in enumerate(self.docs):
            if d.label is not None:
                out.append((index_text(d.text), doc_row[i], d))
        return out

    def loo_rankings(self) -> list[tuple[Ranking, Document]]:
        """Each :meth:`loo_queries` query ranked against the rest, under the tenant
        filter of its document (the filter retrieval applies)."""
        out: list[tuple[Ranking, Document]] = []
        for text, row, doc in self.loo_queries():
            tokens = tokenize(text)
            terms = sorted({t for t in tokens if t in self._vocab})
            if not terms:
                out.append((Ranking(hits=[], features=None, confidence=0.0, terms=[]), doc))
                continue
            out.append((self._rank(terms, len(set(tokens)), doc.tenant, row, VOTE_K), doc))
        return out

    def _leave_one_out(self) -> Calibration:
        if not self.labelled:
            return HEURISTIC
        features: list[Features] = []
        correct: list[bool] = []
        for ranking, doc in self.loo_rankings():
            if ranking.features is None or not ranking.hits:
                continue
            features.append(ranking.features)
            correct.append(ranking.hits[0].doc.label == doc.label)
        return fit_platt(features, correct)
