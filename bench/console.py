"""The console with 10,000 tasks in its database: how long the task list and a task page
take to render, end to end over HTTP, next to the database query alone.

Seeds a fresh SQLite database (the embedded default) with ``--tasks`` tasks, each with
the events a real ticket records (accepted, policy decision, four completed steps, the
final answer), starts the real app (``sitemesh.console.create_app``) under uvicorn on a
free loopback port, logs in, then times ``--repeat`` requests of each page with
httpx. The baseline is the same query through ``Store.list_tasks`` / ``get_task``
without HTTP or templates, measured in the same run. The target (issue 14): both pages
under 300 ms on this machine.

Usage: ``python bench/console.py [--tasks 10000] [--repeat 30]``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import uvicorn

from sitemesh.bus import free_port
from sitemesh.config import DbSettings, Settings
from sitemesh.console import create_app, hash_password, save_user
from sitemesh.schemas import (
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    TaskAccepted,
)
from sitemesh.state import Store

T0 = datetime(2026, 12, 1, tzinfo=UTC)
STEPS = ("triage", "retrieve", "plan", "validate")


def _events(i: int) -> list[object]:
    tid = f"bench-{i:06d}"
    at = T0 + timedelta(seconds=i)
    out: list[object] = [
        TaskAccepted(task_id=tid, site="eu1", kind="support_ticket", tenant=f"t{i % 40}",
                     title="ticket", submitted_at=at, accepted_at=at),
        PolicyDecision(task_id=tid, action="pin_edge", rule_id="default-deny-cloud",
                       policy_version="0123456789abcdef", data_class="internal", decided_at=at,
                       reasons=["kept on site"]),
    ]  # fmt: skip
    for n, step in enumerate(STEPS, 1):
        role = step if step != "retrieve" else "retriever"
        out.append(StepCompleted(task_id=tid, site="eu1", role=role,
                                 step=step, started_at=at + timedelta(milliseconds=10 * n),
                                 finished_at=at + timedelta(milliseconds=10 * n + 5),
                                 summary=f"{step}: done"))  # fmt: skip
    out.append(FinalAnswer(task_id=tid, site="eu1", outcome="resolved", reasons=["grounded"],
                           customer_message="Your card arrives within 5 working days.",
                           submitted_at=at,
                           answered_at=at + timedelta(milliseconds=80)))  # fmt: skip
    return out


async def seed(url: str, n: int) -> float:
    t = time.perf_counter()
    seq = 0
    async with Store(url) as store:
        for start in range(0, n, 500):
            batch = []
            for i in range(start, min(n, start + 500)):
                for ev in _events(i):
                    seq += 1
                    batch.append((seq, ev))
            await store.record_events("EVENTS_eu1", batch)  # type: ignore[arg-type]
    return time.perf_counter() - t




def _stats(xs: list[float]) -> str:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, int(len(xs) * 0.95))]
    return f"p50 {statistics.median(xs):7.1f} ms  p95 {p95:7.1f} ms  max {xs[-1]:7.1f} ms"


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sitemesh-console-bench-"))
    settings = Settings(
        site="eu1", state_dir=tmp, db=DbSettings(url=f"sqlite+aiosqlite:///{tmp}/s.db")
    )
    took = await seed(settings.db_url, args.tasks)
    print(f"seeded {args.tasks:,} tasks ({args.tasks * 7:,} events) in {took:.1f} s")
    users = tmp / "users.toml"
    save_user(users, "ada", "admin", hash_password("bench-pass-1"))
    app = create_app(settings, users_file=users, warm_analyzer=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 - uvicorn has no started event to wait on
        await asyncio.sleep(0.05)
    rng = random.Random(7)
    ids = [f"bench-{rng.randrange(args.tasks):06d}" for _ in range(args.repeat)]
    base = f"http://127.0.0.1:{port}"
    timings: dict[str, list[float]] = {"list": [], "list_filtered": [], "task": [],
                                       "query_list": [], "query_task": []}  # fmt: skip
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post("/login", data={"username": "ada", "password": "bench-pass-1"})
        assert r.status_code in (200, 303), r.status_code
        await http.get("/tasks")  # warm the templates
        for i in range(args.repeat):
            pages = (("list", "/tasks"),
                     ("list_filtered", "/tasks?status=answered&kind=support_ticket"),
                     ("task", f"/tasks/{ids[i]}"))  # fmt: skip
            for name, path in pages:
                t = time.perf_counter()
                r = await http.get(path)
                timings[name].append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, r.status_code)
                assert "bench-" in r.text
    async with Store(settings.db_url) as store:
        for i in range(args.repeat):
            t = time.perf_counter()
            await store.list_tasks(100)
            await store.counts()
            timings["query_list"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await store.get_task(ids[i])
            timings["query_task"].append((time.perf_counter() - t) * 1000)
    server.should_exit = True
    await serving
    print(f"{args.repeat} requests each, {args.tasks:,} tasks in SQLite (100 rows per list page):")
    for name in ("list", "list_filtered", "task", "query_list", "query_task"):
        print(f"  {name:<14} {_stats(timings[name])}")
    for page, query in (("list", "query_list"), ("task", "query_task")):
        ratio = statistics.median(timings[page]) / statistics.median(timings[query])
        print(f"  {page}: HTTP + template = {ratio:.1f}x the query alone (median)")
    worst = max(statistics.median(timings[k]) for k in ("list", "list_filtered", "task"))
    print(f"target: every page under 300 ms -> worst median {worst:.1f} ms: "
          f"{'PASS' if worst < 300 else 'FAIL'}")  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
