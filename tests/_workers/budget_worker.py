"""A worker process for the cross-process budget test.

Usage: ``python budget_worker.py URL CALLS LIMIT_TOKENS``.

Makes ``CALLS`` concurrent reserve → (simulated call) → settle against the shared
:class:`SqlBudgetLedger` at ``URL`` (task ``t-proc``: at most ``LIMIT_TOKENS`` tokens;
every call estimates and uses 1,000 tokens). Prints ``ready`` once connected, then
waits for the file named by ``--go`` so both processes race, and finally prints one
JSON line: ``{"ok": n, "refused": n, "messages": [first refusal], "race_s": s}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
import types
from pathlib import Path

import sitemesh


def _bare_models_package() -> None:
    """Register ``sitemesh.models`` without running its ``__init__``.

    The package front imports the model SDKs and Presidio (seconds per process on a
    busy machine); this worker needs only the budget modules, so the test's time is
    spent racing, not importing. The modules themselves are the real ones.
    """
    pkg = types.ModuleType("sitemesh.models")
    pkg.__path__ = [str(Path(p) / "models") for p in sitemesh.__path__]
    sys.modules["sitemesh.models"] = pkg


_bare_models_package()

from sitemesh.errors import BudgetExceeded  # noqa: E402
from sitemesh.models._budget import BudgetKey, BudgetLimit, BudgetPolicy  # noqa: E402
from sitemesh.models._budget_sql import SqlBudgetLedger  # noqa: E402
from sitemesh.models._prices import PriceTable  # noqa: E402
from sitemesh.state import Store  # noqa: E402

PRICES = PriceTable.from_mapping(
    {"models": {"openai/gpt-4o-mini": {"input_per_mtok": "0.15", "output_per_mtok": "0.60"}}}
)


async def main(url: str, calls: int, limit_tokens: int, go: Path) -> None:
    policy = BudgetPolicy(task={"*": BudgetLimit(max_tokens=limit_tokens)})
    key = BudgetKey(tenant="acme", agent="planner", task_id="t-proc")
    rng = random.Random()
    ok = 0
    refused: list[str] = []
    async with Store(url, auto_migrate=False) as store:
        ledger = SqlBudgetLedger(store, policy, PRICES)
        await ledger.usage("task", "t-proc")  # connected
        print("ready", flush=True)
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

        async def one() -> None:
            nonlocal ok
            try:
                res = await ledger.reserve(
                    key, model="openai/gpt-4o-mini", est_tokens_in=600, est_tokens_out=400
                )
            except BudgetExceeded as exc:
                refused.append(str(exc))
                return
            await asyncio.sleep(rng.random() * 0.002)
            charge = await ledger.settle(res, 600, 400)
            assert charge.applied
            ok += 1

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(calls)))
        race_s = time.perf_counter() - start
    out = {"ok": ok, "refused": len(refused), "messages": refused[:1], "race_s": race_s}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("calls", type=int)
    parser.add_argument("limit_tokens", type=int)
    parser.add_argument("--go", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.calls, args.limit_tokens, args.go))
