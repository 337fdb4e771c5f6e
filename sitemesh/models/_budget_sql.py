"""A budget ledger shared by several worker processes, in the site's state database.

Chosen over a NATS KV compare-and-set ledger because the counters must be exact
and settle must be exactly-once: a SQL transaction checks and holds every budget of
a call together (all-or-nothing), and the hold row it inserts is what settle and
release delete — the delete's row count says whether this is the first settle, so a
retried settle never charges twice. KV CAS would need one CAS per budget with
compensation when a later one fails, and a separate exactly-once record.

How the check-and-hold is made atomic:

* **PostgreSQL** (READ COMMITTED): per budget, in counter-key order,
  ``UPDATE budget_counters SET held = held + :req WHERE key = :k AND spent + held +
  :req <= :limit``. The ``UPDATE`` takes the row lock; a concurrent one waits and then
  re-evaluates its ``WHERE`` against the committed row, so two calls can never both
  fit into the last slot. Zero rows updated means refused: the transaction is rolled
  back (holds already taken on other budgets of the same call are undone with it).
  Taking the locks in key order means calls sharing budgets cannot deadlock.
* **SQLite**: the transaction starts with ``BEGIN IMMEDIATE``, taking the database
  write lock up front (other processes wait, up to ``busy_timeout``), so the same
  statements run one call at a time; within a process the :class:`Store`'s write
  lock queues the writers.

A caller that dies between reserve and settle would hold its estimate forever; each
hold has ``expires_at`` (``hold_ttl`` after the reservation) and
:meth:`SqlBudgetLedger.expire_holds` gives expired holds back. ``reserve`` does it
once by itself before refusing a call, so a stale hold never refuses work; a late
settle of an expired hold still charges the actual usage, once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from ..errors import BudgetExceeded, TransientError
from ..schemas import utcnow
from ..state import BudgetCounterRow, BudgetHoldRow, Store
from ._budget import BudgetLedger, BudgetUsage, Charge, Reservation, exceeded
from ._budget_policy import BudgetKey, BudgetPolicy, Scope, _Counter
from ._prices import PriceTable, from_nanos

__all__ = ["SqlBudgetLedger"]

_C = BudgetCounterRow
_H = BudgetHoldRow


_RACE_RETRIES = 20
"""Conditional-update attempts while concurrent releases keep changing a counter."""

class SqlBudgetLedger(BudgetLedger):
    """Budgets counted in the state database, safe across worker processes.

    Args:
        store: the site's open :class:`~sitemesh.state.Store` (migrated to ``0004``+).
        policy: the budgets.
        prices: the price table.
        hold_ttl: how long a hold may stay unsettled before
            :meth:`expire_holds` gives it back; longer than any call's timeout.
        ready: awaited before each database access, e.g. to open (migrate) a store
            built synchronously on first use; ``None``: ``store`` is already open.
    """

    def __init__(
        self,
        store: Store,
        policy: BudgetPolicy,
        prices: PriceTable,
        *,
        hold_ttl: timedelta = timedelta(minutes=10),
        ready: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        super().__init__(policy, prices)
        self._store = store
        self._ready = ready
        self._sqlite = store._dialect == "sqlite"
        self.hold_ttl = hold_ttl

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        if self._ready is not None:
            await self._ready()
        async with self._store._engine.connect() as conn:
            yield conn

    @contextlib.asynccontextmanager
    async def _tx(self) -> AsyncIterator[AsyncConnection]:
        if self._ready is not None:
            await self._ready()
        async with self._store._write() as conn:
            if self._sqlite:
                # Take the write lock now, not at the first write (no lock upgrades).
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    # -- reserve -----------------------------------------------------------------------
    async def reserve(
        self,
        key: BudgetKey,
        *,
        model: str,
        est_tokens_in: int,
        est_tokens_out: int,
        now: datetime | None = None,
    ) -> Reservation:
        at = now or utcnow()
        res, counters = self._prepare(key, model, est_tokens_in, est_tokens_out, at)
        if not counters:
            return res
        try:
            await self._hold(res, counters)
        except BudgetExceeded:
            if not await self.expire_holds(now=at):
                raise
            await self._hold(res, counters)  # stale holds were given back: try once more
        return res

    async def _hold(self, res: Reservation, counters: Sequence[_Counter]) -> None:
        at = res.created_at
        async with self._tx() as conn:
            await conn.execute(
                self._store._insert(BudgetCounterRow)
                .values(
                    [
                        {
                            "key": c.key,
                            "scope": c.scope,
                            "name": c.name,
                            "period": c.period,
                            "spent_tokens": 0,
                            "spent_nanos": 0,
                            "held_tokens": 0,
                            "held_nanos": 0,
                            "calls": 0,
                            "updated_at": at,
                        }
                        for c in counters
                    ]
                )
                .on_conflict_do_nothing(index_elements=["key"])
            )
            for c in counters:  # in key order: the lock order
                conds: list[Any] = [_C.key == c.key]
                if c.max_tokens is not None:
                    conds.append(_C.spent_tokens + _C.held_tokens + res.tokens <= c.max_tokens)
                if c.max_nanos is not None:
                    conds.append(_C.spent_nanos + _C.held_nanos + res.nanos <= c.max_nanos)
                stmt = (
                    update(_C)
                    .where(*conds)
                    .values(
                        held_tokens=_C.held_tokens + res.tokens,
                        held_nanos=_C.held_nanos + res.nanos,
                        updated_at=at,
                    )
                )
                await self._hold_one(conn, stmt, c, res)
            await conn.execute(
                self._store._insert(BudgetHoldRow).values(
                    reservation_id=res.reservation_id,
                    keys=list(res.counters),
                    tokens=res.tokens,
                    nanos=res.nanos,
                    state="held",
                    created_at=at,
                    expires_at=at + self.hold_ttl,
                )
            )

    async def _hold_one(
        self, conn: AsyncConnection, stmt: Any, c: _Counter, res: Reservation
    ) -> None:
        """Run the conditional update of counter ``c``; refuse only if it is over budget.

        Under READ COMMITTED (PostgreSQL) a hold released by another transaction
        between the update finding no room and the re-read makes them disagree: then
        the update is simply tried again.

        Raises:
            BudgetExceeded: the counter has no room (rolls the transaction back).
            TransientError: the counter kept changing under the update.
        """
        for _ in range(_RACE_RETRIES):
            if (await conn.execute(stmt)).rowcount == 1:
                return
            err = await self._refusal(conn, c, res)
            if err is not None:
                raise err
        raise TransientError(f"budget counter {c.key} kept changing; retry the call")

    async def _refusal(
        self, conn: AsyncConnection, c: _Counter, res: Reservation
    ) -> BudgetExceeded | None:
        """The refusal for ``c`` as its row stands now, or ``None`` if it has room."""
        row = (await conn.execute(select(_C.__table__).where(_C.key == c.key))).one()
        err = exceeded(
            c,
            spent_tokens=row.spent_tokens,
            spent_nanos=row.spent_nanos,
            held_tokens=row.held_tokens,
            held_nanos=row.held_nanos,
            tokens=res.tokens,
            nanos=res.nanos,
            currency=self.prices.currency,
        )
        return err

    # -- settle / release ------------------------------------------------------------
    async def _take_hold(self, conn: AsyncConnection, rid: str, state: str) -> bool:
        stmt = delete(_H).where(_H.reservation_id == rid, _H.state == state)
        return bool((await conn.execute(stmt)).rowcount == 1)

    async def settle(self, reservation: Reservation, tokens_in: int, tokens_out: int) -> Charge:
        charge = self._charge(reservation, tokens_in, tokens_out, applied=True)
        if not reservation.counters:
            return charge
        rid = reservation.reservation_id
        async with self._tx() as conn:
            held = await self._take_hold(conn, rid, "held")
            if not held and not await self._take_hold(conn, rid, "expired"):
                return self._charge(reservation, tokens_in, tokens_out, applied=False)
            values: dict[str, Any] = {
                "spent_tokens": _C.spent_tokens + charge.tokens,
                "spent_nanos": _C.spent_nanos + charge.nanos,
                "calls": _C.calls + 1,
                "updated_at": utcnow(),
            }
            if held:
                values["held_tokens"] = _C.held_tokens - reservation.tokens
                values["held_nanos"] = _C.held_nanos - reservation.nanos
            for k in sorted(reservation.counters):
                await conn.execute(update(_C).where(_C.key == k).values(**values))
        return charge

    async def release(self, reservation: Reservation) -> bool:
        if not reservation.counters:
            return False
        async with self._tx() as conn:
            if not await self._take_hold(conn, reservation.reservation_id, "held"):
                # expired (already given back) or settled/released: just forget it
                await self._take_hold(conn, reservation.reservation_id, "expired")
                return False
            await self._unhold(conn, reservation.counters, reservation.tokens, reservation.nanos)
        return True

    async def _unhold(
        self, conn: AsyncConnection, keys: Sequence[str], tokens: int, nanos: int
    ) -> None:
        for k in sorted(keys):
            await conn.execute(
                update(_C)
                .where(_C.key == k)
                .values(
                    held_tokens=_C.held_tokens - tokens,
                    held_nanos=_C.held_nanos - nanos,
                    updated_at=utcnow(),
                )
            )

    async def expire_holds(self, *, now: datetime | None = None, limit: int = 1000) -> int:
        """Give back holds past their ``expires_at`` (their caller crashed or hung).

        A late :meth:`settle` of an expired hold still charges the actual usage once.

        Args:
            now: the time to compare ``expires_at`` with (UTC); ``None``: now.
            limit: at most this many holds per call.

        Returns:
            How many holds were given back.
        """
        at = now or utcnow()
        stmt = (
            select(_H.reservation_id, _H.keys, _H.tokens, _H.nanos)
            .where(_H.state == "held", _H.expires_at < at)
            .limit(limit)
        )
        async with self._read() as conn:
            stale = (await conn.execute(stmt)).all()
        n = 0
        for rid, keys, tokens, nanos in stale:
            async with self._tx() as conn:
                mark = (
                    update(_H)
                    .where(_H.reservation_id == rid, _H.state == "held")
                    .values(state="expired")
                )
                if (await conn.execute(mark)).rowcount != 1:
                    continue  # settled or released meanwhile
                await self._unhold(conn, keys, tokens, nanos)
                n += 1
        return n

    async def usage(self, scope: Scope, name: str, *, now: datetime | None = None) -> BudgetUsage:
        k = self._counter_key_for(scope, name, now)
        if k is None:
            return BudgetUsage()
        async with self._read() as conn:
            row = (await conn.execute(select(_C.__table__).where(_C.key == k))).one_or_none()
        if row is None:
            return BudgetUsage()
        return BudgetUsage(
            spent_tokens=row.spent_tokens,
            spent_cost=from_nanos(row.spent_nanos),
            held_tokens=row.held_tokens,
            held_cost=from_nanos(row.held_nanos),
            calls=row.calls,
        )
