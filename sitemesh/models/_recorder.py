"""Where model calls are recorded, and where replay finds them again."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ._types import ModelCall


@runtime_checkable
class CallRecorder(Protocol):
    """Stores :class:`ModelCall` records; serves the latest ``ok`` one per prompt hash.

    The state package implements it over the ``model_calls`` table; tests use
    :class:`InMemoryRecorder`.

    A recorder may also offer ``async lookup_rejected(prompt_hash) -> ModelCall | None``
    (the latest ``invalid_output`` call, as :class:`InMemoryRecorder` does): replay then
    serves a structured call's rejected answer too, so a repaired result, or the
    fallback after a second rejection, replays the same as it ran live.
    """

    async def record(self, call: ModelCall) -> None:
        """Store ``call`` (every outcome, not only successes)."""
        ...

    async def lookup(self, prompt_hash: str) -> ModelCall | None:
        """The most recent ``outcome == "ok"`` call for ``prompt_hash``, or ``None``."""
        ...


class InMemoryRecorder:
    """A :class:`CallRecorder` in a list (tests, demos, single-process replay).

    Attributes:
        calls: every recorded call, in order.
    """

    def __init__(self) -> None:
        self.calls: list[ModelCall] = []
        self._ok: dict[str, ModelCall] = {}
        self._rejected: dict[str, ModelCall] = {}

    async def record(self, call: ModelCall) -> None:
        """Append ``call``; index it for replay when its outcome is ``ok``."""
        self.calls.append(call)
        if call.outcome == "ok":
            self._ok[call.prompt_hash] = call
        elif call.outcome == "invalid_output":
            self._rejected[call.prompt_hash] = call

    async def lookup(self, prompt_hash: str) -> ModelCall | None:
        """The latest ``ok`` call for ``prompt_hash``, or ``None``."""
        return self._ok.get(prompt_hash)

    async def lookup_rejected(self, prompt_hash: str) -> ModelCall | None:
        """The latest ``invalid_output`` call for ``prompt_hash``, or ``None``."""
        return self._rejected.get(prompt_hash)


class NullRecorder:
    """Records nothing and finds nothing (the default when no store is wired)."""

    async def record(self, call: ModelCall) -> None:
        """Drop ``call``."""

    async def lookup(self, prompt_hash: str) -> ModelCall | None:
        """Always ``None``."""
        return None
