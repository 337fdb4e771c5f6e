"""What the agents produce, and the work item that carries them along the pipeline."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from ._base import DataClass, Message, Site, TaskId, Zone, utcnow
from ._policy import PolicyDecision
from ._tasks import Task


class Envelope(msgspec.Struct, frozen=True, kw_only=True):
    """Routing facts of a task, set by the router and carried on every hop."""

    task_id: TaskId
    site: Site
    kind: str
    """Subject kind token (``support_ticket``)."""
    tenant: str = "default"
    zone: Zone = "edge"
    data_class: DataClass = "internal"
    causation_id: str | None = None
    """``Nats-Msg-Id`` of the message that caused this one."""
    submitted_at: datetime
    """When the bus stored the task (the ``TASKS_<site>`` stream timestamp, UTC);
    end-to-end latency starts here. The caller's own time stays in the task."""
    accepted_at: datetime
    """When the router accepted it (UTC)."""


class Passage(msgspec.Struct, frozen=True, kw_only=True):
    """One retrieved knowledge-base passage."""

    passage_id: str
    """Stable id ``<doc_id>#<section slug>``."""
    doc_id: str
    """Runbook path relative to the knowledge base root."""
    title: str
    section: str
    text: str
    source: str
    """Upstream location (repository and path) for attribution."""
    score: float
    """BM25 score (higher is better; not normalised)."""


class RetrievalResult(Message, frozen=True, kw_only=True, tag="retrieval_result.v1"):
    """Ranked passages for a task."""

    task_id: TaskId
    query: str
    passages: list[Passage] = []
    top_score: float = 0.0
    confidence: float = 0.0
    """0..1: how well the best passage matches (see the retriever's docstring)."""
    index_version: str = ""
    took_ms: float = 0.0


FindingKind = Literal[
    "interface_down",
    "interface_up",
    "bfd_session_down",
    "bfd_session_up",
    "traffic_drop",
    "cpu_high",
    "memory_high",
    "fib_drops",
    "log_pattern",
]


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a diagnostic routine found."""

    kind: FindingKind
    device: str
    interface: str | None = None
    at: datetime | None = None
    """When it happened (UTC), to the telemetry cadence (10 s)."""
    evidence: str
    """What in the data shows it (series, before/after values)."""
    severity: Literal["info", "minor", "major", "critical"] = "minor"


class Diagnosis(Message, frozen=True, kw_only=True, tag="diagnosis.v1"):
    """Result of the diagnostics agent."""

    task_id: TaskId
    findings: list[Finding] = []
    checks_run: list[str] = []
    """Names of the routines that ran, e.g. ``interface_state``."""
    summary: str = ""
    source: Literal["rules", "model"] = "rules"


class PlanStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a plan."""

    n: int
    """1-based position."""
    action: str
    """An action name; the validator checks it against the allow-list."""
    description: str
    grounding: list[str] = []
    """``passage_id``s of the retrieved passages the step comes from."""


class Plan(Message, frozen=True, kw_only=True, tag="plan.v1"):
    """A typed plan for a task."""

    task_id: TaskId
    steps: list[PlanStep] = []
    source: Literal["runbook", "model", "fallback"] = "runbook"
    """``runbook``: built deterministically from a runbook's sections."""
    runbook: str | None = None
    """``doc_id`` of the runbook the plan follows."""
    customer_message: str = ""
    """Text meant for the customer (must be PII-free)."""
    rationale: str = ""


class ValidationIssue(msgspec.Struct, frozen=True, kw_only=True):
    code: str
    """Machine-readable issue code (``action_not_allowed``, ``ungrounded_step``, ``pii``)."""
    message: str
    step: int | None = None


class ValidationReport(Message, frozen=True, kw_only=True, tag="validation_report.v1"):
    task_id: TaskId
    ok: bool
    issues: list[ValidationIssue] = []
    checks: list[str] = []


Outcome = Literal["resolved", "escalate", "needs_human"]


class Escalation(Message, frozen=True, kw_only=True, tag="escalation.v1"):
    """The escalation agent's decision."""

    task_id: TaskId
    decision: Outcome
    reasons: list[str] = []
    severity: Literal["info", "minor", "major", "critical"] = "minor"


class WorkItem(Message, frozen=True, kw_only=True, tag="work_item.v1"):
    """What travels on ``sm.v1.work.<site>.<role>``: the task and everything found so far."""

    envelope: Envelope
    task: Task
    decision: PolicyDecision
    retrieval: RetrievalResult | None = None
    diagnosis: Diagnosis | None = None
    plan: Plan | None = None
    validation: ValidationReport | None = None


class FinalAnswer(Message, frozen=True, kw_only=True, tag="final_answer.v1"):
    """The end of a task, published on ``sm.v1.event.<site>.<task_id>``."""

    task_id: TaskId
    site: Site
    outcome: Outcome
    reasons: list[str] = []
    customer_message: str = ""
    plan: Plan | None = None
    diagnosis: Diagnosis | None = None
    data_class: DataClass = "internal"
    submitted_at: datetime
    answered_at: datetime = msgspec.field(default_factory=utcnow)
    route: Literal["edge", "cloud"] = "edge"
    """``cloud``: the answer was synthesised in the cloud from the anonymised
    incident and re-identified on the site."""
    proposal: str = ""
    """The cloud's upgrade / mitigation proposal (re-identified), when routed there."""
