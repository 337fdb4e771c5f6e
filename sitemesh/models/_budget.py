"""Token and cost budgets per tenant, agent and task: reserved before a call, settled after.

Why reserve-then-settle: checking "spent < limit" before a call and adding the
cost after it lets N concurrent calls all pass the check and overspend N times
(the race users report against LiteLLM's budgets). Here a call first *reserves* its
estimated tokens and cost in every budget that applies to it, atomically: the
reservation succeeds only if, for each budget,

    spent + held (by calls in flight) + this estimate <= limit

and then holds the estimate, so concurrent calls see it. After the call,
:meth:`BudgetLedger.settle` replaces the hold with the actual usage (lower usage
frees the difference; higher usage is charged in full — the call happened — and
later reservations are refused); on failure :meth:`BudgetLedger.release` gives the
hold back. Settling or releasing twice does nothing the second time.

Budgets (:class:`BudgetPolicy`, :mod:`._budget_policy`) come from the ``[budgets]``
table of the price TOML file; each has a token limit, a cost limit (in the price
table's currency) or both, and a period (a UTC day, or none). A scope with no
applicable budget is not limited and costs no bookkeeping.

Two ledgers:

* :class:`MemoryBudgetLedger` — one process (tests, the embedded single-process
  site); an :class:`asyncio.Lock` makes check-and-hold atomic.
* :class:`~sitemesh.models._budget_sql.SqlBudgetLedger` — several worker
  processes sharing the site's state database (PostgreSQL or SQLite); see there.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from ..errors import BudgetExceeded, UnknownModelPrice
from ..schemas import utcnow
from ._budget_policy import (
    SCOPES,
    BudgetKey,
    BudgetLimit,
    BudgetPolicy,
    Period,
    Scope,
    _Counter,
    counter_key,
)
from ._prices import PriceTable, from_nanos, to_nanos
from ._types import Usage

__all__ = [
    "SCOPES",
    "BudgetKey",
    "BudgetLedger",
    "BudgetLimit",
    "BudgetPolicy",
    "BudgetUsage",
    "Charge",
    "LedgerBudget",
    "MemoryBudgetLedger",
    "Period",
    "Reservation",
    "Scope",
]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Estimated tokens and cost held for one call until it is settled or released.

    Attributes:
        reservation_id: unique id (32 hex digits).
        key: who the call is for.
        model: the model it was priced for.
        tokens: tokens held (estimated input + output).
        cost: cost held, exact, in the price table's currency.
        nanos: ``cost`` in nano-units rounded up (what the counters hold).
        counters: keys of the budget counters holding it (empty: no budget applies).
        created_at: when it was made (UTC); daily budgets use this day.
        priced: ``False`` when the model has no price; allowed only when no cost
            budget applies (then only tokens are counted).
    """

    reservation_id: str
    key: BudgetKey
    model: str
    tokens: int
    cost: Decimal
    nanos: int
    counters: tuple[str, ...]
    created_at: datetime
    priced: bool = True


@dataclass(frozen=True, slots=True)
class Charge:
    """What :meth:`BudgetLedger.settle` charged.

    Attributes:
        tokens: input + output tokens of the call.
        cost: exact cost of the call in the price table's currency.
        nanos: the amount added to the budgets, in nano-units (``cost`` rounded up).
        applied: ``False`` when the reservation had been settled or released before
            (nothing was charged this time).
        priced: ``False`` when the model has no price (``cost`` is then 0; only
            tokens were counted).
    """

    tokens: int
    cost: Decimal
    nanos: int
    applied: bool
    priced: bool = True


@dataclass(frozen=True, slots=True)
class BudgetUsage:
    """Spent and held amounts of one budget counter.

    Attributes:
        spent_tokens: tokens charged by settled calls.
        spent_cost: cost charged by settled calls (price table currency).
        held_tokens: tokens held by calls in flight.
        held_cost: cost held by calls in flight.
        calls: settled calls.
    """

    spent_tokens: int = 0
    spent_cost: Decimal = field(default_factory=Decimal)
    held_tokens: int = 0
    held_cost: Decimal = field(default_factory=Decimal)
    calls: int = 0


def exceeded(
    counter: _Counter,
    *,
    spent_tokens: int,
    spent_nanos: int,
    held_tokens: int,
    held_nanos: int,
    tokens: int,
    nanos: int,
    currency: str,
) -> BudgetExceeded | None:
    """The error to raise if holding ``tokens``/``nanos`` would pass ``counter``'s limits."""
    period = counter.period or None
    if counter.max_tokens is not None and spent_tokens + held_tokens + tokens > counter.max_tokens:
        return BudgetExceeded(
            scope=counter.scope,
            name=counter.name,
            period=period,
            resource="tokens",
            limit=counter.max_tokens,
            spent=spent_tokens,
            held=held_tokens,
            requested=tokens,
            unit="tokens",
        )
    if counter.max_nanos is not None and spent_nanos + held_nanos + nanos > counter.max_nanos:
        return BudgetExceeded(
            scope=counter.scope,
            name=counter.name,
            period=period,
            resource="cost",
            limit=from_nanos(counter.max_nanos).normalize(),
            spent=from_nanos(spent_nanos).normalize(),
            held=from_nanos(held_nanos).normalize(),
            requested=from_nanos(nanos).normalize(),
            unit=currency,
        )
    return None


class BudgetLedger(abc.ABC):
    """Reserve → settle / release against the budgets of a :class:`BudgetPolicy`.

    Args:
        policy: the budgets.
        prices: prices the estimates and the actual usage.
    """

    def __init__(self, policy: BudgetPolicy, prices: PriceTable) -> None:
        self.policy = policy
        self.prices = prices

    def _prepare(
        self,
        key: BudgetKey,
        model: str,
        est_tokens_in: int,
        est_tokens_out: int,
        now: datetime | None,
    ) -> tuple[Reservation, list[_Counter]]:
        at = now or utcnow()
        counters = self.policy.counters(key, at)
        try:
            cost = self.prices.cost(model, est_tokens_in, est_tokens_out)
            priced = True
        except UnknownModelPrice:
            if any(c.max_nanos is not None for c in counters):
                raise  # a cost budget cannot bound a call it cannot price
            cost, priced = Decimal(0), False
        res = Reservation(
            reservation_id=uuid.uuid4().hex,
            key=key,
            model=model,
            tokens=est_tokens_in + est_tokens_out,
            cost=cost,
            nanos=to_nanos(cost),
            counters=tuple(c.key for c in counters),
            created_at=at,
            priced=priced,
        )
        return res, counters

    def _charge(
        self, res: Reservation, tokens_in: int, tokens_out: int, *, applied: bool
    ) -> Charge:
        cost = self.prices.cost(res.model, tokens_in, tokens_out) if res.priced else Decimal(0)
        return Charge(
            tokens=tokens_in + tokens_out,
            cost=cost,
            nanos=to_nanos(cost),
            applied=applied,
            priced=res.priced,
        )

    @abc.abstractmethod
    async def reserve(
        self,
        key: BudgetKey,
        *,
        model: str,
        est_tokens_in: int,
        est_tokens_out: int,
        now: datetime | None = None,
    ) -> Reservation:
        """Hold the estimated usage of one call in every budget that applies, atomically.

        Args:
            key: tenant, agent and task of the call.
            model: the model to be called (priced with the price table).
            est_tokens_in: estimated input tokens (e.g. the prompt's token count).
            est_tokens_out: estimated output tokens (e.g. the call's ``max_tokens``).
            now: the time of the call (UTC), choosing the day of daily budgets;
                ``None``: now.

        Returns:
            The reservation; pass it to :meth:`settle` or :meth:`release`.

        Raises:
            BudgetExceeded: a budget would be passed; nothing was held anywhere.
            UnknownModelPrice: ``model`` has no price and a cost budget applies
                (without one, only its tokens are counted).
        """

    @abc.abstractmethod
    async def settle(self, reservation: Reservation, tokens_in: int, tokens_out: int) -> Charge:
        """Replace the hold of a finished call with its actual usage.

        Usage above the estimate is charged in full (the call was made). A second
        settle (or a settle after :meth:`release`) charges nothing.

        Args:
            reservation: what :meth:`reserve` returned.
            tokens_in: actual input tokens reported by the backend.
            tokens_out: actual output tokens reported by the backend.

        Returns:
            The charge (``applied=False`` if it had been settled or released).
        """

    @abc.abstractmethod
    async def release(self, reservation: Reservation) -> bool:
        """Give back the hold of a call that failed before using any tokens.

        Returns:
            ``True`` if the hold was released now, ``False`` if it was already
            settled or released.
        """

    @abc.abstractmethod
    async def usage(self, scope: Scope, name: str, *, now: datetime | None = None) -> BudgetUsage:
        """Spent and held amounts of the budget of ``name`` in ``scope`` (at ``now``'s day).

        Returns:
            The usage; zeros when nothing was counted (or no budget applies).
        """

    def _counter_key_for(self, scope: Scope, name: str, now: datetime | None) -> str | None:
        lim = self.policy.limit(scope, name)
        if lim is None:
            return None
        return counter_key(scope, name, lim.period_of(scope, now or utcnow()))

    @contextlib.asynccontextmanager
    async def reserving(
        self,
        key: BudgetKey,
        *,
        model: str,
        est_tokens_in: int,
        est_tokens_out: int,
        now: datetime | None = None,
    ) -> AsyncIterator[Reservation]:
        """``async with ledger.reserving(...) as r:`` — released unless settled inside.

        Settle with ``await ledger.settle(r, tokens_in, tokens_out)`` in the block;
        leaving it any other way (an exception, cancellation, no settle) releases
        the hold.

        Raises:
            BudgetExceeded: on entering, as :meth:`reserve`.
        """
        res = await self.reserve(
            key, model=model, est_tokens_in=est_tokens_in, est_tokens_out=est_tokens_out, now=now
        )
        try:
            yield res
        finally:
            await asyncio.shield(self.release(res))


@dataclass(slots=True)
class _Tally:
    spent_tokens: int = 0
    spent_nanos: int = 0
    held_tokens: int = 0
    held_nanos: int = 0
    calls: int = 0


class MemoryBudgetLedger(BudgetLedger):
    """A ledger in this process's memory (one process; tests, the embedded site).

    Check-and-hold runs under an :class:`asyncio.Lock`, so concurrent tasks of one
    event loop cannot overspend. Counts are lost when the process exits.

    Args:
        policy: the budgets.
        prices: the price table.
    """

    def __init__(self, policy: BudgetPolicy, prices: PriceTable) -> None:
        super().__init__(policy, prices)
        self._lock = asyncio.Lock()
        self._tallies: dict[str, _Tally] = {}
        self._holds: dict[str, Reservation] = {}

    async def reserve(
        self,
        key: BudgetKey,
        *,
        model: str,
        est_tokens_in: int,
        est_tokens_out: int,
        now: datetime | None = None,
    ) -> Reservation:
        res, counters = self._prepare(key, model, est_tokens_in, est_tokens_out, now)
        if not counters:
            return res
        async with self._lock:
            for c in counters:
                t = self._tallies.get(c.key) or _Tally()
                err = exceeded(
                    c,
                    spent_tokens=t.spent_tokens,
                    spent_nanos=t.spent_nanos,
                    held_tokens=t.held_tokens,
                    held_nanos=t.held_nanos,
                    tokens=res.tokens,
                    nanos=res.nanos,
                    currency=self.prices.currency,
                )
                if err is not None:
                    raise err
            for c in counters:
                t = self._tallies.setdefault(c.key, _Tally())
                t.held_tokens += res.tokens
                t.held_nanos += res.nanos
            self._holds[res.reservation_id] = res
        return res

    async def settle(self, reservation: Reservation, tokens_in: int, tokens_out: int) -> Charge:
        charge = self._charge(reservation, tokens_in, tokens_out, applied=True)
        if not reservation.counters:
            return charge
        async with self._lock:
            if self._holds.pop(reservation.reservation_id, None) is None:
                return self._charge(reservation, tokens_in, tokens_out, applied=False)
            for k in reservation.counters:
                t = self._tallies[k]
                t.held_tokens -= reservation.tokens
                t.held_nanos -= reservation.nanos
                t.spent_tokens += charge.tokens
                t.spent_nanos += charge.nanos
                t.calls += 1
        return charge

    async def release(self, reservation: Reservation) -> bool:
        if not reservation.counters:
            return False
        async with self._lock:
            if self._holds.pop(reservation.reservation_id, None) is None:
                return False
            for k in reservation.counters:
                t = self._tallies[k]
                t.held_tokens -= reservation.tokens
                t.held_nanos -= reservation.nanos
        return True

    async def usage(self, scope: Scope, name: str, *, now: datetime | None = None) -> BudgetUsage:
        k = self._counter_key_for(scope, name, now)
        t = self._tallies.get(k) if k is not None else None
        if t is None:
            return BudgetUsage()
        return BudgetUsage(
            spent_tokens=t.spent_tokens,
            spent_cost=from_nanos(t.spent_nanos),
            held_tokens=t.held_tokens,
            held_cost=from_nanos(t.held_nanos),
            calls=t.calls,
        )


class LedgerBudget:
    """The :class:`~sitemesh.models.ModelClient`'s budget hook over a :class:`BudgetLedger`.

    Implements :class:`sitemesh.models.Budget` (``ModelClient(budget=LedgerBudget(l))``).
    The client's ``call_key`` is not used as the reservation's identity: two
    concurrent calls with the same key (same task, agent, prompt and model) are two
    calls and are both charged; the hold of a redelivered task whose first worker
    died is given back by expiry (:meth:`SqlBudgetLedger.expire_holds`) instead.

    Args:
        ledger: the ledger to reserve in.
    """

    def __init__(self, ledger: BudgetLedger) -> None:
        self.ledger = ledger

    async def reserve(
        self,
        call_key: str,
        tenant: str,
        agent: str,
        task_id: str,
        est_tokens_in: int,
        est_tokens_out: int,
        model: str,
    ) -> Reservation:
        """Reserve in the ledger (see :meth:`BudgetLedger.reserve`).

        Args:
            call_key: the client's key of the call (not used, see the class).
            tenant: the task's tenant.
            agent: the calling role.
            task_id: the task.
            est_tokens_in: estimated prompt tokens.
            est_tokens_out: the call's output cap in tokens.
            model: ``<provider>/<model>``, the price table key.

        Returns:
            The reservation.

        Raises:
            BudgetExceeded: a budget would be passed.
            UnknownModelPrice: ``model`` has no price and a cost budget applies.
        """
        return await self.ledger.reserve(
            BudgetKey(tenant=tenant, agent=agent, task_id=task_id),
            model=model,
            est_tokens_in=est_tokens_in,
            est_tokens_out=est_tokens_out,
        )

    async def settle(self, reservation: Reservation, usage: Usage) -> float | None:
        """Settle with the backend's usage; the cost in the price table's currency.

        Returns:
            The call's cost as a float (the exact ``Decimal`` is in the ledger and
            the call ledger recomputes it from the prices); ``None`` for a model
            without a price.
        """
        charge = await self.ledger.settle(reservation, usage.tokens_in, usage.tokens_out)
        return float(charge.cost) if charge.priced else None

    async def release(self, reservation: Reservation) -> None:
        """Give the hold back (the call failed)."""
        await self.ledger.release(reservation)
