"""The state store: records task events and dead letters, answers queries.

Every write is idempotent, so a redelivered message is recorded once:

* an event is keyed by its ``(stream, stream_seq)``; its side effects on the task
  row run in the same transaction as the insert, only when the insert happened;
* a task has at most one ``final_answer`` event (a partial unique index), so a
  second answer published for the same task (another stream sequence) is dropped
  and the first answer stands, even with several recorders on PostgreSQL;
* a dead letter is keyed by the ``(stream, stream_seq)`` of the original message.

Status rules: a task is ``accepted`` until it is ``answered`` or ``failed``.
``answered`` is final; ``failed`` (a ``task_failed`` event or a dead letter) only
applies to a task that is not answered yet. Events may arrive in any order: the
first event of a task creates its row, later ones fill it in.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..schemas import (
    DeadLetter,
    Event,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    TaskAccepted,
    TaskFailed,
)
from ._db import create_engine, is_sqlite, migrate
from ._models import DeadLetterRow, PolicyDecisionRow, TaskEventRow, TaskRow
from ._rows import (
    dead_letter_row,
    dead_letter_view,
    decision_row,
    decision_view,
    event_row,
    event_view,
    summary,
)
from ._views import DeadLetterView, StatusCounts, TaskSummary, TaskView

STATUSES: tuple[str, ...] = ("accepted", "answered", "failed")
"""Task statuses, in lifecycle order."""

_Insert = sqlite.Insert | postgresql.Insert


class Store:
    """Async access to the state database (SQLite or PostgreSQL).

    Use as ``async with Store(url) as store: ...``; entering migrates the database
    to the Alembic head (concurrency-safe, see :func:`sitemesh.state.migrate`).

    Args:
        url: SQLAlchemy async URL (``sqlite+aiosqlite:///...`` or
            ``postgresql+asyncpg://...``), e.g. ``Settings.db_url``.
        auto_migrate: run :func:`sitemesh.state.migrate` on entering.
        **engine_kwargs: passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.
    """

    def __init__(self, url: str, *, auto_migrate: bool = True, **engine_kwargs: Any) -> None:
        self.url = url
        self._auto_migrate = auto_migrate
        self._engine: AsyncEngine = create_engine(url, **engine_kwargs)
        self._dialect = self._engine.dialect.name
        # SQLite has one writer at a time; serialise this process's writers so they
        # queue here instead of contending for the file lock.
        self._write_lock: asyncio.Lock | None = asyncio.Lock() if is_sqlite(url) else None
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------
    async def open(self) -> Store:
        """Migrate the database if ``auto_migrate``; returns ``self``."""
        if self._auto_migrate:
            await migrate(self.url)
        return self

    async def close(self) -> None:
        """Release the connections. Safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        await self._engine.dispose()

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        if self._write_lock is None:
            async with self._engine.begin() as conn:
                yield conn
            return
        async with self._write_lock, self._engine.begin() as conn:
            yield conn

    def _insert(self, model: type[Any]) -> _Insert:
        if self._dialect == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    # -- writes ----------------------------------------------------------------------
    async def record_event(self, stream: str, stream_seq: int, event: Event) -> bool:
        """Record one event read from ``stream`` at ``stream_seq`` and update its task.

        Args:
            stream: the stream it was read from (``EVENTS_<site>``).
            stream_seq: its sequence in that stream (the idempotency key).
            event: the decoded event.

        Returns:
            ``True`` if recorded now; ``False`` if this stream sequence was recorded
            before, or the event is a second final answer for its task.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was written.
        """
        row = event_row(stream, stream_seq, event)
        async with self._write() as conn:
            stmt = self._insert(TaskEventRow).values(**row).on_conflict_do_nothing()
            inserted = (await conn.execute(stmt.returning(TaskEventRow.id))).first()
            if inserted is None:
                return False
            await self._apply(conn, event)
        return True

    async def _apply(self, conn: AsyncConnection, event: Event) -> None:
        match event:
            case TaskAccepted():
                fields = {
                    "site": event.site,
                    "kind": event.kind,
                    "tenant": event.tenant,
                    "title": event.title,
                    "submitted_at": event.submitted_at,
                    "accepted_at": event.accepted_at,
                }
                await self._upsert_task(conn, event.task_id, fields, update=fields)
            case PolicyDecision():
                decision = decision_row(event)
                stmt = self._insert(PolicyDecisionRow).values(**decision)
                await conn.execute(
                    stmt.on_conflict_do_update(index_elements=["task_id"], set_=decision)
                )
                fields = {"data_class": event.data_class}
                await self._upsert_task(conn, event.task_id, fields, update=fields)
            case StepCompleted():
                await self._upsert_task(conn, event.task_id, {"site": event.site}, update=None)
            case FinalAnswer():
                latency_ms = (event.answered_at - event.submitted_at).total_seconds() * 1000.0
                answer = {
                    "status": "answered",
                    "outcome": event.outcome,
                    "reasons": list(event.reasons),
                    "customer_message": event.customer_message,
                    "finished_at": event.answered_at,
                    "latency_ms": latency_ms,
                }
                insert = {
                    **answer,
                    "site": event.site,
                    "data_class": event.data_class,
                    "submitted_at": event.submitted_at,
                }
                update = {
                    **answer,
                    "data_class": func.coalesce(TaskRow.data_class, event.data_class),
                    "submitted_at": func.coalesce(TaskRow.submitted_at, event.submitted_at),
                }
                await self._upsert_task(conn, event.task_id, insert, update=update)
            case TaskFailed():
                await self._mark_failed(
                    conn,
                    event.task_id,
                    event.site,
                    f"{event.error_class}: {event.reason}",
                    event.failed_at,
                )

    async def _upsert_task(
        self,
        conn: AsyncConnection,
        task_id: str,
        insert: dict[str, Any],
        *,
        update: dict[str, Any] | None,
        where: ColumnElement[bool] | None = None,
    ) -> None:
        stmt = self._insert(TaskRow).values(task_id=task_id, **insert)
        if update is None:
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["task_id"]))
        else:
            await conn.execute(
                stmt.on_conflict_do_update(index_elements=["task_id"], set_=update, where=where)
            )

    async def _mark_failed(
        self, conn: AsyncConnection, task_id: str, site: str, reason: str, at: datetime
    ) -> None:
        failure = {"status": "failed", "reasons": [reason], "finished_at": at}
        await self._upsert_task(
            conn,
            task_id,
            {**failure, "site": site},
            update=failure,
            where=TaskRow.status == "accepted",
        )

    async def record_dead_letter(self, dl: DeadLetter) -> bool:
        """Record a dead letter and mark its task failed (unless already answered).

        Args:
            dl: the dead letter; keyed by ``(dl.stream, dl.stream_seq)`` of the original.

        Returns:
            ``True`` if recorded now, ``False`` if recorded before.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was written.
        """
        row = dead_letter_row(dl)
        async with self._write() as conn:
            stmt = self._insert(DeadLetterRow).values(**row).on_conflict_do_nothing()
            inserted = (await conn.execute(stmt.returning(DeadLetterRow.id))).first()
            if inserted is None:
                return False
            if dl.task_id:
                reason = f"{dl.error_class}: {dl.reason}"
                await self._mark_failed(conn, dl.task_id, dl.site, reason, dl.dead_at)
        return True

    # -- queries ---------------------------------------------------------------------
    async def get_task(self, task_id: str) -> TaskView | None:
        """Everything recorded about ``task_id``, or ``None`` if it is unknown."""
        async with self._engine.connect() as conn:
            task = (await conn.execute(_tasks().where(TaskRow.task_id == task_id))).first()
            if task is None:
                return None
            events = await conn.execute(
                select(TaskEventRow.__table__)
                .where(TaskEventRow.task_id == task_id)
                .order_by(TaskEventRow.stream, TaskEventRow.stream_seq)
            )
            decision = (
                await conn.execute(
                    select(PolicyDecisionRow.__table__).where(PolicyDecisionRow.task_id == task_id)
                )
            ).first()
            dls = await conn.execute(
                select(DeadLetterRow.__table__)
                .where(DeadLetterRow.task_id == task_id)
                .order_by(DeadLetterRow.dead_at, DeadLetterRow.id)
            )
            return TaskView(
                task=summary(task._mapping),
                events=tuple(event_view(r._mapping) for r in events),
                decision=None if decision is None else decision_view(decision._mapping),
                dead_letters=tuple(dead_letter_view(r._mapping) for r in dls),
            )

    async def counts(self, prefix: str | None = None) -> StatusCounts:
        """Task counts by status, outcome and data class, and the dead-letter count.

        Args:
            prefix: count only tasks whose id starts with this.
        """
        where = _prefix(TaskRow.task_id, prefix)
        async with self._engine.connect() as conn:

            async def group(col: Any) -> dict[str, int]:
                stmt = select(col, func.count()).where(where).group_by(col)
                rows = (await conn.execute(stmt)).all()
                return {str(k): int(n) for k, n in rows if k is not None}

            by_status = {s: 0 for s in STATUSES} | await group(TaskRow.status)
            by_outcome = await group(TaskRow.outcome)
            by_data_class = await group(func.coalesce(TaskRow.data_class, "unknown"))
            dl_stmt = (
                select(func.count())
                .select_from(DeadLetterRow)
                .where(_prefix(DeadLetterRow.task_id, prefix))
            )
            n_dead = int((await conn.execute(dl_stmt)).scalar_one())
        return StatusCounts(
            total=sum(by_status.values()),
            by_status=by_status,
            by_outcome=by_outcome,
            by_data_class=by_data_class,
            dead_letters=n_dead,
        )

    async def list_tasks(
        self, limit: int = 20, status: str | None = None, prefix: str | None = None
    ) -> list[TaskSummary]:
        """The most recently submitted tasks, newest first.

        Args:
            limit: at most this many.
            status: only tasks with this status.
            prefix: only tasks whose id starts with this.
        """
        stmt = _tasks().where(_prefix(TaskRow.task_id, prefix))
        if status is not None:
            stmt = stmt.where(TaskRow.status == status)
        stmt = stmt.order_by(
            TaskRow.submitted_at.desc().nulls_last(), TaskRow.task_id.desc()
        ).limit(limit)
        async with self._engine.connect() as conn:
            return [summary(r._mapping) for r in await conn.execute(stmt)]

    async def dead_letters(
        self, limit: int = 20, task_id_prefix: str | None = None
    ) -> list[DeadLetterView]:
        """The most recent dead letters, newest first.

        Args:
            limit: at most this many.
            task_id_prefix: only dead letters of tasks whose id starts with this.
        """
        stmt = (
            select(DeadLetterRow.__table__)
            .where(_prefix(DeadLetterRow.task_id, task_id_prefix))
            .order_by(DeadLetterRow.dead_at.desc(), DeadLetterRow.id.desc())
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            return [dead_letter_view(r._mapping) for r in await conn.execute(stmt)]

    async def latencies(self, prefix: str | None = None) -> list[float]:
        """End-to-end latencies (submit to answer) of answered tasks, in milliseconds."""
        stmt = (
            select(TaskRow.latency_ms)
            .where(TaskRow.status == "answered", TaskRow.latency_ms.is_not(None))
            .where(_prefix(TaskRow.task_id, prefix))
            .order_by(TaskRow.finished_at, TaskRow.task_id)
        )
        async with self._engine.connect() as conn:
            return [float(v) for v in (await conn.execute(stmt)).scalars() if v is not None]

    async def answered_ids(self, prefix: str | None = None) -> set[str]:
        """Ids of answered tasks (optionally only those starting with ``prefix``)."""
        return await self._ids("answered", prefix)

    async def failed_ids(self, prefix: str | None = None) -> set[str]:
        """Ids of failed tasks (optionally only those starting with ``prefix``)."""
        return await self._ids("failed", prefix)

    async def ended_ids(self, prefix: str | None = None) -> set[str]:
        """Ids of tasks that ended (answered or failed)."""
        return await self._ids(("answered", "failed"), prefix)

    async def _ids(self, status: str | tuple[str, ...], prefix: str | None) -> set[str]:
        statuses = (status,) if isinstance(status, str) else status
        stmt = select(TaskRow.task_id).where(
            TaskRow.status.in_(statuses), _prefix(TaskRow.task_id, prefix)
        )
        async with self._engine.connect() as conn:
            return set((await conn.execute(stmt)).scalars())


# -- query helpers ---------------------------------------------------------------------
def _prefix(col: Any, prefix: str | None) -> ColumnElement[bool]:
    if not prefix:
        return true()
    result: ColumnElement[bool] = col.startswith(prefix, autoescape=True)
    return result


def _tasks() -> Select[Any]:
    return select(TaskRow.__table__)
