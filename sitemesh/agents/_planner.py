"""The planner: a typed plan of allowed actions, each grounded in retrieved context.

The default backend (:class:`RunbookPlanner`) needs no model: it follows the best
retrieved runbook, turning the instructions of its Diagnosis / Mitigation-like
sections into steps, and adds a ``check_status`` step for each telemetry finding.
A model-backed planner (``sitemesh.models.ModelPlanner``) plugs in through
:class:`PlanningBackend`; one that asks tools (function calling) implements
:class:`ToolPlanningBackend` and gets the step's ``ctx.tools``.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, ClassVar, Final, Literal, Protocol, cast, runtime_checkable

from ..schemas import (
    Diagnosis,
    Finding,
    Passage,
    Plan,
    PlanStep,
    Resolution,
    RetrievalResult,
    SupportTicket,
    WorkItem,
)
from ._actions import classify_action
from ._base import Agent, AgentContext, AgentOutput, AgentResources
from ._kb import KnowledgeBase, default_kb
from ._markdown import clean_text, cut_text, describe_instruction, instructions
from ._retriever import ACTION_SECTIONS

if TYPE_CHECKING:
    from ..tools import ToolCalls

log = logging.getLogger("sitemesh.agent.planner")

MAX_STEPS: Final = 8
"""Default cap on runbook-derived steps per plan (findings come on top, see
:data:`MAX_FINDING_STEPS`)."""

MAX_FINDING_STEPS: Final = 4
"""At most this many telemetry findings become steps (most severe first)."""

MAX_STEP_CHARS: Final = 280
"""A step description is cut to this many characters."""

TICKET_MESSAGE: Final = (
    "Thank you for contacting us. We have opened a case for your request; a member "
    "of our team will review it and get back to you."
)
"""Customer reply for a ticket with a runbook plan: a fixed template, so no ticket
text, name or handle can leak into it. It promises only what happens next."""

CUSTOMER: Final = "<CUSTOMER>"
"""Placeholder for the ticket's customer in a drafted reply; the escalation agent
fills it in on the site (the ``@handle`` on Twitter, else the name given)."""

MAX_REPLY_CHARS: Final = 600
"""A drafted customer reply is cut to this many characters (the URL is kept)."""

KNOWLEDGE_KINDS: Final = frozenset({"case", "faq", "article"})
"""Passage kinds a customer reply may be drafted from."""

_LEADING_ADDRESS = re.compile(
    r"^(?:\s*(?:@\w+|@?<[A-Z][A-Z_]*(?:_\d+)?>|hi\b|hey\b|hello\b)[,:!]?)+\s*", re.I
)
_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*(?:_\d+)?>")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=\S)")
_URL_IN_TEXT = re.compile(r"https?://\S+")
_PROMISE = re.compile(
    r"\b(?:we|i)(?:'ve|'re| have| had| are| will| 'll|'ll)?\s+(?:just\s+|already\s+)?"
    r"(?:fixed|resolved|refunded|reset|sent|escalated|passed|forwarded|credited|updated"
    r"|unlocked|restored|reactivated|reinstated|processed|cancel+ed|replaced|followed up"
    r"|reached out|dm(?:'d|ed)?|messaged|emailed|e-mailed|looking into|checking|investigating"
    r"|working on)\b",
    re.IGNORECASE,
)
"""Sentences of a past reply that state work the agent did for *that* customer (or
is doing), which would be untrue for this one: dropped from the draft."""
_DM_ASK = re.compile(r"\b(?:dm|direct message|private message)\b", re.IGNORECASE)


def draft_reply(passage: Passage, *, addressed: bool) -> str:
    """A customer reply drafted from a knowledge-base answer, citing its URL.

    The passage's ``answer`` is a past agent reply (pseudonymised at ingest) or an FAQ
    answer. Kept: its sentences without placeholders (those name the *earlier*
    customer), without statements of work done or under way (:data:`_PROMISE`) and
    without requests to move to private messages; then the article URL when the kept
    text does not already carry it. Nothing from the current ticket is used, so the
    reply holds no ticket text; :data:`CUSTOMER` opens it when ``addressed``.

    Args:
        passage: the knowledge-base passage (``answer`` and ``url`` read).
        addressed: open with ``Hi <CUSTOMER>,`` (the ticket names a customer).

    Returns:
        The reply, at most :data:`MAX_REPLY_CHARS` characters before the URL; empty
        when the passage has neither a usable answer nor a URL.
    """
    text = _LEADING_ADDRESS.sub("", " ".join(passage.answer.split()))
    kept: list[str] = []
    for sentence in _SENTENCE.split(text):
        if _PLACEHOLDER.search(sentence) or _PROMISE.search(sentence):
            continue
        if _DM_ASK.search(sentence):
            continue
        kept.append(sentence.strip())
    body = " ".join(s for s in kept if s)
    if passage.url and passage.url not in body:
        body = _URL_IN_TEXT.sub("", body).strip()
    body = cut_text(body, MAX_REPLY_CHARS) if body else ""
    if passage.url and passage.url not in body:
        lead = "" if body else "This article covers your question: "
        body = f"{body} You can find the steps here: {passage.url}" if body else lead + passage.url
    if not body:
        return ""
    opening = f"Hi {CUSTOMER}, " if addressed else "Hello, "
    return opening + body[0].upper() + body[1:] if body[:1].islower() else opening + body

FALLBACK_MESSAGE: Final = (
    "Thank you for contacting us. We have passed your request to a specialist, who "
    "will get back to you as soon as possible."
)
"""Customer reply when no runbook applies.

Alerts have no customer, so their plans carry an empty ``customer_message``
(runbook names such as "NodeNetworkInterfaceDown" are even flagged as LOCATION by
Presidio, so they are kept out of customer-facing text)."""

_SEVERITY_RANK: Final = {"critical": 0, "major": 1, "minor": 2, "info": 3}


def diagnosis_ref(n: int) -> str:
    """Grounding id of the ``n``-th (1-based) finding of the work item's diagnosis."""
    return f"diagnosis#{n}"


class PlanningBackend(Protocol):
    """Something that turns a work item into a plan.

    Implementations must be deterministic for the same item (the runtime may
    redeliver it) and must only use actions from
    :data:`sitemesh.agents._actions.ALLOWED_ACTIONS`; the validator checks both the
    actions and that every step is grounded.
    """

    async def plan(self, item: WorkItem) -> Plan:
        """Plan for ``item`` (task, retrieval and diagnosis so far)."""
        ...


@runtime_checkable
class ToolPlanningBackend(PlanningBackend, Protocol):
    """A planning backend that may call the site's tools while it plans.

    :class:`PlannerAgent` calls :meth:`plan_with_tools` with the step's ``ctx.tools``
    (``None`` on a site without tools) instead of :meth:`~PlanningBackend.plan`. The
    calls must be made in a deterministic order (their idempotency keys count them).
    """

    async def plan_with_tools(self, item: WorkItem, tools: ToolCalls | None) -> Plan:
        """Plan for ``item``, calling ``tools`` where it helps."""
        ...


# --- runbook text -> instructions ---------------------------------------------------

def _finding_step(n: int, ref: int, finding: Finding) -> PlanStep:
    where = finding.device + (f" {finding.interface}" if finding.interface else "")
    kind = finding.kind.replace("_", " ")
    return PlanStep(
        n=n,
        action="check_status",
        description=cut_text(
            f"Confirm {kind} on {where} ({finding.severity}): {clean_text(finding.evidence)}",
            MAX_STEP_CHARS,
        ),
        grounding=[diagnosis_ref(ref)],
    )


Phase = Literal["diagnosis", "mitigation"]

_DIAGNOSIS_HEADINGS: Final = ("diagnos", "troubleshoot")


def _is_action_path(path: Sequence[str]) -> bool:
    return any(h.lower().startswith(ACTION_SECTIONS) for h in path[1:])


def _phase(path: Sequence[str]) -> Phase:
    """``diagnosis`` under a Diagnosis/Troubleshooting heading, else ``mitigation``."""
    for heading in reversed(path[1:]):
        lowered = heading.lower()
        if lowered.startswith(_DIAGNOSIS_HEADINGS):
            return "diagnosis"
        if lowered.startswith(ACTION_SECTIONS):
            return "mitigation"
    return "mitigation"


# --- the default backend -----------------------------------------------------------


class RunbookPlanner:
    """Deterministic planning from the best retrieved runbook (no model).

    Steps, in order:

    1. one ``check_status`` step per telemetry finding in the diagnosis, most
       severe first (at most :data:`MAX_FINDING_STEPS`), grounded ``diagnosis#<n>``
       with ``n`` the 1-based position of the finding in the diagnosis;
    2. the instructions of the best runbook's action sections (headings starting
       with one of :data:`~sitemesh.agents._retriever.ACTION_SECTIONS`) among the
       retrieved passages, in document order, each classified into an allowed
       action by :func:`~sitemesh.agents._actions.classify_action` and grounded in
       its passage. The best runbook is the one of the top-ranked passage.

    Without usable runbook sections the plan is ``source="fallback"``: the finding
    steps (if any) and ``gather_details`` + ``escalate`` steps, grounded in the
    diagnosis when there is one and nowhere otherwise (the validator flags that).

    Args:
        kb: knowledge base to read full section texts from (passages on the wire
            are trimmed); ``None`` uses the packaged one. Passages the KB does not
            know are planned from their wire text.
        max_steps: cap on runbook-derived steps.
    """

    def __init__(self, kb: KnowledgeBase | None = None, *, max_steps: int = MAX_STEPS) -> None:
        self._kb = kb
        self.max_steps = max_steps

    @property
    def kb(self) -> KnowledgeBase:
        """The knowledge base in use (loads the packaged one on first access)."""
        if self._kb is None:
            self._kb = default_kb()
        return self._kb

    async def plan(self, item: WorkItem) -> Plan:
        """Build the plan for ``item`` (see the class docstring)."""
        return self.build(item)

    def build(self, item: WorkItem) -> Plan:
        """Synchronous core of :meth:`plan`.

        Args:
            item: the work item; reads ``task``, ``retrieval`` and ``diagnosis``.

        Returns:
            The plan.
        """
        task_id = item.envelope.task_id
        diagnosis, retrieval = item.output(Diagnosis), item.output(RetrievalResult)
        ticket = isinstance(item.task, SupportTicket)
        if ticket and retrieval is not None and retrieval.passages:
            best = retrieval.passages[0]
            if best.doc_kind in KNOWLEDGE_KINDS:
                plan = self._knowledge_plan(item, retrieval, best)
                if plan is not None:
                    return plan
        finding_steps = list(self._finding_steps(diagnosis))
        doc_id, runbook_steps = self._runbook_steps(retrieval, len(finding_steps))
        if runbook_steps:
            steps = finding_steps + runbook_steps
            sections = sorted({s.grounding[0].split("#", 1)[1] for s in runbook_steps})
            conf = retrieval.confidence if retrieval else 0.0
            return Plan(
                task_id=task_id,
                steps=steps,
                source="runbook",
                runbook=doc_id,
                customer_message=TICKET_MESSAGE if ticket else "",
                rationale=(
                    f"{len(finding_steps)} telemetry finding(s); {len(runbook_steps)} step(s) "
                    f"from runbook {doc_id} sections {', '.join(sections)}; "
                    f"retrieval confidence {conf:.2f}."
                ),
            )
        return self._fallback(task_id, finding_steps, diagnosis, ticket)

    @staticmethod
    def _knowledge_plan(item: WorkItem, retrieval: RetrievalResult, best: Passage) -> Plan | None:
        """A reply drafted from the best knowledge-base passage (see :func:`draft_reply`);
        ``None`` when nothing usable can be drafted from it."""
        task = item.task
        addressed = isinstance(task, SupportTicket) and bool((task.customer or "").strip())
        message = draft_reply(best, addressed=addressed)
        if not message:
            return None
        what = {"case": "past case", "faq": "FAQ answer", "article": "article"}[best.doc_kind]
        steps = [
            PlanStep(
                n=1,
                action="contact_customer",
                description=cut_text(
                    f"Reply with the {what} {best.doc_id} of knowledge base {best.kb}"
                    + (" and its article link." if best.url else "."),
                    MAX_STEP_CHARS,
                ),
                grounding=[best.passage_id],
            )
        ]
        return Plan(
            task_id=item.envelope.task_id,
            steps=steps,
            source="knowledge",
            runbook=None,
            customer_message=message,
            rationale=(
                f"reply drafted from {what} {best.doc_id} ({best.kb}); "
                f"retrieval confidence {retrieval.confidence:.2f}."
            ),
            resolution=Resolution(
                kb=best.kb,
                doc_id=best.doc_id,
                url=best.url,
                confidence=retrieval.confidence,
                doc_kind=best.doc_kind,
                intent=best.intent,
            ),
        )

    def _finding_steps(self, diagnosis: Diagnosis | None) -> Iterator[PlanStep]:
        if diagnosis is None:
            return
        ranked = sorted(
            enumerate(diagnosis.findings, start=1),
            key=lambda pair: (_SEVERITY_RANK.get(pair[1].severity, 9), pair[0]),
        )
        for n, (ref, finding) in enumerate(ranked[:MAX_FINDING_STEPS], start=1):
            yield _finding_step(n, ref, finding)

    def _runbook_steps(
        self, retrieval: RetrievalResult | None, offset: int
    ) -> tuple[str | None, list[PlanStep]]:
        if retrieval is None or not retrieval.passages:
            return None, []
        best = retrieval.passages[0]
        kb = self.kb
        candidates: list[tuple[int, Passage, str, Phase]] = []
        for rank, passage in enumerate(retrieval.passages):
            if passage.doc_id != best.doc_id:
                continue
            section = kb.get(passage.passage_id)
            if section is not None:
                if _is_action_path(section.path):
                    phase = _phase(section.path)
                    candidates.append((section.order, passage, section.text, phase))
            elif passage.section.lower().startswith(ACTION_SECTIONS):
                phase = _phase(("", passage.section))
                candidates.append((1000 + rank, passage, passage.text, phase))
        candidates.sort(key=lambda c: c[0])
        per_section = [instructions(text) for _, _, text, _ in candidates]
        steps: list[PlanStep] = []
        seen: set[str] = set()
        budget = self.max_steps
        for i, ((_, passage, _, phase), found) in enumerate(
            zip(candidates, per_section, strict=True)
        ):
            share = math.ceil(budget / (len(candidates) - i)) if budget > 0 else 0
            taken = 0
            for ins in found:
                if taken >= share:
                    break
                description = describe_instruction(ins, MAX_STEP_CHARS)
                if description in seen:
                    continue
                seen.add(description)
                steps.append(
                    PlanStep(
                        n=offset + len(steps) + 1,
                        action=classify_action(ins.text, phase=phase),
                        description=description,
                        grounding=[passage.passage_id],
                    )
                )
                taken += 1
            budget -= taken
        return best.doc_id, steps

    @staticmethod
    def _fallback(
        task_id: str, finding_steps: list[PlanStep], diagnosis: Diagnosis | None, ticket: bool
    ) -> Plan:
        refs = (
            [diagnosis_ref(i) for i in range(1, len(diagnosis.findings) + 1)] if diagnosis else []
        )
        n = len(finding_steps)
        generic = [
            PlanStep(
                n=n + 1,
                action="gather_details",
                description="Collect the affected service or device, the time window and "
                "the exact error messages.",
                grounding=refs[:1],
            ),
            PlanStep(
                n=n + 2,
                action="escalate",
                description="Hand the case to the on-call engineer: no runbook matched.",
                grounding=refs[:1],
            ),
        ]
        return Plan(
            task_id=task_id,
            steps=finding_steps + generic,
            source="fallback",
            runbook=None,
            customer_message=FALLBACK_MESSAGE if ticket else "",
            rationale="No runbook section was retrieved for this task.",
        )


_WITH_TOOLS: dict[type, bool] = {}
"""Whether a planning backend class is a :class:`ToolPlanningBackend`, by class."""


class PlannerAgent(Agent):
    """Role ``planner``: delegates to a :class:`PlanningBackend`.

    Args:
        backend: the planning backend; ``None`` uses :class:`RunbookPlanner` over
            ``kb``.
        kb: knowledge base for the default backend (``None``: the packaged one).
    """

    role: ClassVar[str] = "planner"
    output: ClassVar[type[Plan]] = Plan
    description: ClassVar[str] = "a typed plan: the site model's, else the matched runbook's"

    def __init__(
        self, backend: PlanningBackend | None = None, *, kb: KnowledgeBase | None = None
    ) -> None:
        self._explicit = backend is not None
        self.backend: PlanningBackend = backend if backend is not None else RunbookPlanner(kb)

    async def setup(self, resources: AgentResources) -> None:
        """Use the site's model when one is configured (else the runbook planner),
        offering it the tools of ``settings.models.planner_tools``, and load the
        knowledge base now."""
        default_kb()
        if not self._explicit and resources.models is not None:
            from ..models import PLANNER_TOOL_SERVERS, ModelPlanner

            settings = resources.settings
            servers = settings.models.planner_tools if settings else PLANNER_TOOL_SERVERS
            self.backend = ModelPlanner(resources.models, tool_servers=servers)
            await self._warm_tools(resources, servers)

    @staticmethod
    async def _warm_tools(resources: AgentResources, servers: Sequence[str]) -> None:
        """Start the tool servers the model will be offered before the first message:
        a cold start of the bundled stdio servers took 18 s on a loaded 2-core machine,
        stalling the first plan. One that cannot start is logged; plans then note it
        as unavailable."""
        registry = resources.tools
        if registry is None:
            return
        for server in servers:
            spec = registry.specs.get(server)
            if spec is None or not spec.enabled:
                continue
            try:
                await registry.warm(server)
            except Exception as exc:  # a warm-up only: the first call starts it again
                log.warning("planner tool server %s not started: %s: %s",
                            server, type(exc).__name__, exc)  # fmt: skip

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Plan:
        """Plan for ``item``.

        Args:
            item: the work item with the retrieval and (for alerts) the diagnosis.
            ctx: the agent context: its ``tools`` go to a :class:`ToolPlanningBackend`.

        Returns:
            The plan from the backend.
        """
        backend = self.backend
        with_tools = _WITH_TOOLS.get(type(backend))
        if with_tools is None:  # a Protocol isinstance check is slow: once per class
            with_tools = _WITH_TOOLS[type(backend)] = isinstance(backend, ToolPlanningBackend)
        if with_tools:
            return await cast(ToolPlanningBackend, backend).plan_with_tools(item, ctx.tools)
        return await backend.plan(item)

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line: step count, source, runbook and action counts.

        Args:
            output: a :class:`Plan`.

        Returns:
            E.g. ``"4 steps from runbook etcdMembersDown: check_status 3, restart_component 1"``.
        """
        if not isinstance(output, Plan):
            return type(output).__name__
        counts = Counter(step.action for step in output.steps)
        actions = ", ".join(
            f"{a} {c}" for a, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))
        )
        if output.source == "runbook" and output.runbook:
            origin = f"runbook {output.runbook.rsplit('/', 1)[-1]}"
        elif output.resolution is not None:
            origin = f"{output.resolution.doc_kind} {output.resolution.doc_id}"
        else:
            origin = output.source
        return f"{len(output.steps)} steps from {origin}: {actions or 'none'}"
