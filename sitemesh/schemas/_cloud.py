"""Messages that cross the site boundary: structured incidents out, answers back in.

Nothing a person, a ticket or a site model wrote crosses as prose. An escalated task
leaves its site as a :class:`CloudIncident` made only of platform tokens: the opaque
task reference, enums, knowledge-base and passage ids, action names from the action
allow-list, reason codes from a fixed vocabulary (:data:`sitemesh.schemas.REASON_CODES`)
and typed placeholders (``<PERSON_1>``) for the identifiers found. Every field has a
format (the patterns below, and the egress guard's field spec, which re-checks each one
right before the outbox); a value that does not fit does not leave. Cloud answers may use
the placeholders; the site re-identifies them.

``cloud_incident.v2`` replaced ``v1``, whose plan steps, finding evidence, reasons and
``text`` were pseudonymised prose: what the PII detector misses in prose (an e-mail
written ``maria[at]outlook[dot]com``, a card number with dots, a lower-case name) crossed
with it. See ``docs/privacy.md``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from ._base import DataClass, Message, Site, TaskId, utcnow
from ._outputs import FindingKind, PlanStep

_PLACEHOLDER = r"<[A-Z][A-Z0-9_]*?_[1-9][0-9]*>"
_DOC_ID = r"[A-Za-z][A-Za-z0-9._-]*(?:/[A-Za-z][A-Za-z0-9._-]*)+"
_KB_DOC_ID = r"[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)*"
_CASE_REF = r"case#r[a-z2-7]{26}"

Placeholder = Annotated[str, msgspec.Meta(max_length=64, pattern=rf"^{_PLACEHOLDER}$")]
"""A typed placeholder ``<ENTITY_TYPE_n>`` (``<PERSON_1>``); the value stays in the site's vault."""

ActionName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""An action of the allow-list (``sitemesh.agents.ALLOWED_ACTIONS``)."""

DocId = Annotated[str, msgspec.Meta(max_length=256, pattern=rf"^{_DOC_ID}$")]
"""A runbook's doc id ``<corpus>/<path>`` (``prometheus/etcd/etcdMembersDown``): two or
more segments, each starting with a letter (a number is not a runbook)."""

DocRef = Annotated[str, msgspec.Meta(max_length=256, pattern=rf"^(?:{_KB_DOC_ID}|{_CASE_REF})$")]
"""A knowledge-base doc id (an article's relative path ``billing/refunds``, an FAQ's
intent ``card_arrival``), or for a site's past case the opaque ``case#r<26 base32>``."""

GroundingId = Annotated[
    str,
    msgspec.Meta(
        max_length=320,
        pattern=rf"^(?:{_KB_DOC_ID}#[a-z0-9][a-z0-9_-]*|diagnosis#[1-9][0-9]{{0,3}}|{_CASE_REF})$",
    ),
]
"""What a step is grounded in: a passage id ``<doc id>#<section slug>`` of a runbook,
article or FAQ (``prometheus/etcd/etcdMembersDown#mitigation``, ``card_arrival#faq``);
``diagnosis#<n>``, the n-th (1-based) finding; or ``case#r<26 base32>``, an opaque
reference to a passage of one of the site's past cases (its id is site data)."""

ReasonCode = Annotated[
    str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}(?::[a-z][a-z0-9_]{0,63})?$")
]
"""A reason code (``low_retrieval_confidence``, ``major_finding:interface_down``); the
vocabulary is :data:`sitemesh.schemas.ALL_REASON_CODES`."""

LabelToken = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_]{1,64}$")]
"""An enum-like label (``card_arrival``, ``banking77``)."""

KbName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
"""A knowledge base's name (``runbooks``, ``support-cases``; ``sitemesh kb add``'s rule)."""

DeviceName = Annotated[
    str,
    msgspec.Meta(max_length=64, pattern=rf"^(?:[A-Za-z][A-Za-z0-9/._:-]{{0,63}}|{_PLACEHOLDER})$"),
]
"""A device or interface name as the telemetry writes it (``leaf7``,
``HundredGigE0/0/0/10``), or a placeholder when it does not look like one."""

Severity = Literal["info", "minor", "major", "critical"]


class IncidentStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of the site's plan, as it crosses: what to do and what it rests on."""

    n: Annotated[int, msgspec.Meta(ge=1, le=999)]
    """1-based position."""
    action: ActionName
    """The step's action; its meaning is ``sitemesh.agents.ACTION_DESCRIPTIONS[action]``."""
    grounding: list[GroundingId] = []
    """Ids of what the step comes from (:data:`GroundingId`); ids the site cannot vouch
    for (not retrieved, not a finding) are left out."""
    placeholders: list[Placeholder] = []
    """Placeholders of the identifiers the site's step text mentioned (the text stays)."""


class IncidentFinding(msgspec.Struct, frozen=True, kw_only=True):
    """One diagnostic finding, without its evidence text."""

    kind: FindingKind
    severity: Severity = "minor"
    device: DeviceName | None = None
    """The device, or a placeholder; ``None`` when its name fits no safe format."""
    interface: DeviceName | None = None
    at: datetime | None = None
    """When it happened (UTC), to the telemetry cadence (10 s)."""


class IncidentTriage(msgspec.Struct, frozen=True, kw_only=True):
    """The triage step's reading of the ticket, as tokens."""

    label: LabelToken
    """The intent or category (``card_arrival``)."""
    label_set: LabelToken | None = None
    """The triage model's label set (``banking77``)."""
    urgency: Annotated[int, msgspec.Meta(ge=0, le=3)] = 3
    """0 (critical) .. 3 (low)."""
    language: Annotated[str, msgspec.Meta(pattern=r"^[a-z]{2,3}$")] = "und"
    """ISO 639-1 code, ``und`` when unknown."""


class IncidentResolution(msgspec.Struct, frozen=True, kw_only=True):
    """The knowledge-base document the site's reply was drafted from."""

    kb: KbName
    doc_kind: Literal["runbook", "article", "case", "faq"]
    doc: DocRef
    """The doc id; for a past case (``doc_kind="case"``) an opaque ``case#r...``."""
    intent: LabelToken | None = None
    """The intent the document answers, when labelled."""


class CloudIncident(Message, frozen=True, kw_only=True, tag="cloud_incident.v2"):
    """An escalated task as it leaves its site: structured, no prose (see the module
    docstring). Every field is format-checked by the egress guard
    (``sitemesh.policy.EGRESS_FIELD_SPECS``)."""

    task_id: TaskId
    """The task's opaque boundary reference (``r`` + 26 base32), never the caller's id."""
    site: Site
    kind: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
    """Task kind token (``support_ticket``)."""
    data_class: DataClass
    """The class of the *original* content (the incident itself holds none of it)."""
    policy_version: str
    rule_id: str
    """The rule that allowed the task to go to the cloud."""
    placeholders: list[Placeholder] = []
    """Placeholders of the identifiers found in the task (``["<PERSON_1>",
    "<EMAIL_ADDRESS_1>"]``), so that the answer can address them."""
    steps: list[IncidentStep] = []
    """The site's plan: actions and groundings only."""
    findings: list[IncidentFinding] = []
    runbook: DocId | None = None
    """The runbook the plan follows, when it is one of the retrieved documents."""
    reasons: list[ReasonCode] = []
    """Why the site escalated, as codes (:func:`sitemesh.schemas.describe_reason`)."""
    triage: IncidentTriage | None = None
    resolution: IncidentResolution | None = None
    forwarded_at: datetime = msgspec.field(default_factory=utcnow)


class CloudAnswer(Message, frozen=True, kw_only=True, tag="cloud_answer.v1"):
    """A cloud agent's answer to an incident, on ``sm.v1.in.<site>.<task_id>``."""

    task_id: TaskId
    site: Site
    proposal: str
    """Upgrade / mitigation proposal for the operator."""
    customer_message: str
    """Reply for the customer; may contain placeholders to be re-identified on site."""
    steps: list[PlanStep] = []
    source: Literal["model", "composed"] = "composed"
    """``composed``: built deterministically from the incident (no model configured)."""
    agent: str = "synthesiser"
    answered_at: datetime = msgspec.field(default_factory=utcnow)
