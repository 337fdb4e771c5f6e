"""End to end: the real ``ModelClient`` charging budgets and recording calls in the site
database through :func:`ledger_for_settings` (a fake backend stands in for vLLM)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sitemesh.cli._cost_cmds import task_cost_lines
from sitemesh.config import DbSettings, Settings
from sitemesh.errors import AllModelsFailed
from sitemesh.models import (
    CallContext,
    ChatMessage,
    ModelClient,
    ModelRequest,
    ModelResponse,
    Router,
    Usage,
)
from sitemesh.models._ledger import cost_rollup, ledger_for_settings, prices_file
from sitemesh.models._prices import DEFAULT_PRICES_FILE

OPERATOR_FILE = """
[models."vllm/*"]
input_per_mtok = 1.00
output_per_mtok = 2.00

[budgets.task."*"]
max_tokens = 250
"""


class FakeVllm:
    """Answers every request with 50 input / 20 output tokens."""

    provider = "vllm"
    timeout_s = 5.0

    def __init__(self) -> None:
        self.calls = 0

    async def complete(
        self, request: ModelRequest, model: str, *, max_tokens: int, on_delta: object = None
    ) -> ModelResponse:
        self.calls += 1
        return ModelResponse(
            text=f"answer {self.calls}",
            usage=Usage(tokens_in=50, tokens_out=20),
            provider="vllm",
            model=model,
        )

    async def aclose(self) -> None:
        pass


async def test_client_charges_budgets_and_records_every_call(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path,
        db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'site.db'}"),
    )
    assert prices_file(settings) == DEFAULT_PRICES_FILE
    (tmp_path / "prices.toml").write_text(OPERATOR_FILE)
    assert prices_file(settings) == tmp_path / "prices.toml"

    recorder, budget = ledger_for_settings(settings)
    backend = FakeVllm()
    client = ModelClient(
        {"vllm": backend}, Router(site_chain=["vllm/qwen"]), recorder=recorder, budget=budget
    )
    ctx = CallContext(kind="planning", tenant="acme", agent="planner", task_id="t-1")
    try:

        def request(i: int) -> ModelRequest:
            return ModelRequest(
                messages=[ChatMessage(role="user", content=f"plan {i}")], max_tokens=100
            )

        # each call holds its estimate (2 prompt + 100 output tokens) and is charged 70
        answers = [await client.complete(request(i), ctx) for i in range(3)]
        with pytest.raises(AllModelsFailed):  # 3 x 70 = 210 spent; 210 + 102 > 250
            await client.complete(request(3), ctx)
        assert len(answers) == backend.calls == 3

        calls = await recorder.calls("t-1")
        assert [c.outcome for c in calls] == ["ok", "ok", "ok", "budget_denied"]
        assert (
            "task budget of 't-1' exceeded: tokens limit 250 tokens, spent 210" in calls[-1].error
        )
        assert calls[0].cost_usd == pytest.approx(0.00009)  # 50 * 1e-6 + 20 * 2e-6

        (row,) = await cost_rollup(recorder.store, "task")
        assert (row.key, row.calls, row.ok, row.tokens_in, row.tokens_out) == ("t-1", 4, 3, 150, 60)
        assert str(row.cost) == "0.00027"
        assert (await task_cost_lines(recorder.store, "t-1"))[0] == (
            "model calls: 4 (3 ok), 150 tokens in / 60 tokens out, 0.000270 USD"
        )
    finally:
        await client.aclose()
        await recorder.store.close()
