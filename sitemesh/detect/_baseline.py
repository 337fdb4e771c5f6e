"""Robust baselines: a trailing median/MAD and a time-of-day profile.

Both look only at samples before the one they describe, so a baseline at sample
``i`` is what a monitor would have known then. Windows are counted in samples
(the window's duration over the series' median cadence): a gap in the data makes a
window reach further back in time.

The spread is 1.4826 x MAD, which estimates the standard deviation of normal data
(Rousseeuw & Croux 1993, "Alternatives to the median absolute deviation", JASA 88);
where the MAD is 0 (more than half the window equal) it falls back to
1.2533 x the mean absolute deviation from the median, which estimates the same
sigma (sqrt(pi/2); the fallback IBM SPSS Modeler uses for its modified z-score,
after Iglewicz & Hoaglin 1993, "How to Detect and Handle Outliers"). It is never
below the series' resolution: the noise level that the trailing window's
non-zero sample-to-sample steps imply (a metric quantised to 0.066 % CPU cannot be
measured to 0.003).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ._config import DetectConfig
from ._series import BoolArray, FloatArray, Series

MAD_TO_SIGMA = 1.4826
"""1 / Phi^-1(3/4): MAD x this estimates a normal sigma."""
MEAN_AD_TO_SIGMA = 1.2533
"""sqrt(pi/2): mean absolute deviation x this estimates a normal sigma."""
DAY_S = 86_400.0
_CHUNK = 2048


def robust_spread(values: FloatArray) -> float:
    """1.4826 x MAD of ``values`` (shape ``(m,)``), else 1.2533 x mean absolute
    deviation from the median, else 0.0 (all equal or empty)."""
    if values.size == 0:
        return 0.0
    dev = np.abs(values - np.median(values))
    mad = float(np.median(dev))
    if mad > 0:
        return MAD_TO_SIGMA * mad
    return MEAN_AD_TO_SIGMA * float(dev.mean())


def samples_in(seconds: float, cadence_s: float) -> int:
    """How many samples of ``cadence_s`` seconds span ``seconds`` (at least 1)."""
    return max(1, round(seconds / cadence_s))


def _quantile(ordered: FloatArray, count: FloatArray, p: float) -> FloatArray:
    """Linear-interpolation quantile ``p`` of each row of ``ordered`` (sorted, NaNs
    as +inf at the end) over its first ``count`` values; NaN where ``count`` is 0."""
    pos = p * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0).astype(np.int64))
    rows = np.arange(ordered.shape[0])
    a = ordered[rows, lo]
    b = ordered[rows, hi]
    with np.errstate(invalid="ignore"):
        val = np.where(hi > lo, a + (b - a) * (pos - lo), a)
    return np.where(count > 0, val, np.nan)


def _row_quantiles(
    rows: FloatArray, count: FloatArray, probs: tuple[float, ...]
) -> list[FloatArray]:
    """Linear-interpolation quantiles of the non-NaN values of each row of ``rows``
    (shape ``(m, w)``; ``count`` of them per row): full rows by ``np.partition``,
    the others by sorting. NaN for a row without values."""
    m, w = rows.shape
    out = [np.full(m, np.nan) for _ in probs]
    full = count == w
    if full.any():
        pos = [p * (w - 1) for p in probs]
        kth = sorted({int(q) for q in pos} | {min(int(q) + 1, w - 1) for q in pos})
        part = np.partition(rows[full], kth, axis=1)
        for j, q in enumerate(pos):
            lo, hi = int(q), min(int(q) + 1, w - 1)
            out[j][full] = part[:, lo] + (part[:, hi] - part[:, lo]) * (q - lo)
    some = ~full & (count > 0)
    if some.any():
        sub = rows[some]
        ordered = np.sort(np.where(np.isnan(sub), np.inf, sub), axis=1)
        for j, p in enumerate(probs):
            out[j][some] = _quantile(ordered, count[some], p)
    return out


@dataclass(frozen=True, slots=True)
class Trailing:
    """Statistics of a trailing window at every sample (shape ``(n,)``, NaN where
    the window has fewer than the minimum of non-NaN values).

    Attributes:
        median: the window's median.
        spread: 1.4826 x MAD, or 1.2533 x mean absolute deviation where the MAD is 0.
        mean_ad: the mean absolute deviation from the median.
        low: the ``tail`` quantile of ``value - median`` over the window (<= 0).
        high: the ``1 - tail`` quantile of ``value - median`` (>= 0).
    """

    median: FloatArray
    spread: FloatArray
    mean_ad: FloatArray
    low: FloatArray
    high: FloatArray


def trailing(
    y: FloatArray,
    window: int,
    min_samples: int,
    max_points: int,
    tail: float = 0.01,
    *,
    median_only: bool = False,
) -> Trailing:
    """:class:`Trailing` statistics of ``y[i - window : i]`` (NaNs skipped).

    Args:
        y: shape ``(n,)``; NaN marks a missing value.
        window: samples in the window (a sample is not in its own window).
        min_samples: fewer non-NaN earlier values than this give NaN.
        max_points: a longer window is subsampled every ``ceil(window / max_points)``.
        tail: the tail share for ``low``/``high``.
        median_only: compute the median only (the other fields are NaN).
    """
    n = y.size
    step = max(1, math.ceil(window / max_points))
    padded = np.concatenate([np.full(window, np.nan), y])
    view = sliding_window_view(padded, window)[:n, ::step]
    out = {k: np.full(n, np.nan) for k in ("median", "spread", "mean_ad", "low", "high")}
    need = max(1, math.ceil(min_samples / step))
    for lo in range(0, n, _CHUNK):
        rows = view[lo : lo + _CHUNK]
        count = (~np.isnan(rows)).sum(axis=1).astype(np.float64)
        good = count >= need
        sl = slice(lo, lo + rows.shape[0])
        if median_only:
            (med,) = _row_quantiles(rows, count, (0.5,))
            out["median"][sl] = np.where(good, med, np.nan)
            continue
        med, q_low, q_high = _row_quantiles(rows, count, (0.5, tail, 1.0 - tail))
        absdev = np.abs(rows - med[:, None])
        (mad,) = _row_quantiles(absdev, count, (0.5,))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_ad = np.nansum(absdev, axis=1) / count
        spread = np.where(mad > 0, MAD_TO_SIGMA * mad, MEAN_AD_TO_SIGMA * mean_ad)
        out["median"][sl] = np.where(good, med, np.nan)
        out["spread"][sl] = np.where(good, spread, np.nan)
        out["mean_ad"][sl] = np.where(good, mean_ad, np.nan)
        out["low"][sl] = np.where(good, q_low - med, np.nan)
        out["high"][sl] = np.where(good, q_high - med, np.nan)
    return Trailing(**out)


def daily_profile(series: Series, days: int, neighbours: int, min_days: int) -> FloatArray:
    """The time-of-day profile: for each sample, the median of the samples in the
    same UTC time-of-day bucket (one cadence wide, ``neighbours`` buckets either
    side) on each of the previous ``days`` days.

    Returns:
        Shape ``(n,)``; NaN where fewer than ``min_days`` previous days have a sample
        in the buckets, or where a day has fewer than 4 buckets (cadence > 6 h).
    """
    n = len(series)
    cadence = series.cadence_s
    buckets = math.ceil(DAY_S / cadence)
    if buckets < 4:
        return np.full(n, np.nan)
    first_day = math.floor(series.times[0] / DAY_S)
    day = (np.floor(series.times / DAY_S) - first_day).astype(np.int64)
    bucket = np.minimum(np.floor((series.times % DAY_S) / cadence).astype(np.int64), buckets - 1)
    grid = np.full((days + int(day[-1]) + 1, buckets + 2 * neighbours), np.nan)
    grid[day + days, bucket + neighbours] = series.values
    view = sliding_window_view(grid, (days, 2 * neighbours + 1))
    pooled = view[day, bucket].reshape(n, days * (2 * neighbours + 1))
    missing = np.isnan(pooled)
    count = (~missing).sum(axis=1).astype(np.float64)
    med = _quantile(np.sort(np.where(missing, np.inf, pooled), axis=1), count, 0.5)
    days_seen = (~missing.reshape(n, days, -1)).any(axis=2).sum(axis=1)
    return np.where(days_seen >= min_days, med, np.nan)


def spread_floor(series: Series) -> float:
    """The smallest spread any baseline uses: 1e-6 of the series' typical magnitude
    (its median absolute value, at least 1e-12), so a constant window does not
    divide by zero and a change of a constant series is still very large in z."""
    return max(1e-6 * float(np.median(np.abs(series.values))), 1e-12)


@dataclass(frozen=True, slots=True)
class Baseline:
    """Per-sample baseline of a series (all arrays shape ``(n,)``, NaN where
    unknown).

    Attributes:
        median: the expected value: profile + the trailing median of the residual
            where ``seasonal``, else the trailing median.
        spread: the spread ``median`` is measured against (> 0 where known).
        z: ``(value - median) / spread``, robust z.
        low: ``value - median`` must be below this to be an extreme low (the
            trailing window's lower tail of the same deviations).
        high: ... above this to be an extreme high.
        seasonal: where the daily profile was used.
        trailing_median: the trailing window's median of the value.
        trailing_spread: the trailing window's spread of the value (not floored).
        profile: the time-of-day profile (NaN without enough days).
        warm: where there is ``min_history`` of history (findings only there).
    """

    median: FloatArray
    spread: FloatArray
    z: FloatArray
    low: FloatArray
    high: FloatArray
    seasonal: BoolArray
    trailing_median: FloatArray
    trailing_spread: FloatArray
    profile: FloatArray
    warm: BoolArray

    @property
    def seasonal_share(self) -> float:
        """Share of the warm samples that used the daily profile (0..1)."""
        warm = int(self.warm.sum())
        return float((self.seasonal & self.warm).sum()) / warm if warm else 0.0


def baseline(series: Series, config: DetectConfig) -> Baseline:
    """The baseline :func:`robust_deviation` compares each sample with.

    Trailing: median and spread of the previous ``config.window``. Profile (when
    ``config.seasonal``): :func:`daily_profile`, and the trailing median and spread
    of the residual ``value - profile``; it is used at a sample when the residual's
    mean absolute deviation is at most ``config.seasonal_gain`` x the value's (means,
    not medians: a daily peak that fills a third of the day does not move a MAD). Both spreads are
    floored at the resolution (1.4826 x the trailing median of the non-zero
    ``|step|`` / sqrt 2: the difference-based noise level) and :func:`spread_floor`.
    ``low``/``high`` are the ``config.tail`` quantiles of the same deviations over
    the same window.
    """
    x = series.values
    cadence = series.cadence_s
    window = samples_in(config.window.total_seconds(), cadence)
    history = samples_in(config.min_history.total_seconds(), cadence)
    points = config.max_window_points
    plain = trailing(x, window, history, points, config.tail)
    steps = np.abs(np.diff(x, prepend=x[0]))
    steps[0] = np.nan
    steps[steps == 0] = np.nan
    resolution = (
        MAD_TO_SIGMA / math.sqrt(2.0) * trailing(steps, window, 2, points, median_only=True).median
    )
    floor = np.fmax(np.nan_to_num(resolution, nan=0.0), spread_floor(series))
    med, spread = plain.median, np.fmax(plain.spread, floor)
    low, high = plain.low, plain.high
    seasonal = np.zeros(x.size, dtype=bool)
    profile = np.full(x.size, np.nan)
    if config.seasonal:
        profile = daily_profile(
            series, config.seasonal_days, config.seasonal_neighbours, config.seasonal_min_days
        )
        res = trailing(x - profile, window, history, points, config.tail)
        with np.errstate(invalid="ignore"):
            seasonal = ~np.isnan(profile) & ~np.isnan(res.spread) & ~np.isnan(plain.spread)
            seasonal &= res.mean_ad <= config.seasonal_gain * plain.mean_ad
        med = np.where(seasonal, profile + res.median, med)
        spread = np.where(seasonal, np.fmax(res.spread, floor), spread)
        low = np.where(seasonal, res.low, low)
        high = np.where(seasonal, res.high, high)
    with np.errstate(invalid="ignore"):
        z = (x - med) / spread
    warm = ~np.isnan(z)
    warm[: min(history, x.size)] = False
    return Baseline(
        median=med,
        spread=spread,
        z=z,
        low=low,
        high=high,
        seasonal=seasonal,
        trailing_median=plain.median,
        trailing_spread=plain.spread,
        profile=profile,
        warm=warm,
    )
