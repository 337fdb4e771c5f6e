"""Level shifts: change points with ruptures' PELT, sized in robust units."""

from __future__ import annotations

import math

import numpy as np
import ruptures

from ._baseline import (
    MAD_TO_SIGMA,
    MEAN_AD_TO_SIGMA,
    Baseline,
    baseline,
    robust_spread,
    samples_in,
    spread_floor,
)
from ._config import DEFAULT_CONFIG, DetectConfig
from ._findings import MetricFinding
from ._runs import human, seconds
from ._series import FloatArray, Series


class _PrefixSumL2(ruptures.base.BaseCost):  # type: ignore[misc]
    """ruptures' ``l2`` cost (sum of squared deviations from the segment mean) in
    O(1) per segment from prefix sums, instead of a variance over the segment: the
    same segmentation, PELT without the quadratic slowdown on a series with few
    changes. The signal is centred on its median first, to keep the sums exact
    enough."""

    model = "l2_prefix_sums"
    min_size = 2

    def __init__(self) -> None:
        self.signal = np.zeros((0, 1))  # ruptures reads ``signal.shape``
        self._sum = np.zeros(1)
        self._sq = np.zeros(1)

    def fit(self, signal: FloatArray) -> _PrefixSumL2:
        centred = np.asarray(signal, dtype=np.float64).ravel()
        self.signal = centred.reshape(-1, 1)
        centred = centred - np.median(centred)
        self._sum = np.concatenate([[0.0], np.cumsum(centred)])
        self._sq = np.concatenate([[0.0], np.cumsum(centred * centred)])
        return self

    def error(self, start: int, end: int) -> float:
        n = end - start
        total = self._sum[end] - self._sum[start]
        return float(self._sq[end] - self._sq[start] - total * total / n)


SEASONAL_SHARE = 0.5
"""A series is de-seasonalised before the search when the daily profile was the
baseline for at least half of its warm samples."""


def noise_sigma(signal: FloatArray) -> float:
    """The noise level of ``signal`` (shape ``(m,)``) from its first differences:
    1.4826 x median(|diff|) / sqrt(2), which a level shift or a slow trend hardly
    moves: a robust (median) form of Rice's difference-based estimator (Rice 1984,
    "Bandwidth choice for nonparametric regression", Ann. Stat. 12). Falls back to
    1.2533 x mean(|diff|) / sqrt(2) when most differences are 0."""
    if signal.size < 2:
        return 0.0
    diff = np.abs(np.diff(signal))
    med = float(np.median(diff))
    raw = MAD_TO_SIGMA * med if med > 0 else MEAN_AD_TO_SIGMA * float(diff.mean())
    return raw / math.sqrt(2.0)


def change_points(
    series: Series, config: DetectConfig = DEFAULT_CONFIG, *, base: Baseline | None = None
) -> list[MetricFinding]:
    """Level shifts found by PELT (Killick, Fearnhead & Eckley 2012, "Optimal
    detection of changepoints with a linear computational cost", JASA 107) with
    the ``l2`` cost (a change in mean; ruptures' ``CostL2`` computed from prefix
    sums).

    When the daily profile explains the series (it was the baseline for at least
    half the warm samples, see :func:`robust_deviation`), the search runs on the value
    minus the profile, from the first sample that has a profile. The penalty is
    ``config.shift_penalty * sigma**2 * ln(n)``: the BIC penalty (Schwarz 1978) for a
    mean change in Gaussian noise, whose per-point cost is ``sigma**2``, scaled by a
    factor, with sigma the robust noise level from first differences
    (:func:`noise_sigma`). Segments are at least ``config.shift_min_segment``
    (2 h). A change is reported when the median of up to one ``config.window`` after
    it minus the median of up to one window before it (each within its segments) is
    at least ``config.shift_min_size`` (8) robust units, the unit being the larger of
    the before-segment's spread (1.4826 x MAD) and sigma. The penalty factor (20) and
    the minimum size were tuned on the tuning half of the bundled NAB copy
    (``bench/detect.py --tune``: factor in {5, 10, 20, 40}, all scoring the same, so
    the size test decides; size in {3, 5, 8, 12}, best 8 and 12).

    This is retrospective: PELT sees the whole series, so a shift is placed using
    samples after it. ``detected_at`` is the end of the minimum segment after the
    change, the earliest an online detector could have seen it.

    Args:
        series: the metric.
        config: the settings.
        base: a precomputed :func:`baseline` of the same series and config.

    Returns:
        Findings of kind ``level_up`` or ``level_down``, in time order: ``start`` is
        the first sample after the change, ``end`` the end of the minimum segment;
        ``observed``/``baseline`` are the medians after/before, ``deviation`` the
        size in robust units.
    """
    b = base if base is not None else baseline(series, config)
    x = series.values
    deseason = config.seasonal and b.seasonal_share >= SEASONAL_SHARE
    signal_all = x - b.profile if deseason else x
    idx = np.flatnonzero(~np.isnan(signal_all))
    signal = signal_all[idx]
    cadence = series.cadence_s
    min_size = samples_in(seconds(config.shift_min_segment), cadence)
    window = samples_in(seconds(config.window), cadence)
    if signal.size < 2 * min_size + 1:
        return []
    sigma = max(noise_sigma(signal), spread_floor(series))
    penalty = config.shift_penalty * sigma**2 * math.log(signal.size)
    algo = ruptures.Pelt(custom_cost=_PrefixSumL2(), min_size=min_size, jump=max(1, min_size // 4))
    bounds = [0, *algo.fit(signal).predict(pen=penalty)]
    out = []
    for j in range(1, len(bounds) - 1):
        bk = bounds[j]
        before = signal[max(bounds[j - 1], bk - window) : bk]
        after = signal[bk : min(bounds[j + 1], bk + window)]
        base_level = float(np.median(before))
        level = float(np.median(after))
        unit = max(robust_spread(before), sigma)
        size = (level - base_level) / unit
        first = int(idx[bk])
        if abs(size) < config.shift_min_size or not b.warm[first]:
            continue
        last = int(idx[min(bk + min_size - 1, signal.size - 1)])
        what = "value minus daily profile" if deseason else "value"
        out.append(
            MetricFinding(
                series=series.name,
                detector="change_points",
                kind="level_up" if size > 0 else "level_down",
                start=series.at(first),
                end=series.at(last),
                peak_at=series.at(first),
                detected_at=series.at(last),
                observed=level,
                baseline=base_level,
                spread=unit,
                deviation=size,
                evidence=(
                    f"{what}: median {base_level:.4g} over {human(before.size * cadence)} "
                    f"before, {level:.4g} over {human(after.size * cadence)} after "
                    f"(unit {unit:.3g}): shift {size:+.1f}"
                ),
            )
        )
    return out
