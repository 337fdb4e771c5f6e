"""The recorder: writes a site's events and dead letters to the state store.

Two bus workers read the durable ``recorder`` consumers of the site's ``EVENTS``
and ``DLQ`` streams (created by :func:`sitemesh.bus.provision`, ``max_deliver``
unlimited) and record each message keyed by its stream sequence, so a redelivery
is recorded once (see :class:`Store`). A database error is raised as
:class:`sitemesh.errors.TransientError`: the message is redelivered later, never
lost. A message that does not decode is rejected by the runtime (``SchemaError``).

With SQLite run one recorder process per site (one writer); with PostgreSQL
several may share the consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from types import TracebackType
from typing import Final

from nats.js import JetStreamContext
from sqlalchemy.exc import SQLAlchemyError

from ..bus import RECORDER, MsgContext, Outbound, Subjects, Worker
from ..config import BusSettings
from ..errors import TransientError
from ..schemas import DLQ_DECODER, EVENT_DECODER, ApprovalRequested, DeadLetter, Event
from ._approvals import request_approval
from ._store import Store

RECORDER_DURABLE: Final = RECORDER
"""Name of the recorder's durable consumers on ``EVENTS_<site>`` and ``DLQ_<site>``."""

RECORDER_ROLE: Final = "recorder"
"""Role name of the recorder's workers (in logs, ``MsgContext.role``, dead letters)."""

DB_RETRY_AFTER_S: Final = 1.0
"""Redelivery delay hint after a database error, in seconds."""

UNLIMITED_DELIVERIES: Final = 1 << 31
"""``max_deliver`` the recorder's runtime uses: like its consumers (``max_deliver=-1``)
it retries a database error until the database is back, never dead-letters it."""


class Recorder:
    """Records a site's events and dead letters into a :class:`Store`.

    Lifecycle like :class:`sitemesh.bus.Worker`: ``await run()`` until
    ``await shutdown()`` (safe to call twice), or ``async with Recorder(...)`` to
    run it in the background. The store is not closed by the recorder.

    Args:
        js: JetStream context of a connected client.
        store: an opened store (migrated).
        site: the site whose streams to read.
        bus_settings: worker runtime settings; ``max_deliver`` is ignored (a
            database error is retried until it succeeds).
        max_inflight: messages handled concurrently per stream; ``None``: the
            runtime default. (On SQLite the store serialises the writes itself.)
    """

    def __init__(
        self,
        js: JetStreamContext,
        store: Store,
        site: str,
        bus_settings: BusSettings,
        *,
        max_inflight: int | None = None,
    ) -> None:
        self.store = store
        self.site = site
        subjects = Subjects(site)
        settings = bus_settings.model_copy(update={"max_deliver": UNLIMITED_DELIVERIES})
        self._stack: contextlib.AsyncExitStack | None = None
        self._workers = (
            Worker(
                js,
                site=site,
                role=RECORDER_ROLE,
                stream=subjects.events_stream,
                durable=RECORDER_DURABLE,
                decoder=EVENT_DECODER.decode,
                handler=self._on_event,
                settings=settings,
                max_inflight=max_inflight,
            ),
            Worker(
                js,
                site=site,
                role=RECORDER_ROLE,
                stream=subjects.dlq_stream,
                durable=RECORDER_DURABLE,
                decoder=DLQ_DECODER.decode,
                handler=self._on_dead_letter,
                settings=settings,
                max_inflight=max_inflight,
            ),
        )

    async def _on_event(self, event: Event, ctx: MsgContext) -> Sequence[Outbound]:
        try:
            if isinstance(event, ApprovalRequested):
                await request_approval(self.store, event.item)  # idempotent per task
            await self.store.record_event(ctx.stream, ctx.stream_seq, event)
        except SQLAlchemyError as exc:
            raise _transient(exc) from exc
        return []

    async def _on_dead_letter(self, dl: DeadLetter, ctx: MsgContext) -> Sequence[Outbound]:
        try:
            await self.store.record_dead_letter(dl)
        except SQLAlchemyError as exc:
            raise _transient(exc) from exc
        return []

    async def run(self) -> None:
        """Record until :meth:`shutdown` is called (or a worker fails)."""
        async with asyncio.TaskGroup() as tg:
            for worker in self._workers:
                tg.create_task(worker.run())

    async def shutdown(self) -> None:
        """Stop fetching, finish in-flight messages. Safe to call more than once."""
        await asyncio.gather(*(w.shutdown() for w in self._workers))
        stack, self._stack = self._stack, None
        if stack is not None:
            await stack.aclose()

    async def __aenter__(self) -> Recorder:
        """Start both workers in the background (raises if a consumer is missing)."""
        async with contextlib.AsyncExitStack() as stack:
            for worker in self._workers:
                await stack.enter_async_context(worker)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


def _transient(exc: SQLAlchemyError) -> TransientError:
    return TransientError(
        f"state database error: {type(exc).__name__}: {exc}", retry_after_s=DB_RETRY_AFTER_S
    )
