"""The tool errors, a branch of the sitemesh error tree (:mod:`sitemesh.errors`).

Their class decides what the worker runtime does with the message being handled
when an agent lets one escape: :class:`ToolUnavailable` (and its timeout, rate
limit and open-breaker kinds) is a :class:`~sitemesh.errors.TransientError`, so the
step is redelivered later (and, for a side-effecting tool, the idempotency key makes
the repeated call harmless); the others are :class:`~sitemesh.errors.PermanentError`
and dead-letter the message with their reason. An agent that can answer without the
tool catches :class:`ToolUnavailable` and degrades, saying why (``str(exc)`` never
quotes tool output or arguments: the messages are built from error classes, codes,
HTTP statuses and field paths only).
"""

from __future__ import annotations

from ..errors import ConfigError, PermanentError, SitemeshError, TransientError

__all__ = [
    "InvalidToolArguments",
    "ToolCircuitOpen",
    "ToolConfigError",
    "ToolError",
    "ToolRateLimited",
    "ToolReplayMiss",
    "ToolResponseUnscanned",
    "ToolTimeout",
    "ToolUnavailable",
    "UnknownTool",
]


class ToolConfigError(ConfigError):
    """The tools file is unreadable or invalid.

    The message names the file, the entry (index and ``name``) and the field, e.g.
    ``/etc/sitemesh/tools.toml: tools[1] 'crm': timeout_s: Expected `float` > 0.0``.

    Attributes:
        key: ``"tools.file"`` (env ``SITEMESH_TOOLS_FILE``).
        path: the file, or ``None`` for a document given as text.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__("tools.file", f"{path}: {message}" if path else message)
        self.path = path


class ToolError(SitemeshError, RuntimeError):
    """A tool call failed. Base of the tool errors (``sitemesh.tools``).

    Attributes:
        tool: the tool as called (``"crm.lookup_customer"``), or ``""``.
    """

    def __init__(self, message: str, *, tool: str = "") -> None:
        super().__init__(message)
        self.tool = tool


class UnknownTool(ToolError, PermanentError):
    """No configured server offers the tool (or its server is disabled)."""

    def __init__(self, message: str, *, tool: str = "") -> None:
        ToolError.__init__(self, message, tool=tool)
        self.field = None


class InvalidToolArguments(ToolError, PermanentError):
    """The arguments do not match the tool's input JSON Schema; the tool was not called.

    Attributes:
        field: JSON path of the offending argument (``"$.customer_id"``; ``"$"`` for
            the arguments object itself).
    """

    def __init__(self, message: str, *, tool: str = "", field: str | None = "$") -> None:
        ToolError.__init__(self, message, tool=tool)
        self.field = field


class ToolUnavailable(ToolError, TransientError):
    """The tool did not answer usefully within its retries (down, failing, 5xx).

    Attributes:
        reason: a short, PII-free statement of why (``"HTTP 503 after 3 attempts"``).
        attempts: attempts made (0: refused before trying).
        retry_after_s: a hint for the redelivery delay in seconds, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        tool: str = "",
        reason: str = "",
        attempts: int = 0,
        retry_after_s: float | None = None,
    ) -> None:
        ToolError.__init__(self, message, tool=tool)
        self.retry_after_s = retry_after_s
        self.reason = reason or message
        self.attempts = attempts


class ToolTimeout(ToolUnavailable, TimeoutError):
    """A call took longer than the tool's ``timeout_s`` and was cut (a cancel was sent).

    Attributes:
        timeout_s: the limit that was exceeded, in seconds.
    """

    def __init__(
        self, message: str, *, tool: str = "", timeout_s: float, attempts: int = 0
    ) -> None:
        super().__init__(
            message, tool=tool, reason=f"timed out after {timeout_s:g} s", attempts=attempts
        )
        self.timeout_s = timeout_s


class ToolRateLimited(ToolUnavailable):
    """The tool kept rate-limiting (HTTP 429 or a "rate limited" tool error) beyond the
    call's wait budget (``max_rate_limit_wait_s``), or the local limit had no slot in it.

    ``retry_after_s`` carries the tool's last ``Retry-After`` when it sent one.
    """


class ToolCircuitOpen(ToolUnavailable):
    """The tool's circuit breaker is open: the call was refused without trying.

    ``retry_after_s`` is the time until the breaker lets a probe through.
    """


class ToolResponseUnscanned(ToolError, PermanentError):
    """A tool response could not be scanned for personal data (or not pseudonymised when
    asked), so it is withheld: nothing reaches an agent unscanned (fail closed).

    Attributes:
        reason: the reason code: ``scanner_failed`` (the PII analyzer raised),
            ``pseudonymisation_failed`` (the vault or the pseudonymiser raised) or
            ``no_task`` (pseudonymisation asked for without a task id).
    """

    def __init__(self, message: str, *, tool: str = "", reason: str) -> None:
        ToolError.__init__(self, message, tool=tool)
        self.field = None
        self.reason = reason


class ToolReplayMiss(ToolError, PermanentError):
    """Strict replay found no recorded response for a call (or one with other arguments),
    or was asked to list or describe tools (listings are not recorded, and a strict
    replay starts no tool server).

    Attributes:
        call_id: the deterministic call id that was looked up (``""`` for a listing).
    """

    def __init__(self, message: str, *, tool: str = "", call_id: str) -> None:
        ToolError.__init__(self, message, tool=tool)
        self.field = None
        self.call_id = call_id
