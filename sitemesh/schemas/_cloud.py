"""Messages that cross the site boundary: anonymised incidents out, answers back in.

Everything here is built from pseudonymised text: personal data is replaced by
typed placeholders (``<PERSON_1>``) before an incident is published on
``sm.v1.out.<site>.escalation``, and the egress guard re-scans it right before the
outbox. Cloud answers may use the placeholders; the site re-identifies them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from ._base import DataClass, Message, Site, TaskId, utcnow
from ._outputs import Finding, PlanStep


class CloudIncident(Message, frozen=True, kw_only=True, tag="cloud_incident.v1"):
    """An escalated task, anonymised and enriched, for cloud agents."""

    task_id: TaskId
    site: Site
    kind: str
    data_class: DataClass
    """The class of the *original* content (the incident itself is pseudonymised)."""
    policy_version: str
    rule_id: str
    """The rule that allowed the task to go to the cloud."""
    text: str
    """What the site says about the task: its kind and placeholders of the identifiers
    found. The customer's free text never leaves the site (data minimisation)."""
    placeholders: list[str] = []
    """Placeholders present in the incident (``["<PERSON_1>", "<EMAIL_ADDRESS_1>"]``)."""
    findings: list[Finding] = []
    steps: list[PlanStep] = []
    """The site's plan (descriptions pseudonymised)."""
    runbook: str | None = None
    reasons: list[str] = []
    """Why the site escalated."""
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
