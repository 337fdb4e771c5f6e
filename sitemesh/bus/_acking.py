"""The one place where the outcome of handling a message becomes an ack action.

| outcome                                  | action                                      |
|------------------------------------------|---------------------------------------------|
| success                                  | ``ack``                                     |
| :class:`~sitemesh.errors.PermanentError` | ``term`` + dead letter (reason, field)      |
| :class:`~sitemesh.errors.TransientError` | ``nak(delay)``; backoff, ``retry_after_s``  |
| :class:`~sitemesh.errors.StreamFull`     | ``nak(delay)``, even on the last delivery   |
| any other ``Exception``                  | ``nak(delay)`` with backoff                 |
| either of the two above, on the last     | ``term`` + dead letter with the last error  |
| allowed delivery (``>= max_deliver``)    |                                             |
| ``asyncio.CancelledError``               | re-raised, never acked                      |

The dead letter is published *before* the ``term``: if the process dies in
between, the message is redelivered and dead-lettered again under the same
``Nats-Msg-Id`` (deduplicated), so it is never lost and never doubled.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from typing import Final

from ..config import BusSettings
from ..errors import PermanentError, StreamFull, TransientError

_rand: Final = random.Random()  # noqa: S311 - jitter, not cryptography


class Action(enum.Enum):
    """What to tell JetStream about a message."""

    ACK = "ack"
    NAK = "nak"
    DEAD_LETTER = "dead_letter"
    """Publish a dead letter (and a ``TaskFailed`` event), then ``term``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The action for one message, and for dead letters, why.

    Attributes:
        action: what to do.
        delay_s: ``nak`` delay in seconds (``NAK`` only).
        reason: error text naming the field (``DEAD_LETTER`` only).
        error_class: the exception's class name (``DEAD_LETTER`` only).
        field: JSON path of the offending field, if known.
    """

    action: Action
    delay_s: float = 0.0
    reason: str = ""
    error_class: str = ""
    field: str | None = None


ACK: Final = Decision(Action.ACK)


def backoff_s(num_delivered: int, bus: BusSettings, retry_after_s: float | None = None) -> float:
    """Redelivery delay after delivery number ``num_delivered`` failed.

    Exponential (``backoff_base_s * 2**(n-1)``, capped at ``backoff_max_s``) with
    "equal jitter" (half fixed, half uniform random; AWS Architecture Blog,
    "Exponential Backoff and Jitter", 2015) so failing consumers do not retry in step.

    Args:
        num_delivered: 1 for the first delivery.
        bus: ``backoff_base_s`` and ``backoff_max_s``.
        retry_after_s: a hint from the error; the delay is at least this long.

    Returns:
        Seconds to wait before the next delivery.
    """
    exp = min(bus.backoff_max_s, bus.backoff_base_s * (2.0 ** max(0, num_delivered - 1)))
    delay = exp / 2 + _rand.uniform(0, exp / 2)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return delay


def decide(exc: BaseException | None, num_delivered: int, bus: BusSettings) -> Decision:
    """Map the outcome of handling a message to an action (see the module table).

    Args:
        exc: what the handler (or decoding, or publishing its outputs) raised;
            ``None`` on success.
        num_delivered: the message's delivery count (1 = first delivery).
        bus: ``max_deliver`` and the backoff settings.

    Returns:
        The decision.

    Raises:
        asyncio.CancelledError: ``exc`` is a cancellation (or another
            ``BaseException``); it is re-raised, never acked.
    """
    if exc is None:
        return ACK
    if not isinstance(exc, Exception):
        raise exc
    if isinstance(exc, PermanentError):
        return Decision(
            Action.DEAD_LETTER, reason=str(exc), error_class=type(exc).__name__, field=exc.field
        )
    if isinstance(exc, StreamFull):  # the input is fine: wait for room, never dead-letter
        return Decision(Action.NAK, delay_s=backoff_s(num_delivered, bus, exc.retry_after_s))
    if num_delivered >= bus.max_deliver:
        return Decision(
            Action.DEAD_LETTER,
            reason=f"max_deliver ({bus.max_deliver}) exhausted; last error: "
            f"{type(exc).__name__}: {exc}",
            error_class=type(exc).__name__,
        )
    retry_after = exc.retry_after_s if isinstance(exc, TransientError) else None
    return Decision(Action.NAK, delay_s=backoff_s(num_delivered, bus, retry_after))
