"""Task events on ``sm.v1.event.<site>.<task_id>`` and dead letters on ``sm.v1.dlq``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

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
    stream_seq: int = 0
    """The accepted message's sequence in ``TASKS_<site>`` (0: not recorded), so a
    client tells its own submission's verdict from an earlier one's."""


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


ResubmissionOutcome = Literal["duplicate", "conflict"]
"""``duplicate``: the same body as the accepted task; ``conflict``: a different one."""

AnswerStatus = Literal["answered", "failed", "awaiting_approval", "in_progress", "unknown"]
"""Where the accepted task stands, from its events (``unknown``: they are no longer
in ``EVENTS_<site>``, or could not be read)."""


class TaskResubmitted(Message, frozen=True, kw_only=True, tag="task_resubmitted.v1"):
    """A task id the router accepted before arrived again in a new ``TASKS`` message.

    Nothing runs for it: ``duplicate`` (code ``task_id_duplicate``) reports where the
    accepted task stands, so a client waiting for the answer learns it;
    ``conflict`` (code ``task_id_conflict``) refuses the body, which differs from the
    one first accepted. The accepted task goes on either way (this is not a
    ``task_failed.v1``). The refused message stays in ``TASKS_<site>`` at
    :attr:`stream_seq`."""

    task_id: str
    site: Site
    outcome: ResubmissionOutcome
    code: Literal["task_id_duplicate", "task_id_conflict"]
    reason: str
    """One sentence naming the task id, the first acceptance and what happened."""
    stream_seq: int
    """This message's sequence in ``TASKS_<site>``."""
    first_stream_seq: int
    """Sequence in ``TASKS_<site>`` of the message first accepted under this id."""
    first_accepted_at: datetime
    """When the router first accepted the id (UTC)."""
    status: AnswerStatus = "unknown"
    answer_seq: int | None = None
    """Sequence in ``EVENTS_<site>`` of the task's ``final_answer.v1`` (or
    ``task_failed.v1``), when it has one."""
    answered_at: datetime | None = None
    """When that answer (or failure) was published."""
    at: datetime = msgspec.field(default_factory=utcnow)


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
    """The original payload, byte for byte (base64 in JSON); only its first bytes when
    :attr:`original_truncated`."""
    original_truncated: bool = False
    """The original was too large to carry whole within the 1 MiB message limit:
    :attr:`original` holds its first bytes (cut at a UTF-8 character boundary), and it
    cannot be redriven from the letter."""
    original_size: int | None = None
    """Size of the whole original in bytes (``None``: a letter from before this field)."""
    original_sha256: str | None = None
    """SHA-256 of the whole original, lowercase hex (``None``: as for ``original_size``)."""
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
    | TaskResubmitted
)
"""Everything published on a task's event subject."""
