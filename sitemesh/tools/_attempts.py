"""The attempts of one live call: breaker, local rate limit, retries, the tool's rate limits.

Per attempt, in order:

1. the local rate limit (a token bucket, ``rate_limit_calls`` per ``rate_limit_per_s``):
   wait for a slot, within the call's wait budget (``max_rate_limit_wait_s``);
2. the tool's circuit breaker (Nygard's pattern, the models' ``CircuitBreaker``):
   refused at once while open, one probe when half-open;
3. the attempt itself, cut at ``timeout_s``, inside a span and tool metrics
   (:func:`sitemesh.telemetry.tool_call`);
4. on a rate limit (HTTP 429, a "rate limited" tool error): wait the tool's
   ``Retry-After`` (else a jittered backoff) and try again while the wait budget
   lasts; a rate limit is not a breaker failure (the tool answered);
5. on a transient failure: count it against the breaker, retry ``retries`` times with
   full-jitter backoff (the models' ``RetryPolicy``; a 5xx's ``Retry-After`` honoured),
   unless the tool has side effects, does not deduplicate them by the idempotency key
   and may have acted (a timeout, a dropped connection, a server error).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from ..telemetry import tool_call
from ._connection import AttemptFailed
from ._errors import (
    InvalidToolArguments,
    ToolCircuitOpen,
    ToolRateLimited,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
)
from ._health import HealthTracker, TokenBucket
from ._spec import ToolSpec
from ._types import ToolResponse

if TYPE_CHECKING:
    import random

    from ..models import CircuitBreaker, RetryPolicy

__all__ = ["ToolGuard", "run_attempts"]


class ToolGuard:
    """The resilience state of one tool: breaker, retry policy, local limit, health.

    Args:
        tool: the tool as called.
        spec: its server's configuration.
        clock: monotonic clock of the breaker and the local limit, in seconds.
        rng: the backoff jitter's random source.
    """

    def __init__(
        self, tool: str, spec: ToolSpec, *, clock: Callable[[], float], rng: random.Random
    ) -> None:
        from ..models import CircuitBreaker, RetryPolicy

        self.tool = tool
        self.spec = spec
        self.breaker: CircuitBreaker = CircuitBreaker(
            tool, failures=spec.breaker_failures, reset_s=spec.breaker_reset_s, clock=clock
        )
        self.retry: RetryPolicy = RetryPolicy(
            max_attempts=spec.retries + 1,
            base_s=spec.backoff_base_s,
            max_s=spec.backoff_max_s,
            max_retry_after_s=spec.max_rate_limit_wait_s,
            rng=rng,
        )
        self.bucket: TokenBucket | None = (
            TokenBucket(spec.rate_limit_calls, spec.rate_limit_per_s, clock=clock)
            if spec.rate_limit_calls is not None
            else None
        )
        self.health = HealthTracker(tool, spec.name, spec.transport, self.breaker)

    def rate_limit_backoff_s(self, limited: int) -> float:
        """A wait after the ``limited``-th rate limit that gave no ``Retry-After``, in seconds."""
        spec = self.spec
        ceiling = min(spec.backoff_max_s, spec.backoff_base_s * 2 ** (limited - 1))
        return self.retry.rng.uniform(0.0, ceiling)


def _error(tool: str, spec: ToolSpec, failed: AttemptFailed, attempts: int) -> ToolUnavailable:
    """The public error of a failed attempt (raised inside its span)."""
    match failed.kind:
        case "timeout":
            return ToolTimeout(
                f"{tool}: {failed.reason} (attempt {attempts})",
                tool=tool,
                timeout_s=spec.timeout_s,
                attempts=attempts,
            )
        case "rate_limited":
            return ToolRateLimited(
                f"{tool}: {failed.reason}",
                tool=tool,
                reason=failed.reason,
                attempts=attempts,
                retry_after_s=failed.retry_after_s,
            )
        case _:
            return ToolUnavailable(
                f"{tool}: {failed.reason} (attempt {attempts})",
                tool=tool,
                reason=failed.reason,
                attempts=attempts,
                retry_after_s=failed.retry_after_s,
            )


async def run_attempts(
    guard: ToolGuard,
    attempt: Callable[[], Awaitable[ToolResponse]],
    *,
    sleep: Callable[[float], Awaitable[None]],
    unsafe_to_repeat: Callable[[], bool] = lambda: False,
) -> tuple[ToolResponse, int]:
    """Try ``attempt`` as the module docstring says.

    Args:
        guard: the tool's breaker, retry policy, local limit and health.
        attempt: one attempt; raises :class:`AttemptFailed`, or
            :class:`UnknownTool` / :class:`InvalidToolArguments` (not retried).
        sleep: the waits, in seconds.
        unsafe_to_repeat: whether the tool (once resolved) has side effects and does
            not deduplicate them: an attempt that may have acted is then not retried.

    Returns:
        ``(answer, attempts made)``.

    Raises:
        ToolCircuitOpen: the breaker refused the call.
        ToolRateLimited: rate limited beyond the wait budget.
        ToolTimeout | ToolUnavailable: the last attempt's failure, once retries are
            spent, the breaker opened, or a side-effecting tool may have acted.
        UnknownTool | InvalidToolArguments: from ``attempt``.
    """
    tool, spec, breaker, health = guard.tool, guard.spec, guard.breaker, guard.health
    waited_s = 0.0
    attempts = failures = limited = 0
    admitted = False  # a retry already passed the breaker
    while True:
        local = guard.bucket.take() if guard.bucket is not None else 0.0
        if local > 0:
            health.rate_limited += 1
            if waited_s + local > spec.max_rate_limit_wait_s:
                health.note("ToolRateLimited", "local rate limit: no slot within the budget")
                raise ToolRateLimited(
                    f"{tool}: local rate limit ({spec.rate_limit_calls} calls per "
                    f"{spec.rate_limit_per_s:g} s) has no slot within the call's wait budget "
                    f"of {spec.max_rate_limit_wait_s:g} s",
                    tool=tool,
                    reason="local rate limit",
                    attempts=attempts,
                    retry_after_s=local,
                )
            waited_s += local
            await sleep(local)
            continue
        if not admitted and not breaker.allow():
            health.circuit_open += 1
            health.note("ToolCircuitOpen", "circuit open")
            raise ToolCircuitOpen(
                f"{tool}: circuit open for another {breaker.retry_in_s:.1f} s "
                f"(opened after {spec.breaker_failures} consecutive failures)",
                tool=tool,
                reason="circuit open",
                attempts=attempts,
                retry_after_s=breaker.retry_in_s,
            )
        admitted = False
        attempts += 1
        t0 = time.perf_counter()
        try:
            with tool_call(tool):
                try:
                    response = await attempt()
                except AttemptFailed as exc:
                    raise _error(tool, spec, exc, attempts) from exc
        except (UnknownTool, InvalidToolArguments):
            breaker.success()  # the server answered its listing: release a half-open probe
            raise
        except ToolUnavailable as exc:
            failed = exc.__cause__
            assert isinstance(failed, AttemptFailed)
            if failed.kind == "rate_limited":
                breaker.success()  # it answered: busy, not broken
                limited += 1
                health.rate_limited += 1
                health.note(type(exc).__name__, failed.reason)
                wait = failed.retry_after_s
                if wait is None:
                    wait = guard.rate_limit_backoff_s(limited)
                left = spec.max_rate_limit_wait_s - waited_s
                if wait > left:
                    raise ToolRateLimited(
                        f"{tool}: rate limited ({failed.reason}); waiting {wait:g} s more "
                        f"exceeds the call's remaining wait budget of {max(left, 0.0):g} s",
                        tool=tool,
                        reason=failed.reason,
                        attempts=attempts,
                        retry_after_s=wait,
                    ) from failed
                waited_s += wait
                await sleep(wait)
                continue
            breaker.failure()
            failures += 1
            health.error(type(exc).__name__, failed.reason, timeout=failed.kind == "timeout")
            if not failed.retryable:
                raise
            if failed.maybe_executed and unsafe_to_repeat():
                raise ToolUnavailable(
                    f"{tool}: {failed.reason}; not retried: the side-effecting tool may have "
                    "acted (set idempotent = true if it deduplicates by the key)",
                    tool=tool,
                    reason=f"{failed.reason}, not retried",
                    attempts=attempts,
                ) from failed
            delay = guard.retry.delay_s(failures, failed.retry_after_s)
            if delay is None or not breaker.allow():
                raise
            admitted = True
            await sleep(delay)
            continue
        breaker.success()
        health.answered((time.perf_counter() - t0) * 1000)
        return response, attempts
