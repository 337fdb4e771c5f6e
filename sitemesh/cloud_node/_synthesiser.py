"""The cloud synthesiser: an anonymised incident in, a proposal and a customer reply out.

It only ever sees pseudonymised content. With no model configured it composes the
answer deterministically from the incident's findings, plan and reasons, and says so
(``source="composed"``); a model-backed synthesiser plugs in behind the same
:class:`SynthesisBackend` seam. Replies address the customer through the incident's
placeholders (``<CUSTOMER_ID_1>``), which the site re-identifies.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Sequence
from typing import ClassVar, Protocol

from ..bus import MsgContext, Outbound, Subjects, msg_id
from ..schemas import CloudAnswer, CloudIncident

COMPOSED_LABEL = "Composed from the anonymised findings and plan (no model configured)."
"""First line of every composed proposal, so no reader mistakes it for model output."""

_GREETING_TYPES = ("CUSTOMER_ID", "PERSON")
"""Placeholder types a reply may greet, in order of preference."""


class SynthesisBackend(Protocol):
    """Turns an anonymised incident into an answer: the deterministic composer
    (synchronous) or a model (``sitemesh.models.ModelSynthesiser``, a coroutine)."""

    def synthesise(self, incident: CloudIncident) -> CloudAnswer | Awaitable[CloudAnswer]: ...


def _placeholder(incident: CloudIncident, types: Sequence[str]) -> str | None:
    for entity_type in types:
        for p in incident.placeholders:
            if p.startswith(f"<{entity_type}_"):
                return p
    return None


class ComposingSynthesiser:
    """The deterministic default: same incident in, same answer out."""

    max_steps: ClassVar[int] = 6

    def synthesise(self, incident: CloudIncident) -> CloudAnswer:
        """Compose a proposal and a reply from ``incident``.

        Returns:
            A :class:`CloudAnswer` with ``source="composed"``.
        """
        lines = [COMPOSED_LABEL]
        lines.append(
            f"Incident {incident.task_id} ({incident.kind}) from site {incident.site}, "
            f"forwarded under rule {incident.rule_id} (policy {incident.policy_version})."
        )
        if incident.reasons:
            lines.append("Escalated because: " + "; ".join(incident.reasons) + ".")
        for f in incident.findings[:10]:
            where = f"{f.device} {f.interface or ''}".strip()
            when = f.at.isoformat() if f.at else "time unknown"
            lines.append(f"Finding: {f.kind} on {where} at {when} ({f.severity}).")
        steps = list(incident.steps[: self.max_steps])
        if incident.runbook:
            lines.append(f"Proposed mitigation follows runbook {incident.runbook}:")
        for step in steps:
            lines.append(f"  {step.n}. [{step.action}] {step.description}")
        if not steps:
            lines.append("No site plan was grounded; propose a specialist review of the case.")
        greet = _placeholder(incident, _GREETING_TYPES)
        email = _placeholder(incident, ("EMAIL_ADDRESS",))
        reply = [f"Hello {greet}," if greet else "Hello,"]
        reply.append(
            "thank you for your patience. Our engineers have reviewed your case and "
            "prepared a fix; we will apply it and confirm once it is done."
        )
        if email:
            reply.append(f"We will send the confirmation to {email}.")
        return CloudAnswer(
            task_id=incident.task_id,
            site=incident.site,
            proposal="\n".join(lines),
            customer_message=" ".join(reply),
            steps=steps,
            source="composed",
        )


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
