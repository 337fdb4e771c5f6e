"""Where tool calls are recorded, and where replay and redelivery find them again.

Mirrors the model calls (``sitemesh.models.CallRecorder``): every call is recorded,
any outcome; :meth:`ToolCallRecorder.lookup` returns the latest one the tool
*answered* (``ok`` or ``tool_error``) for a call id. :class:`StoreToolRecorder` keeps
them in the state database's ``tool_calls`` table (append-only), one row per record.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Final, Protocol, runtime_checkable

import msgspec

from ._types import ToolCall

if TYPE_CHECKING:
    from ..state import Store

__all__ = [
    "ANSWERED_OUTCOMES",
    "InMemoryToolRecorder",
    "NullToolRecorder",
    "ReadOnlyToolRecorder",
    "StoreToolRecorder",
    "ToolCallRecorder",
]

ANSWERED_OUTCOMES: Final = frozenset({"ok", "tool_error"})
"""Outcomes whose record holds a response the tool gave (what replay serves)."""

log = logging.getLogger("sitemesh.tools")

_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(ToolCall)


@runtime_checkable
class ToolCallRecorder(Protocol):
    """Stores :class:`ToolCall` records; finds the latest answered one per call id."""

    async def record(self, call: ToolCall) -> None:
        """Store ``call`` (every outcome)."""
        ...

    async def lookup(self, call_id: str) -> ToolCall | None:
        """The latest ``ok``/``tool_error`` record of ``call_id``, or ``None``."""
        ...


class InMemoryToolRecorder:
    """A :class:`ToolCallRecorder` in a list (tests, single-process replay).

    Attributes:
        calls: every recorded call, in order.
    """

    def __init__(self) -> None:
        self.calls: list[ToolCall] = []
        self._answered: dict[str, ToolCall] = {}

    async def record(self, call: ToolCall) -> None:
        """Append ``call``; index it when the tool answered."""
        self.calls.append(call)
        if call.outcome in ANSWERED_OUTCOMES:
            self._answered[call.call_id] = call

    async def lookup(self, call_id: str) -> ToolCall | None:
        """The latest answered record of ``call_id``, or ``None``."""
        return self._answered.get(call_id)


class NullToolRecorder:
    """Records nothing and finds nothing (no store wired)."""

    async def record(self, call: ToolCall) -> None:
        """Drop ``call``."""

    async def lookup(self, call_id: str) -> ToolCall | None:
        """Always ``None``."""
        return None


class ReadOnlyToolRecorder:
    """Finds the calls recorded in ``base``, keeps its own records in memory only.

    The recorder of a replay sandbox (``sitemesh replay``): the recorded responses are
    served, and nothing the replay does is written to the site's database, so a
    replay never becomes the "latest answer" a later replay or a redelivered step
    would be served. Its own records are looked up first (a step redelivered inside
    the sandbox finds what the sandbox did).

    Args:
        base: the site's recorder (``StoreToolRecorder``).

    Attributes:
        calls: every call the sandbox recorded, in order.
        lookup_errors: lookups in ``base`` that failed (the first is logged as a
            warning; each answers ``None``, so strict replay reports a miss for the call).
    """

    def __init__(self, base: ToolCallRecorder) -> None:
        self.base = base
        self._own = InMemoryToolRecorder()
        self.calls = self._own.calls
        self.lookup_errors = 0

    async def record(self, call: ToolCall) -> None:
        """Keep ``call`` in memory (never in ``base``)."""
        await self._own.record(call)

    async def lookup(self, call_id: str) -> ToolCall | None:
        """This recorder's answered record of ``call_id``, else ``base``'s, else ``None``."""
        own = await self._own.lookup(call_id)
        if own is not None:
            return own
        try:
            return await self.base.lookup(call_id)
        except Exception as exc:  # a replay miss, with the cause in the log (once)
            self.lookup_errors += 1
            log.log(
                logging.WARNING if self.lookup_errors == 1 else logging.DEBUG,
                "cannot look up recorded tool call %s (each lookup is a miss): %s: %s",
                call_id[:16],
                type(exc).__name__,
                str(exc).split("\n", 1)[0][:200],
            )
            return None


class StoreToolRecorder:
    """Records :class:`ToolCall` records in the ``tool_calls`` table of the state database.

    Args:
        store: the site's state store.
        site: the site stored with each call (``Settings.site``).
        migrate: open (migrate to head) the store on first use, once; ``False``:
            ``store`` is already open.

    Attributes:
        store: the state store (close it on shutdown if this recorder opened it).
    """

    def __init__(self, store: Store, *, site: str = "", migrate: bool = False) -> None:
        self.store = store
        self._site = site
        self._pending = migrate
        self._lock: asyncio.Lock | None = None

    async def _open(self) -> Store:
        if self._pending:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._pending:
                    await self.store.open()
                    self._pending = False
        return self.store

    async def record(self, call: ToolCall) -> None:
        """Store ``call`` once (a second record with the same ``record_id`` is dropped).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        from ..state import ToolCallRow

        values = {
            "record_id": call.record_id,
            "call_id": call.call_id,
            "idempotency_key": call.idempotency_key,
            "task_id": call.task_id,
            "step": call.step,
            "call_index": call.call_index,
            "agent": call.agent,
            "site": self._site,
            "tool": call.tool,
            "server": call.server,
            "arguments_hash": call.arguments_hash,
            "outcome": call.outcome,
            "attempts": call.attempts,
            "latency_ms": call.latency_ms,
            "error": call.error[:1000],
            "started_at": call.started_at,
            "record": _ENCODER.encode(call),
        }
        store = await self._open()
        stmt = store._insert(ToolCallRow).values(**values)
        async with store._write() as conn:
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["record_id"]))

    async def lookup(self, call_id: str) -> ToolCall | None:
        """The latest answered record of ``call_id`` (for replay and redelivery), or ``None``."""
        from sqlalchemy import select

        from ..state import ToolCallRow as R

        stmt = (
            select(R.record)
            .where(R.call_id == call_id, R.outcome.in_(sorted(ANSWERED_OUTCOMES)))
            .order_by(R.started_at.desc(), R.id.desc())
            .limit(1)
        )
        async with (await self._open())._engine.connect() as conn:
            raw = (await conn.execute(stmt)).scalar_one_or_none()
        return None if raw is None else _DECODER.decode(raw)

    async def calls(self, task_id: str) -> list[ToolCall]:
        """Every recorded call of ``task_id``, in start order."""
        from sqlalchemy import select

        from ..state import ToolCallRow as R

        stmt = select(R.record).where(R.task_id == task_id).order_by(R.started_at, R.id)
        async with (await self._open())._engine.connect() as conn:
            rows = (await conn.execute(stmt)).scalars().all()
        return [_DECODER.decode(r) for r in rows]
