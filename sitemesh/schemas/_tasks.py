"""Tasks: what users publish on ``sm.v1.task.<site>.<kind>``."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from itertools import pairwise
from typing import Annotated, Literal

import msgspec

from ._base import Message, TaskId

ShortText = Annotated[str, msgspec.Meta(max_length=256)]


class SupportTicket(Message, frozen=True, kw_only=True, tag="support_ticket.v1"):
    """A customer support ticket (subject kind ``support_ticket``)."""

    task_id: TaskId | None = None
    """Caller-chosen id. ``None``: the router derives one from ``sm-task-id`` /
    ``Nats-Msg-Id`` headers, else from the stream sequence."""
    tenant: ShortText = "default"
    """The customer account the ticket belongs to."""
    channel: ShortText = "api"
    """Where the ticket came from (``twitter``, ``email``, ``helpdesk``, ``api``)."""
    customer: ShortText | None = None
    """Customer handle or name as given by the channel (may be PII)."""
    title: Annotated[str, msgspec.Meta(max_length=512)] = ""
    """Short subject line."""
    body: Annotated[str, msgspec.Meta(min_length=1, max_length=16384)]
    """The ticket text, 1-16384 characters (may contain PII)."""
    product: ShortText | None = None
    """Product or service the ticket is about."""
    urgency: Annotated[int, msgspec.Meta(ge=0, le=3)] | None = None
    """0 (critical) .. 3 (low), when the channel supplies one."""
    submitted_at: datetime | None = None
    """When the user submitted it (RFC 3339). ``None``: the publish time is used."""
    source: ShortText | None = None
    """Provenance of the record (dataset and record id) for test data."""


AlertSeverity = Literal["info", "minor", "major", "critical"]

MAX_INLINE_SERIES = 32
"""At most this many series in :attr:`TelemetryAlert.samples`."""
MAX_SERIES_POINTS = 10_000
"""At most this many points per series (a day at 10 s is 8,640)."""
MAX_LOG_LINES = 5_000
"""At most this many lines in :attr:`TelemetryAlert.logs`."""
MAX_LOG_LINE_CHARS = 2_000
"""At most this many characters per log line."""

SOURCE_NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
"""A telemetry source name (``sitemesh telemetry add NAME``): lower-case letters,
digits, ``_``, ``.`` and ``-``, at most 64 characters, starting with a letter or digit."""

SourceName = Annotated[str, msgspec.Meta(pattern=SOURCE_NAME_PATTERN)]

LabelKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
LabelValue = Annotated[str, msgspec.Meta(max_length=256)]


class MetricSeries(msgspec.Struct, frozen=True, kw_only=True):
    """One metric series carried inline in an alert: ``n`` samples in time order.

    Raises:
        ValueError: ``timestamps`` and ``values`` differ in length, the times are
            not in order, or a value is not finite (the message names the field).
    """

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """What the series measures (``interface.in_octets_rate``)."""
    labels: Annotated[dict[LabelKey, LabelValue], msgspec.Meta(max_length=16)] = {}
    """At most 16 labels; ``interface`` names the interface the finding is about."""
    timestamps: Annotated[list[datetime], msgspec.Meta(max_length=MAX_SERIES_POINTS)]
    """Sample times (RFC 3339; naive values are UTC), non-decreasing, at most 10,000."""
    values: Annotated[list[float], msgspec.Meta(max_length=MAX_SERIES_POINTS)]
    """Sample values in the metric's own unit, finite, one per timestamp."""

    def __post_init__(self) -> None:
        if len(self.timestamps) != len(self.values):
            raise ValueError(
                f"`values` has {len(self.values)} item(s) but `timestamps` has "
                f"{len(self.timestamps)}; they must be of equal length"
            )
        if not all(math.isfinite(v) for v in self.values):
            raise ValueError("`values` must be finite numbers")
        epochs = [_epoch(t) for t in self.timestamps]
        if any(b < a for a, b in pairwise(epochs)):
            raise ValueError("`timestamps` must be in time order (non-decreasing)")


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """One device log line carried inline in an alert."""

    at: datetime | None = None
    """When it was logged (RFC 3339; naive values are UTC), or ``None``."""
    line: Annotated[str, msgspec.Meta(max_length=MAX_LOG_LINE_CHARS)]
    """The message, at most 2,000 characters (may contain PII: it never leaves the
    site; only its masked template appears in findings)."""


def _epoch(at: datetime) -> float:
    return at.timestamp() if at.tzinfo is not None else at.replace(tzinfo=UTC).timestamp()


class TelemetryAlert(Message, frozen=True, kw_only=True, tag="telemetry_alert.v1"):
    """A monitoring alert on a network device (subject kind ``telemetry_alert``)."""

    task_id: TaskId | None = None
    """As in :class:`SupportTicket`."""
    tenant: ShortText = "default"
    device: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    """Device the alert is about, e.g. ``leaf7``."""
    interface: ShortText | None = None
    """Interface, when the alert names one (``HundredGigE0/0/0/10``)."""
    window_start: datetime
    """Start of the time window to diagnose (RFC 3339, UTC)."""
    window_end: datetime
    """End of the window (exclusive)."""
    metric: ShortText = ""
    """The KPI that fired (``bfd.session_state``, ``interface.data_rate``...)."""
    summary: Annotated[str, msgspec.Meta(max_length=4096)] = ""
    """Alert text as the monitoring system wrote it."""
    severity: AlertSeverity = "minor"
    submitted_at: datetime | None = None
    source: ShortText | None = None
    samples: Annotated[list[MetricSeries], msgspec.Meta(max_length=MAX_INLINE_SERIES)] = []
    """Metric series of the device, inline (at most 32); samples before
    ``window_start`` are the baseline. Diagnosed with :mod:`sitemesh.detect`."""
    logs: Annotated[list[LogLine], msgspec.Meta(max_length=MAX_LOG_LINES)] = []
    """Device log lines in time order, inline (at most 5,000); lines before
    ``window_start`` are the learning prefix. Never copied into any output."""
    telemetry_source: SourceName | None = None
    """Name of a telemetry source registered on the site (``sitemesh telemetry add``):
    the diagnostics agent reads the device's series and log lines from it, from a
    baseline before ``window_start`` to ``window_end``. May be combined with inline
    ``samples`` and ``logs``."""

    def __post_init__(self) -> None:
        if self.window_end <= self.window_start:
            raise ValueError(
                f"`window_end` ({self.window_end.isoformat()}) must be later than "
                f"`window_start` ({self.window_start.isoformat()})"
            )


Task = SupportTicket | TelemetryAlert
"""Every task type; decode with the ``type`` tag."""

TASK_KINDS: dict[str, type[SupportTicket] | type[TelemetryAlert]] = {
    "support_ticket": SupportTicket,
    "telemetry_alert": TelemetryAlert,
}
"""Subject kind token -> task type."""
