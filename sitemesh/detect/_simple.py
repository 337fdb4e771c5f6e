"""The two simple rules the detectors are compared with (``bench/detect.py``)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from ._baseline import robust_spread, samples_in, spread_floor
from ._errors import DetectError
from ._findings import MetricFinding
from ._runs import runs
from ._series import BoolArray, FloatArray, Series

TRAIN_FRACTION = 0.15
"""Share of a series :func:`fixed_threshold` learns its threshold on: NAB's
probationary period (Lavin & Ahmad 2015), in which nothing is scored."""


def _findings(
    series: Series,
    detector: str,
    flags: BoolArray,
    base: FloatArray,
    spread: FloatArray,
    rule: str,
) -> list[MetricFinding]:
    """One finding per run of consecutive flagged samples (a data gap of more than
    1.5 cadences ends a run)."""
    t = series.times
    x = series.values
    out = []
    for i0, i1 in runs(flags, t, 1.5 * series.cadence_s):
        seg = np.arange(i0, i1 + 1)
        z = (x[seg] - base[seg]) / spread[seg]
        k = int(np.argmax(np.abs(z)))
        peak = i0 + k
        out.append(
            MetricFinding(
                series=series.name,
                detector=detector,
                kind="high" if z[k] > 0 else "low",
                start=series.at(i0),
                end=series.at(i1),
                peak_at=series.at(peak),
                detected_at=series.at(i0),
                observed=float(x[peak]),
                baseline=float(base[peak]),
                spread=float(spread[peak]),
                deviation=float(z[k]),
                evidence=f"peak {x[peak]:.4g}: {rule}; {i1 - i0 + 1} samples",
            )
        )
    return out


def fixed_threshold(
    series: Series,
    *,
    threshold: float | None = None,
    quantile: float = 99.0,
    train_fraction: float = TRAIN_FRACTION,
) -> list[MetricFinding]:
    """The static alert rule: value above a fixed threshold.

    With ``threshold`` given, that is the rule (the classic "CPU above 80 %"). Without
    it, the threshold is the ``quantile`` (99th) percentile of the first
    ``train_fraction`` (15 %) of the series, and only the samples after that part are
    checked. ``baseline``/``spread`` of a finding are the median and robust spread of
    the training part (the whole series when ``threshold`` is given), so
    ``deviation`` is in robust units.

    Args:
        series: the metric.
        threshold: a fixed threshold in the metric's unit, or ``None``.
        quantile: the percentile (0..100) used when ``threshold`` is ``None``.
        train_fraction: the training share (0..1) used when ``threshold`` is ``None``.

    Returns:
        One ``high`` finding per run of consecutive samples above the threshold.

    Raises:
        DetectError: ``quantile`` or ``train_fraction`` is out of range.
    """
    x = series.values
    if threshold is None:
        if not 0.0 <= quantile <= 100.0 or not 0.0 < train_fraction <= 1.0:
            raise DetectError(series.name, "quantile must be 0..100, train_fraction 0..1")
        train = x[: max(1, int(train_fraction * x.size))]
        limit = float(np.percentile(train, quantile))
        flags = x > limit
        flags[: train.size] = False
        rule = f"above {limit:.4g}, the p{quantile:g} of the first {train_fraction:.0%}"
    else:
        train = x
        limit = threshold
        flags = x > limit
        rule = f"above the fixed threshold {limit:.4g}"
    med = np.full(x.size, float(np.median(train)))
    spread = np.full(x.size, max(robust_spread(train), spread_floor(series)))
    return _findings(series, "fixed_threshold", flags, med, spread, rule)


def rolling_zscore(
    series: Series,
    *,
    window: timedelta = timedelta(days=1),
    z: float = 3.0,
    min_samples: int = 30,
) -> list[MetricFinding]:
    """The textbook rolling z-score: mean and standard deviation of the trailing
    ``window`` (one day; the sample itself excluded), flag ``|z| >= z`` (3, the
    "three-sigma rule").

    Args:
        series: the metric.
        window: the trailing window.
        z: the threshold in standard deviations.
        min_samples: no sample is flagged with fewer earlier samples than this.

    Returns:
        One ``high``/``low`` finding per run of consecutive flagged samples;
        ``baseline``/``spread`` are the window's mean and standard deviation
        (floored at 1e-6 of the series' typical magnitude), ``deviation`` the
        classical z.
    """
    x = series.values
    n = x.size
    w = samples_in(window.total_seconds(), series.cadence_s)
    shift = float(np.median(x))  # centred sums: less cancellation in the variance
    xc = x - shift
    csum = np.concatenate([[0.0], np.cumsum(xc)])
    csq = np.concatenate([[0.0], np.cumsum(xc * xc)])
    i = np.arange(n)
    lo = np.maximum(i - w, 0)
    count = (i - lo).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_c = (csum[i] - csum[lo]) / count
        var = (csq[i] - csq[lo]) / count - mean_c * mean_c
    mean = mean_c + shift
    std = np.sqrt(np.maximum(np.nan_to_num(var), 0.0))
    std = np.maximum(std, spread_floor(series))
    with np.errstate(invalid="ignore"):
        flags = (count >= min_samples) & (np.abs(x - mean) >= z * std)
    return _findings(
        series, "rolling_zscore", flags, mean, std, f"|z| >= {z:g} vs the trailing mean"
    )
