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
first event of a task creates its row, later ones fill it in. A resubmitted task
(a second ``task_accepted``) keeps its first ``submitted_at`` and ``accepted_at``.
Every rule is in :func:`sitemesh.state._tasks.apply_event`.

A batch (:meth:`Store.record_events`, :meth:`Store.record_dead_letters`) is one
transaction with the same result as recording its messages one by one.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, func, select, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ..schemas import ApprovalRequested, DeadLetter, Event, PolicyDecision
from ._approvals import ApprovalRow, approval_values
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
from ._tasks import ROW_EVENTS, TASK_COLUMNS, TaskValues, apply_event, mark_failed, new_task
from ._views import DeadLetterView, StatusCounts, TaskSummary, TaskView

STATUSES: tuple[str, ...] = ("accepted", "answered", "failed")
"""Task statuses, in lifecycle order."""

_Insert = sqlite.Insert | postgresql.Insert
_Change = Callable[[TaskValues | None], TaskValues | None]
"""What one event (or dead letter) does to its task's row (see :mod:`._tasks`)."""
_K = TypeVar("_K", int, tuple[str, int])


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
    @property
    def engine(self) -> AsyncEngine:
        """The engine (for tables other modules own: model calls, the console's audit log)."""
        return self._engine

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

    @functools.cached_property
    def _stmts(self) -> _Statements:
        return _Statements(self._insert)

    # -- writes ----------------------------------------------------------------------
    async def record_event(self, stream: str, stream_seq: int, event: Event) -> bool:
        """Record one event read from ``stream`` at ``stream_seq`` and update its task.

        :meth:`record_events` of one event (an ``approval_requested`` event parks its
        work item too).

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
        return await self.record_events(stream, [(stream_seq, event)]) == 1

    async def record_events(self, stream: str, events: Sequence[tuple[int, Event]]) -> int:
        """Record a batch of events read from ``stream`` in one transaction.

        The same result as :meth:`record_event` of each in turn, with a handful of
        statements per batch instead of several per event: the event rows in one
        insert-or-ignore (keyed by stream sequence), the policy decisions in one
        upsert, the tasks' rows read once, folded over the new events in order
        (:func:`sitemesh.state._tasks.apply_event`) and written back in one upsert.
        An ``approval_requested`` event parks its work item in the same transaction
        (idempotent per task, as :func:`sitemesh.state.request_approval`). On
        PostgreSQL the tasks' rows are locked (created first if missing, in task id
        order) so that concurrent recorders fold one after the other.

        Args:
            stream: the stream they were read from (``EVENTS_<site>``).
            events: ``(stream_seq, event)`` pairs in stream order.

        Returns:
            How many were recorded now; the others were recorded before, or are a
            second final answer for their task.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing of the
                batch was written.
        """
        if not events:
            return 0
        rows = [event_row(stream, seq, ev) for seq, ev in events]
        items = [ev.item for _, ev in events if isinstance(ev, ApprovalRequested)]
        async with self._write() as conn:
            result = await conn.execute(self._stmts.insert_events, rows)
            inserted: set[int] = set(result.scalars())
            fresh = [ev for seq, ev in events if _take(inserted, seq)]
            if items:
                parked = [approval_values(item) for item in items]
                await conn.execute(self._stmts.insert_approvals, parked)
            # the latest decision of a task wins (one row per task in the upsert)
            decisions = {
                ev.task_id: decision_row(ev) for ev in fresh if isinstance(ev, PolicyDecision)
            }
            if decisions:
                await conn.execute(self._stmts.upsert_decisions, list(decisions.values()))
            changes = [
                (ev.task_id, functools.partial(apply_event, event=ev))
                for ev in fresh
                if isinstance(ev, ROW_EVENTS)
            ]
            await self._fold_tasks(conn, changes)
        return len(fresh)

    async def _fold_tasks(
        self, conn: AsyncConnection, changes: Sequence[tuple[str, _Change]]
    ) -> None:
        """Apply ``changes`` (in order) to their tasks' rows: read once, write once."""
        ids = sorted({task_id for task_id, _ in changes})
        if not ids:
            return
        created: set[str] = set()
        select_rows = select(TaskRow.__table__).where(TaskRow.task_id.in_(ids))
        if self._dialect == "postgresql":
            # Lock the rows (creating the missing ones first, in id order so that two
            # recorders never wait on each other in a cycle): a concurrent recorder's
            # fold of the same task waits for this transaction and then reads its result.
            result = await conn.execute(
                self._stmts.create_tasks, [new_task(task_id) for task_id in ids]
            )
            created = set(result.scalars())
            select_rows = select_rows.with_for_update()
        before: dict[str, TaskValues | None] = {task_id: None for task_id in ids}
        for r in await conn.execute(select_rows):
            if r.task_id not in created:
                before[r.task_id] = dict(r._mapping)
        after = {task_id: None if row is None else dict(row) for task_id, row in before.items()}
        for task_id, change in changes:
            after[task_id] = change(after[task_id])
        changed = [
            row for task_id, row in after.items() if row is not None and row != before[task_id]
        ]
        if not changed:
            return
        await conn.execute(self._stmts.upsert_tasks, changed)

    async def record_dead_letter(self, dl: DeadLetter) -> bool:
        """Record a dead letter and mark its task failed (unless already answered).

        Args:
            dl: the dead letter; keyed by ``(dl.stream, dl.stream_seq)`` of the original.

        Returns:
            ``True`` if recorded now, ``False`` if recorded before.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was written.
        """
        return await self.record_dead_letters([dl]) == 1

    async def record_dead_letters(self, dls: Sequence[DeadLetter]) -> int:
        """Record a batch of dead letters in one transaction (as :meth:`record_dead_letter`
        of each in turn): each marks its task failed unless it is answered.

        Args:
            dls: the dead letters, in stream order; each keyed by the
                ``(stream, stream_seq)`` of its original.

        Returns:
            How many were recorded now (the others were recorded before).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed; nothing of the
                batch was written.
        """
        if not dls:
            return 0
        rows = [dead_letter_row(dl) for dl in dls]
        async with self._write() as conn:
            result = await conn.execute(self._stmts.insert_dead_letters, rows)
            inserted: set[tuple[str, int]] = {(s, q) for s, q in result}
            fresh = [dl for dl in dls if _take(inserted, (dl.stream, dl.stream_seq))]
            changes: list[tuple[str, _Change]] = [
                (
                    dl.task_id,
                    functools.partial(
                        mark_failed,
                        task_id=dl.task_id,
                        site=dl.site,
                        reason=f"{dl.error_class}: {dl.reason}",
                        at=dl.dead_at,
                    ),
                )
                for dl in fresh
                if dl.task_id
            ]
            await self._fold_tasks(conn, changes)
        return len(fresh)

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

    async def counts(self, prefix: str | None = None, *, site: str | None = None) -> StatusCounts:
        """Task counts by status, outcome and data class, and the dead-letter count.

        Args:
            prefix: count only tasks whose id starts with this.
            site: count only this site's tasks and dead letters (sites may share
                one database).
        """
        where = _prefix(TaskRow.task_id, prefix)
        dl_where = _prefix(DeadLetterRow.task_id, prefix)
        if site is not None:
            where = where & (TaskRow.site == site)
            dl_where = dl_where & (DeadLetterRow.site == site)
        async with self._engine.connect() as conn:

            async def group(col: Any) -> dict[str, int]:
                stmt = select(col, func.count()).where(where).group_by(col)
                rows = (await conn.execute(stmt)).all()
                return {str(k): int(n) for k, n in rows if k is not None}

            by_status = {s: 0 for s in STATUSES} | await group(TaskRow.status)
            by_outcome = await group(TaskRow.outcome)
            by_data_class = await group(func.coalesce(TaskRow.data_class, "unknown"))
            dl_stmt = select(func.count()).select_from(DeadLetterRow).where(dl_where)
            n_dead = int((await conn.execute(dl_stmt)).scalar_one())
        return StatusCounts(
            total=sum(by_status.values()),
            by_status=by_status,
            by_outcome=by_outcome,
            by_data_class=by_data_class,
            dead_letters=n_dead,
        )

    async def list_tasks(
        self,
        limit: int = 20,
        status: str | None = None,
        prefix: str | None = None,
        *,
        site: str | None = None,
        kind: str | None = None,
        outcome: str | None = None,
        data_class: str | None = None,
        since: datetime | None = None,
        before: datetime | None = None,
    ) -> list[TaskSummary]:
        """The most recently submitted tasks, newest first.

        Args:
            limit: at most this many.
            status: only tasks with this status.
            prefix: only tasks whose id starts with this.
            site: only this site's tasks.
            kind: only tasks of this kind (``support_ticket``...).
            outcome: only answered tasks with this outcome (``resolved``...).
            data_class: only tasks of this data class.
            since: only tasks submitted at or after this time (UTC).
            before: only tasks submitted strictly before this time (UTC): the cursor
                of the next page is the last row's ``submitted_at``.
        """
        stmt = _tasks().where(_prefix(TaskRow.task_id, prefix))
        for col, value in (
            (TaskRow.status, status),
            (TaskRow.site, site),
            (TaskRow.kind, kind),
            (TaskRow.outcome, outcome),
            (TaskRow.data_class, data_class),
        ):
            if value is not None:
                stmt = stmt.where(col == value)
        if since is not None:
            stmt = stmt.where(TaskRow.submitted_at >= since)
        if before is not None:
            stmt = stmt.where(TaskRow.submitted_at < before)
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


class _Statements:
    """The recorder's write statements, built once per store (building an upsert's
    ``excluded`` columns costs more than executing it for a small batch)."""

    def __init__(self, insert: Callable[[type[Any]], _Insert]) -> None:
        self.insert_events = (
            insert(TaskEventRow).on_conflict_do_nothing().returning(TaskEventRow.stream_seq)
        )
        self.insert_dead_letters = (
            insert(DeadLetterRow)
            .on_conflict_do_nothing()
            .returning(DeadLetterRow.stream, DeadLetterRow.stream_seq)
        )
        self.insert_approvals = insert(ApprovalRow).on_conflict_do_nothing()
        self.create_tasks = (
            insert(TaskRow)
            .on_conflict_do_nothing(index_elements=["task_id"])
            .returning(TaskRow.task_id)
        )
        self.upsert_tasks = _upsert(insert(TaskRow), "task_id", TASK_COLUMNS[1:])
        decision_columns = [c.name for c in PolicyDecisionRow.__table__.columns]
        self.upsert_decisions = _upsert(
            insert(PolicyDecisionRow), "task_id", [c for c in decision_columns if c != "task_id"]
        )


def _upsert(ins: _Insert, key: str, columns: Sequence[str]) -> Any:
    """``ins`` that overwrites ``columns`` of the row with the same ``key``."""
    return ins.on_conflict_do_update(
        index_elements=[key], set_={c: ins.excluded[c] for c in columns}
    )


def _take(remaining: set[_K], key: _K) -> bool:
    """Whether ``key`` is in ``remaining``; removes it, so only a key's first
    occurrence in a batch counts as inserted."""
    if key in remaining:
        remaining.discard(key)
        return True
    return False


# -- query helpers ---------------------------------------------------------------------
def _prefix(col: Any, prefix: str | None) -> ColumnElement[bool]:
    if not prefix:
        return true()
    result: ColumnElement[bool] = col.startswith(prefix, autoescape=True)
    return result


def _tasks() -> Select[Any]:
    return select(TaskRow.__table__)
