"""The call ledger: every model call recorded in the state database, and cost rollups.

:class:`StoreCallRecorder` is the :class:`~sitemesh.models.CallRecorder` over the
``model_calls`` table (migration ``0004``): one row per :class:`ModelCall` (any
outcome), keyed by ``call_id`` so a re-recorded call is stored once, with its
tokens, cost, latency and outcome in columns for ``sitemesh cost``, and the whole
record (prompt and response, site database only) for replay by prompt hash.

Cost is computed from the price table when the recorder has one (exact
``Decimal``, stored as integer nano-units, rounded up); otherwise the call's own
``cost_usd`` (what the budget hook's settle returned) is used; a call with neither
has no cost (``NULL``: shown as unpriced, summed as zero). Only outcomes that a
backend bills — ``ok`` and ``invalid_output`` (a reply was produced) — are costed.

:func:`cost_rollup` groups the table by task, agent, model, tenant or day.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final, Literal

import msgspec
from sqlalchemy import Select, case, func, select

from ..config import Settings
from ..errors import UnknownModelPrice
from ..state import ModelCallRow, Store
from ._budget import LedgerBudget
from ._budget_policy import BudgetPolicy
from ._budget_sql import SqlBudgetLedger
from ._prices import DEFAULT_PRICES_FILE, PriceTable, from_nanos, to_nanos
from ._types import ModelCall

__all__ = [
    "BILLED_OUTCOMES",
    "COST_KEYS",
    "PRICES_FILE_NAME",
    "CostBy",
    "CostRow",
    "StoreCallRecorder",
    "StoreOpener",
    "cost_rollup",
    "ledger_for_settings",
    "prices_file",
    "total",
]

PRICES_FILE_NAME: Final = "prices.toml"
"""The operator's price and budget file, looked up in ``Settings.state_dir``."""

CostBy = Literal["task", "agent", "model", "tenant", "day"]

COST_KEYS: Final[tuple[CostBy, ...]] = ("task", "agent", "model", "tenant", "day")
"""What :func:`cost_rollup` can group by."""

BILLED_OUTCOMES: Final = frozenset({"ok", "invalid_output"})
"""Outcomes whose tokens a backend bills (a reply was produced)."""

_M = ModelCallRow
_COLUMN: Final[dict[CostBy, Any]] = {
    "task": _M.task_id,
    "agent": _M.agent,
    "model": _M.model,
    "tenant": _M.tenant,
    "day": _M.day,
}
_DECODER: Final = msgspec.json.Decoder(ModelCall)
_ENCODER: Final = msgspec.json.Encoder()


class StoreCallRecorder:
    """Records :class:`ModelCall` records in the state database; finds them for replay.

    Implements :class:`sitemesh.models.CallRecorder`.

    Args:
        store: the site's open state store (migrated to ``0004`` or later).
        prices: prices the billed calls exactly; ``None``: use each call's ``cost_usd``.
        site: the site name stored with each call (``Settings.site``).
        ready: awaited before each database access (e.g. a :class:`StoreOpener`);
            ``None``: ``store`` is already open.

    Attributes:
        store: the state store (close it on shutdown if this recorder opened it).
    """

    def __init__(
        self,
        store: Store,
        prices: PriceTable | None = None,
        *,
        site: str = "",
        ready: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.store = store
        self._prices = prices
        self._site = site
        self._ready = ready

    async def _open(self) -> Store:
        if self._ready is not None:
            await self._ready()
        return self.store

    def cost_nanos(self, call: ModelCall) -> int | None:
        """The cost of ``call`` in nano-units (1e-9 of the currency), or ``None`` if unknown.

        Args:
            call: the record.

        Returns:
            ``0`` for outcomes that are not billed, the price-table cost of billed
            ones (rounded up), else ``call.cost_usd``, else ``None``.
        """
        if call.outcome not in BILLED_OUTCOMES:
            return 0
        if self._prices is not None:
            try:
                cost = self._prices.cost(
                    f"{call.provider}/{call.model}", call.tokens_in, call.tokens_out
                )
            except UnknownModelPrice:
                pass
            else:
                return to_nanos(cost)
        if call.cost_usd is not None:
            return to_nanos(Decimal(repr(call.cost_usd)))
        return None

    async def record(self, call: ModelCall) -> None:
        """Store ``call`` once (a second record with the same ``call_id`` is dropped).

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        values = {
            "call_id": call.call_id,
            "call_key": call.call_key,
            "task_id": call.task_id,
            "tenant": call.tenant,
            "agent": call.agent,
            "site": self._site,
            "kind": call.kind,
            "provider": call.provider,
            "model": f"{call.provider}/{call.model}",
            "prompt_hash": call.prompt_hash,
            "outcome": call.outcome,
            "attempts": call.attempts,
            "tokens_in": call.tokens_in,
            "tokens_out": call.tokens_out,
            "cost_nanos": self.cost_nanos(call),
            "latency_ms": call.latency_ms,
            "error": call.error,
            "started_at": call.started_at,
            "day": call.started_at.astimezone(UTC).date().isoformat(),
            "record": _ENCODER.encode(call),
        }
        store = await self._open()
        stmt = store._insert(ModelCallRow).values(**values)
        async with store._write() as conn:
            await conn.execute(stmt.on_conflict_do_nothing(index_elements=["call_id"]))

    async def lookup(self, prompt_hash: str) -> ModelCall | None:
        """The most recent ``ok`` call for ``prompt_hash`` (for replay), or ``None``."""
        stmt = (
            select(_M.record)
            .where(_M.prompt_hash == prompt_hash, _M.outcome == "ok")
            .order_by(_M.started_at.desc(), _M.id.desc())
            .limit(1)
        )
        async with (await self._open())._engine.connect() as conn:
            raw = (await conn.execute(stmt)).scalar_one_or_none()
        return None if raw is None else _DECODER.decode(raw)

    async def calls(self, task_id: str) -> list[ModelCall]:
        """Every recorded call of ``task_id``, in start order."""
        stmt = select(_M.record).where(_M.task_id == task_id).order_by(_M.started_at, _M.id)
        async with (await self._open())._engine.connect() as conn:
            rows = (await conn.execute(stmt)).scalars().all()
        return [_DECODER.decode(r) for r in rows]


@dataclass(frozen=True, slots=True)
class CostRow:
    """One group of a cost rollup.

    Attributes:
        key: the group (a task id, agent, ``<provider>/<model>``, tenant or
            ``YYYY-MM-DD`` UTC day).
        calls: recorded calls (every outcome).
        ok: calls with outcome ``ok``.
        tokens_in: input tokens.
        tokens_out: output tokens.
        cost: summed cost in the price table's currency (unpriced calls count 0).
        unpriced: billed calls whose model had no price (their cost is unknown).
        latency_ms: mean latency per call, in milliseconds.
    """

    key: str
    calls: int
    ok: int
    tokens_in: int
    tokens_out: int
    cost: Decimal
    unpriced: int
    latency_ms: float

    @property
    def tokens(self) -> int:
        """Input + output tokens."""
        return self.tokens_in + self.tokens_out


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def _rollup_query(
    by: CostBy, *, prefix: str | None, since: datetime | None, task_id: str | None
) -> Select[Any]:
    col = _COLUMN[by]
    stmt = select(
        col.label("key"),
        func.count().label("calls"),
        func.sum(case((_M.outcome == "ok", 1), else_=0)).label("ok"),
        func.coalesce(func.sum(_M.tokens_in), 0).label("tokens_in"),
        func.coalesce(func.sum(_M.tokens_out), 0).label("tokens_out"),
        func.coalesce(func.sum(_M.cost_nanos), 0).label("cost_nanos"),
        func.sum(case((_M.cost_nanos.is_(None), 1), else_=0)).label("unpriced"),
        func.coalesce(func.avg(_M.latency_ms), 0.0).label("latency_ms"),
    ).group_by(col)
    if prefix:
        stmt = stmt.where(_M.task_id.like(_like_prefix(prefix), escape="\\"))
    if since is not None:
        stmt = stmt.where(_M.started_at >= since)
    if task_id is not None:
        stmt = stmt.where(_M.task_id == task_id)
    return stmt


async def cost_rollup(
    store: Store,
    by: CostBy = "task",
    *,
    prefix: str | None = None,
    since: datetime | None = None,
    task_id: str | None = None,
) -> list[CostRow]:
    """Recorded calls grouped by ``by``, with calls, tokens, cost and mean latency.

    Args:
        store: the state store.
        by: ``task``, ``agent``, ``model``, ``tenant`` or ``day`` (UTC).
        prefix: only tasks whose id starts with this.
        since: only calls started at or after this time (aware UTC).
        task_id: only this task's calls.

    Returns:
        The groups: by day in date order, otherwise most expensive first (ties by
        tokens, then key).

    Raises:
        ValueError: ``by`` is not one of :data:`COST_KEYS`.
    """
    if by not in _COLUMN:
        raise ValueError(f"cannot group cost by {by!r}; use one of {', '.join(COST_KEYS)}")
    stmt = _rollup_query(by, prefix=prefix, since=since, task_id=task_id)
    async with store._engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    out = [
        CostRow(
            key=str(r.key),
            calls=int(r.calls),
            ok=int(r.ok or 0),
            tokens_in=int(r.tokens_in),
            tokens_out=int(r.tokens_out),
            cost=from_nanos(int(r.cost_nanos)),
            unpriced=int(r.unpriced or 0),
            latency_ms=float(r.latency_ms),
        )
        for r in rows
    ]
    if by == "day":
        return sorted(out, key=lambda c: c.key)
    return sorted(out, key=lambda c: (-c.cost, -c.tokens, c.key))


def total(rows: Sequence[CostRow], key: str = "total") -> CostRow:
    """The sum of rollup ``rows`` as one row (mean latency weighted by calls)."""
    calls = sum(r.calls for r in rows)
    return CostRow(
        key=key,
        calls=calls,
        ok=sum(r.ok for r in rows),
        tokens_in=sum(r.tokens_in for r in rows),
        tokens_out=sum(r.tokens_out for r in rows),
        cost=sum((r.cost for r in rows), Decimal(0)),
        unpriced=sum(r.unpriced for r in rows),
        latency_ms=sum(r.latency_ms * r.calls for r in rows) / calls if calls else 0.0,
    )


class StoreOpener:
    """Opens (migrates) a :class:`Store` once, on first use, for objects built synchronously.

    Args:
        store: the store, not opened yet.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock: asyncio.Lock | None = None
        self._opened = False

    async def __call__(self) -> Store:
        """Open the store if it is not open yet; returns it.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database is unreachable or the
                migration failed (the next call tries again).
        """
        if not self._opened:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if not self._opened:
                    await self.store.open()
                    self._opened = True
        return self.store


def prices_file(settings: Settings) -> Path:
    """The price and budget file: ``<state_dir>/prices.toml`` if present, else the bundled one.

    The bundled file holds example prices and no budgets; an operator sets real
    prices and budgets by putting their own ``prices.toml`` in the state directory.
    """
    own = settings.state_dir / PRICES_FILE_NAME
    return own if own.is_file() else DEFAULT_PRICES_FILE


def ledger_for_settings(
    settings: Settings, *, store: Store | None = None
) -> tuple[StoreCallRecorder, LedgerBudget]:
    """The call recorder and budget hook of a process, on the site's state database.

    Built synchronously (``ModelClient.from_settings(..., recorder=r, budget=b)``);
    the store is opened (migrated) on first use. Close ``recorder.store`` on shutdown.

    Args:
        settings: ``db_url``, ``site`` and ``state_dir`` (for :func:`prices_file`).
        store: an already open store to use instead of a new one.

    Returns:
        ``(recorder, budget)``: a :class:`StoreCallRecorder` and a
        :class:`~sitemesh.models.LedgerBudget` over a :class:`SqlBudgetLedger`.

    Raises:
        ConfigError: the price/budget file is unreadable or invalid (names the key).
    """
    path = prices_file(settings)
    prices = PriceTable.from_toml(path)
    policy = BudgetPolicy.from_toml(path)
    ready = None
    if store is None:
        store = Store(settings.db_url)
        ready = StoreOpener(store)
    recorder = StoreCallRecorder(store, prices, site=settings.site, ready=ready)
    ledger = SqlBudgetLedger(store, policy, prices, ready=ready)
    return recorder, LedgerBudget(ledger)
