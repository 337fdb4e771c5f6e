"""Model-backed backends for the agents' seams, each with its deterministic fallback.

* :class:`ModelPlanner` implements :class:`sitemesh.agents.PlanningBackend`: the
  site's model drafts the plan as structured output; invalid output is repaired
  once; otherwise the :class:`~sitemesh.agents.RunbookPlanner` plans and the plan's
  ``rationale`` says why.
* :class:`ModelSynthesiser` is the model-backed cloud synthesiser; it falls back to
  :class:`~sitemesh.cloud_node.ComposingSynthesiser` and labels the proposal.
"""

from __future__ import annotations

import re
from typing import Final

import msgspec

from ..agents import (
    ACTION_DESCRIPTIONS,
    ALLOWED_ACTIONS,
    FALLBACK_MESSAGE,
    TICKET_MESSAGE,
    RunbookPlanner,
    diagnosis_ref,
)
from ..cloud_node import COMPOSED_LABEL, ComposingSynthesiser
from ..errors import InvalidModelOutput, ModelError
from ..policy import estimate_complexity, task_text
from ..schemas import (
    CloudAnswer,
    CloudIncident,
    Diagnosis,
    Plan,
    PlanStep,
    RetrievalResult,
    SupportTicket,
    WorkItem,
)
from ._client import ModelClient
from ._types import CallContext, ChatMessage, ModelRequest

MAX_PLAN_STEPS: Final = 12
"""A model plan may have at most this many steps."""

MODEL_FALLBACK_NOTE: Final = "Model planning unavailable ({reason}); deterministic runbook plan."
"""Prefix of a fallback plan's ``rationale``."""

SYNTHESIS_FALLBACK_LABEL: Final = (
    "Composed from the anonymised findings and plan (model synthesis unavailable: {reason})."
)
"""First proposal line when :class:`ModelSynthesiser` fell back to composing."""

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")


class PlanDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What the model writes; the planner adds the task id, source and reply."""

    steps: list[PlanStep]
    runbook: str | None = None
    """``doc_id`` of the runbook followed, if any."""
    rationale: str = ""


class SynthesisDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What the cloud model writes for an incident."""

    proposal: str
    customer_message: str
    steps: list[PlanStep] = []


def _actions_text() -> str:
    return "\n".join(f"- {name}: {desc}" for name, desc in ACTION_DESCRIPTIONS.items())


def _check_steps(steps: list[PlanStep], known_refs: set[str] | None) -> None:
    if len(steps) > MAX_PLAN_STEPS:
        raise ValueError(f"at most {MAX_PLAN_STEPS} steps allowed, got {len(steps)} - at `$.steps`")
    for i, step in enumerate(steps):
        if step.action not in ALLOWED_ACTIONS:
            raise ValueError(
                f"action {step.action!r} is not allowed (one of "
                f"{', '.join(sorted(ALLOWED_ACTIONS))}) - at `$.steps[{i}].action`"
            )
        if known_refs is not None:
            unknown = [g for g in step.grounding if g not in known_refs]
            if unknown:
                raise ValueError(
                    f"grounding {unknown[0]!r} is not a given source id - at "
                    f"`$.steps[{i}].grounding`"
                )


class ModelPlanner:
    """A :class:`~sitemesh.agents.PlanningBackend` that asks the site's model.

    The work item on a site carries the raw (non-anonymised) task text, so the call
    is always routed as ``pin_edge``: only site models see it, whatever the task's
    policy action (cloud planning goes through the anonymised escalation path).
    Determinism on redelivery comes from temperature 0 and replay of recorded calls.

    Args:
        client: the model client.
        fallback: deterministic planner used when no model gives a valid plan
            (default: :class:`~sitemesh.agents.RunbookPlanner` over the packaged KB).
    """

    def __init__(self, client: ModelClient, *, fallback: RunbookPlanner | None = None) -> None:
        self.client = client
        self.fallback = fallback or RunbookPlanner()

    def request(self, item: WorkItem) -> tuple[ModelRequest, set[str]]:
        """The prompt for ``item`` and the grounding ids it may cite.

        Args:
            item: the work item (task, retrieval, diagnosis).

        Returns:
            ``(request, known_refs)``.
        """
        refs: set[str] = set()
        sources: list[str] = []
        retrieval, diagnosis = item.output(RetrievalResult), item.output(Diagnosis)
        if retrieval is not None:
            for p in retrieval.passages[:6]:
                refs.add(p.passage_id)
                sources.append(f"[{p.passage_id}] {p.title} / {p.section}\n{p.text[:1200]}")
        if diagnosis is not None:
            for n, f in enumerate(diagnosis.findings, start=1):
                refs.add(diagnosis_ref(n))
                where = f"{f.device} {f.interface or ''}".strip()
                sources.append(
                    f"[{diagnosis_ref(n)}] {f.kind} on {where} ({f.severity}): {f.evidence}"
                )
        system = (
            "You plan the handling of an operations task. Reply with JSON only: "
            '{"steps": [{"n": 1, "action": ..., "description": ..., "grounding": [ids]}], '
            '"runbook": doc_id or null, "rationale": ...}. Use only these actions:\n'
            f"{_actions_text()}\nEvery step cites the ids of the sources it comes from. "
            f"At most {MAX_PLAN_STEPS} steps."
        )
        user = f"Task ({item.envelope.kind}):\n{task_text(item.task)}\n\nSources:\n" + (
            "\n\n".join(sources) or "(none)"
        )
        req = ModelRequest(
            messages=[ChatMessage(role="system", content=system),
                      ChatMessage(role="user", content=user)],
        )
        return req, refs

    async def plan(self, item: WorkItem) -> Plan:
        """Plan with the model; fall back to the runbook planner, saying so.

        Args:
            item: the work item.

        Returns:
            ``source="model"`` plan, or the runbook planner's plan whose
            ``rationale`` starts with :data:`MODEL_FALLBACK_NOTE`.
        """
        request, refs = self.request(item)
        ctx = CallContext(
            kind="planning",
            complexity=estimate_complexity(item.task),
            action="pin_edge",
            data_class=item.envelope.data_class,
            tenant=item.envelope.tenant,
            agent="planner",
            task_id=item.envelope.task_id,
        )

        def check(draft: PlanDraft) -> None:
            if not draft.steps:
                raise ValueError("a plan needs at least one step - at `$.steps`")
            _check_steps(draft.steps, refs)

        try:
            result = await self.client.structured(request, PlanDraft, ctx, check=check)
        except InvalidModelOutput as exc:
            return self._fallback(item, f"invalid output after repair: {exc.validation_error}")
        except ModelError as exc:
            return self._fallback(item, str(exc))
        draft = result.value
        ticket = isinstance(item.task, SupportTicket)
        steps = [msgspec.structs.replace(s, n=i) for i, s in enumerate(draft.steps, start=1)]
        return Plan(
            task_id=item.envelope.task_id,
            steps=steps,
            source="model",
            runbook=draft.runbook,
            customer_message=TICKET_MESSAGE if ticket else "",
            rationale=(
                f"{draft.rationale.strip()} [model {result.response.ref}"
                f"{', repaired' if result.repaired else ''}]"
            ).strip(),
        )

    def _fallback(self, item: WorkItem, reason: str) -> Plan:
        plan = self.fallback.build(item)
        note = MODEL_FALLBACK_NOTE.format(reason=reason[:300])
        return msgspec.structs.replace(plan, rationale=f"{note} {plan.rationale}".strip())


class ModelSynthesiser:
    """The model-backed cloud synthesiser (frontier model first, then the chain).

    The incident is anonymised (it crossed the egress guard), so the call is routed
    ``allow_cloud`` with complexity 1 (multi-step synthesis). The answer may only use
    the incident's placeholders; anything else is invalid output.

    Note:
        :meth:`synthesise` is a coroutine, while the cloud node's
        ``SynthesisBackend.synthesise`` is synchronous today; the cloud handler must
        await it (see docs/models.md, "Wiring").

    Args:
        client: the model client.
        fallback: deterministic composer (default :class:`ComposingSynthesiser`).
    """

    def __init__(
        self, client: ModelClient, *, fallback: ComposingSynthesiser | None = None
    ) -> None:
        self.client = client
        self.fallback = fallback or ComposingSynthesiser()

    @staticmethod
    def request(incident: CloudIncident) -> ModelRequest:
        """The prompt for ``incident`` (anonymised content only)."""
        findings = "\n".join(
            f"- {f.kind} on {f.device} {f.interface or ''} ({f.severity}): {f.evidence}"
            for f in incident.findings[:10]
        )
        steps = "\n".join(f"{s.n}. [{s.action}] {s.description}" for s in incident.steps)
        system = (
            "You are a network operations expert. From an anonymised incident, write an "
            "upgrade/mitigation proposal for the operator and a short reply for the "
            "customer. Keep placeholders such as <PERSON_1> exactly as given and invent no "
            'others. Reply with JSON only: {"proposal": ..., "customer_message": ..., '
            '"steps": [{"n": 1, "action": ..., "description": ..., "grounding": []}]}. '
            f"Actions allowed:\n{_actions_text()}"
        )
        user = (
            f"Incident {incident.task_id} ({incident.kind}), runbook {incident.runbook}.\n"
            f"{incident.text}\nPlaceholders: {', '.join(incident.placeholders) or 'none'}\n"
            f"Findings:\n{findings or '(none)'}\nSite plan:\n{steps or '(none)'}\n"
            f"Escalated because: {'; '.join(incident.reasons) or 'n/a'}"
        )
        return ModelRequest(messages=[ChatMessage(role="system", content=system),
                                      ChatMessage(role="user", content=user)])

    async def synthesise(self, incident: CloudIncident) -> CloudAnswer:
        """Answer ``incident`` with a model, or compose it deterministically.

        Args:
            incident: the anonymised incident.

        Returns:
            ``source="model"``, or ``source="composed"`` with the proposal's first line
            :data:`SYNTHESIS_FALLBACK_LABEL` naming the reason.
        """
        allowed = set(incident.placeholders)

        def check(draft: SynthesisDraft) -> None:
            for field in ("proposal", "customer_message"):
                for p in _PLACEHOLDER.findall(getattr(draft, field)):
                    if p not in allowed:
                        raise ValueError(f"unknown placeholder {p} - at `$.{field}`")
            _check_steps(draft.steps, None)

        ctx = CallContext(
            kind="synthesis", complexity=1.0, action="allow_cloud",
            data_class=incident.data_class, agent="synthesiser", task_id=incident.task_id,
        )
        try:
            result = await self.client.structured(self.request(incident), SynthesisDraft, ctx,
                                                  check=check)
        except ModelError as exc:
            reason = (exc.validation_error if isinstance(exc, InvalidModelOutput)
                      else str(exc))[:300]
            composed = self.fallback.synthesise(incident)
            proposal = composed.proposal.replace(
                COMPOSED_LABEL, SYNTHESIS_FALLBACK_LABEL.format(reason=reason), 1
            )
            return msgspec.structs.replace(composed, proposal=proposal)
        draft = result.value
        return CloudAnswer(
            task_id=incident.task_id,
            site=incident.site,
            proposal=draft.proposal,
            customer_message=draft.customer_message or FALLBACK_MESSAGE,
            steps=[msgspec.structs.replace(s, n=i) for i, s in enumerate(draft.steps, start=1)],
            source="model",
            agent=f"synthesiser:{result.response.ref}",
        )
