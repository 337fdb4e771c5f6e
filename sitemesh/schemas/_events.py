"""Task events on ``sm.v1.event.<site>.<task_id>`` and dead letters on ``sm.v1.dlq``."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ._base import Message, Site, utcnow
from ._outputs import FinalAnswer, WorkItem
from ._policy import PolicyDecision


class TaskAccepted(Message, frozen=True, kw_only=True, tag="task_accepted.v1"):
    """The router accepted a task (it decoded and passed policy classification)."""

    task_id: str
    site: Site
    kind: str
    tenant: str = "default"
    title: str = ""
    """A short, PII-free label (the kind and source record), never the ticket text."""
    submitted_at: datetime
    accepted_at: datetime = msgspec.field(default_factory=utcnow)
    workflow: str = ""
    """The workflow the task follows (``sitemesh workflows`` shows it)."""
    workflow_version: str = ""
    """Hash of the ``workflows`` document in force when the task was accepted."""


class StepCompleted(Message, frozen=True, kw_only=True, tag="step_completed.v1"):
    """An agent finished its step for a task."""

    task_id: str
    site: Site
    role: str
    summary: str = ""
    """One line on what the step produced (PII-free)."""
    started_at: datetime
    finished_at: datetime = msgspec.field(default_factory=utcnow)
    deliveries: int = 1
    """How many times the step's input was delivered (1 = no redelivery)."""
    worker: str = ""
    """``<host>:<pid>`` of the process that ran it."""
    step: str = ""
    """The workflow step (``""`` on events recorded before workflows existed)."""
    workflow: str = ""
    workflow_version: str = ""
    """Hash of the ``workflows`` document the task follows."""
    output_type: str = ""
    """The output's ``<type>.v<N>`` tag."""
    output: msgspec.Raw = msgspec.field(default_factory=lambda: msgspec.Raw(b"null"))
    """The step's output (JSON; ``null`` for a final answer, which is its own event),
    for ``show``/``trace`` and replay. Site-local: the event stream never leaves the
    site. (``Raw | None`` would not decode: msgspec takes ``Raw`` only on its own.)"""


class StepSkipped(Message, frozen=True, kw_only=True, tag="step_skipped.v1"):
    """A workflow step did not run for a task, and why."""

    task_id: str
    site: Site
    step: str
    role: str
    reason: str
    """``when`` condition false, or the policy keeps the task on site (PII-free)."""
    workflow: str = ""
    workflow_version: str = ""
    skipped_at: datetime = msgspec.field(default_factory=utcnow)


class TaskFailed(Message, frozen=True, kw_only=True, tag="task_failed.v1"):
    """A task's message was dead-lettered; the task ends here."""

    task_id: str
    site: Site
    role: str
    reason: str
    """The error text, naming the field and what was expected."""
    error_class: str
    field: str | None = None
    failed_at: datetime = msgspec.field(default_factory=utcnow)


class ApprovalRequested(Message, frozen=True, kw_only=True, tag="approval_requested.v1"):
    """The policy requires a person's approval: the task is parked until
    ``sitemesh approve|reject`` decides. Site-local: carries the parked work item."""

    task_id: str
    site: Site
    rule_id: str
    policy_version: str
    data_class: str
    item: WorkItem
    """The work item the router would have sent to the first agent."""
    requested_at: datetime = msgspec.field(default_factory=utcnow)


class DeadLetter(Message, frozen=True, kw_only=True, tag="dead_letter.v1"):
    """A message rejected for good, on ``sm.v1.dlq.<site>.<role>``."""

    site: Site
    role: str
    subject: str
    """Subject the original was published on."""
    stream: str
    stream_seq: int
    task_id: str | None = None
    reason: str
    error_class: str
    """``SchemaError``, ``MessageTooLarge``, ``PolicyDenied``, ``MaxDeliveriesExceeded``..."""
    field: str | None = None
    deliveries: int = 1
    original: bytes = b""
    """The original payload, byte for byte (base64 in JSON)."""
    original_headers: dict[str, str] = {}
    dead_at: datetime = msgspec.field(default_factory=utcnow)


Event = (
    TaskAccepted
    | PolicyDecision
    | StepCompleted
    | StepSkipped
    | FinalAnswer
    | TaskFailed
    | ApprovalRequested
)
"""Everything published on a task's event subject."""
