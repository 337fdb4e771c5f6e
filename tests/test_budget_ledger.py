"""Budgets: reserve before the call, settle after — in memory, on SQLite and on PostgreSQL.

The headline test is :func:`test_200_concurrent_calls_against_a_budget_of_50`: 200
concurrent reserve → (simulated call) → settle against budgets that allow exactly 50
calls' worth; exactly 50 are charged, 150 are refused with a :class:`BudgetExceeded`
naming the budget, and the counters hold exactly 50 calls (nothing double-counted,
nothing left held).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from sitemesh.errors import BudgetExceeded, ConfigError, PermanentError, UnknownModelPrice
from sitemesh.models._budget import (
    BudgetKey,
    BudgetLedger,
    BudgetLimit,
    BudgetPolicy,
    LedgerBudget,
    MemoryBudgetLedger,
    Reservation,
)
from sitemesh.models._budget_sql import SqlBudgetLedger
from sitemesh.models._prices import PriceTable
from sitemesh.models._types import Usage
from sitemesh.state import Store
from tests._dbs import fresh_db

MODEL = "openai/gpt-4o-mini"  # 0.15 in / 0.60 out per 1M tokens in the test table
PRICES = PriceTable.from_mapping(
    {
        "models": {
            MODEL: {"input_per_mtok": Decimal("0.15"), "output_per_mtok": Decimal("0.60")},
            "vllm/*": {"input_per_mtok": 0, "output_per_mtok": 0},
        }
    },
    source="test",
)
EST_IN, EST_OUT = 600, 400
CALL_TOKENS = EST_IN + EST_OUT  # 1,000 tokens per call
CALL_COST = PRICES.cost(MODEL, EST_IN, EST_OUT)  # 0.00033 USD per call
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

MakeLedger = Callable[..., BudgetLedger]


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def make_ledger(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MakeLedger]:
    """``make_ledger(policy, **kw)``: a fresh ledger of the parametrised kind."""
    if request.param == "memory":
        yield lambda policy, **kw: MemoryBudgetLedger(policy, PRICES)
        return
    async with fresh_db(request.param, tmp_path) as url, Store(url) as store:
        yield lambda policy, **kw: SqlBudgetLedger(store, policy, PRICES, **kw)


def key(task: str = "t-1", tenant: str = "acme", agent: str = "planner") -> BudgetKey:
    return BudgetKey(tenant=tenant, agent=agent, task_id=task)


async def reserve(
    ledger: BudgetLedger,
    k: BudgetKey,
    est_in: int = EST_IN,
    est_out: int = EST_OUT,
    now: datetime | None = None,
    model: str = MODEL,
) -> Reservation:
    return await ledger.reserve(
        k, model=model, est_tokens_in=est_in, est_tokens_out=est_out, now=now
    )


# -- the concurrency guarantee --------------------------------------------------------
async def test_200_concurrent_calls_against_a_budget_of_50(make_ledger: MakeLedger) -> None:
    policy = BudgetPolicy(
        task={"*": BudgetLimit(max_tokens=50 * CALL_TOKENS)},
        tenant={"*": BudgetLimit(max_cost=50 * CALL_COST, period="day")},
    )
    ledger = make_ledger(policy)
    k = key("t-conc")
    rng = random.Random(7)
    settled: list[Reservation] = []

    async def one_call() -> BudgetExceeded | None:
        try:
            res = await reserve(ledger, k, now=T0)
        except BudgetExceeded as exc:
            return exc
        await asyncio.sleep(rng.random() * 0.002)  # the model call
        charge = await ledger.settle(res, EST_IN, EST_OUT)
        assert charge.applied
        settled.append(res)
        return None

    results = await asyncio.gather(*(one_call() for _ in range(200)))
    refusals = [r for r in results if r is not None]
    charged = len(settled)

    assert charged <= 50
    assert charged == 50  # every call settles at its estimate, so exactly 50 fit
    assert len(refusals) == 150
    for exc in refusals:
        assert isinstance(exc, PermanentError)
        assert exc.scope in ("task", "tenant")
        assert exc.limit in (50 * CALL_TOKENS, 50 * CALL_COST)
        msg = str(exc)
        assert "budget of" in msg
        assert "exceeded" in msg
        assert "limit" in msg
        assert "spent" in msg
        assert "held by calls in flight" in msg
        assert "this call needs" in msg
        spent, held, requested = exc.spent, exc.held, exc.requested
        assert isinstance(spent, int | Decimal)
        assert isinstance(held, int | Decimal)
        assert isinstance(requested, int | Decimal)
        assert spent + held + requested > exc.limit  # type: ignore[operator]
    assert len({r.reservation_id for r in settled}) == 50

    # nothing double-counted, nothing left held
    task = await ledger.usage("task", "t-conc", now=T0)
    assert (task.spent_tokens, task.held_tokens, task.calls) == (50 * CALL_TOKENS, 0, 50)
    assert task.spent_cost == 50 * CALL_COST
    tenant = await ledger.usage("tenant", "acme", now=T0)
    assert (tenant.spent_tokens, tenant.held_tokens, tenant.calls) == (50 * CALL_TOKENS, 0, 50)
    assert tenant.spent_cost == Decimal("0.0165")
    assert tenant.held_cost == 0

    # a settle retried after the fact charges nothing
    again = await ledger.settle(settled[0], EST_IN, EST_OUT)
    assert not again.applied
    assert (await ledger.usage("task", "t-conc", now=T0)).spent_tokens == 50 * CALL_TOKENS


async def test_concurrent_calls_with_failures_release_their_holds(
    make_ledger: MakeLedger,
) -> None:
    policy = BudgetPolicy(agent={"planner": BudgetLimit(max_tokens=30 * CALL_TOKENS)})
    ledger = make_ledger(policy)
    outcomes: list[str] = []

    async def one_call(i: int) -> None:
        try:
            res = await reserve(ledger, key(f"t-{i}"), now=T0)
        except BudgetExceeded:
            outcomes.append("refused")
            return
        await asyncio.sleep(0)
        if i % 4 == 0:  # the backend failed: no tokens used
            assert await ledger.release(res)
            outcomes.append("failed")
        else:
            await ledger.settle(res, EST_IN, EST_OUT)
            outcomes.append("ok")

    await asyncio.gather(*(one_call(i) for i in range(120)))
    usage = await ledger.usage("agent", "planner", now=T0)
    assert usage.held_tokens == 0
    assert usage.held_cost == 0
    assert usage.calls == outcomes.count("ok")
    assert usage.spent_tokens == outcomes.count("ok") * CALL_TOKENS <= 30 * CALL_TOKENS
    assert outcomes.count("refused") > 0


# -- settle / release semantics -------------------------------------------------------
async def test_settle_replaces_the_hold_and_frees_the_difference(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(BudgetPolicy(task={"*": BudgetLimit(max_tokens=3000)}))
    k = key()
    first = await reserve(ledger, k, 1000, 1000, now=T0)  # holds 2,000 of 3,000
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, k, 1000, 1000, now=T0)
    err = info.value
    assert (err.scope, err.name, err.resource, err.period) == ("task", "t-1", "tokens", None)
    assert (err.limit, err.spent, err.held, err.requested) == (3000, 0, 2000, 2000)
    assert str(err) == (
        "task budget of 't-1' exceeded: tokens limit 3000 tokens, spent 0 tokens, "
        "held by calls in flight 2000 tokens, this call needs 2000 tokens"
    )

    charge = await ledger.settle(first, 300, 200)  # used 500 of the 2,000 held
    assert charge.applied
    assert charge.tokens == 500
    assert charge.cost == PRICES.cost(MODEL, 300, 200) == Decimal("0.000165")
    usage = await ledger.usage("task", "t-1")
    assert (usage.spent_tokens, usage.held_tokens, usage.calls) == (500, 0, 1)
    assert usage.spent_cost == Decimal("0.000165")

    second = await reserve(ledger, k, 1000, 1000, now=T0)  # 500 + 2,000 <= 3,000: fits now
    assert (await ledger.usage("task", "t-1")).held_tokens == 2000
    await ledger.settle(second, 1000, 1000)
    assert (await ledger.usage("task", "t-1")).spent_tokens == 2500


async def test_usage_above_the_estimate_is_charged_and_blocks_later_calls(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger(BudgetPolicy(task={"*": BudgetLimit(max_tokens=1500)}))
    res = await reserve(ledger, key(), 500, 500)
    charge = await ledger.settle(res, 1200, 600)  # the backend used more than estimated
    assert charge.tokens == 1800
    assert (await ledger.usage("task", "t-1")).spent_tokens == 1800
    with pytest.raises(BudgetExceeded, match="spent 1800 tokens"):
        await reserve(ledger, key(), 1, 1)


async def test_release_gives_the_hold_back_once(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(BudgetPolicy(task={"*": BudgetLimit(max_tokens=1000)}))
    res = await reserve(ledger, key())
    assert (await ledger.usage("task", "t-1")).held_tokens == 1000
    assert await ledger.release(res)
    assert not await ledger.release(res)
    usage = await ledger.usage("task", "t-1")
    assert (usage.spent_tokens, usage.held_tokens, usage.calls) == (0, 0, 0)
    # a settle after a release charges nothing
    assert not (await ledger.settle(res, EST_IN, EST_OUT)).applied
    assert (await ledger.usage("task", "t-1")).spent_tokens == 0
    # and the whole budget is available again
    await ledger.settle(await reserve(ledger, key()), EST_IN, EST_OUT)
    assert (await ledger.usage("task", "t-1")).spent_tokens == 1000


async def test_reserving_context_releases_unless_settled(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(BudgetPolicy(task={"*": BudgetLimit(max_tokens=5000)}))
    with pytest.raises(RuntimeError, match="backend down"):
        async with ledger.reserving(
            key(), model=MODEL, est_tokens_in=EST_IN, est_tokens_out=EST_OUT
        ):
            raise RuntimeError("backend down")
    assert (await ledger.usage("task", "t-1")).held_tokens == 0
    async with ledger.reserving(
        key(), model=MODEL, est_tokens_in=EST_IN, est_tokens_out=EST_OUT
    ) as res:
        await ledger.settle(res, 100, 50)
    usage = await ledger.usage("task", "t-1")
    assert (usage.spent_tokens, usage.held_tokens) == (150, 0)


async def test_tenant_daily_budget_resets_by_day(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(
        BudgetPolicy(
            tenant={"*": BudgetLimit(max_cost=2 * CALL_COST, period="day")},
            task={"*": BudgetLimit(max_tokens=10 * CALL_TOKENS)},  # period "total"
        )
    )
    day1, day2 = T0, T0 + timedelta(days=1)
    for task in ("a", "b"):
        await ledger.settle(await reserve(ledger, key(task), now=day1), EST_IN, EST_OUT)
    with pytest.raises(BudgetExceeded) as info:
        await reserve(ledger, key("c"), now=day1 + timedelta(hours=11))
    err = info.value
    assert (err.scope, err.name, err.period, err.resource) == (
        "tenant",
        "acme",
        "2026-03-01",
        "cost",
    )
    assert str(err) == (
        "tenant budget of 'acme' for 2026-03-01 exceeded: cost limit 0.00066 USD, "
        "spent 0.00066 USD, held by calls in flight 0 USD, this call needs 0.00033 USD"
    )
    # another tenant has its own daily budget
    await ledger.settle(await reserve(ledger, key("x", tenant="globex"), now=day1), 1, 1)
    # next UTC day: a fresh budget
    await ledger.settle(await reserve(ledger, key("c"), now=day2), EST_IN, EST_OUT)
    assert (await ledger.usage("tenant", "acme", now=day1)).spent_cost == 2 * CALL_COST
    assert (await ledger.usage("tenant", "acme", now=day2)).spent_cost == CALL_COST
    # the task budget has no period: day 2 counts on top of day 1
    await ledger.settle(await reserve(ledger, key("a"), now=day2), EST_IN, EST_OUT)
    assert (await ledger.usage("task", "a", now=day2)).spent_tokens == 2 * CALL_TOKENS


async def test_own_limit_wins_over_star_and_unlimited_scopes_are_free(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger(
        BudgetPolicy(
            agent={"*": BudgetLimit(max_tokens=1000), "synthesiser": BudgetLimit(max_tokens=3000)}
        )
    )
    await ledger.settle(await reserve(ledger, key(agent="planner")), EST_IN, EST_OUT)
    with pytest.raises(BudgetExceeded, match="agent budget of 'planner'"):
        await reserve(ledger, key(agent="planner"))
    for _ in range(3):
        await ledger.settle(await reserve(ledger, key(agent="synthesiser")), EST_IN, EST_OUT)
    # no tenant or task budget is configured: nothing is counted there
    assert (await ledger.usage("tenant", "acme")).calls == 0
    free = await reserve(ledger, key(agent="retriever"), model="vllm/qwen", now=T0)
    assert free.counters == ("agent|2026-03-01|retriever",)  # tokens count; cost is 0
    assert free.cost == 0


async def test_unknown_model_is_refused_only_where_a_cost_budget_applies(
    make_ledger: MakeLedger,
) -> None:
    ledger = make_ledger(
        BudgetPolicy(
            task={"*": BudgetLimit(max_tokens=5000)},
            tenant={"acme": BudgetLimit(max_cost=Decimal(1))},
        )
    )
    with pytest.raises(UnknownModelPrice, match="'openai/gpt-9'") as info:
        await reserve(ledger, key(), model="openai/gpt-9")
    assert info.value.model == "openai/gpt-9"
    assert (await ledger.usage("task", "t-1")).held_tokens == 0  # nothing held anywhere
    # another tenant has only a token budget: the call is allowed, its tokens count
    res = await reserve(ledger, key(tenant="globex"), model="openai/gpt-9")
    assert not res.priced
    charge = await ledger.settle(res, 10, 20)
    assert (charge.tokens, charge.cost, charge.priced) == (30, 0, False)
    assert (await ledger.usage("task", "t-1")).spent_tokens == 30
    hook = LedgerBudget(ledger)
    res = await hook.reserve("k", "globex", "planner", "t-2", 1, 1, "openai/gpt-9")
    assert await hook.settle(res, Usage(tokens_in=1, tokens_out=1)) is None  # cost unknown


async def test_no_budget_configured_holds_nothing(make_ledger: MakeLedger) -> None:
    ledger = make_ledger(BudgetPolicy())
    res = await reserve(ledger, key())
    assert res.counters == ()
    charge = await ledger.settle(res, 10, 20)
    assert charge.applied
    assert charge.cost == PRICES.cost(MODEL, 10, 20)


async def test_client_hook_adapter(make_ledger: MakeLedger) -> None:
    hook = LedgerBudget(make_ledger(BudgetPolicy(task={"*": BudgetLimit(max_tokens=1500)})))
    res = await hook.reserve("k" * 32, "acme", "planner", "t-1", EST_IN, EST_OUT, MODEL)
    cost = await hook.settle(res, Usage(tokens_in=1000, tokens_out=100))
    assert cost == pytest.approx(0.00021)
    with pytest.raises(BudgetExceeded):
        await hook.reserve("k" * 32, "acme", "planner", "t-1", EST_IN, EST_OUT, MODEL)
    res = await hook.reserve("k" * 32, "acme", "planner", "t-1", 100, 100, MODEL)
    await hook.release(res)


# -- SQL only: holds of crashed callers expire ----------------------------------------
async def test_expired_holds_are_given_back_and_a_late_settle_charges_once(
    tmp_path: Path,
) -> None:
    async with fresh_db("sqlite", tmp_path) as url, Store(url) as store:
        ledger = SqlBudgetLedger(
            store,
            BudgetPolicy(task={"*": BudgetLimit(max_tokens=1000)}),
            PRICES,
            hold_ttl=timedelta(minutes=1),
        )
        lost = await reserve(ledger, key(), now=T0)  # its worker "dies"
        with pytest.raises(BudgetExceeded, match="held by calls in flight 1000 tokens"):
            await reserve(ledger, key(), now=T0 + timedelta(seconds=30))
        # past the TTL, reserve gives the stale hold back by itself
        fresh = await reserve(ledger, key(), now=T0 + timedelta(minutes=2))
        assert (await ledger.usage("task", "t-1")).held_tokens == 1000
        await ledger.settle(fresh, EST_IN, EST_OUT)
        # the lost call did happen after all: its late settle charges it, once
        assert (await ledger.settle(lost, 100, 100)).applied
        assert not (await ledger.settle(lost, 100, 100)).applied
        usage = await ledger.usage("task", "t-1")
        assert (usage.spent_tokens, usage.held_tokens, usage.calls) == (1200, 0, 2)
        assert await ledger.expire_holds(now=T0 + timedelta(days=1)) == 0


# -- configuration ----------------------------------------------------------------------
def test_policy_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(
        """
[models."openai/gpt-4o-mini"]
input_per_mtok = 0.15
output_per_mtok = 0.60

[budgets.tenant."*"]
max_tokens = 2_000_000
max_cost = 5.00

[budgets.tenant."acme"]
max_cost = 20.10

[budgets.task."*"]
max_tokens = 200_000
"""
    )
    policy = BudgetPolicy.from_toml(path)
    assert policy.limit("tenant", "acme") == BudgetLimit(max_cost=Decimal("20.10"), period="day")
    assert policy.limit("tenant", "other") == BudgetLimit(
        max_tokens=2_000_000, max_cost=Decimal("5.00"), period="day"
    )
    assert policy.limit("task", "t") == BudgetLimit(max_tokens=200_000, period="total")
    assert policy.limit("agent", "planner") is None
    counters = policy.counters(key(), T0)
    assert [c.key for c in counters] == ["task||t-1", "tenant|2026-03-01|acme"]
    assert counters[1].max_nanos == 20_100_000_000
    assert not BudgetPolicy.from_toml()  # the bundled file sets no budgets


@pytest.mark.parametrize(
    ("budgets", "where"),
    [
        ({"team": {}}, "budgets.team"),
        ({"task": {"*": {"max_tokens": -1}}}, 'budgets.task."*".max_tokens'),
        ({"task": {"*": {"max_tokens": 1.5}}}, 'budgets.task."*".max_tokens'),
        ({"task": {"*": {"max_cost": "lots"}}}, 'budgets.task."*".max_cost'),
        ({"task": {"*": {"period": "week", "max_tokens": 1}}}, 'budgets.task."*".period'),
        ({"task": {"*": {"max_token": 1}}}, 'budgets.task."*".max_token'),
        ({"task": {"*": {}}}, 'budgets.task."*"'),
    ],
)
def test_bad_budget_names_the_key(budgets: dict[str, object], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        BudgetPolicy.from_mapping({"budgets": budgets})
    assert info.value.key == where
