"""The call ledger and ``sitemesh cost``: recorded calls rolled up per task, agent, model,
tenant and day, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from sitemesh.cli._cost_cmds import EXIT_BAD_ARGS, EXIT_OK, show_cost, task_cost_lines
from sitemesh.config import DbSettings, Settings
from sitemesh.models._ledger import CostRow, StoreCallRecorder, cost_rollup, total
from sitemesh.models._prices import PriceTable
from sitemesh.models._types import ChatMessage, ModelCall, ModelRequest, ModelResponse, Usage
from sitemesh.state import Store
from tests._dbs import DB_KINDS, fresh_db

PRICES = PriceTable.from_mapping(
    {
        "models": {
            "openai/gpt-4o-mini": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"},
            "anthropic/claude-sonnet-4-0": {"input_per_mtok": 3, "output_per_mtok": 15},
            "vllm/*": {"input_per_mtok": 0, "output_per_mtok": 0},
        }
    }
)
DAY1 = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)
DAY2 = DAY1 + timedelta(hours=1)  # 2026-03-02 00:30 UTC


def call(
    n: int,
    task: str,
    agent: str,
    model: str = "openai/gpt-4o-mini",
    *,
    tokens: tuple[int, int] = (1000, 500),
    outcome: str = "ok",
    tenant: str = "acme",
    at: datetime = DAY1,
    cost_usd: float | None = None,
    latency_ms: float = 100.0,
) -> ModelCall:
    provider, name = model.split("/", 1)
    request = ModelRequest(messages=[ChatMessage(role="user", content=f"prompt {n}")])
    billed = outcome in ("ok", "invalid_output")
    return ModelCall(
        call_id=f"c{n:04d}",
        call_key=f"k{n}",
        prompt_hash=request.prompt_hash,
        provider=provider,
        model=name,
        outcome=outcome,  # type: ignore[arg-type]
        tokens_in=tokens[0] if billed else 0,
        tokens_out=tokens[1] if billed else 0,
        latency_ms=latency_ms,
        cost_usd=cost_usd,
        tenant=tenant,
        agent=agent,
        task_id=task,
        kind="synthesis",
        error="" if billed else "ModelTimeout: took too long",
        request=request,
        response=ModelResponse(
            text=f"answer {n}",
            provider=provider,
            model=name,
            usage=Usage(tokens_in=tokens[0], tokens_out=tokens[1]),
        )
        if billed
        else None,
        started_at=at,
    )


CALLS = [
    call(1, "run1-t1", "planner", at=DAY1, latency_ms=100),
    call(2, "run1-t1", "planner", at=DAY1, latency_ms=300),
    call(3, "run1-t1", "synthesiser", "anthropic/claude-sonnet-4-0", tokens=(2000, 1000)),
    call(4, "run1-t1", "synthesiser", "anthropic/claude-sonnet-4-0", outcome="timeout"),
    call(5, "run1-t2", "planner", "vllm/qwen2.5-7b", tokens=(5000, 800), at=DAY2),
    call(6, "run2-t3", "planner", tenant="globex", at=DAY2),
]
# gpt-4o-mini 1000/500: 0.00015 + 0.0003 = 0.00045; sonnet 2000/1000: 0.006 + 0.015 = 0.021
MINI, SONNET = Decimal("0.00045"), Decimal("0.021")


@pytest.fixture(params=DB_KINDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    async with fresh_db(request.param, tmp_path) as url, Store(url) as s:
        recorder = StoreCallRecorder(s, PRICES, site="eu1")
        for c in CALLS:
            await recorder.record(c)
        yield s


def by_key(rows: list[CostRow]) -> dict[str, CostRow]:
    return {r.key: r for r in rows}


async def test_rollup_by_task_agent_model_tenant_day(store: Store) -> None:
    tasks = await cost_rollup(store, "task")
    assert [r.key for r in tasks] == ["run1-t1", "run2-t3", "run1-t2"]  # most expensive first
    t1 = tasks[0]
    assert (t1.calls, t1.ok, t1.tokens_in, t1.tokens_out) == (4, 3, 4000, 2000)
    assert t1.cost == 2 * MINI + SONNET
    assert t1.latency_ms == pytest.approx(150.0)  # mean of 100, 300, 100, 100
    assert by_key(tasks)["run1-t2"].cost == 0  # self-hosted: priced at 0

    agents = by_key(await cost_rollup(store, "agent"))
    assert agents["planner"].calls == 4
    assert agents["planner"].cost == 3 * MINI
    assert agents["synthesiser"].cost == SONNET

    models = by_key(await cost_rollup(store, "model"))
    assert set(models) == {"openai/gpt-4o-mini", "anthropic/claude-sonnet-4-0", "vllm/qwen2.5-7b"}
    assert models["anthropic/claude-sonnet-4-0"].calls == 2
    assert models["anthropic/claude-sonnet-4-0"].ok == 1

    tenants = by_key(await cost_rollup(store, "tenant"))
    assert tenants["acme"].cost == 2 * MINI + SONNET
    assert tenants["globex"].cost == MINI

    days = await cost_rollup(store, "day")
    assert [r.key for r in days] == ["2026-03-01", "2026-03-02"]  # in date order, UTC
    assert days[0].cost == 2 * MINI + SONNET
    assert days[1].cost == MINI

    all_ = total(tasks)
    assert all_.calls == len(CALLS)
    assert all_.cost == 3 * MINI + SONNET
    assert all_.cost == sum((r.cost for r in days), Decimal(0))  # nothing double-counted

    run1 = await cost_rollup(store, "task", prefix="run1-")
    assert {r.key for r in run1} == {"run1-t1", "run1-t2"}
    since = await cost_rollup(store, "task", since=DAY2)
    assert {r.key for r in since} == {"run1-t2", "run2-t3"}
    assert await cost_rollup(store, "task", prefix="run1_") == []  # "_" is not a wildcard
    with pytest.raises(ValueError, match="cannot group cost by 'site'"):
        await cost_rollup(store, "site")  # type: ignore[arg-type]


async def test_record_is_idempotent_and_replay_finds_the_latest_ok(store: Store) -> None:
    recorder = StoreCallRecorder(store, PRICES)
    await recorder.record(CALLS[0])  # redelivered: dropped
    assert total(await cost_rollup(store, "task")).calls == len(CALLS)
    found = await recorder.lookup(CALLS[0].prompt_hash)
    assert found == CALLS[0]
    assert await recorder.lookup(CALLS[3].prompt_hash) is None  # timeout: not replayable
    assert await recorder.lookup("0" * 64) is None
    assert [c.call_id for c in await recorder.calls("run1-t1")] == [
        "c0001",
        "c0002",
        "c0003",
        "c0004",
    ]


async def test_cost_without_prices_uses_the_settled_cost_or_counts_unpriced(store: Store) -> None:
    recorder = StoreCallRecorder(store)  # no price table
    await recorder.record(call(10, "t-x", "planner", cost_usd=0.00045))
    await recorder.record(call(11, "t-x", "planner"))  # cost unknown
    await StoreCallRecorder(store, PRICES).record(call(12, "t-x", "planner", "openai/o9"))
    row = by_key(await cost_rollup(store, "task"))["t-x"]
    assert (row.calls, row.cost, row.unpriced) == (3, MINI, 2)


async def test_task_cost_lines(store: Store) -> None:
    assert await task_cost_lines(store, "run1-t1") == [
        "model calls: 4 (3 ok), 4,000 tokens in / 2,000 tokens out, 0.021900 USD",
        "  agent synthesiser: 2 calls, 2,000 / 1,000 tokens, 0.021000 USD",
        "  agent planner: 2 calls, 2,000 / 1,000 tokens, 0.000900 USD",
        "  model anthropic/claude-sonnet-4-0: 2 calls, 2,000 / 1,000 tokens, 0.021000 USD",
        "  model openai/gpt-4o-mini: 2 calls, 2,000 / 1,000 tokens, 0.000900 USD",
    ]
    assert await task_cost_lines(store, "nope") == ["model calls: none recorded"]


async def test_sitemesh_cost_renders_each_rollup(store: Store, tmp_path: Path) -> None:
    settings = Settings(db=DbSettings(url=store.url), state_dir=tmp_path)
    for by, expect in [
        ("task", ["run1-t1", "run2-t3", "0.021900 USD", "total", "0.022350 USD"]),
        ("agent", ["planner", "synthesiser", "0.001350 USD"]),
        ("model", ["anthropic/claude-sonnet-4-0", "vllm/qwen2.5-7b", "0.000000 USD"]),
        ("tenant", ["acme", "globex"]),
        ("day", ["2026-03-01", "2026-03-02", "day (UTC)"]),
    ]:
        console = Console(record=True, width=200)
        assert await show_cost(settings, console, by=by) == EXIT_OK
        out = console.export_text()
        assert f"model cost by {by}" in out
        for text in expect:
            assert text in out, (by, text, out)

    console = Console(record=True, width=200)
    assert await show_cost(settings, console, by="task", prefix="run2-", since=DAY1) == EXIT_OK
    out = console.export_text()
    assert "run2-t3" in out
    assert "run1-t1" not in out
    assert "for tasks run2-*" in out

    narrow = Console(record=True, width=40)
    assert await show_cost(settings, narrow, by="model", as_json=True) == EXIT_OK
    doc = json.loads(narrow.export_text())
    assert doc["by"] == "model"
    assert doc["groups"]
    assert all(g["calls"] >= 1 for g in doc["groups"])

    console = Console(record=True, width=200)
    assert await show_cost(settings, console, by="site") == EXIT_BAD_ARGS
    assert "use one of task, agent, model, tenant, day" in console.export_text()


async def test_sitemesh_cost_without_a_database(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    settings = Settings(state_dir=tmp_path / "none", db=DbSettings())
    assert await show_cost(settings, console) == EXIT_OK
    assert "no model calls recorded yet" in console.export_text()
