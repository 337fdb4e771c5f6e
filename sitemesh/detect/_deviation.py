"""Robust deviation from the baseline, and flatlines."""

from __future__ import annotations

import numpy as np

from ._baseline import Baseline, baseline, samples_in, spread_floor
from ._config import DEFAULT_CONFIG, DetectConfig
from ._findings import MetricFinding
from ._runs import human, runs, seconds
from ._series import BoolArray, FloatArray, Series


def robust_deviation(
    series: Series, config: DetectConfig = DEFAULT_CONFIG, *, base: Baseline | None = None
) -> list[MetricFinding]:
    """Stretches where the series is far from its robust baseline.

    The baseline at each sample is the median of the trailing ``config.window``
    (one day) with spread 1.4826 x MAD, or, where it explains the series better, the
    time-of-day profile (the median of the same time-of-day buckets over the previous
    ``config.seasonal_days`` days, plus the trailing median of the residual; see
    :func:`baseline`). A sample is flagged when

    * ``|value - median| / spread >= config.z_threshold`` (5.0), and
    * it starts an excursion: it is more extreme, on its side, than
      ``config.tail_margin`` (1.0) x the ``config.tail`` (1 %) quantile of the
      trailing window's deviations (a spike is anomalous only if the last day held
      hardly any like it: hourly batch spikes are not, and Cloudwatch series are
      heavy-tailed, so a z threshold alone fires on every ordinary spike), or it
      continues one: the sample before was flagged on the same side. So an outage
      stays flagged while it lasts, although the window's 1 % tail fills with it
      after a few samples.

    Flagged samples at most ``config.merge_gap`` (30 min) apart are one finding,
    kept when it lasts at least ``config.min_duration`` (20 min). Nothing is flagged
    before ``config.min_history`` (12 h). The baseline only looks back.

    The threshold, tail margin and minimum duration were tuned on the tuning half of
    the bundled NAB copy, maximising its NAB standard-profile score
    (``bench/detect.py --tune``: z in {3, 4, 5, 6, 8}, duration in {1, 2, 3, 4, 6}
    samples of 5 min, margin in {0, 1, 1.5}; best 56.6 at 5, 4, 1; the best score
    with z = 4 or 6 was 49.5 / 53.5, with margin 0 (no tail check) 47.5). A z of 5
    is also well above the 3.5 of Iglewicz & Hoaglin's (1993) modified z-score
    rule, which assumes independent samples (telemetry is autocorrelated).

    Args:
        series: the metric.
        config: the settings.
        base: a precomputed :func:`baseline` of the same series and config.

    Returns:
        Findings of kind ``high`` or ``low``, in time order. ``detected_at`` is the
        sample at which the run reached the minimum duration.
    """
    b = base if base is not None else baseline(series, config)
    t = series.times
    x = series.values
    cadence = series.cadence_s
    flags = _flags(b, x, config)
    min_s = seconds(config.min_duration)
    out = []
    for i0, i1 in runs(flags, t, seconds(config.merge_gap)):
        duration = float(t[i1] - t[i0]) + cadence
        if duration < min_s:
            continue
        seg = np.arange(i0, i1 + 1)
        hits = seg[flags[seg]]
        peak = int(hits[np.argmax(np.abs(b.z[hits]))])
        detected = min(int(np.searchsorted(t, t[i0] + min_s - cadence, side="left")), i1)
        z = float(b.z[peak])
        profile = bool(b.seasonal[peak])
        where = "daily profile" if profile else f"trailing {human(seconds(config.window))}"
        out.append(
            MetricFinding(
                series=series.name,
                detector="robust_deviation",
                kind="high" if z > 0 else "low",
                start=series.at(i0),
                end=series.at(i1),
                peak_at=series.at(peak),
                detected_at=series.at(detected),
                observed=float(x[peak]),
                baseline=float(b.median[peak]),
                spread=float(b.spread[peak]),
                deviation=z,
                evidence=(
                    f"peak {x[peak]:.4g} vs {where} median {b.median[peak]:.4g} "
                    f"(spread {b.spread[peak]:.3g}): z {z:+.1f}; {hits.size} of "
                    f"{i1 - i0 + 1} samples at |z| >= {config.z_threshold:g} over "
                    f"{human(duration)}"
                ),
            )
        )
    return out


def _flags(b: Baseline, x: FloatArray, config: DetectConfig) -> BoolArray:
    """Samples past the threshold; an excursion starts only at a tail-extreme sample
    and then lasts while ``|z|`` stays past the threshold on the same side (the
    window's tail soon fills with the excursion itself, its median does not)."""
    dev = x - b.median
    margin = config.tail_margin
    with np.errstate(invalid="ignore"):
        high = b.warm & (b.z >= config.z_threshold)
        low = b.warm & (b.z <= -config.z_threshold)
        start_high = high & (dev > margin * b.high)
        start_low = low & (dev < margin * b.low)
    flags = np.zeros(x.size, dtype=bool)
    side = 0
    for i in range(x.size):
        if high[i] and (start_high[i] or side > 0):
            side = 1
        elif low[i] and (start_low[i] or side < 0):
            side = -1
        else:
            side = 0
        flags[i] = side != 0
    return flags


def flatlines(
    series: Series, config: DetectConfig = DEFAULT_CONFIG, *, base: Baseline | None = None
) -> list[MetricFinding]:
    """Stretches where a series that used to move stops changing (a stuck sensor, a
    stale exporter, a counter that froze).

    A constant stretch (consecutive samples equal to within 1e-9 relative) is a
    flatline when it lasts at least ``config.flat_min_duration`` (2 h) and at least
    ``config.flat_factor`` (2) times the longest constant stretch that ended in the
    previous ``config.flat_history`` (7 days), and starts after ``config.min_history``.
    So a series that is always constant, or a square wave whose plateaus repeat,
    gives none. The rule is ours (no published threshold); it was checked, not
    tuned, on NAB's ``art_daily_flatmiddle`` (found) and its no-anomaly series
    (square wave, flat line: none).

    Args:
        series: the metric.
        config: the settings.
        base: a precomputed :func:`baseline` of the same series and config.

    Returns:
        Findings of kind ``flatline``: ``observed`` is the constant value,
        ``baseline``/``spread`` the trailing window's median and spread at its
        start; ``detected_at`` is when the stretch reached the required length.
    """
    x = series.values
    t = series.times
    if x.size < 3:
        return []
    b = base if base is not None else baseline(series, config)
    cadence = series.cadence_s
    scale = np.maximum(np.abs(x[1:]), np.abs(x[:-1]))
    same = np.abs(np.diff(x)) <= 1e-9 * scale
    history = samples_in(seconds(config.min_history), cadence)
    floor = spread_floor(series)
    past: list[tuple[float, float]] = []  # (end time, duration) of earlier stretches
    out = []
    for k0, k1 in runs(same, np.arange(same.size, dtype=np.float64), 1.0):
        s, e = k0, k1 + 1
        duration = float(t[e] - t[s]) + cadence
        horizon = float(t[s]) - seconds(config.flat_history)
        longest = max((d for end, d in past if end >= horizon), default=0.0)
        past.append((float(t[e]), duration))
        need = max(seconds(config.flat_min_duration), config.flat_factor * longest)
        if s < history or duration < need or np.isnan(b.trailing_median[s]):
            continue
        detected = min(int(np.searchsorted(t, t[s] + need - cadence, side="left")), e)
        med = float(b.trailing_median[s])
        spread = max(float(b.trailing_spread[s]), floor)
        out.append(
            MetricFinding(
                series=series.name,
                detector="flatline",
                kind="flatline",
                start=series.at(s),
                end=series.at(e),
                peak_at=series.at(s),
                detected_at=series.at(detected),
                observed=float(x[s]),
                baseline=med,
                spread=spread,
                deviation=(float(x[s]) - med) / spread,
                evidence=(
                    f"constant at {x[s]:.4g} for {human(duration)} ({e - s + 1} samples); "
                    f"longest constant stretch in the previous "
                    f"{human(seconds(config.flat_history))}: {human(longest)}"
                ),
            )
        )
    return out
