"""Model-backed backends for the agents' seams, each with its deterministic fallback.

* :class:`ModelPlanner` implements :class:`sitemesh.agents.PlanningBackend`: the
  site's model drafts the plan's *steps* as JSON constrained by a per-item schema
  (:func:`plan_schema`: allowed actions and the item's source ids as enums); the
  draft is checked like the validator checks plans, invalid output is repaired once,
  and otherwise the :class:`~sitemesh.agents.RunbookPlanner` plans and the plan's
  ``rationale`` says why. Customer text always comes from the deterministic plan.
* :class:`ModelSynthesiser` is the model-backed cloud synthesiser; it falls back to
  :class:`~sitemesh.cloud_node.ComposingSynthesiser` and labels the proposal.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from ..agents import (
    ACTION_DESCRIPTIONS,
    ALLOWED_ACTIONS,
    FALLBACK_MESSAGE,
    RunbookPlanner,
    crm_handle,
    diagnosis_ref,
)
from ..cloud_node import COMPOSED_LABEL, ComposingSynthesiser, describe_incident
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
    Task,
    TelemetryAlert,
    ToolUse,
    WorkItem,
)
from ._client import ModelClient
from ._tool_use import (
    MAX_TOOL_CALLS,
    PLANNER_TOOL_SERVERS,
    OfferedTool,
    ToolRound,
    offer_tools,
    run_tool_calls,
)
from ._types import CallContext, ChatMessage, ModelRequest, OutputSchema

if TYPE_CHECKING:
    from ..tools import ToolCalls

MAX_PLAN_STEPS: Final = 12
"""A model plan may have at most this many steps."""

MAX_MODEL_STEPS: Final = 6
"""Steps :class:`ModelPlanner` asks for at most by default (schema ``maxItems``): the
runbook planner's plans have 3-8; fewer bound the output of a small model, which
otherwise tends to repeat itself until ``max_tokens``."""

MAX_STEP_CHARS: Final = 200
"""Longest step description the schema lets a model write, in characters."""

MIN_STEP_WORDS: Final = 3
"""Fewest words a model step's description needs (``"Task: check_status"`` has two)."""

MAX_STEP_GROUNDING: Final = 3
"""Most source ids one model step may cite."""

MAX_SOURCES: Final = 4
"""Retrieved passages shown to the model (the retriever's best first)."""

MAX_SOURCE_CHARS: Final = 600
"""Characters of each passage's text shown to the model."""

MAX_TASK_CHARS: Final = 2000
"""Characters of the task text shown to the model."""

TOOL_TURN_MAX_TOKENS: Final = 256
"""Output cap of the turn in which the model may request tools (calls are short)."""

MODEL_FALLBACK_NOTE: Final = "Model planning unavailable ({reason}); deterministic runbook plan."
"""Prefix of a fallback plan's ``rationale``: the model was asked and its plan was
rejected (``invalid output after repair: <code>: ...``, codes as the validator's:
``empty_plan``, ``too_many_steps``, ``action_not_allowed``, ``ungrounded_step``,
``unknown_grounding``, ``unknown_runbook``, ``duplicate_step``, ``vague_step``,
``unsupported_step``, ``bad_json``, ``schema_invalid``), or no model answered
(``every model failed (...)``, timeouts included), or a strict replay had no recording."""

MODEL_SKIPPED_NOTE: Final = "Model not asked ({reason}); deterministic plan."
"""Prefix of the ``rationale`` when the model is not asked at all: the plan is a
knowledge-base reply, or the item has nothing a step could be grounded in."""

SYNTHESIS_FALLBACK_LABEL: Final = (
    "Composed from the anonymised findings and plan (model synthesis unavailable: {reason})."
)
"""First proposal line when :class:`ModelSynthesiser` fell back to composing."""

_PLACEHOLDER = re.compile(r"<[A-Z][A-Z_]*_\d+>")
_CODE = re.compile(r"^([a-z_]+): ")


class PlanDraft(msgspec.Struct, frozen=True, kw_only=True):
    """What the model writes; the planner adds the task id, source, customer text and
    rationale (the model is not asked for a ``rationale`` any more; one it sends is
    ignored)."""

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


def _step_schema(refs: Collection[str] | None, max_steps: int) -> dict[str, Any]:
    grounding: dict[str, Any] = {"type": "array", "items": {"type": "string"},
                                 "maxItems": MAX_STEP_GROUNDING}
    if refs is not None:
        grounding = {"type": "array", "items": {"enum": sorted(refs)}, "minItems": 1,
                     "maxItems": min(MAX_STEP_GROUNDING, len(refs))}
    return {
        "type": "object",
        "properties": {
            "n": {"type": "integer", "minimum": 1, "maximum": max_steps},
            "action": {"enum": sorted(ALLOWED_ACTIONS)},
            "description": {"type": "string", "minLength": 1, "maxLength": MAX_STEP_CHARS},
            "grounding": grounding,
        },
        "required": ["n", "action", "description", "grounding"],
        "additionalProperties": False,
    }


def plan_schema(refs: Collection[str], *, max_steps: int = MAX_PLAN_STEPS) -> dict[str, Any]:
    """The JSON Schema a model's plan draft must match, for one work item.

    Sent as ``response_format={"type": "json_schema", ...}``: vLLM enforces it with
    guided decoding, llama.cpp's server with a grammar, so even a small model can only
    write allowed actions and the item's own source ids. Uses only keywords both
    support (``enum``, ``minItems``/``maxItems``, ``minLength``/``maxLength``,
    ``minimum``/``maximum``); no ``$ref``. The runbook is not asked for: the planner
    takes the one the steps cite most.

    Args:
        refs: the source ids a step may cite (:class:`PlanSources` short ids, or
            grounding ids); must not be empty.
        max_steps: most steps.

    Returns:
        ``{"type": "object", "properties": {"steps": ...}, ...}``: 1..``max_steps``
        steps of ``n``, ``action`` (one of :data:`~sitemesh.agents.ALLOWED_ACTIONS`),
        ``description`` (1..:data:`MAX_STEP_CHARS` characters) and ``grounding``
        (1..:data:`MAX_STEP_GROUNDING` of ``refs``).

    Raises:
        ValueError: ``refs`` is empty (no step could be grounded).
    """
    if not refs:
        raise ValueError("a plan schema needs at least one source id to ground steps in")
    return {
        "type": "object",
        "properties": {
            "steps": {"type": "array", "items": _step_schema(refs, max_steps), "minItems": 1,
                      "maxItems": max_steps},
        },
        "required": ["steps"],
        "additionalProperties": False,
    }


def synthesis_schema(*, max_steps: int = MAX_PLAN_STEPS) -> dict[str, Any]:
    """The JSON Schema of a :class:`SynthesisDraft` (actions as an enum, lengths bounded).

    Returns:
        An object schema: ``proposal`` (≤ 4,000 characters), ``customer_message``
        (≤ 1,500), ``steps`` (≤ ``max_steps``, grounding free: the hub has no sources).
    """
    return {
        "type": "object",
        "properties": {
            "proposal": {"type": "string", "minLength": 1, "maxLength": 4000},
            "customer_message": {"type": "string", "maxLength": 1500},
            "steps": {"type": "array", "items": _step_schema(None, max_steps),
                      "maxItems": max_steps},
        },
        "required": ["proposal", "customer_message", "steps"],
        "additionalProperties": False,
    }


def _check_steps(steps: list[PlanStep], known_refs: set[str] | None) -> None:
    """Raise ``ValueError("<code>: <what> - at `<json path>`")`` for the first problem.

    Codes are the validator's where it has one (``action_not_allowed``,
    ``ungrounded_step``, ``unknown_grounding``); ``too_many_steps`` and
    ``duplicate_step`` (a description seen before: a looping model) are the planner's
    own. ``known_refs=None`` (cloud side) skips the grounding checks.
    """
    if len(steps) > MAX_PLAN_STEPS:
        raise ValueError(f"too_many_steps: at most {MAX_PLAN_STEPS} steps allowed, got "
                         f"{len(steps)} - at `$.steps`")
    seen: set[str] = set()
    for i, step in enumerate(steps):
        if step.action not in ALLOWED_ACTIONS:
            raise ValueError(
                f"action_not_allowed: action {step.action!r} is not allowed (one of "
                f"{', '.join(sorted(ALLOWED_ACTIONS))}) - at `$.steps[{i}].action`"
            )
        key = " ".join(step.description.lower().rstrip(".").split())
        if key in seen:
            raise ValueError(f"duplicate_step: step {i + 1} repeats an earlier step - at "
                             f"`$.steps[{i}]`")
        seen.add(key)
        if known_refs is None:
            continue
        if not step.grounding:
            raise ValueError(f"ungrounded_step: step {i + 1} cites no source id - at "
                             f"`$.steps[{i}].grounding`")
        unknown = [g for g in step.grounding if g not in known_refs]
        if unknown:
            raise ValueError(
                f"unknown_grounding: grounding {unknown[0]!r} is not a given source id - at "
                f"`$.steps[{i}].grounding`"
            )


def rejection_code(validation_error: str) -> str:
    """The code of a rejected draft's validation message.

    Args:
        validation_error: the last message of :class:`~sitemesh.errors.InvalidModelOutput`.

    Returns:
        The ``<code>`` of ``"<code>: ..."`` messages (:func:`_check_steps`), ``bad_json``
        for text that is not JSON, else ``schema_invalid`` (JSON of the wrong shape).
    """
    found = _CODE.match(validation_error)
    if found:
        return found.group(1)
    if validation_error.startswith("JSON is malformed") or "truncated" in validation_error:
        return "bad_json"
    return "schema_invalid"


@dataclass(frozen=True, slots=True)
class PlanSources:
    """What the model is shown of one work item, and how its answer maps back.

    Attributes:
        aliases: short source id shown to the model -> grounding id (``"S1"`` -> a
            ``passage_id``, ``"F1"`` -> ``diagnosis#1``). Short ids keep the prompt and
            the schema's enum small (a passage id is ~20 tokens).
        docs: grounding id -> ``doc_id`` of the runbook passages.
        texts: grounding id -> the text block shown, ``[S1] title / section`` then
            the (cut) passage text, or ``[F1]`` and the finding.
    """

    aliases: dict[str, str]
    docs: dict[str, str]
    texts: dict[str, str]

    @property
    def refs(self) -> set[str]:
        """The grounding ids a step may cite."""
        return set(self.aliases.values())

    def resolve(self, grounding: list[str]) -> list[str]:
        """``grounding`` with short ids replaced by grounding ids (others kept), once each."""
        return list(dict.fromkeys(self.aliases.get(g, g) for g in grounding))

    def with_tools(self, round_: ToolRound) -> PlanSources:
        """These sources plus the ``ok`` tool results of ``round_`` (``T1..`` ->
        ``tool#1..``)."""
        return PlanSources(aliases={**self.aliases, **round_.aliases}, docs=self.docs,
                           texts={**self.texts, **round_.texts})


class ModelPlanner:
    """A :class:`~sitemesh.agents.PlanningBackend` that asks the site's model for steps.

    Every plan starts from the deterministic one (``fallback.build(item)``), which the
    model can only improve on in its steps:

    * a knowledge-base reply (plan source ``knowledge``) is kept as it is, and so is
      an item with no retrieved passage or finding: the model is not asked
      (:data:`MODEL_SKIPPED_NOTE`);
    * otherwise the model writes JSON constrained by :func:`plan_schema` (allowed
      actions and the item's short source ids as enums); the draft is checked
      (empty plan, too many steps, actions off the allow-list, steps without or with
      unknown source ids, an unknown runbook, repeated steps, descriptions that say
      nothing specific or share no word with their sources), and invalid output is
      sent back once with the error;
    * with ``ctx.tools`` (:meth:`plan_with_tools`) the model is first offered the
      site's read-only tools of ``tool_servers`` (function calling): the calls it
      requests are checked against the offer and each tool's input schema, run
      through the registry (scanned, pseudonymised, recorded) and answered; the
      ``ok`` results become sources ``T1..`` a step may cite (grounding
      ``tool#<k>``), and every request is listed in the plan's ``tools``
      (:mod:`sitemesh.models._tool_use`);
    * a draft that passes becomes the plan: ``source="model"``, the model's steps
      renumbered 1..n with source ids mapped back to grounding ids, the runbook the
      steps cite most, and the deterministic plan's ``customer_message``. The model
      never writes customer text: what it writes from a ticket counts as ticket text;
    * still invalid, no model answering (errors, timeouts), or a strict replay
      without a recording: the deterministic plan, its ``rationale`` starting with
      :data:`MODEL_FALLBACK_NOTE` naming the reason.

    The work item on a site carries the raw (non-anonymised) task text, so the call
    is always routed as ``pin_edge``: only site models see it, whatever the task's
    policy action (cloud planning goes through the anonymised escalation path).
    Determinism on redelivery comes from temperature 0 and replay of recorded calls.

    Args:
        client: the model client.
        fallback: deterministic planner that every plan starts from (default:
            :class:`~sitemesh.agents.RunbookPlanner` over the packaged KB).
        max_steps: most steps a model plan may have (schema and check), at most
            :data:`MAX_PLAN_STEPS`.
        tool_servers: the tool servers whose read-only tools the model is offered
            (those the site configures; ``()``: none).
        max_tool_calls: most tool calls run per plan.
    """

    def __init__(
        self,
        client: ModelClient,
        *,
        fallback: RunbookPlanner | None = None,
        max_steps: int = MAX_MODEL_STEPS,
        tool_servers: Sequence[str] = PLANNER_TOOL_SERVERS,
        max_tool_calls: int = MAX_TOOL_CALLS,
    ) -> None:
        self.client = client
        self.fallback = fallback or RunbookPlanner()
        self.max_steps = max(1, min(max_steps, MAX_PLAN_STEPS))
        self.tool_servers = tuple(tool_servers)
        self.max_tool_calls = max_tool_calls

    def sources(self, item: WorkItem) -> PlanSources:
        """The sources shown to the model: the best :data:`MAX_SOURCES` passages (text
        cut to :data:`MAX_SOURCE_CHARS` characters) as ``S1..``, the diagnosis's
        findings as ``F1..``."""
        aliases: dict[str, str] = {}
        docs: dict[str, str] = {}
        texts: dict[str, str] = {}
        retrieval, diagnosis = item.output(RetrievalResult), item.output(Diagnosis)
        for n, p in enumerate(retrieval.passages[:MAX_SOURCES] if retrieval else [], start=1):
            aliases[f"S{n}"] = p.passage_id
            if p.doc_kind == "runbook":
                docs[p.passage_id] = p.doc_id
            text = " ".join(p.text.split())[:MAX_SOURCE_CHARS]
            texts[p.passage_id] = f"[S{n}] {p.title} / {p.section}\n{text}"
        for n, f in enumerate(diagnosis.findings if diagnosis else [], start=1):
            aliases[f"F{n}"] = diagnosis_ref(n)
            where = f"{f.device} {f.interface or ''}".strip()
            texts[diagnosis_ref(n)] = f"[F{n}] {f.kind} on {where} ({f.severity}): {f.evidence}"
        return PlanSources(aliases=aliases, docs=docs, texts=texts)

    def _system(self) -> str:
        return (
            "You plan how to handle an operations task, using only the sources given. "
            f"Write 1 to {self.max_steps} steps, each different. A step has one action "
            "from the list below, a short description of what to do in the words of "
            "the source it comes from (name the device, component or setting), and the "
            'ids of the sources it comes from. Reply with JSON only: {"steps": [{"n": 1, '
            '"action": "check_status", "description": "...", "grounding": ["S1"]}]}.\n'
            f"Actions:\n{_actions_text()}"
        )

    def _user(self, item: WorkItem, src: PlanSources, offered: Sequence[OfferedTool]) -> str:
        task = _task_prompt(item.task)[:MAX_TASK_CHARS]
        user = f"Task ({item.envelope.kind}):\n{task}\n\nSources:\n" + (
            "\n\n".join(src.texts.values()) or "(none)"
        )
        handle = crm_handle(item) if offered else None
        if handle is not None:
            user += f"\n\nCustomer id (for tool arguments only): {handle}"
        return user

    def tool_request(
        self, item: WorkItem, src: PlanSources, offered: Sequence[OfferedTool]
    ) -> ModelRequest:
        """The turn in which the model may request tools (no output schema; at most
        :data:`TOOL_TURN_MAX_TOKENS` tokens).

        Args:
            item: the work item.
            src: its sources (:meth:`sources`).
            offered: the tools offered (:func:`~sitemesh.models._tool_use.offer_tools`).

        Returns:
            The request: the planning prompt, then an instruction to call the tools
            that would add what the sources lack, or none.
        """
        system = (
            self._system()
            + "\n\nFirst, if the sources lack something the plan needs (the customer's "
            f"past tickets, telemetry, other knowledge), call up to {self.max_tool_calls} "
            "of the tools offered; call none if the sources suffice. Their results "
            "become sources T1, T2, ..."
        )
        return ModelRequest(
            messages=[ChatMessage(role="system", content=system),
                      ChatMessage(role="user", content=self._user(item, src, offered))],
            tools=[o.spec for o in offered],
            max_tokens=TOOL_TURN_MAX_TOKENS,
        )

    def request(
        self,
        item: WorkItem,
        *,
        src: PlanSources | None = None,
        offered: Sequence[OfferedTool] = (),
        tool_round: ToolRound | None = None,
    ) -> tuple[ModelRequest, set[str]]:
        """The prompt for ``item`` and the grounding ids it may cite.

        The request asks for :func:`plan_schema` output over the short source ids
        when there is a source (:meth:`plan` calls no model otherwise); the task text
        is cut to :data:`MAX_TASK_CHARS` characters. After a tool turn the
        conversation carries the model's calls and their results (``tool``
        messages), the tools stay declared (Anthropic requires it) and
        ``tool_choice="none"`` asks for the plan now.

        Args:
            item: the work item (task, retrieval, diagnosis).
            src: its sources (default :meth:`sources`; with the tool results once
                there are some: :meth:`PlanSources.with_tools`).
            offered: the tools offered in the tool turn.
            tool_round: the tool turn's calls and results.

        Returns:
            ``(request, known_refs)``: ``known_refs`` are grounding ids.
        """
        src = src if src is not None else self.sources(item)
        output = (
            OutputSchema(name="PlanDraft",
                         schema=plan_schema(src.aliases, max_steps=self.max_steps))
            if src.aliases else None
        )
        messages = [ChatMessage(role="system", content=self._system()),
                    ChatMessage(role="user", content=self._user(item, src, offered))]
        if tool_round is None:
            return ModelRequest(messages=messages, output=output), src.refs
        req = ModelRequest(
            messages=[*messages, *tool_round.messages],
            tools=[o.spec for o in offered],
            tool_choice="none",
            output=output,
        )
        return req, src.refs

    async def plan(self, item: WorkItem) -> Plan:
        """Plan with the model, without tools; see :meth:`plan_with_tools`."""
        return await self.plan_with_tools(item, None)

    async def plan_with_tools(self, item: WorkItem, tools: ToolCalls | None) -> Plan:
        """Plan with the model (offering it ``tools``); fall back to the deterministic
        plan, saying so.

        Args:
            item: the work item.
            tools: the step's tool view (``ctx.tools``), or ``None``: no tool turn.

        Returns:
            A ``source="model"`` plan (rationale ending ``[model <ref>]``), or the
            deterministic plan whose ``rationale`` starts with
            :data:`MODEL_SKIPPED_NOTE` or :data:`MODEL_FALLBACK_NOTE`; either lists
            the tool calls the model requested in ``tools``.

        Raises:
            ToolResponseUnscanned: a tool response could not be scanned (fail closed).
            ToolReplayMiss: a strict replay has no record of a requested tool call.
        """
        base = self.fallback.build(item)
        if base.source == "knowledge":
            return _noted(base, MODEL_SKIPPED_NOTE.format(
                reason="the customer reply comes from the knowledge base"))
        src = self.sources(item)
        offered: list[OfferedTool] = []
        notes: list[str] = []
        if tools is not None and self.tool_servers and self.max_tool_calls > 0:
            offered, notes = await offer_tools(tools, self.tool_servers)
        if not src.aliases and not offered:
            return _noted(base, MODEL_SKIPPED_NOTE.format(
                reason="no retrieved passage or finding to ground a step in"))
        ctx = CallContext(
            kind="planning",
            complexity=estimate_complexity(item.task),
            action="pin_edge",
            data_class=item.envelope.data_class,
            tenant=item.envelope.tenant,
            agent="planner",
            task_id=item.envelope.task_id,
        )
        tool_round: ToolRound | None = None
        if offered and tools is not None:
            try:
                turn = await self.client.complete(self.tool_request(item, src, offered), ctx)
            except ModelError as exc:
                return _noted(base, MODEL_FALLBACK_NOTE.format(reason=str(exc)[:300]))
            if turn.tool_calls:
                tool_round = await run_tool_calls(turn, offered, tools,
                                                  max_calls=self.max_tool_calls)
                src = src.with_tools(tool_round)
        uses = tool_round.uses if tool_round is not None else []
        tools_note = _tools_note(uses, notes)
        if not src.aliases:
            return _used(_noted(base, MODEL_SKIPPED_NOTE.format(
                reason="no retrieved passage, finding or tool result to ground a step in"
            )), uses, tools_note)
        request, refs = self.request(item, src=src, offered=offered, tool_round=tool_round)

        def check(draft: PlanDraft) -> None:
            if not draft.steps:
                raise ValueError("empty_plan: a plan needs at least one step - at `$.steps`")
            if len(draft.steps) > self.max_steps:
                raise ValueError(f"too_many_steps: at most {self.max_steps} steps allowed, "
                                 f"got {len(draft.steps)} - at `$.steps`")
            resolved = [_resolved(s, src) for s in draft.steps]
            _check_steps(resolved, refs)
            _check_specific(resolved, src)
            if draft.runbook is not None and draft.runbook not in src.docs.values():
                raise ValueError(f"unknown_runbook: {draft.runbook!r} is not a retrieved "
                                 "runbook - at `$.runbook`")

        try:
            result = await self.client.structured(request, PlanDraft, ctx, check=check)
        except InvalidModelOutput as exc:
            error = exc.validation_error
            code = rejection_code(error)
            detail = error if error.startswith(f"{code}: ") else f"{code}: {error}"
            return _used(_noted(base, MODEL_FALLBACK_NOTE.format(
                reason=f"invalid output after repair: {detail}"[:300])), uses, tools_note)
        except ModelError as exc:
            return _used(_noted(base, MODEL_FALLBACK_NOTE.format(reason=str(exc)[:300])),
                         uses, tools_note)
        draft = result.value
        steps = [
            msgspec.structs.replace(_resolved(s, src), n=i)
            for i, s in enumerate(draft.steps, start=1)
        ]
        return Plan(
            task_id=item.envelope.task_id,
            steps=steps,
            source="model",
            runbook=draft.runbook or _most_cited(steps, src.docs),
            customer_message=base.customer_message,
            rationale=(
                f"{len(steps)} step(s) from the site model, checked against the action "
                f"allow-list and the {len(refs)} given source id(s); customer text from "
                f"the deterministic {base.source} plan{tools_note} "
                f"[model {result.response.ref}{', repaired' if result.repaired else ''}]"
            ),
            tools=uses,
        )


def _tools_note(uses: list[ToolUse], notes: list[str]) -> str:
    """``"; tools: 2 called (ticket_history.history ok, kb_search.search rejected)"``,
    or empty when the model requested none and no server was unavailable."""
    if not uses and not notes:
        return ""
    parts = [f"{u.tool} {u.outcome}" for u in uses] + notes
    called = sum(1 for u in uses if u.outcome != "rejected")
    return f"; tools: {called} called ({', '.join(parts)})"


def _used(plan: Plan, uses: list[ToolUse], note: str) -> Plan:
    """``plan`` listing the tool calls requested, ``note`` (:func:`_tools_note`) ending
    its rationale."""
    return msgspec.structs.replace(plan, tools=uses, rationale=plan.rationale + note)


def _task_prompt(task: Task) -> str:
    """What the model reads of the task: an alert's fields, a ticket's title and body.
    The ticket's ``customer`` (a name or handle) is left out: planning needs no one's
    identity, and a small model copies what it is shown."""
    match task:
        case SupportTicket(title=title, body=body):
            return "\n\n".join(p for p in (title, body) if p.strip())
        case TelemetryAlert():
            where = f"{task.device} {task.interface or ''}".strip()
            return f"{task.severity} alert on {where}, metric {task.metric}: {task.summary}"
    return task_text(task)


_DEFINITIONS: Final = frozenset(
    " ".join(d.lower().rstrip(".").split()) for d in ACTION_DESCRIPTIONS.values()
)


_WORD = re.compile(r"[a-z][a-z0-9]{3,}")
_COMMON: Final = frozenset({
    "that", "this", "with", "from", "have", "will", "which", "there", "their", "what",
    "when", "then", "than", "into", "only", "also", "been", "were", "your", "they", "them",
    "does", "done", "some", "such", "each", "other", "about", "after", "before", "task",
    "step", "steps",
})  # fmt: skip
"""Words of four letters or more that say nothing about a source (and our own)."""


def _content_words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower())) - _COMMON


def _check_specific(steps: list[PlanStep], src: PlanSources) -> None:
    """Raise ``ValueError`` for a step that says nothing to act on.

    ``vague_step``: fewer than :data:`MIN_STEP_WORDS` words, or only an action's
    definition from the prompt. ``unsupported_step``: no content word (4+ letters,
    common words aside) in common with the sources the step cites, so it does not
    come from them (``"The task is completed"``).
    """
    for i, step in enumerate(steps):
        words = re.findall(r"[A-Za-z0-9][\w./:-]*", step.description)
        text = " ".join(step.description.lower().rstrip(".").split())
        if len(words) < MIN_STEP_WORDS or text in _DEFINITIONS:
            raise ValueError(f"vague_step: step {i + 1} says nothing specific to do - at "
                             f"`$.steps[{i}].description`")
        cited = " ".join(src.texts.get(g, "") for g in step.grounding)
        if not _content_words(step.description) & _content_words(cited):
            raise ValueError(f"unsupported_step: step {i + 1} shares no word with the "
                             f"sources it cites - at `$.steps[{i}].description`")


def _resolved(step: PlanStep, src: PlanSources) -> PlanStep:
    return msgspec.structs.replace(step, grounding=src.resolve(step.grounding))


def _most_cited(steps: list[PlanStep], docs: dict[str, str]) -> str | None:
    """The runbook ``doc_id`` the steps cite most (the first cited wins a tie)."""
    cited = Counter(docs[g] for s in steps for g in s.grounding if g in docs)
    return cited.most_common(1)[0][0] if cited else None


def _noted(plan: Plan, note: str) -> Plan:
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
        """The prompt for ``incident``: its structured fields only, read as
        :func:`~sitemesh.cloud_node.describe_incident` reads them (no site prose
        crosses the boundary, so there is none to give)."""
        system = (
            "You are a network operations expert. From a structured, anonymised incident "
            "that a site escalated, write an upgrade/mitigation proposal for the operator "
            "and a short reply for the customer. Nothing has been fixed yet: the reply says "
            "what happens next and claims no work as done. Keep placeholders such as "
            "<PERSON_1> exactly as given and invent no others. Reply with JSON only: "
            '{"proposal": ..., "customer_message": ..., '
            '"steps": [{"n": 1, "action": ..., "description": ..., "grounding": []}]}. '
            f"Actions allowed:\n{_actions_text()}"
        )
        user = "\n".join(describe_incident(incident))
        return ModelRequest(messages=[ChatMessage(role="system", content=system),
                                      ChatMessage(role="user", content=user)],
                            output=OutputSchema(name="SynthesisDraft",
                                                schema=synthesis_schema()))

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
