"""Function calling for a site model: which tools it is offered, and running what it asks.

A model-backed agent offers the site's read-only tools to its model
(:func:`offer_tools`), the model answers with tool calls (OpenAI ``tool_calls``,
Anthropic ``tool_use``), and :func:`run_tool_calls` runs them through the agent's
``ctx.tools`` (:class:`sitemesh.tools.ToolCalls`), so every call gets the registry's
timeouts, breaker, idempotency key, response scan and recording. Each requested call
is checked before anything is sent:

* its name must be one of the functions offered (``unknown_tool``);
* its arguments must be a JSON object (``bad_arguments``) that matches the tool's
  input schema (``invalid_arguments``, naming the JSON path and what the schema
  expects, never the value: :func:`sitemesh.tools.validate_arguments`);
* placeholders in the arguments (``<PERSON_1>``, which the model saw instead of the
  values) are re-identified through the site vault just before the call, on the site;
* at most ``max_calls`` calls are run (``too_many_tool_calls`` for the rest).

Results are pseudonymised (``pseudonymise=True``) before the model sees them, and cut
to :data:`MAX_TOOL_RESULT_CHARS` characters. A call that fails answers the model with
the reason instead (every call id gets its ``tool`` message, as both APIs require).
A response that cannot be scanned (:class:`~sitemesh.tools.ToolResponseUnscanned`)
and a strict replay without a record (:class:`~sitemesh.tools.ToolReplayMiss`) are
not caught: the task is dead-lettered with the reason.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

from ..config import ModelsSettings
from ..schemas import ToolUse
from ._types import ChatMessage, ModelResponse, ToolSpec

if TYPE_CHECKING:
    from ..tools import ToolCalls, ToolInfo

log = logging.getLogger("sitemesh.models.tools")

PLANNER_TOOL_SERVERS: Final[tuple[str, ...]] = tuple(
    ModelsSettings.model_fields["planner_tools"].default
)
"""The bundled read-only servers a model-backed planner offers its model by default
(the ``models.planner_tools`` setting's default; ``docs/tools-bundled.md``); the
``crm`` is asked by the retriever, not the model."""

MAX_TOOL_CALLS: Final = 3
"""Most tool calls run for one model turn; further ones are rejected."""

MAX_TOOL_RESULT_CHARS: Final = 1500
"""A tool result is cut to this many characters before the model reads it."""

MAX_OFFERED_TOOLS: Final = 16
"""Most functions offered in one request (each costs prompt tokens)."""

_NOT_FUNCTION_CHAR: Final = re.compile(r"[^A-Za-z0-9_-]")
_PLACEHOLDER: Final = re.compile(r"<[A-Z][A-Z0-9_]*?_[1-9][0-9]*>")


def function_name(tool: str) -> str:
    """The function name a model sees for ``tool``: ``ticket_history.history`` ->
    ``ticket_history__history`` (OpenAI and Anthropic both allow only
    ``[A-Za-z0-9_-]{1,64}``)."""
    return _NOT_FUNCTION_CHAR.sub("_", tool.replace(".", "__"))[:64]


def _model_schema(info: ToolInfo) -> dict[str, Any]:
    """The input schema shown to the model: without the ``idempotency_key`` argument,
    which the registry fills in itself."""
    from ..tools import IDEMPOTENCY_ARGUMENT

    schema = dict(info.input_schema) or {"type": "object", "properties": {}}
    props = schema.get("properties")
    if isinstance(props, dict) and IDEMPOTENCY_ARGUMENT in props:
        schema["properties"] = {k: v for k, v in props.items() if k != IDEMPOTENCY_ARGUMENT}
        required = [r for r in schema.get("required") or () if r != IDEMPOTENCY_ARGUMENT]
        schema["required"] = required
        if not required:
            del schema["required"]
    return schema


@dataclass(frozen=True, slots=True)
class OfferedTool:
    """One tool offered to a model.

    Attributes:
        function: the name the model calls it by (:func:`function_name`).
        info: the tool as the registry lists it (its full input schema).
        spec: what the request carries (:class:`~sitemesh.models.ToolSpec`).
    """

    function: str
    info: ToolInfo
    spec: ToolSpec


async def offer_tools(
    tools: ToolCalls, servers: Sequence[str]
) -> tuple[list[OfferedTool], list[str]]:
    """The read-only tools of ``servers`` that the site has configured.

    Servers the site does not configure (or switched off) are skipped; a server that
    cannot be listed (or is not started: a strict replay) is skipped with a note;
    tools that declare side effects are never offered (a model's request must not
    change anything).

    Args:
        tools: the step's tool view (``ctx.tools``).
        servers: server names, in the order their tools are offered.

    Returns:
        ``(offered, notes)``: at most :data:`MAX_OFFERED_TOOLS` tools, and PII-free
        notes such as ``"kb_search unavailable: breaker open"``.
    """
    from ..tools import ToolReplayMiss, ToolUnavailable, UnknownTool

    offered: list[OfferedTool] = []
    notes: list[str] = []
    configured = tools.registry.specs
    for server in servers:
        spec = configured.get(server)
        if spec is None or not spec.enabled:
            continue
        try:
            infos = await tools.list(server)
        except ToolReplayMiss:
            notes.append(f"{server} not listed: strict replay")
            continue
        except (ToolUnavailable, UnknownTool) as exc:
            why = getattr(exc, "reason", "") or type(exc).__name__
            notes.append(f"{server} unavailable: {why}")
            continue
        for info in infos:
            if info.side_effects or len(offered) >= MAX_OFFERED_TOOLS:
                continue
            name = function_name(info.name)
            spec_ = ToolSpec(name=name, description=(info.description or info.name)[:500],
                             parameters=_model_schema(info))
            offered.append(OfferedTool(function=name, info=info, spec=spec_))
    return offered, notes


@dataclass(slots=True)
class ToolRound:
    """What one model turn's tool calls came to.

    Attributes:
        uses: one :class:`~sitemesh.schemas.ToolUse` per requested call, in order.
        messages: the assistant turn with its calls, then one ``tool`` message per
            call (the result, or why there is none), to send back to the model.
        texts: ``tool#<k>`` -> the block the model read for each ``ok`` result
            (``[T<k>] <tool>`` then the text), for checking what cites it.
    """

    uses: list[ToolUse] = field(default_factory=list)
    messages: list[ChatMessage] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def aliases(self) -> dict[str, str]:
        """Short id shown to the model -> grounding id: ``T1`` -> ``tool#1``."""
        return {ref.replace("tool#", "T"): ref for ref in self.texts}


def _result_text(result: Any) -> str:
    text = result.text
    if not text.strip() and result.structured is not None:
        text = json.dumps(result.structured, sort_keys=True, default=str)
    text = " ".join(text.split())
    return text if len(text) <= MAX_TOOL_RESULT_CHARS else text[: MAX_TOOL_RESULT_CHARS - 1] + "…"


async def _arguments(tools: ToolCalls, raw: str) -> dict[str, Any] | str:
    """The call's arguments, re-identified on the site; a string says why not."""
    try:
        value = json.loads(raw or "{}")
    except ValueError:
        return "bad_arguments: the arguments are not valid JSON"
    if not isinstance(value, dict):
        return "bad_arguments: the arguments are not a JSON object"
    text = json.dumps(value)
    if _PLACEHOLDER.search(text):
        from ..tools import ToolUnavailable

        # No vault: nothing of this task was pseudonymised; keep them as written.
        with contextlib.suppress(ToolUnavailable):
            restored = json.loads(await tools.reidentify(text))
            if isinstance(restored, dict):
                value = restored
    return cast(dict[str, Any], value)


async def run_tool_calls(
    response: ModelResponse,
    offered: Sequence[OfferedTool],
    tools: ToolCalls,
    *,
    max_calls: int = MAX_TOOL_CALLS,
) -> ToolRound:
    """Check and run the tool calls of ``response`` (see the module docstring).

    Args:
        response: the model's turn (its :attr:`~ModelResponse.tool_calls`).
        offered: what the request offered.
        tools: the step's tool view (``ctx.tools``).
        max_calls: most calls run.

    Returns:
        The :class:`ToolRound`.

    Raises:
        ToolResponseUnscanned: a response could not be scanned (fail closed).
        ToolReplayMiss: a strict replay has no record of a call.
    """
    from ..tools import InvalidToolArguments, ToolUnavailable, UnknownTool, validate_arguments

    by_name = {o.function: o for o in offered}
    out = ToolRound()
    out.messages.append(
        ChatMessage(role="assistant", content=response.text, tool_calls=list(response.tool_calls))
    )
    for i, call in enumerate(response.tool_calls):
        chosen = by_name.get(call.name)
        tool = chosen.info.name if chosen is not None else call.name[:64]
        reason = ""
        if chosen is None:
            reason = f"unknown_tool: {call.name[:64]!r} is not one of the tools offered"
        elif i >= max_calls:
            reason = f"too_many_tool_calls: at most {max_calls} calls per turn"
        arguments: dict[str, Any] | str = {}
        if not reason and chosen is not None:
            arguments = await _arguments(tools, call.arguments)
            if isinstance(arguments, str):
                reason = arguments
            else:
                try:
                    validate_arguments(tool, chosen.spec.parameters, arguments)
                except InvalidToolArguments as exc:
                    reason = f"invalid_arguments: {exc}"
        if reason or not isinstance(arguments, dict):
            out.uses.append(ToolUse(tool=tool, outcome="rejected", reason=reason[:300]))
            out.messages.append(ChatMessage(role="tool", tool_call_id=call.id,
                                            content=f"rejected, not called: {reason}"))
            continue
        try:
            result = await tools.call(tool, arguments, pseudonymise=True)
        except (InvalidToolArguments, UnknownTool) as exc:
            reason = f"invalid_arguments: {exc}"[:300]
            out.uses.append(ToolUse(tool=tool, outcome="rejected", reason=reason))
            out.messages.append(ChatMessage(role="tool", tool_call_id=call.id,
                                            content=f"rejected, not called: {reason}"))
            continue
        except ToolUnavailable as exc:
            reason = (exc.reason or str(exc))[:300]
            out.uses.append(ToolUse(tool=tool, outcome="unavailable", reason=reason))
            out.messages.append(ChatMessage(role="tool", tool_call_id=call.id,
                                            content=f"unavailable: {reason}"))
            continue
        text = _result_text(result)
        if result.is_error:
            out.uses.append(ToolUse(tool=tool, outcome="error", reason=text[:120],
                                    call_id=result.call_id))
            out.messages.append(ChatMessage(role="tool", tool_call_id=call.id,
                                            content=f"error: {text}"))
            continue
        ref = f"tool#{len(out.texts) + 1}"
        block = f"[{ref.replace('tool#', 'T')}] {tool}\n{text}"
        out.texts[ref] = block
        out.uses.append(ToolUse(ref=ref, tool=tool, outcome="ok", call_id=result.call_id))
        out.messages.append(ChatMessage(role="tool", tool_call_id=call.id, content=block))
    return out
