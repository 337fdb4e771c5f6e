"""Retries with jittered backoff honouring ``Retry-After``, and a circuit breaker.

Backoff is "full jitter" (AWS Architecture Blog, "Exponential Backoff and Jitter",
2015): the n-th retry waits a uniform random time in ``[0, min(max_s, base_s*2**n)]``.
A server's ``Retry-After`` (RFC 9110 section 10.2.3: seconds or an HTTP-date), or
OpenAI's ``retry-after-ms``, replaces the computed delay when present.

The breaker follows Nygard's pattern (*Release It!*, 2nd ed., ch. 5): closed ->
open after ``failures`` consecutive failures; open rejects at once for ``reset_s``;
then half-open lets one probe through, which closes it on success or re-opens it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """The delay a server asks for, in seconds.

    Args:
        headers: response headers (case-insensitive mapping such as ``httpx.Headers``,
            or a dict with lower-case keys).
        now: current time for HTTP-date values (default: now, UTC).

    Returns:
        ``retry-after-ms`` / 1000 if present, else ``Retry-After`` as seconds or as an
        HTTP-date minus ``now`` (at least 0), else ``None`` (absent or unparseable).
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how long to retry one model.

    Args:
        max_attempts: attempts in total (1 = no retry).
        base_s: ceiling of the first retry delay, in seconds; doubles per retry.
        max_s: ceiling of any computed delay, in seconds.
        max_retry_after_s: longest server-requested delay honoured, in seconds; a
            longer ``Retry-After`` ends the retries on this model (the client moves
            to the next model in the chain instead of waiting).
        rng: random source for the jitter (seed it in tests).
    """

    max_attempts: int = 3
    base_s: float = 0.5
    max_s: float = 8.0
    max_retry_after_s: float = 30.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay_s(self, retry: int, retry_after_s: float | None = None) -> float | None:
        """Seconds to wait before retry number ``retry``, or ``None`` to stop.

        Args:
            retry: 1 for the first retry, 2 for the second...
            retry_after_s: the server's ``Retry-After`` in seconds, if it sent one.

        Returns:
            ``None`` when ``retry >= max_attempts`` or the server asks for longer than
            ``max_retry_after_s``; the server's delay when it sent one; else a full
            jitter delay in ``[0, min(max_s, base_s * 2**(retry-1))]``.
        """
        if retry >= self.max_attempts:
            return None
        if retry_after_s is not None:
            return retry_after_s if retry_after_s <= self.max_retry_after_s else None
        ceiling = min(self.max_s, self.base_s * (2 ** (retry - 1)))
        return self.rng.uniform(0.0, ceiling)


class CircuitBreaker:
    """A per-backend circuit breaker (closed / open / half-open).

    Args:
        name: the backend it guards (for messages), e.g. ``"openai"``.
        failures: consecutive failures that open it.
        reset_s: seconds it stays open before one probe is let through.
        clock: monotonic clock in seconds (inject a fake one in tests).
    """

    def __init__(
        self,
        name: str,
        *,
        failures: int = 5,
        reset_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures = failures
        self.reset_s = reset_s
        self._clock = clock
        self._state: BreakerState = "closed"
        self._count = 0
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down passed reads ``half_open``."""
        if self._state == "open" and self._clock() - self._opened_at >= self.reset_s:
            self._state = "half_open"
            self._probing = False
        return self._state

    @property
    def retry_in_s(self) -> float:
        """Seconds until an open breaker half-opens (0 unless open)."""
        if self.state != "open":
            return 0.0
        return max(self.reset_s - (self._clock() - self._opened_at), 0.0)

    def allow(self) -> bool:
        """May a call go through now? Half-open admits one probe at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        """Record a successful call: closes the breaker and resets the count."""
        self._state = "closed"
        self._count = 0
        self._probing = False

    def failure(self) -> None:
        """Record a failed call: a failed probe, or the ``failures``-th in a row, opens it."""
        self._count += 1
        if self._state == "half_open" or self._count >= self.failures:
            self._state = "open"
            self._opened_at = self._clock()
            self._probing = False

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self.state!r}, failures={self._count})"
