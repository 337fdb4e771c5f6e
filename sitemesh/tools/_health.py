"""Per-tool health counters and the local rate limit (a token bucket).

Latency percentiles are nearest-rank over the last :data:`LATENCY_WINDOW` answered
attempts; the mean is an exponentially weighted moving average with
:data:`EWMA_ALPHA` (the weight of the newest sample).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

from ..schemas import utcnow
from ._types import ToolErrorNote, ToolHealth

if TYPE_CHECKING:
    from ..models import CircuitBreaker

__all__ = ["EWMA_ALPHA", "LATENCY_WINDOW", "HealthTracker", "TokenBucket"]

LATENCY_WINDOW: Final = 256
"""Answered attempts kept for the percentiles."""

EWMA_ALPHA: Final = 0.2
"""Weight of the newest latency in the moving average."""

LAST_ERRORS: Final = 5
"""Errors kept per tool for ``sitemesh tools health``."""


def _nearest_rank(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    rank = max(math.ceil(q * len(sorted_ms)), 1)
    return sorted_ms[rank - 1]


class HealthTracker:
    """Counters of one tool in this process (see :class:`~sitemesh.tools.ToolHealth`).

    Args:
        tool: the tool as called.
        server: its configured server.
        transport: the server's transport.
        breaker: the tool's circuit breaker (its state is reported).
    """

    def __init__(self, tool: str, server: str, transport: str, breaker: CircuitBreaker) -> None:
        self.tool = tool
        self.server = server
        self.transport = transport
        self.breaker = breaker
        self.calls = 0
        self.ok = 0
        self.errors = 0
        self.timeouts = 0
        self.rate_limited = 0
        self.circuit_open = 0
        self.replayed = 0
        self.ewma_ms = 0.0
        self.last_call_at: datetime | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._errors: deque[ToolErrorNote] = deque(maxlen=LAST_ERRORS)

    def call(self) -> None:
        """A call starts."""
        self.calls += 1
        self.last_call_at = utcnow()

    def answered(self, latency_ms: float) -> None:
        """An attempt was answered after ``latency_ms`` milliseconds."""
        self.ok += 1
        self._latencies.append(latency_ms)
        self.ewma_ms = (
            latency_ms
            if len(self._latencies) == 1
            else EWMA_ALPHA * latency_ms + (1 - EWMA_ALPHA) * self.ewma_ms
        )

    def error(self, kind: str, reason: str, *, timeout: bool = False) -> None:
        """An attempt failed (``kind``: the error class; ``reason``: PII-free)."""
        self.errors += 1
        if timeout:
            self.timeouts += 1
        self.note(kind, reason)

    def note(self, kind: str, reason: str) -> None:
        """Remember an error for the health listing."""
        self._errors.append(ToolErrorNote(at=utcnow(), kind=kind, reason=reason[:300]))

    def snapshot(self) -> ToolHealth:
        """The counters now."""
        ordered = sorted(self._latencies)
        return ToolHealth(
            tool=self.tool,
            server=self.server,
            transport=self.transport,
            breaker=self.breaker.state,
            calls=self.calls,
            ok=self.ok,
            errors=self.errors,
            timeouts=self.timeouts,
            rate_limited=self.rate_limited,
            circuit_open=self.circuit_open,
            replayed=self.replayed,
            latency_ms_p50=round(_nearest_rank(ordered, 0.5), 3),
            latency_ms_p95=round(_nearest_rank(ordered, 0.95), 3),
            latency_ms_ewma=round(self.ewma_ms, 3),
            last_call_at=self.last_call_at,
            last_errors=list(self._errors),
        )


class TokenBucket:
    """At most ``calls`` calls per ``per_s`` seconds, with bursts up to ``calls``.

    Args:
        calls: the bucket's size (tokens); refilled at ``calls / per_s`` per second.
        per_s: the window, in seconds.
        clock: monotonic clock in seconds (inject a fake one in tests).
    """

    def __init__(
        self, calls: int, per_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(calls)
        self.rate = calls / per_s
        self._clock = clock
        self._tokens = float(calls)
        self._at = clock()

    def take(self) -> float:
        """Take a token if one is there; else the seconds until one will be.

        Returns:
            ``0.0`` when a token was taken; otherwise the wait in seconds (nothing is
            taken: call again after waiting).
        """
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self.rate
