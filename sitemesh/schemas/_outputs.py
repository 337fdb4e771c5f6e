"""What the agents produce, and the work item that carries them along the pipeline."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

import msgspec

from ..errors import SchemaError
from ._base import DataClass, Message, Site, StepName, TaskId, Zone, utcnow
from ._policy import PolicyDecision
from ._tasks import Task
from ._workflow import StepOutput, WorkflowSpec


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
    kb: str = "runbooks"
    """Name of the knowledge base the passage comes from (``sitemesh kb list``)."""
    doc_kind: Literal["runbook", "article", "case", "faq"] = "runbook"
    """``case``: a past resolved case (its text is pseudonymised); ``faq``: the answer
    to one intent; ``article``: a help article; ``runbook``: an operations runbook."""
    url: str | None = None
    """The article URL a customer can be sent, when the document has one."""
    intent: str | None = None
    """The intent or category the document answers, when it is labelled."""
    answer: str = ""
    """For cases and FAQs: the reply that resolved it (pseudonymised for cases),
    the text a grounded customer message is drafted from."""


CustomerStatus = Literal["found", "not_found", "unavailable"]
"""What the CRM said about a ticket's customer: a record, no record, or no answer."""


class CustomerContext(msgspec.Struct, frozen=True, kw_only=True):
    """What the site's CRM tool said about a ticket's customer (the retriever's
    ``crm.lookup_customer`` / ``crm.get_account`` calls through ``ctx.tools``).

    Values are as the tool registry returned them with ``pseudonymise=True``: detected
    personal data is the task's placeholders (``<PERSON_1>``), restored only on the site
    (the escalation step re-identifies them for the reply). None of it crosses the site
    boundary: the incident is built from structured fields only.
    """

    tool: str = "crm"
    """The tool server asked."""
    status: CustomerStatus = "not_found"
    reason: str = ""
    """For ``unavailable``: why, PII-free (``crm unavailable: breaker open``)."""
    name: str = ""
    """The customer's name, pseudonymised (``<PERSON_2>``)."""
    email: str = ""
    """The customer's e-mail address, pseudonymised (``<EMAIL_ADDRESS_1>``)."""
    account: str = ""
    """The account number's placeholder, when the scan detected it (re-identified on
    the site for its last four digits)."""
    account_last4: str = ""
    """The account number's last four digits, when the scan did not detect it (the
    full number is not kept)."""
    data_class: DataClass = "internal"
    """The class of what the CRM returned (the task's class is raised to it)."""
    entities: dict[str, int] = {}
    """Detected entity type -> count over the responses (never the values)."""


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
    kbs: list[str] = []
    """The knowledge bases searched (chosen by the task's kind and tenant)."""
    calibration: str = ""
    """How :attr:`confidence` was calibrated for the best passage's knowledge base
    (e.g. ``platt(leave-one-out, n=423)``)."""
    customer: CustomerContext | None = None
    """For a ticket that names a customer, at a site with the ``crm`` tool: what the
    CRM said (pseudonymised); ``None`` otherwise."""


class LabelScore(msgspec.Struct, frozen=True, kw_only=True):
    """A candidate label with its calibrated probability."""

    label: str
    p: float
    """Calibrated probability, 0..1."""


class Triage(Message, frozen=True, kw_only=True, tag="triage.v1"):
    """The triage agent's reading of a ticket: what it is about, how urgent, in what
    language, and how sure the classifier is."""

    task_id: TaskId
    label: str = ""
    """Intent or category (``card_arrival``); empty when no model applies."""
    label_set: str = ""
    """Name of the triage model (``banking77``); empty when none applies."""
    confidence: float = 0.0
    """Calibrated probability of :attr:`label`, 0..1 (see ``sitemesh.triage``)."""
    alternatives: list[LabelScore] = []
    """The next most likely labels, best first (at most 3)."""
    urgency: int = 3
    """0 (critical) .. 3 (low)."""
    urgency_source: Literal["ticket", "model", "rule", "default"] = "default"
    language: str = "und"
    """ISO 639-1 code, ``und`` when unknown."""
    language_confidence: float = 0.0
    model_version: str = ""
    """Hash of the model's training data and library version."""


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
    "metric_anomaly",
    "level_shift",
    "metric_flatline",
    "log_new_template",
    "log_rare_template",
    "log_burst",
]
"""``metric_anomaly`` .. ``log_burst``: findings of :mod:`sitemesh.detect` on the
telemetry an alert carries inline (``TelemetryAlert.samples`` / ``.logs``)."""


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


class Resolution(msgspec.Struct, frozen=True, kw_only=True):
    """What a resolved (or proposed) answer is grounded in."""

    kb: str
    doc_id: str
    url: str | None = None
    confidence: float
    """The retriever's calibrated confidence in this document, 0..1."""
    doc_kind: Literal["runbook", "article", "case", "faq"] = "article"
    intent: str | None = None


class PlanStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a plan."""

    n: int
    """1-based position."""
    action: str
    """An action name; the validator checks it against the allow-list."""
    description: str
    grounding: list[str] = []
    """What the step comes from: ``passage_id``s of retrieved passages,
    ``diagnosis#<n>`` findings, or ``tool#<k>`` tool results (:attr:`Plan.tools`)."""


ToolUseOutcome = Literal["ok", "error", "unavailable", "rejected"]


class ToolUse(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call a model-backed planner requested (function calling), and its end.

    The call itself (arguments and response) is in the site's ``tool_calls`` table
    under :attr:`call_id`; nothing of either is carried here (both may hold personal
    data)."""

    ref: str = ""
    """``tool#<k>`` for the k-th ``ok`` result, which a step may cite as grounding;
    empty for the other outcomes."""
    tool: str
    """``<server>.<tool>`` as called, or the function name the model asked for when it
    names no offered tool."""
    outcome: ToolUseOutcome
    """``ok``: answered; ``error``: the tool reported an execution error;
    ``unavailable``: down, timed out, rate limited or breaker open; ``rejected``: not
    called (unknown tool, arguments not matching its input schema, over the cap)."""
    reason: str = ""
    """Why, for the outcomes other than ``ok`` (PII-free: field paths, never values)."""
    call_id: str = ""
    """The recorded call (:func:`sitemesh.tools.tool_call_id`); empty when not called."""


class Plan(Message, frozen=True, kw_only=True, tag="plan.v1"):
    """A typed plan for a task."""

    task_id: TaskId
    steps: list[PlanStep] = []
    source: Literal["runbook", "knowledge", "model", "fallback"] = "runbook"
    """``runbook``: built deterministically from a runbook's sections; ``knowledge``:
    a reply drafted from a knowledge-base answer (past case, FAQ, article)."""
    runbook: str | None = None
    """``doc_id`` of the runbook the plan follows."""
    customer_message: str = ""
    """Text meant for the customer (must be PII-free; ``<CUSTOMER>`` stands for the
    ticket's customer and is filled in on the site)."""
    rationale: str = ""
    resolution: Resolution | None = None
    """The knowledge-base document :attr:`customer_message` is drafted from."""
    tools: list[ToolUse] = []
    """Tool calls the planner's model requested, in order; steps may cite the ``ok``
    ones by their :attr:`ToolUse.ref`."""


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


T = TypeVar("T", bound=msgspec.Struct)

_DECODERS: dict[type[Any], msgspec.json.Decoder[Any]] = {}
_ENCODER = msgspec.json.Encoder()


def _decoder(cls: type[T]) -> msgspec.json.Decoder[T]:
    dec = _DECODERS.get(cls)
    if dec is None:
        dec = _DECODERS[cls] = msgspec.json.Decoder(cls)
    return dec


class WorkItem(Message, frozen=True, kw_only=True, tag="work_item.v2"):
    """What travels on ``sm.v1.work.<site>.<role>``: the task, its workflow, the step
    it is addressed to, and the outputs of the steps before it.

    ``v2`` replaced v1's fixed fields (``retrieval``, ``diagnosis``, ``plan``,
    ``validation``) with :attr:`outputs` keyed by step name, so that any agent's
    output reaches later steps (see ``docs/agents.md``).
    """

    envelope: Envelope
    task: Task
    decision: PolicyDecision
    workflow: WorkflowSpec
    """The task's workflow, as resolved by the router when it accepted the task."""
    step: StepName
    """The step this item is addressed to (a name in :attr:`workflow`)."""
    outputs: dict[str, StepOutput] = {}
    """Earlier steps' outputs by step name, in the order they ran."""
    skipped: list[str] = []
    """Steps skipped so far (their ``when`` did not hold, or the policy pinned the
    task on site and the step runs in the cloud)."""

    def with_output(
        self, step: str, output: msgspec.Struct, *, role: str | None = None
    ) -> WorkItem:
        """A copy with ``output`` recorded as step ``step``'s (what the runtime does after
        each step; useful to build items in an agent's unit tests).

        Args:
            step: the step name.
            output: a tagged Struct.
            role: the role that produced it; default: the role of ``step`` in
                :attr:`workflow`, else ``step``.
        """
        if role is None:
            role = next((s.role for s in self.workflow.steps if s.name == step), step)
        record = StepOutput(
            role=role,
            type=str(output.__struct_config__.tag),
            output=msgspec.Raw(_ENCODER.encode(output)),
        )
        return msgspec.structs.replace(self, outputs={**self.outputs, step: record})

    def output(self, key: str | type[T], cls: type[T] | None = None) -> T | None:
        """An earlier step's output, decoded.

        ``item.output(RetrievalResult)`` returns the latest output of that type,
        whichever step produced it; ``item.output("triage", Triage)`` the output of
        step ``triage``. ``None`` when there is none.

        Args:
            key: a step name, or the output type to look for.
            cls: the output type, when ``key`` is a step name.

        Raises:
            TypeError: ``key`` is a step name and ``cls`` is missing.
            sitemesh.errors.SchemaError: the stored output is not a valid ``cls``.
        """
        if isinstance(key, str):
            if cls is None:
                raise TypeError("output(step, cls): give the output type too")
            found = self.outputs.get(key)
            if found is None or found.type != cls.__struct_config__.tag:
                return None
            return _decode_output(found.output, cls)
        tag = key.__struct_config__.tag
        for out in reversed(self.outputs.values()):
            if out.type == tag:
                return _decode_output(out.output, key)
        return None


def _decode_output(raw: msgspec.Raw, cls: type[T]) -> T:
    try:
        return _decoder(cls).decode(raw)
    except msgspec.ValidationError as exc:
        raise SchemaError(f"stored {cls.__name__} is invalid: {exc}", field="$.outputs") from exc


class FinalAnswer(Message, frozen=True, kw_only=True, tag="final_answer.v1"):
    """The end of a task, published on ``sm.v1.event.<site>.<task_id>.final.<tenant>``."""

    task_id: TaskId
    site: Site
    tenant: str = "default"
    """The task's tenant (set by the runtime from the envelope); the answer subject's
    last token, so that a tenant's client identity reads its own answers only."""
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
    workflow: str = ""
    """Name of the workflow the task followed."""
    workflow_version: str = ""
    """Hash of the ``workflows`` document that workflow came from."""
    resolution: Resolution | None = None
    """The knowledge-base document the answer is grounded in, when there is one."""
    triage: Triage | None = None
    """The triage step's output, when the workflow has one."""
