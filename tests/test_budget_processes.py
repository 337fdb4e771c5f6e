"""Cross-process budgets: 2 worker processes × 100 concurrent calls, one shared budget of 50.

Each process has its own engine and connection pool; only the database is shared.
Run on SQLite (``BEGIN IMMEDIATE``) and on PostgreSQL (conditional ``UPDATE`` under
row locks).
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from sitemesh.models._budget import BudgetLimit, BudgetPolicy
from sitemesh.models._budget_sql import SqlBudgetLedger
from sitemesh.models._prices import PriceTable
from sitemesh.state import Store, migrate
from tests._dbs import DB_KINDS, fresh_db

WORKER = Path(__file__).parent / "_workers" / "budget_worker.py"
PROCESSES, CALLS, CALL_TOKENS, ALLOWED = 2, 100, 1000, 50

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kind", DB_KINDS)
async def test_two_processes_never_overspend_a_shared_budget(kind: str, tmp_path: Path) -> None:
    async with fresh_db(kind, tmp_path) as url:
        await migrate(url)
        go = tmp_path / "go"
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(WORKER),
                url,
                str(CALLS),
                str(ALLOWED * CALL_TOKENS),
                "--go",
                str(go),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=str(Path(__file__).parent.parent),
            )
            for _ in range(PROCESSES)
        ]
        for p in procs:  # both imported and connected: release them together
            assert p.stdout is not None
            line = await asyncio.wait_for(p.stdout.readline(), 60)
            assert line.strip() == b"ready", line
        go.touch()
        outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 60)
        for p, (_, err) in zip(procs, outs, strict=True):
            assert p.returncode == 0, err.decode()[-2000:]
        results = [json.loads(out.decode().strip().splitlines()[-1]) for out, _ in outs]

        print(
            f"{kind}: per process (ok, refused, race s):",  # figures for -s runs
            [(r["ok"], r["refused"], round(r["race_s"], 2)) for r in results],
        )
        charged = sum(r["ok"] for r in results)
        refused = sum(r["refused"] for r in results)
        assert charged <= ALLOWED
        assert charged == ALLOWED
        assert refused == PROCESSES * CALLS - ALLOWED
        for r in results:
            if r["messages"]:
                assert r["messages"][0].startswith("task budget of 't-proc' exceeded: tokens limit")

        async with Store(url, auto_migrate=False) as store:
            ledger = SqlBudgetLedger(
                store,
                BudgetPolicy(task={"*": BudgetLimit(max_tokens=ALLOWED * CALL_TOKENS)}),
                PriceTable.from_toml(),
            )
            usage = await ledger.usage("task", "t-proc")
        assert (usage.spent_tokens, usage.held_tokens, usage.calls) == (
            ALLOWED * CALL_TOKENS,
            0,
            charged,
        )
