"""The cloud synthesiser: a structured incident in, a proposal and a customer reply out.

An incident carries no prose (``cloud_incident.v2``): action names, grounding ids,
reason codes, finding kinds, the triage label and placeholders. Everything the cloud
says is composed from those: action names read through
:data:`sitemesh.agents.ACTION_DESCRIPTIONS`, reason codes through
:func:`sitemesh.schemas.describe_reason` (:func:`describe_incident` is that reading,
shared with the model path). With no model configured the answer is composed
deterministically and says so (``source="composed"``); a model-backed synthesiser plugs
in behind the same :class:`SynthesisBackend` seam and is given the same reading.

An incident is, by construction, a task the site escalated: nothing has been fixed yet.
The reply says what happens next (a specialist reviews the case) and promises nothing
else. Replies address the customer through the incident's placeholders
(``<CUSTOMER_ID_1>``), which the site re-identifies.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from typing import ClassVar, Final, Protocol

from ..agents import ACTION_DESCRIPTIONS
from ..bus import MsgContext, Outbound, Subjects, msg_id
from ..schemas import CloudAnswer, CloudIncident, IncidentStep, PlanStep, describe_reason

COMPOSED_LABEL: Final = "Composed from the anonymised findings and plan (no model configured)."
"""First line of every composed proposal, so no reader mistakes it for model output."""

ESCALATED_REPLY: Final = (
    "thank you for your patience. Your request has been passed to a specialist, who "
    "will review your case and get back to you."
)
"""The body of every composed customer reply: what happens next, and nothing that has
not happened (the site escalated the case; no fix was prepared)."""

UNKNOWN_ACTION: Final = "An action outside the allow-list (ignore it)."
"""Read for an action name :data:`~sitemesh.agents.ACTION_DESCRIPTIONS` does not have."""

_GREETING_TYPES = ("CUSTOMER_ID", "PERSON")
"""Placeholder types a reply may greet, in order of preference."""

_CUSTOMER_KINDS: Final = frozenset({"support_ticket"})
"""Task kinds with a customer to reply to (an alert has none)."""


class SynthesisBackend(Protocol):
    """Turns a structured incident into an answer: the deterministic composer
    (synchronous) or a model (``sitemesh.models.ModelSynthesiser``, a coroutine)."""

    def synthesise(self, incident: CloudIncident) -> CloudAnswer | Awaitable[CloudAnswer]: ...


def _placeholder(incident: CloudIncident, types: Sequence[str]) -> str | None:
    for entity_type in types:
        for p in incident.placeholders:
            if p.startswith(f"<{entity_type}_"):
                return p
    return None


def action_text(action: str) -> str:
    """What ``action`` does, from :data:`sitemesh.agents.ACTION_DESCRIPTIONS`
    (:data:`UNKNOWN_ACTION` for a name it does not have)."""
    return ACTION_DESCRIPTIONS.get(action, UNKNOWN_ACTION)


def _step_line(step: IncidentStep) -> str:
    extra = []
    if step.grounding:
        extra.append("grounded in " + ", ".join(step.grounding))
    if step.placeholders:
        extra.append("concerns " + ", ".join(step.placeholders))
    tail = f" ({'; '.join(extra)})" if extra else ""
    return f"  {step.n}. [{step.action}] {action_text(step.action)}{tail}"


def describe_incident(incident: CloudIncident, *, max_steps: int = 12) -> list[str]:
    """The incident as sentences, built from its structured fields only.

    Used by :class:`ComposingSynthesiser` for its proposal and as the model's input in
    ``sitemesh.models.ModelSynthesiser``, so a model never sees anything else.

    Args:
        incident: the structured incident.
        max_steps: at most this many plan steps are listed.

    Returns:
        Lines: the incident's origin, its identifiers (placeholders), triage, the
        knowledge-base document, the reasons (:func:`sitemesh.schemas.describe_reason`),
        the findings and the site's plan (actions read through
        :data:`sitemesh.agents.ACTION_DESCRIPTIONS`).
    """
    lines = [
        f"Incident {incident.task_id} ({incident.kind}) from site {incident.site}, "
        f"forwarded under rule {incident.rule_id} (policy {incident.policy_version}); "
        f"data class of the original: {incident.data_class}."
    ]
    lines.append(
        "Identifiers on file (placeholders, kept on the site): "
        + (", ".join(incident.placeholders) or "none")
        + "."
    )
    if (t := incident.triage) is not None:
        lines.append(
            f"Triage: {t.label}"
            + (f" ({t.label_set})" if t.label_set else "")
            + f", urgency {t.urgency} (0 critical .. 3 low), language {t.language}."
        )
    if (r := incident.resolution) is not None:
        what = (
            "a past case of the site's own knowledge base (kept on the site)"
            if r.doc_kind == "case"
            else f"{r.doc_kind} {r.doc}"
        )
        lines.append(
            f"Closest knowledge-base document: {what}, knowledge base {r.kb}"
            + (f", intent {r.intent}" if r.intent else "")
            + "."
        )
    if incident.reasons:
        lines.append("Escalated because:")
        lines += [f"  - {describe_reason(code)}" for code in incident.reasons]
    for f in incident.findings[:10]:
        where = " ".join(p for p in (f.device, f.interface) if p) or "an unnamed device"
        when = f.at.isoformat() if f.at else "time unknown"
        lines.append(f"Finding: {f.kind} on {where} at {when} ({f.severity}).")
    steps = incident.steps[:max_steps]
    if steps:
        lines.append(
            f"Site plan (runbook {incident.runbook}):" if incident.runbook else "Site plan:"
        )
        lines += [_step_line(s) for s in steps]
    else:
        lines.append("The site has no grounded plan.")
    return lines


class ComposingSynthesiser:
    """The deterministic default: same incident in, same answer out."""

    max_steps: ClassVar[int] = 6

    def synthesise(self, incident: CloudIncident) -> CloudAnswer:
        """Compose a proposal and a reply from ``incident``'s structured fields.

        Returns:
            A :class:`CloudAnswer` with ``source="composed"``: the proposal is
            :data:`COMPOSED_LABEL`, :func:`describe_incident` and the next step; the
            customer reply (support tickets only; empty for alerts) greets a
            placeholder and says the case goes to a specialist
            (:data:`ESCALATED_REPLY`); its steps are the site's, each described by its
            action.
        """
        lines = [COMPOSED_LABEL, *describe_incident(incident, max_steps=self.max_steps)]
        if incident.steps:
            lines.append(
                "Next: a specialist reviews the case and carries out or amends the site's "
                "plan; nothing has been changed yet."
            )
        else:
            lines.append("Next: a specialist reviews the case; nothing has been changed yet.")
        steps = [
            PlanStep(
                n=s.n, action=s.action, description=action_text(s.action),
                grounding=list(s.grounding),
            )
            for s in incident.steps[: self.max_steps]
        ]  # fmt: skip
        return CloudAnswer(
            task_id=incident.task_id,
            site=incident.site,
            proposal="\n".join(lines),
            customer_message=self.reply(incident),
            steps=steps,
            source="composed",
        )

    @staticmethod
    def reply(incident: CloudIncident) -> str:
        """The customer reply for ``incident`` (empty for kinds without a customer).

        It greets the customer's placeholder (``CUSTOMER_ID``, else ``PERSON``), says the
        request went to a specialist who will get back (:data:`ESCALATED_REPLY`), that
        it is treated as urgent when the reasons say so, and where the reply will go
        when an e-mail placeholder is on file. It states no work as done.
        """
        if incident.kind not in _CUSTOMER_KINDS:
            return ""
        greet = _placeholder(incident, _GREETING_TYPES)
        email = _placeholder(incident, ("EMAIL_ADDRESS",))
        reply = [f"Hello {greet}," if greet else "Hello,", ESCALATED_REPLY]
        urgent = "critical_urgency" in incident.reasons or (
            incident.triage is not None and incident.triage.urgency == 0
        )
        if urgent:
            reply.append("It is marked as urgent.")
        if email:
            reply.append(f"We will write to you at {email}.")
        return " ".join(reply)


class Synthesiser:
    """Handler of the cloud ``synthesiser`` role for :class:`sitemesh.bus.Worker`.

    Args:
        backend: how answers are made; default :class:`ComposingSynthesiser`.
    """

    role: ClassVar[str] = "synthesiser"

    def __init__(self, backend: SynthesisBackend | None = None) -> None:
        self.backend = backend or ComposingSynthesiser()

    async def __call__(self, incident: CloudIncident, ctx: MsgContext) -> Sequence[Outbound]:
        """Answer ``incident`` on ``sm.v1.in.<site>.<task_id>`` (stream CLOUD_OUT)."""
        result = self.backend.synthesise(incident)
        answer = await result if inspect.isawaitable(result) else result
        return [
            Outbound(
                Subjects(incident.site).inbox(incident.task_id),
                answer,
                msg_id(f"{incident.site}:{incident.task_id}", "answer", self.role),
                task_id=incident.task_id,
                data_class="internal",
            )
        ]
