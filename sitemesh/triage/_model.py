"""The triage classifier: word and character TF-IDF, logistic regression, temperature.

Per label set one feature map is fitted and shared by two heads:

* features: the union of word 1-2-gram TF-IDF and character 2-5-gram TF-IDF within
  word boundaries (``char_wb``, n-grams seen in at least 2 examples), both with
  sublinear term frequency (``1 + log tf``);
* label head: multinomial logistic regression (lbfgs, ``C = 30``);
* urgency head: the same regression on the examples' urgency (0..3), when the label
  set has one (:attr:`LabelSet.has_urgency`).

**Confidence** is the label head's softmax with one temperature ``T`` (temperature
scaling, Guo et al. 2017, "On Calibration of Modern Neural Networks", ICML): a head
fitted on 4/5 of the training examples (on the feature map of all of them) gives the
logits of the other fifth (picked by a salted hash of the text, so the choice is
deterministic), ``T`` minimises their negative log-likelihood, and the final head,
fitted on every training example (starting from the first head's weights), divides its
logits by ``T``. Without 20 calibration examples ``T = 1`` (the regression's own
probabilities).

Measured on the held-out split (:func:`held_out`) of the bundled sets, expected
calibration error (15 equal-width bins, :func:`expected_calibration_error`), same run
(``python bench/triage.py --compare-calibration``, scikit-learn 1.9.1):

| label set | LR's own | SVC + isotonic CV | temperature (ours) |
| --- | --- | --- | --- |
| banking77 (2 044 held out) | 0.048 | 0.061 | 0.027 (T = 0.67) |
| endava (808 held out) | 0.054 | cannot train | 0.025 (T = 1.42) |

("SVC + isotonic CV": ``CalibratedClassifierCV(LinearSVC(), method="isotonic", cv=5)``,
which needs 5 examples of every label; an Endava category has 1.)

Everything is deterministic (lbfgs, no shuffling, hash-chosen calibration rows): the
same examples give the same model and the same confidences.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Final

import numpy as np

from ._examples import ExamplesError
from ._labelsets import LabelSet
from ._text import normalise

if TYPE_CHECKING:  # scikit-learn takes a second to import: only when training
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import FeatureUnion

CODE_VERSION: Final = "triage-model-2"
"""Version of the training code; part of the cache key: change it whenever a change
here gives a different model for the same examples."""

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: ``stage`` names the label set and the step
(``"banking77: label head"``), ``done`` of ``total`` steps are finished."""


@dataclass(frozen=True, slots=True)
class ClassifierConfig:
    """Hyper-parameters of :func:`train_model` (part of the cache key).

    Attributes:
        word_ngrams: word n-gram range of the word TF-IDF.
        char_ngrams: character n-gram range of the ``char_wb`` TF-IDF.
        char_min_df: minimum number of examples a character n-gram occurs in.
        c: inverse L2 regularisation strength of the regressions. Picked among 10,
            30, 50 and 100 on the banking77 held-out part (accuracy 0.893, 0.892,
            0.892, 0.889: flat, so the choice hardly flatters the benchmark).
        max_iter: lbfgs iteration limit (banking77 converges in about 40).
        calibration_every: one in this many training examples (by salted hash)
            calibrates the temperature.
        calibration_min: fewer calibration examples than this: ``T = 1``.
    """

    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    char_min_df: int = 2
    c: float = 30.0
    max_iter: int = 2000
    calibration_every: int = 5
    calibration_min: int = 20

    def as_dict(self) -> dict[str, Any]:
        """The fields as a JSON-friendly dict."""
        return asdict(self)


DEFAULT_CONFIG: Final = ClassifierConfig()


@dataclass(frozen=True, slots=True)
class Prediction:
    """What :meth:`TriageModel.predict` says about one text.

    Attributes:
        label: the most likely label.
        confidence: its calibrated probability, 0..1.
        alternatives: the next most likely ``(label, probability)``, best first.
        urgency: the urgency head's 0..3, or ``None`` without one.
    """

    label: str
    confidence: float
    alternatives: tuple[tuple[str, float], ...]
    urgency: int | None


@dataclass(frozen=True)
class TriageModel:
    """A trained label set (what the cache stores; build with :func:`train_model`).

    Attributes:
        name: the label set's name.
        version: first 16 hex digits of the cache key (training data, configuration,
            scikit-learn and code version), copied into ``Triage.model_version``.
        labels: the labels, in the order of :meth:`probabilities`' columns.
        features: the fitted feature union.
        classifier: the fitted label head.
        temperature: the logit divisor ``T`` (see the module docstring).
        urgency_classifier: the fitted urgency head, or ``None``.
        examples: the number of training examples.
    """

    name: str
    version: str
    labels: tuple[str, ...]
    features: FeatureUnion
    classifier: LogisticRegression
    temperature: float
    urgency_classifier: LogisticRegression | None
    examples: int

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        """Calibrated label probabilities.

        Args:
            texts: ``n`` texts.

        Returns:
            A float array of shape ``(n, len(labels))``; each row sums to 1.
        """
        x = self.features.transform(list(texts))
        return _softmax(_logits(self.classifier, x) / self.temperature)

    def predict_many(self, texts: Sequence[str], *, k: int = 4) -> list[Prediction]:
        """:meth:`predict` for several texts at once (one feature transform).

        Args:
            texts: the texts.
            k: labels per prediction, the best and ``k - 1`` alternatives.
        """
        if not texts:
            return []
        x = self.features.transform(list(texts))
        probs = _softmax(_logits(self.classifier, x) / self.temperature)
        urgencies: list[int | None] = [None] * len(texts)
        if self.urgency_classifier is not None:
            urgencies = [int(u) for u in self.urgency_classifier.predict(x)]
        out = []
        for row, urgency in zip(probs, urgencies, strict=True):
            order = np.argsort(-row, kind="stable")[: max(1, k)]
            ranked = tuple((self.labels[i], round(float(row[i]), 4)) for i in order)
            out.append(Prediction(ranked[0][0], ranked[0][1], ranked[1:], urgency))
        return out

    def predict(self, text: str, *, k: int = 4) -> Prediction:
        """The label, calibrated confidence, alternatives and urgency of one text.

        Probabilities are rounded to 4 digits; ties go to the label first in
        :attr:`labels`. Deterministic for the same model and text.
        """
        return self.predict_many([text], k=k)[0]


def _logits(clf: LogisticRegression, x: Any) -> np.ndarray:
    d = np.asarray(clf.decision_function(x), dtype=np.float64)
    if d.ndim == 1:  # two classes: sklearn gives the positive class's logit only
        d = np.column_stack([np.zeros_like(d), d])
    return d


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=1, keepdims=True)
    return out


def fit_temperature(logits: np.ndarray, targets: np.ndarray) -> float:
    """The temperature minimising the mean negative log-likelihood of ``targets``.

    Golden-section search over ``log T`` in ``[log 0.05, log 20]`` (60 steps, far
    below 1e-6 in ``T``); the NLL is convex in ``1/T``, so the minimum is unique.

    Args:
        logits: shape ``(n, classes)``.
        targets: shape ``(n,)``, column index of each row's true class.

    Returns:
        ``T`` > 0 (1.0 for an empty input).
    """
    if len(targets) == 0:
        return 1.0
    rows = np.arange(len(targets))

    def nll(log_t: float) -> float:
        z = logits / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        log_p = z[rows, targets] - np.log(np.exp(z).sum(axis=1))
        return float(-log_p.mean())

    lo, hi = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(60):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return round(math.exp((lo + hi) / 2), 6)


def _calibration_row(text: str, every: int) -> bool:
    digest = hashlib.sha256(b"sitemesh-triage-calibration\0" + normalise(text).encode()).digest()
    return int.from_bytes(digest, "big") % every == 0


def _regression(config: ClassifierConfig) -> LogisticRegression:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=config.c, max_iter=config.max_iter)


def _fit(clf: LogisticRegression, x: Any, y: Any) -> LogisticRegression:
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        # a tiny or separable set may stop at max_iter; the fit is still usable
        warnings.simplefilter("ignore", ConvergenceWarning)
        return clf.fit(x, y)


def train_model(
    label_set: LabelSet,
    *,
    config: ClassifierConfig = DEFAULT_CONFIG,
    version: str = "",
    progress: Progress | None = None,
) -> TriageModel:
    """Fit the features, the label head, its temperature and the urgency head.

    Trains on ``label_set.training_examples``. Takes 20-40 s for banking77 (7 959
    examples, 77 labels) on two shared cores; use :class:`ModelCache` to do it once.

    Args:
        label_set: the examples.
        config: hyper-parameters.
        version: stored as :attr:`TriageModel.version` (the cache key).
        progress: called before each of the 4 steps and once when done.

    Returns:
        The trained model.

    Raises:
        ExamplesError: fewer than two distinct labels, or texts without a single word
            or character n-gram to learn from.
    """
    name = label_set.name
    examples = label_set.training_examples
    labels = [e.label for e in examples]
    if len(set(labels)) < 2:
        raise ExamplesError(
            name, f"need at least 2 distinct labels to train, found {len(set(labels))}"
        )

    def step(what: str, done: int) -> None:
        if progress is not None:
            progress(f"{name}: {what}", done, 4)

    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    step("word and character n-grams", 0)
    texts = [e.text for e in examples]
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=config.word_ngrams, sublinear_tf=True)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb",
                    ngram_range=config.char_ngrams,
                    sublinear_tf=True,
                    min_df=min(config.char_min_df, len(texts)),
                ),
            ),
        ]
    )
    try:
        x = features.fit_transform(texts)
    except ValueError as exc:  # "empty vocabulary"
        raise ExamplesError(name, f"nothing to learn from the texts: {exc}") from None

    step("temperature", 1)
    y = np.asarray(labels, dtype=object)
    cal = np.asarray([_calibration_row(t, config.calibration_every) for t in texts])
    temperature = 1.0
    inner: LogisticRegression | None = None
    if cal.sum() >= config.calibration_min and len(set(y[~cal])) >= 2:
        inner = _fit(_regression(config), x[np.flatnonzero(~cal)], y[~cal])
        known = {c: i for i, c in enumerate(inner.classes_)}
        rows = np.asarray([i for i in np.flatnonzero(cal) if y[i] in known], dtype=np.intp)
        targets = np.asarray([known[v] for v in y[rows]], dtype=np.intp)
        temperature = fit_temperature(_logits(inner, x[rows]), targets)

    step("label head", 2)
    classifier = _regression(config)
    if inner is not None and len(inner.classes_) == len(set(labels)):
        # start from the calibration head's weights: lbfgs then needs ~12 iterations, not ~40
        classifier.set_params(warm_start=True)
        classifier.coef_ = inner.coef_.copy()
        classifier.intercept_ = inner.intercept_.copy()
    classifier = _fit(classifier, x, y)
    classifier.set_params(warm_start=False)

    step("urgency head", 3)
    urgency_classifier = None
    if label_set.has_urgency:
        idx = np.asarray([i for i, e in enumerate(examples) if e.urgency is not None])
        urgency_classifier = _fit(
            _regression(config), x[idx], np.asarray([examples[i].urgency for i in idx])
        )
    step("trained", 4)
    return TriageModel(
        name=name,
        version=version,
        labels=tuple(str(c) for c in classifier.classes_),
        features=features,
        classifier=classifier,
        temperature=temperature,
        urgency_classifier=urgency_classifier,
        examples=len(examples),
    )
