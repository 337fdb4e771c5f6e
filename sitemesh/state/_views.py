"""Read-only views returned by :class:`sitemesh.state.Store` queries.

Frozen dataclasses detached from the database session: safe to keep after the
store is closed and to hand to renderers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TaskSummary:
    """One row of the ``tasks`` table.

    Attributes:
        task_id: the task id.
        site: the site that accepted it (``""`` until ``task_accepted`` is recorded).
        kind: task kind token (``support_ticket``, ``telemetry_alert``).
        tenant: the customer account.
        title: a short, PII-free label.
        status: ``accepted`` (in flight), ``answered`` or ``failed``.
        data_class: the policy data class, once decided.
        outcome: ``resolved`` / ``escalate`` / ``needs_human`` once answered.
        reasons: the answer's reasons, or the failure reason.
        customer_message: the text meant for the customer.
        submitted_at: when the user submitted it (UTC).
        accepted_at: when the router accepted it (UTC).
        finished_at: when it was answered or failed (UTC).
        latency_ms: ``answered_at - submitted_at`` in milliseconds (answered only).
    """

    task_id: str
    site: str
    kind: str
    tenant: str
    title: str
    status: str
    data_class: str | None
    outcome: str | None
    reasons: tuple[str, ...]
    customer_message: str
    submitted_at: datetime | None
    accepted_at: datetime | None
    finished_at: datetime | None
    latency_ms: float | None


@dataclass(frozen=True, slots=True)
class TaskEventView:
    """One recorded event of a task.

    Attributes:
        stream: stream it was read from (``EVENTS_<site>``).
        stream_seq: its sequence in that stream.
        type: schema tag (``step_completed.v1``...).
        role: the role that produced it, when known.
        summary: one PII-free line.
        at: when it happened (UTC).
        started_at: when the step started (``step_completed`` only).
        payload: the event as JSON-compatible builtins.
    """

    stream: str
    stream_seq: int
    type: str
    role: str | None
    summary: str
    at: datetime
    started_at: datetime | None
    payload: Mapping[str, Any]

    @property
    def duration_ms(self) -> float | None:
        """Step duration (``at - started_at``) in milliseconds, or ``None``."""
        if self.started_at is None:
            return None
        return (self.at - self.started_at).total_seconds() * 1000.0


@dataclass(frozen=True, slots=True)
class EntityCountView:
    """How many entities of one type the analyzer found (no values, no scores)."""

    entity_type: str
    count: int


@dataclass(frozen=True, slots=True)
class DecisionView:
    """The policy decision of a task.

    Attributes:
        action: ``pin_edge``, ``allow_cloud``, ``deny`` or ``require_approval``.
        rule_id: the rule that decided.
        policy_version: first 16 hex digits of the rules file's SHA-256.
        data_class: the task's data class.
        entities: detected entity types and counts.
        reasons: why.
        analyzer_ms: analyzer time in milliseconds.
        decided_at: when (UTC).
    """

    action: str
    rule_id: str
    policy_version: str
    data_class: str
    entities: tuple[EntityCountView, ...]
    reasons: tuple[str, ...]
    analyzer_ms: float
    decided_at: datetime


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    """A recorded dead letter.

    Attributes:
        stream: stream of the original message.
        stream_seq: sequence of the original message in ``stream``.
        site: the site.
        role: the role that rejected it.
        subject: the subject the original was published on.
        task_id: the task, when it could be determined.
        reason: the error text (names the field and what was expected).
        error_class: ``SchemaError``, ``MessageTooLarge``, ``PolicyDenied``...
        field: JSON path of the offending field, if any.
        deliveries: how many times the original was delivered.
        original: the original payload bytes.
        original_headers: the original headers.
        dead_at: when it was dead-lettered (UTC).
    """

    stream: str
    stream_seq: int
    site: str
    role: str
    subject: str
    task_id: str | None
    reason: str
    error_class: str
    field: str | None
    deliveries: int
    original: bytes
    original_headers: Mapping[str, str]
    dead_at: datetime


@dataclass(frozen=True, slots=True)
class TaskView:
    """Everything recorded about one task.

    Attributes:
        task: the task row.
        events: its events in stream order.
        decision: its policy decision, if recorded.
        dead_letters: its dead letters, oldest first.
    """

    task: TaskSummary
    events: tuple[TaskEventView, ...] = ()
    decision: DecisionView | None = None
    dead_letters: tuple[DeadLetterView, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusCounts:
    """Task counts.

    Attributes:
        total: number of tasks.
        by_status: ``{"accepted": n, "answered": n, "failed": n}`` (zeros included).
        by_outcome: answered tasks by outcome.
        by_data_class: tasks by data class (``"unknown"`` when not yet decided).
        dead_letters: number of dead letters.
    """

    total: int = 0
    by_status: Mapping[str, int] = field(default_factory=dict)
    by_outcome: Mapping[str, int] = field(default_factory=dict)
    by_data_class: Mapping[str, int] = field(default_factory=dict)
    dead_letters: int = 0
