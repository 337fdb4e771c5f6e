"""What the detectors return: one record per anomalous stretch of a series or a log."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

MetricKind = Literal["high", "low", "level_up", "level_down", "flatline"]
"""What a metric finding is: a stretch above or below the baseline, a level shift
up or down, or a value that stopped changing."""

LogKind = Literal["new_template", "rare_template", "burst"]
"""What a log finding is: a template first seen after the learning prefix, one seen
at most ``rare_max_count`` times in it, or a template arriving far above its rate."""


class MetricFinding(msgspec.Struct, frozen=True, kw_only=True):
    """An anomalous stretch of one metric series.

    Values are in the metric's own unit; for a level shift on a series with a daily
    profile they are in the de-seasonalised signal (value minus the profile), as the
    evidence says.
    """

    series: str
    """The series name (:attr:`Series.name`)."""
    detector: str
    """Which rule found it: ``robust_deviation``, ``change_points``, ``flatline``,
    ``fixed_threshold``, ``rolling_zscore``, or several joined with ``+`` when
    :func:`detect_series` merged overlapping findings."""
    kind: MetricKind
    start: datetime
    """First anomalous sample (UTC)."""
    end: datetime
    """Last anomalous sample (UTC), inclusive; equal to ``start`` for one sample."""
    peak_at: datetime
    """The sample with the largest ``|deviation|`` (the change time for a shift)."""
    detected_at: datetime
    """When a monitor running the same rule on the stream up to that time would
    first raise it (UTC): the sample at which the run reaches the minimum duration,
    or for a level shift the end of the minimum segment after it. Used to score
    timeliness (NAB); never earlier than ``start``."""
    observed: float
    """The value at ``peak_at`` (a level shift: the median after the change)."""
    baseline: float
    """The expected value at ``peak_at``: the robust median the rule compares with."""
    spread: float
    """The baseline's spread: 1.4826 x MAD (a normal sigma), or the fallbacks the
    detector's docstring gives; in the metric's unit."""
    deviation: float
    """``(observed - baseline) / spread``: robust z units, signed (the classical
    z-score for ``rolling_zscore``)."""
    evidence: str
    """One line of numbers and rule names: no series name, host or log text."""


class TemplateCount(msgspec.Struct, frozen=True, kw_only=True):
    """How often one log template occurred."""

    template_id: int
    """drain3's cluster id: 1, 2, ... in order of first appearance; stable within
    one :func:`mine_logs` call."""
    template: str
    """The final template with parameters masked (``<IP>``, ``<NUM>``, ``<*>``...)."""
    count: int
    """Lines in the template (all lines, learning prefix included)."""
    learned: int
    """Of which in the learning prefix."""
    first_at: datetime | None = None
    """First line's time (UTC), ``None`` when the lines carry no times."""
    last_at: datetime | None = None
    """Last line's time (UTC), ``None`` when the lines carry no times."""


class LogFinding(msgspec.Struct, frozen=True, kw_only=True):
    """A template that is new, rare or bursting after the learning prefix."""

    source: str
    """The log stream (a device or file name given to :func:`mine_logs`)."""
    kind: LogKind
    template_id: int
    template: str
    """The template with parameters masked. Drain keeps tokens that did not vary in
    its cluster literally, so a template seen once can hold a user name: pass it
    through the site's PII policy before it leaves the site."""
    count: int
    """Lines of the template the finding covers (a burst: in the burst; new or rare:
    after the learning prefix)."""
    first_at: datetime | None = None
    """First line the finding covers (UTC), ``None`` without times."""
    last_at: datetime | None = None
    """Last line the finding covers (UTC), ``None`` without times."""
    first_line: int = 0
    """0-based index of the first line covered in the input."""
    expected: float = 0.0
    """A burst: lines the template's earlier rate predicts over the burst window;
    otherwise 0."""
    evidence: str = ""
    """One line of counts and rates: no log text."""
