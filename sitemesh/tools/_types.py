"""The typed values of tool calls: what a tool offers, what it answered, what was recorded.

Keys are deterministic so that a redelivered or replayed step makes the same call:

* :func:`idempotency_key` = SHA-256 over (task id, step, call index): passed to the
  tool in the MCP request's ``_meta`` (:data:`IDEMPOTENCY_META_KEY`) and, when the
  tool's input schema declares it, as the ``idempotency_key`` argument;
* :func:`tool_call_id` = SHA-256 over (idempotency key, tool): the key of the
  recorded call (replay and redelivery look it up);
* :func:`arguments_hash` = SHA-256 over the canonical JSON of the arguments: a
  recorded response is served only for the same arguments.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Final, Literal

import msgspec

from ..schemas import DATA_CLASS_ORDER, DataClass, utcnow

__all__ = [
    "IDEMPOTENCY_ARGUMENT",
    "IDEMPOTENCY_META_KEY",
    "ToolCall",
    "ToolCallOutcome",
    "ToolErrorNote",
    "ToolHealth",
    "ToolInfo",
    "ToolResponse",
    "ToolResult",
    "ToolSource",
    "arguments_hash",
    "idempotency_key",
    "tool_call_id",
]

IDEMPOTENCY_META_KEY: Final = "sitemesh/idempotency-key"
"""The ``_meta`` key of a ``tools/call`` request carrying the call's idempotency key
(MCP ``_meta`` naming: a prefix, ``/``, a name). A server doing side effects should
keep the keys it has executed and answer a repeated key with the first result."""

IDEMPOTENCY_ARGUMENT: Final = "idempotency_key"
"""The argument that carries the key too, when the tool's input schema declares it."""

ToolSource = Literal["live", "replay", "deduplicated"]
"""Where a result came from: the tool now; a recorded response served by replay
(``tools.replay``); or, for a side-effecting tool in a redelivered step, the response
recorded the first time (the tool was not called again)."""

ToolCallOutcome = Literal[
    "ok",
    "tool_error",
    "replayed",
    "deduplicated",
    "invalid_arguments",
    "unknown_tool",
    "timeout",
    "unavailable",
    "rate_limited",
    "circuit_open",
]
"""How a recorded call ended: ``ok`` / ``tool_error`` (the tool answered, with
``isError`` for the latter), ``replayed`` / ``deduplicated`` (a recorded answer was
served), or the failure that ended it."""


def idempotency_key(task_id: str, step: str, call_index: int) -> str:
    """The idempotency key of one tool call of a step.

    Args:
        task_id: the task.
        step: the workflow step making the call (``item.step``).
        call_index: 0 for the step's first tool call, 1 for the second...

    Returns:
        64 hex digits: SHA-256 over the three fields (NUL-separated, UTF-8). The same
        step redelivered or replayed makes its calls in the same order, so each gets
        the key it had the first time.

    Raises:
        ValueError: ``call_index`` is negative.
    """
    if call_index < 0:
        raise ValueError(f"call_index must be >= 0, got {call_index}")
    raw = "\x00".join(("sitemesh.tool.v1", task_id, step, str(call_index)))
    return hashlib.sha256(raw.encode()).hexdigest()


def tool_call_id(key: str, tool: str) -> str:
    """The recorded call's id: 32 hex digits of SHA-256 over (idempotency key, tool)."""
    return hashlib.sha256(f"{key}\x00{tool}".encode()).hexdigest()[:32]


_CANONICAL: Final = msgspec.json.Encoder(order="sorted")


def arguments_hash(arguments: dict[str, Any]) -> str:
    """SHA-256 hex of the arguments as canonical JSON (keys sorted); never the values."""
    return hashlib.sha256(_CANONICAL.encode(arguments)).hexdigest()


def _kind(schema: object) -> str:
    """A property's JSON type(s) for listings: ``string``, ``integer|null``..."""
    if not isinstance(schema, dict):
        return "any"
    kind = schema.get("type")
    if isinstance(kind, str):
        return kind
    if isinstance(kind, list):
        return "|".join(str(k) for k in kind)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            return "|".join(_kind(o) for o in options)
    return "any"


class ToolInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One tool a server offers (from its ``tools/list``)."""

    name: str
    """How agents call it: ``<server>.<tool>``."""
    server: str
    """The configured server (:attr:`ToolSpec.name`)."""
    tool: str
    """The tool's own name on the server."""
    transport: str
    """``stdio``, ``http`` or ``python``."""
    description: str = ""
    """The server's description of it."""
    input_schema: dict[str, Any] = {}
    """Its input JSON Schema; arguments are validated against it before a call."""
    side_effects: bool = False
    """It changes something (:attr:`ToolSpec.side_effects`, else its annotations)."""
    idempotent: bool = False
    """It deduplicates by the idempotency key (:attr:`ToolSpec.idempotent`, else its
    ``idempotentHint``)."""

    @property
    def takes_idempotency_key(self) -> bool:
        """Its schema declares the ``idempotency_key`` argument (it is then filled in)."""
        props = self.input_schema.get("properties")
        return isinstance(props, dict) and IDEMPOTENCY_ARGUMENT in props

    def summary(self) -> str:
        """The arguments in one line: ``customer_id: string (required), limit: integer``."""
        props = self.input_schema.get("properties")
        if not isinstance(props, dict) or not props:
            return "(no arguments)"
        required = set(self.input_schema.get("required") or ())
        parts = []
        for name, schema in props.items():
            kind = _kind(schema)
            parts.append(f"{name}: {kind}" + (" (required)" if name in required else ""))
        return ", ".join(parts)


class ToolResponse(msgspec.Struct, frozen=True, kw_only=True):
    """What a tool answered, as received (before the privacy scan); recorded for replay."""

    texts: list[str] = []
    """The text of each content block, in order (text blocks, embedded text resources,
    resource links as ``name <uri>``)."""
    structured: Any = None
    """The result's ``structuredContent`` (a JSON object), or ``None``."""
    is_error: bool = False
    """The tool reported an execution error (MCP ``isError``): its text says what."""
    omitted: int = 0
    """Content blocks dropped because text cannot be scanned in them (images, audio,
    binary resources)."""


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """A tool's answer as an agent gets it: scanned, classified, pseudonymised if asked."""

    tool: str
    """The tool as called (``crm.lookup_customer``)."""
    text: str = ""
    """The text content blocks joined by newlines."""
    structured: Any = None
    """The structured content (a JSON object), or ``None``."""
    is_error: bool = False
    """The tool reported an execution error (MCP ``isError``)."""
    data_class: DataClass = "internal"
    """The class of the personal data found in the response
    (:func:`sitemesh.policy.classify` of the detected entity types): raise the task's
    class with :meth:`raises` before the answer goes anywhere."""
    entities: dict[str, int] = {}
    """Detected entity type -> count (never the values)."""
    pseudonymised: bool = False
    """The detected values were replaced by the task's placeholders (``<PERSON_1>``)."""
    source: ToolSource = "live"
    """``live``, ``replay`` or ``deduplicated``."""
    latency_ms: float = 0.0
    """Wall time of the call across attempts and waits, in milliseconds (0 when served
    from a record)."""
    attempts: int = 1
    """Attempts made (0 when served from a record)."""
    idempotency_key: str = ""
    """The key the tool was passed (:func:`idempotency_key`)."""
    call_id: str = ""
    """The recorded call's id (:func:`tool_call_id`)."""
    omitted: int = 0
    """Content blocks dropped as unscannable (:attr:`ToolResponse.omitted`)."""

    def raises(self, data_class: DataClass) -> DataClass:
        """The more sensitive of ``data_class`` (the task's) and this response's class."""
        return max(data_class, self.data_class, key=DATA_CLASS_ORDER.index)


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """The record of one tool call (any outcome), kept in the site's state database."""

    record_id: str
    """Unique id of this record (a redelivered call is a new record)."""
    call_id: str
    """:func:`tool_call_id`: what replay and redelivery look up."""
    idempotency_key: str
    tool: str
    """The tool as called."""
    server: str = ""
    task_id: str = ""
    step: str = ""
    call_index: int = 0
    agent: str = ""
    """The role that made the call."""
    arguments_hash: str = ""
    """:func:`arguments_hash` of the arguments sent (the arguments are not stored)."""
    side_effects: bool = False
    """The tool was known to change something when it was called (a redelivered step
    is then served this record instead of calling it again)."""
    outcome: ToolCallOutcome = "ok"
    attempts: int = 1
    latency_ms: float = 0.0
    """Wall time across attempts, in milliseconds."""
    error: str = ""
    """Error class and PII-free reason of a failed call."""
    response: ToolResponse | None = None
    """The raw response of ``ok`` / ``tool_error`` calls (site database only)."""
    started_at: datetime = msgspec.field(default_factory=utcnow)


class ToolErrorNote(msgspec.Struct, frozen=True, kw_only=True):
    """One recent error of a tool (PII-free: class and reason, never tool output)."""

    at: datetime
    kind: str
    """The error class, e.g. ``ToolTimeout``."""
    reason: str
    """E.g. ``timed out after 0.5 s``, ``HTTP 503``, ``JSON-RPC error -32603``."""


class ToolHealth(msgspec.Struct, frozen=True, kw_only=True):
    """A tool's health in this process since it started (``sitemesh tools health``)."""

    tool: str
    server: str
    transport: str = ""
    breaker: Literal["closed", "open", "half_open"] = "closed"
    calls: int = 0
    """Calls made (each may take several attempts)."""
    ok: int = 0
    """Calls the tool answered (``isError`` answers included)."""
    errors: int = 0
    """Failed attempts (timeouts, 5xx, dropped connections, JSON-RPC errors)."""
    timeouts: int = 0
    """Attempts cut at ``timeout_s``."""
    rate_limited: int = 0
    """Attempts the tool (or the local limit) rate-limited."""
    circuit_open: int = 0
    """Calls refused by the open breaker."""
    replayed: int = 0
    """Calls served from a record (replay or a redelivered side-effecting step)."""
    latency_ms_p50: float = 0.0
    """Median latency of the recent answered attempts, in milliseconds."""
    latency_ms_p95: float = 0.0
    """95th percentile of the same, in milliseconds (nearest rank)."""
    latency_ms_ewma: float = 0.0
    """Exponentially weighted mean latency (alpha 0.2), in milliseconds."""
    last_call_at: datetime | None = None
    last_errors: list[ToolErrorNote] = []
    """The most recent errors, newest last (at most five)."""
