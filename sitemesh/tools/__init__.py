"""Tools over MCP: the site's tool registry, the privacy of tool responses, replay.

Configured tool servers (:class:`ToolSpec`, the tools file: :func:`load_tool_specs`)
are MCP servers reached through the official SDK over stdio or streamable HTTP, or
MCP servers (and plain functions) in this process. Agents call them only through
their context (``ctx.tools``, a :class:`ToolCalls` view of the process's
:class:`ToolRegistry`), which owns:

* timeouts, retries with backoff, a circuit breaker per tool, local rate limits and
  the tools' own (HTTP 429 / "rate limited" errors, ``Retry-After`` honoured);
* the idempotency key of each call (:func:`idempotency_key`, from task id, step and
  call index), passed to the tool in ``_meta`` (:data:`IDEMPOTENCY_META_KEY`) and as
  the ``idempotency_key`` argument when its schema declares one;
* tool health (:class:`ToolHealth`), exported as OpenTelemetry spans and metrics
  (``sitemesh.telemetry.tool_call``) and shown by ``sitemesh tools health``;
* the privacy of responses: every response is scanned before an agent sees it, fail
  closed (:class:`ToolResponseUnscanned`); the result carries its data class, and is
  pseudonymised through the site vault when asked;
* recording (:class:`ToolCallRecorder`, the ``tool_calls`` table) and replay
  (``off`` / ``prefer`` / ``strict``; the replay sandbox reads the records without
  writing: :class:`ReadOnlyToolRecorder`).

sitemesh's own servers live in :mod:`sitemesh.tools.servers` (``python -m
sitemesh.tools.servers.<name>``), listed in the bundled :data:`BUNDLED_TOOLS_FILE`.
See ``docs/tools.md``.
"""

from ._errors import (
    InvalidToolArguments,
    ToolCircuitOpen,
    ToolConfigError,
    ToolError,
    ToolRateLimited,
    ToolReplayMiss,
    ToolResponseUnscanned,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
)
from ._privacy import ResponseScanner
from ._recorder import (
    ANSWERED_OUTCOMES,
    InMemoryToolRecorder,
    NullToolRecorder,
    ReadOnlyToolRecorder,
    StoreToolRecorder,
    ToolCallRecorder,
)
from ._registry import ReplayMode, ToolRegistry
from ._spec import (
    BUNDLED_TOOLS_FILE,
    TOOLS_FILE_NAME,
    ToolSpec,
    Transport,
    load_tool_specs,
    parse_tool_specs,
    tools_file,
)
from ._types import (
    IDEMPOTENCY_ARGUMENT,
    IDEMPOTENCY_META_KEY,
    ToolCall,
    ToolCallOutcome,
    ToolErrorNote,
    ToolHealth,
    ToolInfo,
    ToolResponse,
    ToolResult,
    ToolSource,
    arguments_hash,
    idempotency_key,
    tool_call_id,
)
from ._validate import validate_arguments
from ._view import ToolCalls

__all__ = [
    "ANSWERED_OUTCOMES",
    "BUNDLED_TOOLS_FILE",
    "IDEMPOTENCY_ARGUMENT",
    "IDEMPOTENCY_META_KEY",
    "TOOLS_FILE_NAME",
    "InMemoryToolRecorder",
    "InvalidToolArguments",
    "NullToolRecorder",
    "ReadOnlyToolRecorder",
    "ReplayMode",
    "ResponseScanner",
    "StoreToolRecorder",
    "ToolCall",
    "ToolCallOutcome",
    "ToolCallRecorder",
    "ToolCalls",
    "ToolCircuitOpen",
    "ToolConfigError",
    "ToolError",
    "ToolErrorNote",
    "ToolHealth",
    "ToolInfo",
    "ToolRateLimited",
    "ToolRegistry",
    "ToolReplayMiss",
    "ToolResponse",
    "ToolResponseUnscanned",
    "ToolResult",
    "ToolSource",
    "ToolSpec",
    "ToolTimeout",
    "ToolUnavailable",
    "Transport",
    "UnknownTool",
    "arguments_hash",
    "idempotency_key",
    "load_tool_specs",
    "parse_tool_specs",
    "tool_call_id",
    "tools_file",
    "validate_arguments",
]
