"""Calibrated confidence: Platt scaling fitted by leave-one-out, per knowledge base.

For a knowledge base whose documents are labelled (past cases: the article that
resolved them; FAQs: the intent of each example question), every labelled query
(a case's text, an FAQ's example question) is searched against the rest of the
knowledge base with itself left out, under the tenant filter retrieval applies. For
each we record :class:`Features` of the ranking and whether the top-ranked label
is the query's own. A logistic regression on those features (Platt, "Probabilistic
Outputs for Support Vector Machines and Comparisons to Regularized Likelihood
Methods", 1999; scikit-learn's ``LogisticRegression``, L2, ``C=1``, lbfgs: the fit
is deterministic) maps a ranking to P(top label correct).

The probability must not fall when the evidence gets stronger, so the fitted
coefficients are kept non-negative: a feature whose coefficient comes out
negative is dropped and the model refitted without it (for ``support-cases`` the
margin, which adds nothing once the vote share is in; ``banking-faq`` keeps all three).

Measured reliability (``Calibration.brier``/``ece`` are 5-fold cross-validated over the
leave-one-out set; the held-out figures are ``bench/resolve.py`` on records that were
never indexed or fitted on, 10 equal-width bins):

* ``support-cases``: leave-one-out n=415, top-1 right 36%, Brier 0.166, ECE 0.036;
  held out, the 102 IBM first turns: top-1 right 38%, ECE 0.086; at confidence >= 0.7
  17 tickets, 94% right; >= 0.8: 8 tickets, all right;
* ``banking-faq``: leave-one-out n=7958, top-1 right 79%, Brier 0.090, ECE 0.012;
  held out, 2,044 banking77 rows: top-1 right 79%, ECE 0.012; >= 0.8: 68% of the rows,
  95.8% right; >= 0.9: 58%, 97.6% right.

Knowledge bases without labels (Markdown and HTML articles), or with fewer than
:data:`MIN_LOO` labelled queries or only one outcome, use
:func:`heuristic_confidence`, the runbook formula of the retriever, and say so
(``Calibration.method == "heuristic"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import msgspec
import numpy as np

SCORE_SCALE: Final = 6.0
"""BM25 score at which the strength term of :func:`heuristic_confidence` is 0.5 (the
runbook retriever's constant, ``sitemesh.agents``' ``SCORE_SCALE``)."""

VOTE_K: Final = 5
"""How many top-ranked rows vote in :attr:`Features.vote_share`."""

MIN_LOO: Final = 20
"""Fewest labelled leave-one-out queries for a Platt fit."""

CV_FOLDS: Final = 5
"""Folds of the cross-validated reliability figures (:attr:`Calibration.brier`)."""


@dataclass(frozen=True, slots=True)
class Features:
    """What a ranking says about its top answer.

    Attributes:
        top_score: BM25 score of the best row (not normalised, > 0).
        margin: ``(s1 - s2) / s1``, ``s2`` the best score of a row with another
            label (another document when unlabelled); 1.0 when there is none.
        vote_share: share of the best :data:`VOTE_K` rows (fewer if fewer matched)
            whose label is the top row's, 0..1.
        coverage: share of the distinct query terms found in the best row, 0..1
            (terms unknown to the index count as missing).
    """

    top_score: float
    margin: float
    vote_share: float
    coverage: float

    def vector(self) -> list[float]:
        """The Platt inputs: ``[log(1 + top_score), margin, vote_share]``."""
        return [math.log1p(self.top_score), self.margin, self.vote_share]


FEATURE_NAMES: Final = ("log1p_top_score", "margin", "vote_share")


def heuristic_confidence(f: Features) -> float:
    """``strength · (0.4 + 0.6 · coverage) · (0.7 + 0.3 · margin)``, ``strength =
    s1 / (s1 + SCORE_SCALE)``: the runbook retriever's uncalibrated formula, 0..1."""
    s1 = f.top_score
    if s1 <= 0:
        return 0.0
    value = s1 / (s1 + SCORE_SCALE) * (0.4 + 0.6 * f.coverage) * (0.7 + 0.3 * f.margin)
    return round(max(0.0, min(1.0, value)), 4)


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """A fitted calibration (or the heuristic), with its measured reliability.

    ``coef``/``intercept`` are the logistic model over :meth:`Features.vector`; the
    reliability figures are of leave-one-out probabilities predicted by models fitted
    on the other :data:`CV_FOLDS` - 1 folds (so not in-sample).
    """

    method: Literal["platt", "heuristic"]
    coef: tuple[float, ...] = ()
    """One weight per :data:`FEATURE_NAMES` entry (0.0: dropped), all >= 0."""
    intercept: float = 0.0
    n: int = 0
    """Leave-one-out queries the fit used."""
    accuracy: float = 0.0
    """Share of those whose top label was their own, 0..1."""
    brier: float = 0.0
    """Cross-validated Brier score (mean squared error of the probability), 0..1."""
    ece: float = 0.0
    """Cross-validated expected calibration error (10 equal-width bins), 0..1."""

    def predict(self, f: Features | None) -> float:
        """P(top label correct) for a ranking, 0..1, rounded to 4 digits (0.0: none)."""
        if f is None or f.top_score <= 0:
            return 0.0
        if self.method == "heuristic":
            return heuristic_confidence(f)
        z = self.intercept + sum(w * x for w, x in zip(self.coef, f.vector(), strict=True))
        return round(1.0 / (1.0 + math.exp(-z)), 4)

    def describe(self) -> str:
        """``platt(loo, n=423)`` or ``heuristic(bm25 strength x coverage x margin)``."""
        if self.method == "platt":
            return f"platt(loo, n={self.n})"
        return "heuristic(bm25 strength x coverage x margin)"

    def summary(self) -> str:
        """One line for ``sitemesh kb list``."""
        if self.method == "platt":
            return (
                f"{self.describe()}: top-1 {self.accuracy:.0%}, brier {self.brier:.3f}, "
                f"ece {self.ece:.3f}"
            )
        return self.describe()


HEURISTIC: Final = Calibration(method="heuristic")


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[list[float], float]:
    """Logistic fit with non-negative weights (negative ones dropped, refitted)."""
    from sklearn.linear_model import LogisticRegression

    active = list(range(x.shape[1]))
    while True:
        model = LogisticRegression(C=1.0, solver="lbfgs", max_iter=1000)
        model.fit(x[:, active], y)
        weights = [float(w) for w in model.coef_[0]]
        negative = [a for a, w in zip(active, weights, strict=True) if w < 0]
        if not negative or len(active) == 1:
            coef = [0.0] * x.shape[1]
            for a, w in zip(active, weights, strict=True):
                coef[a] = max(0.0, w)
            return coef, float(model.intercept_[0])
        active = [a for a in active if a not in negative]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def expected_calibration_error(p: Sequence[float], y: Sequence[bool], bins: int = 10) -> float:
    """ECE: the bin-size-weighted mean |mean confidence - accuracy| over equal-width
    bins of ``p`` (Naeini et al., AAAI 2015).

    Args:
        p: probabilities, 0..1.
        y: outcomes, same length.
        bins: number of bins over 0..1.
    """
    pa, ya = np.asarray(p, dtype=float), np.asarray(y, dtype=float)
    if len(pa) == 0:
        return 0.0
    idx = np.minimum((pa * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.sum() * abs(pa[sel].mean() - ya[sel].mean())
    return float(total / len(pa))


def fit_platt(features: Sequence[Features], correct: Sequence[bool]) -> Calibration:
    """Fit the Platt calibration on leave-one-out rankings.

    Args:
        features: one per labelled leave-one-out query (rankings with no match left
            out by the caller: they get confidence 0 anyway).
        correct: whether that query's top label was its own.

    Returns:
        The ``platt`` calibration, or :data:`HEURISTIC` when there are fewer than
        :data:`MIN_LOO` queries or only one outcome.
    """
    y = np.asarray(correct, dtype=int)
    if len(features) < MIN_LOO or y.min(initial=1) == y.max(initial=0):
        return HEURISTIC
    x = np.asarray([f.vector() for f in features], dtype=float)
    coef, intercept = _fit(x, y)
    # reliability out of sample: fold k predicted by the fit on the other folds
    held = np.zeros(len(y))
    folds = np.arange(len(y)) % CV_FOLDS
    for k in range(CV_FOLDS):
        train, test = folds != k, folds == k
        if y[train].min() == y[train].max():
            held[test] = y[train].mean()
            continue
        w, b = _fit(x[train], y[train])
        held[test] = _sigmoid(x[test] @ np.asarray(w) + b)
    return Calibration(
        method="platt",
        coef=tuple(round(c, 6) for c in coef),
        intercept=round(intercept, 6),
        n=len(y),
        accuracy=round(float(y.mean()), 4),
        brier=round(float(np.mean((held - y) ** 2)), 4),
        ece=round(expected_calibration_error(held.tolist(), y.astype(bool).tolist()), 4),
    )
