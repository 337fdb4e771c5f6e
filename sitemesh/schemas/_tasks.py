"""Tasks: what users publish on ``sm.v1.task.<site>.<kind>``."""

from __future__ import annotations

from datetime import datetime
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
