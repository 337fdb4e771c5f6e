"""The metric detectors' settings, in one frozen struct."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from itertools import pairwise

import msgspec

from ._errors import DetectError


class DetectConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Settings of :func:`robust_deviation`, :func:`change_points`, :func:`flatlines`
    and :func:`detect_series`.

    Durations are ``timedelta``; the detectors turn them into sample counts with the
    series' median cadence. The defaults marked *tuned* were chosen on the tuning
    half of the bundled NAB copy (``bench/detect.py --tune``; see ``docs/detect.md``,
    which gives the grid and the scores); the others are fixed by the argument
    given in the field's docstring and were not searched.

    Raises:
        DetectError: a duration is not positive (``min_history``: negative), a
            count is below 1, or ``tail`` is not in (0, 0.5).
    """

    window: timedelta = timedelta(days=1)
    """Trailing baseline window: one day, so the baseline spans a full daily cycle."""
    min_history: timedelta = timedelta(hours=12)
    """No finding before this much history (half the window), so a median rests on
    at least half a day of samples. A day would be safer for strongly daily series
    (a square wave's first step after 12 h flat looks like an outage) but loses
    NAB's early windows (``iio_us-east-1_i-a2eb1cd9_NetworkIn``: 4 days, first window
    after 18 h; the tune-half score falls from 56.6 to 50.4)."""
    max_window_points: int = 1024
    """A window longer than this many samples is subsampled evenly (every k-th
    sample) to bound the cost: 1 day at 5 min is 288 samples, at 10 s 8,640."""
    seasonal: bool = True
    """Compare with a time-of-day profile where it explains the series better."""
    seasonal_days: int = 7
    """Previous days in the profile (one week: a daily profile that does not
    remember last week's outage)."""
    seasonal_neighbours: int = 1
    """Time-of-day buckets (one cadence wide) on each side pooled into the profile:
    ``seasonal_days x (2 * seasonal_neighbours + 1)`` samples at most."""
    seasonal_min_days: int = 1
    """Profile days needed before the profile is used: one earlier day already shows
    a daily pattern, and ``seasonal_gain`` decides whether it helps."""
    seasonal_gain: float = 0.5
    """The profile is used at a sample when the mean absolute residual from it is at
    most this share of the trailing window's mean absolute deviation (it explains
    at least half of the variation)."""
    z_threshold: float = 5.0
    """*Tuned*: ``|robust z|`` at or above this flags a sample (grid 3, 4, 5, 6, 8)."""
    tail: float = 0.01
    """Tail share of the trailing window's deviations (1 %: about the 3rd most
    extreme of a day of 5-min samples)."""
    tail_margin: float = 1.0
    """*Tuned*: an excursion must start with a sample that deviates more than
    ``tail_margin`` x that tail quantile of the window, on its side: a spike is
    anomalous only if it is more extreme than all but the most extreme 1 % of the
    last day (hourly spikes of a batch job are not). 0 turns the check off."""
    min_duration: timedelta = timedelta(minutes=20)
    """*Tuned*: a run of flagged samples shorter than this (from its first to one
    cadence past its last sample) is dropped; 20 min is 4 samples of NAB's 5-min
    data (scale it for other cadences: a 10-s router counter needs far less)."""
    merge_gap: timedelta = timedelta(minutes=30)
    """Flagged samples at most this far apart are one finding: a stretch that dips
    under the threshold for a few samples is one episode, and two incidents an hour
    apart stay two."""
    shift_penalty: float = 20.0
    """*Tuned* (flat: every value in 5..40 scored the same): PELT penalty
    ``shift_penalty * sigma**2 * ln(n)``, where sigma is the robust noise level of the
    series (BIC-style penalty; Killick et al. 2012)."""
    shift_min_size: float = 8.0
    """*Tuned*: a level shift smaller than this many robust units is not reported
    (8 and 12 scored best; the smaller is kept)."""
    shift_min_segment: timedelta = timedelta(hours=2)
    """Shortest segment between two change points (PELT ``min_size``): a spike
    shorter than this is not a level shift."""
    flat_min_duration: timedelta = timedelta(hours=2)
    """A constant stretch shorter than this is never a flatline."""
    flat_factor: float = 2.0
    """A constant stretch must also last this many times the longest constant
    stretch in the previous ``flat_history`` (a square wave's plateaus are normal)."""
    flat_history: timedelta = timedelta(days=7)
    """How far back :func:`flatlines` looks for earlier constant stretches."""

    def __post_init__(self) -> None:
        positive = {
            "window": self.window,
            "min_duration": self.min_duration,
            "merge_gap": self.merge_gap,
            "shift_min_segment": self.shift_min_segment,
            "flat_min_duration": self.flat_min_duration,
            "flat_history": self.flat_history,
        }
        for name, value in positive.items():
            if value <= timedelta(0):
                raise DetectError("DetectConfig", f"{name} must be positive, got {value}")
        if self.min_history < timedelta(0):
            raise DetectError("DetectConfig", "min_history must not be negative")
        if min(self.max_window_points, self.seasonal_days, self.seasonal_min_days) < 1:
            raise DetectError("DetectConfig", "counts must be at least 1")
        if not 0.0 < self.tail < 0.5:
            raise DetectError("DetectConfig", f"tail must be in (0, 0.5), got {self.tail}")


DEFAULT_CONFIG = DetectConfig()
"""The settings :func:`detect_series` uses when given none."""


def short_series_config(cadence: timedelta) -> DetectConfig:
    """Detector settings for a short series (an alert's inline samples, a watcher's
    recent window) sampled every ``cadence``.

    Every duration is a number of samples rather than :data:`DEFAULT_CONFIG`'s
    wall-clock time, so that a 60-sample series at 10 s (10 minutes) and one at 5 min
    (5 hours) are judged alike: a trailing baseline of 30 samples (enough for a median
    and MAD to be stable), findings from the 10th sample on, a single sample beyond
    ``|z| >= 5`` (and the window's 1 % tail) is a finding, flagged samples at most 3
    apart are one, level shifts need segments of 10 samples, flatlines 30 samples
    and twice the longest earlier constant stretch of 60. No time-of-day profile: an
    alert carries less than a day. The z threshold, tail and shift size are the
    tuned defaults. These settings were chosen by this argument, not tuned on data.

    Args:
        cadence: the series' median sample spacing (positive).

    Returns:
        The configuration.
    """
    c = max(cadence, timedelta(microseconds=1))
    return DetectConfig(
        window=30 * c,
        min_history=10 * c,
        min_duration=c,
        merge_gap=3 * c,
        shift_min_segment=10 * c,
        flat_min_duration=30 * c,
        flat_history=60 * c,
        seasonal=False,
    )


def config_for_span(span: timedelta, cadence: timedelta) -> DetectConfig:
    """:data:`DEFAULT_CONFIG` (tuned on the NAB tuning half, with its time-of-day
    profile) when a series spans at least its baseline window plus its minimum
    history (1.5 days), else :func:`short_series_config` for a short series.

    Args:
        span: last sample time minus first.
        cadence: the median sample spacing.
    """
    if span >= DEFAULT_CONFIG.window + DEFAULT_CONFIG.min_history:
        return DEFAULT_CONFIG
    return short_series_config(cadence)


def config_for_times(times: Sequence[datetime]) -> DetectConfig | None:
    """:func:`config_for_span` for a series sampled at ``times``: its span (last time
    minus first) and its cadence, the median of the steps between successive times
    that move forward (the upper middle one of an even count). A repeated time stamp
    is not a step.

    Args:
        times: the sample times in order, all aware or all naive.

    Returns:
        The configuration, or ``None`` when no two times differ (the series has no
        cadence to scale the settings by).
    """
    steps = sorted(b - a for a, b in pairwise(times) if b > a)
    if not steps:
        return None
    return config_for_span(times[-1] - times[0], steps[len(steps) // 2])
