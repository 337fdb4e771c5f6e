"""How good a model is on held-out examples: accuracy, macro-F1, calibration, confusions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np

from ._examples import Example
from ._model import TriageModel

ECE_BINS: Final = 15
"""Equal-width confidence bins of :func:`expected_calibration_error` (Guo et al. 2017)."""


def accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Share of ``predicted`` equal to ``truth`` (0.0 for none).

    Raises:
        ValueError: the sequences differ in length.
    """
    if len(truth) != len(predicted):
        raise ValueError("truth and predicted differ in length")
    return sum(t == p for t, p in zip(truth, predicted, strict=True)) / len(truth) if truth else 0.0


def macro_f1(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Unweighted mean of the per-label F1 over every label in ``truth`` or
    ``predicted`` (scikit-learn's ``f1_score(average="macro")``; a label never predicted
    and never true does not count, one predicted but never true scores 0)."""
    from sklearn.metrics import f1_score

    if not truth:
        return 0.0
    return float(f1_score(list(truth), list(predicted), average="macro", zero_division=0))


def expected_calibration_error(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray,
    *, bins: int = ECE_BINS,
) -> float:  # fmt: skip
    """Expected calibration error of top-label confidences.

    ``ECE = sum_b (n_b / n) * |accuracy_b - mean confidence_b|`` over ``bins``
    equal-width bins ``(0, 1/bins], ..., ((bins-1)/bins, 1]`` (confidence 0 goes in the
    first); Naeini et al. 2015, as used by Guo et al. 2017.

    Args:
        confidence: ``n`` probabilities of the predicted labels, 0..1.
        correct: ``n`` flags, whether each prediction was right.
        bins: number of bins.

    Returns:
        ECE in 0..1 (0.0 for no predictions); lower is better.
    """
    p = np.asarray(confidence, dtype=np.float64)
    c = np.asarray(correct, dtype=np.float64)
    if p.size == 0:
        return 0.0
    index = np.clip(np.ceil(p * bins).astype(int) - 1, 0, bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.mean() * abs(c[mask].mean() - p[mask].mean())
    return float(total)


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A model's figures on a set of examples.

    Attributes:
        n: examples evaluated.
        accuracy: share predicted right, 0..1.
        macro_f1: see :func:`macro_f1`.
        ece: see :func:`expected_calibration_error`.
        confusions: ``((true, predicted), count)`` of the mistakes, most frequent first
            (ties by label), at most 10.
        predicted: the predicted label of each example, in order.
        confidence: its calibrated probability, in order.
    """

    n: int
    accuracy: float
    macro_f1: float
    ece: float
    confusions: tuple[tuple[tuple[str, str], int], ...]
    predicted: tuple[str, ...]
    confidence: tuple[float, ...]


def top_confusions(
    truth: Sequence[str], predicted: Sequence[str], *, n: int = 10
) -> tuple[tuple[tuple[str, str], int], ...]:
    """The ``n`` most frequent ``(true, predicted)`` mistakes with their counts."""
    counts = Counter((t, p) for t, p in zip(truth, predicted, strict=True) if t != p)
    return tuple(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n])


def evaluate(model: TriageModel, examples: Sequence[Example], *, batch: int = 512) -> Evaluation:
    """Predict ``examples`` with ``model`` and score the predictions.

    Args:
        model: a trained model.
        examples: labelled examples it was not trained on.
        batch: texts per :meth:`TriageModel.probabilities` call.
    """
    labels = np.asarray(model.labels, dtype=object)
    predicted: list[str] = []
    confidence: list[float] = []
    texts = [e.text for e in examples]
    for start in range(0, len(texts), batch):
        probs = model.probabilities(texts[start : start + batch])
        best = probs.argmax(axis=1)
        predicted += [str(v) for v in labels[best]]
        confidence += [float(v) for v in probs[np.arange(len(best)), best]]
    truth = [e.label for e in examples]
    return Evaluation(
        n=len(examples),
        accuracy=accuracy(truth, predicted),
        macro_f1=macro_f1(truth, predicted),
        ece=expected_calibration_error(
            confidence, [t == p for t, p in zip(truth, predicted, strict=True)]
        ),
        confusions=top_confusions(truth, predicted),
        predicted=tuple(predicted),
        confidence=tuple(confidence),
    )
