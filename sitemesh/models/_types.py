"""What goes into a model call, what comes out, and what is recorded about it.

A :class:`ModelRequest` holds only the prompt (messages, tools, output schema,
sampling); who asks and under which policy travels separately in a
:class:`CallContext`, so the same prompt has the same :attr:`ModelRequest.prompt_hash`
whoever asks and whichever model answers. Replay looks recorded calls up by it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

import msgspec

from ..schemas import Action, DataClass, utcnow

Provider = Literal["vllm", "openai", "anthropic"]
"""A backend family. ``vllm``: any OpenAI-compatible server on the site."""

SITE_PROVIDERS: frozenset[str] = frozenset({"vllm"})
"""Providers whose servers run on the site; the only ones a site-pinned task may use."""

Outcome = Literal[
    "ok",
    "replayed",
    "fallback",
    "invalid_output",
    "rate_limited",
    "timeout",
    "unavailable",
    "rejected",
    "circuit_open",
    "budget_denied",
]
"""How one model call ended (see docs/models.md, "What is recorded")."""


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """A tool call the model made."""

    id: str
    name: str
    arguments: str
    """The arguments as JSON text, exactly as the model produced them."""


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One message of a conversation.

    Function calling takes two more shapes: an ``assistant`` message with the
    :attr:`tool_calls` the model made (its ``content`` may be empty), and one ``tool``
    message per call with the result as ``content`` and the call's id in
    :attr:`tool_call_id`. OpenAI-compatible servers get them as ``tool_calls`` /
    ``role: tool``; Anthropic as ``tool_use`` / ``tool_result`` blocks.
    """

    role: Literal["system", "user", "assistant", "tool"]
    """``system`` messages become Anthropic's ``system`` parameter."""
    content: str
    tool_calls: list[ToolCall] = []
    """``assistant`` only: the calls the model made in this turn."""
    tool_call_id: str = ""
    """``tool`` only: the :attr:`ToolCall.id` this message answers."""


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A tool the model may call (OpenAI ``function`` / Anthropic tool)."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=dict)
    """JSON Schema of the arguments (an ``object`` schema)."""


class OutputSchema(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Ask for structured output: one JSON value matching ``schema``.

    OpenAI-compatible servers get ``response_format={"type": "json_schema", ...}``
    (vLLM enforces it with guided decoding); Anthropic gets a forced tool whose
    ``input_schema`` is ``schema``. Either way the JSON lands in
    :attr:`ModelResponse.text`.
    """

    name: str
    """Name of the schema / tool, ``[A-Za-z0-9_-]{1,64}``."""
    schema: dict[str, Any]
    """JSON Schema, e.g. ``msgspec.json.schema(MyStruct)``."""


class ModelRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The prompt of one call: everything that determines the answer."""

    messages: list[ChatMessage]
    tools: list[ToolSpec] = []
    tool_choice: Literal["auto", "none"] | None = None
    """With :attr:`tools`: ``none`` forbids calling them in this turn (the messages may
    still carry earlier calls and results, which Anthropic requires the tools declared
    for); ``None`` leaves the provider's default (``auto``)."""
    output: OutputSchema | None = None
    """Structured output wanted, or ``None`` for free text."""
    max_tokens: int | None = None
    """Output token cap; ``None``: ``models.max_tokens``."""
    temperature: float = 0.0
    """0 by default: as reproducible as the backend allows."""
    stream: bool = False
    """Use the streaming wire format (SSE); the response is the same once assembled."""

    @property
    def prompt_hash(self) -> str:
        """SHA-256 hex digest of the canonical request.

        Canonical: msgspec JSON of this struct with ``stream`` cleared (transport
        only), fields and keys sorted, default values omitted (so a field added later
        with a default leaves existing hashes unchanged). Stable across processes and
        Python versions; independent of the model that answers.
        """
        canon = msgspec.structs.replace(self, stream=False)
        data = msgspec.json.encode(canon, order="sorted")
        return hashlib.sha256(data).hexdigest()


class Usage(msgspec.Struct, frozen=True, kw_only=True):
    """Tokens counted by the backend."""

    tokens_in: int = 0
    """Prompt (input) tokens."""
    tokens_out: int = 0
    """Completion (output) tokens."""


class ModelResponse(msgspec.Struct, frozen=True, kw_only=True):
    """What a call returned."""

    text: str = ""
    """The answer text; for structured output, the JSON text."""
    tool_calls: list[ToolCall] = []
    usage: Usage = msgspec.field(default_factory=Usage)
    provider: str
    """``vllm`` / ``openai`` / ``anthropic``, or ``fallback`` for the deterministic one."""
    model: str
    finish_reason: str | None = None
    latency_ms: float = 0.0
    """Wall time of the successful attempt, in milliseconds."""
    source: Literal["model", "replay", "fallback"] = "model"
    """``fallback``: no model answered; :attr:`text` is the caller's deterministic
    fallback and :attr:`fallback_reason` says why."""
    fallback_reason: str = ""
    prompt_hash: str = ""

    @property
    def ref(self) -> str:
        """``<provider>/<model>``."""
        return f"{self.provider}/{self.model}"


class CallContext(msgspec.Struct, frozen=True, kw_only=True):
    """Who asks, for what, and what the privacy policy decided: the routing facts."""

    kind: str = "synthesis"
    """Call kind: ``classification``, ``extraction`` (small site model) or e.g.
    ``planning``, ``synthesis``, ``summary``."""
    complexity: float = 0.0
    """Estimated task complexity 0..1 (``sitemesh.policy.estimate_complexity``)."""
    action: Action = "pin_edge"
    """The task's policy action. Defaults to the safe one: site models only."""
    approved: bool = False
    """A ``require_approval`` decision was approved by a person."""
    data_class: DataClass = "internal"
    tenant: str = "default"
    agent: str = ""
    """The calling role (``planner``, ``synthesiser``...)."""
    task_id: str = ""

    @property
    def cloud_allowed(self) -> bool:
        """Cloud models may see this call: ``allow_cloud``, or an approved
        ``require_approval``. ``pin_edge`` and ``deny`` never leave the site."""
        return self.action == "allow_cloud" or (
            self.action == "require_approval" and self.approved
        )


class ModelCall(msgspec.Struct, frozen=True, kw_only=True, tag="model_call.v1"):
    """The record of one model call (one per model tried; retries are counted in it).

    Written by :class:`~sitemesh.models.ModelClient` to its
    :class:`~sitemesh.models.CallRecorder`; replay serves ``outcome == "ok"`` records
    back by :attr:`prompt_hash`.
    """

    call_id: str
    """Unique id of this record (uuid4 hex)."""
    call_key: str
    """Deterministic key of (task, agent, prompt, model): the budget reservation key."""
    prompt_hash: str
    """SHA-256 hex of the canonical request (:attr:`ModelRequest.prompt_hash`)."""
    provider: str
    model: str
    outcome: Outcome
    attempts: int = 1
    """HTTP attempts made on this model (1 + retries)."""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    """Wall time on this model across attempts and backoff, in milliseconds."""
    cost_usd: float | None = None
    """Cost reported by the budget hook's ``settle``, when it knows prices."""
    tenant: str = "default"
    agent: str = ""
    task_id: str = ""
    kind: str = ""
    error: str = ""
    """The last error (class and message), for failed outcomes."""
    request: ModelRequest | None = None
    """The prompt (site-side records; the cloud hub only ever sees anonymised text)."""
    response: ModelResponse | None = None
    """The response text and tool calls, for ``ok`` / ``invalid_output`` / ``fallback``."""
    started_at: datetime = msgspec.field(default_factory=utcnow)
