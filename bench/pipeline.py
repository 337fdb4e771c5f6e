"""The whole site on this machine: unique real tickets in, answers out and recorded.

A pinned ``nats-server`` and a ``sitemesh edge`` (every worker a separate process, the
recorder on SQLite under a temporary state dir, no model: the bundled planner paths)
run as they would at a site. The bench then:

1. **Peak**: publishes ``--n`` unique tickets at once and measures how fast the site
   *answers* them (a ``final_answer`` or ``task_failed`` event on the bus for every
   one) and how fast it *records* them (every one ended in the state database, what
   ``sitemesh status`` and ``show`` read).
2. **50 % load**: publishes further unique tickets, paced at half the lower of the two
   peak rates, and reports each ticket's latency from publish to its answer on the
   bus (p50/p95/p99) and the recorder's lag behind the bus.
3. **Baseline, same run**: ``bench/hop.py``'s raw nats-py loop (one hop: fetch,
   decode, publish, ack) on the same machine, so the figures read as a ratio.

Tickets are the banking77 and IBM customer-care texts of ``bench/data`` plus the
banking77 training texts bundled for triage (``sitemesh/triage/data``): real and
unique (duplicates by text dropped). The issue's target (issue 13): >= 300 tasks/s
answered and recorded, p99 < 1 s at 50 % load.

Usage: ``python bench/pipeline.py [--n 1500] [--load-n 600] [--replicas 1]
[--colocate] [--hop-n 20000] [--db URL]``. Prints its figures; asserts nothing on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from _site import (
    ROOT,
    SITE,
    Seen,
    cpu_by_role,
    pct,
    publish,
    site_env,
    start_edge,
    stop_edge,
    tickets_of,
    unique_texts,
    wait_ended,
    wait_recorded,
    warm_triage,
    watch_events,
)

from sitemesh.bus import NatsServer, Publisher, Subjects, connect
from sitemesh.state import Store


async def hop_baseline(n: int) -> str:
    """``bench/hop.py``'s raw nats-py figures, run now on this machine."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "bench" / "hop.py"), "--n", str(n),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    return out.decode()


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=1500, help="tickets of the peak phase")
    p.add_argument("--load-n", type=int, default=600, help="tickets of the 50 %% phase")
    p.add_argument("--replicas", type=int, default=1, help="processes per agent role")
    p.add_argument(
        "--colocate", action="store_true",
        help="`edge --colocate`: the agent roles in one process, work handed over in memory",
    )  # fmt: skip
    p.add_argument("--hop-n", type=int, default=20_000, help="messages of the hop baseline")
    p.add_argument("--db", default=None, help="state database URL (default: SQLite)")
    args = p.parse_args()

    texts = list(unique_texts())
    if len(texts) < args.n + args.load_n:
        raise SystemExit(f"only {len(texts)} unique tickets; lower --n / --load-n")
    run = time.strftime("%H%M%S")
    peak = tickets_of(texts[: args.n], f"pk{run}-")
    load = tickets_of(texts[args.n : args.n + args.load_n], f"ld{run}-")
    subjects = Subjects(SITE)
    seen = Seen()

    with tempfile.TemporaryDirectory(prefix="sitemesh-pipeline-") as tmp:
        state = Path(tmp)
        async with NatsServer(state / "nats") as srv:
            db_url = args.db or f"sqlite+aiosqlite:///{state / 'sitemesh.db'}"
            env = site_env(state, srv.client_url, db_url)
            print(f"nats-server {srv.version}; {len(texts)} unique tickets available")
            # the triage model is trained once and cached (what `make demo` does first)
            await warm_triage(env)
            t0 = time.monotonic()
            edge = await start_edge(
                env, args.replicas, state / "edge.log", colocate=args.colocate
            )
            took = time.monotonic() - t0
            mode = ", agent roles co-located" if args.colocate else ""
            print(f"sitemesh edge (replicas {args.replicas}{mode}) ready in {took:.1f} s")
            nc = await connect(srv.client_url, name="bench-pipeline", timeout_s=5)
            js = nc.jetstream()

            sub = await watch_events(js, subjects, seen)
            store = Store(db_url)
            pub = Publisher(js, timeout_s=30)
            try:
                # warm-up: one ticket through every role (first-call costs out of the figures)
                warm = tickets_of(texts[-1:], f"wu{run}-")
                await publish(pub, subjects, seen, warm, None)
                await wait_ended(seen, [warm[0].task_id or ""], 120)

                cpu0 = cpu_by_role(edge.pid, srv.pid)
                t_pub = time.monotonic()
                await publish(pub, subjects, seen, peak, None)
                published_s = time.monotonic() - t_pub
                ids = [t.task_id or "" for t in peak]
                t_ans = await wait_ended(seen, ids, 600) - t_pub
                t_rec = await wait_recorded(store, f"pk{run}-", len(ids), 600) - t_pub
                answered_rate = len(ids) / t_ans
                recorded_rate = len(ids) / t_rec
                print(f"peak: {len(ids)} tickets published in {published_s:.2f} s")
                print(f"  answered on the bus: {answered_rate:8.1f} tasks/s ({t_ans:.1f} s)")
                print(f"  recorded in the db:  {recorded_rate:8.1f} tasks/s ({t_rec:.1f} s)")
                cpu = cpu_by_role(edge.pid, srv.pid)
                cpu.subtract(cpu0)
                site_cpu = sum(n for k, n in cpu.items() if k != "(this bench)")
                cores = os.cpu_count() or 1
                print(
                    f"  CPU per task {site_cpu / len(ids) * 1000:.2f} ms in the site "
                    f"(ceiling on {cores} cores: {cores * len(ids) / site_cpu:,.0f} tasks/s), "
                    f"by process:"
                )
                for role, used in cpu.most_common():
                    print(f"    {role:<20} {used / len(ids) * 1000:6.2f} ms")

                rate = 0.5 * min(answered_rate, recorded_rate)
                t_load = time.monotonic()
                await publish(pub, subjects, seen, load, rate)
                lids = [t.task_id or "" for t in load]
                await wait_ended(seen, lids, 600)
                t_lrec = await wait_recorded(store, f"ld{run}-", len(lids), 600)
                lat = [(seen.ended[i] - seen.published[i]) * 1000 for i in lids]
                last_bus = max(seen.ended[i] for i in lids)
                print(
                    f"50 % load: {len(lids)} tickets at {rate:.1f}/s "
                    f"({time.monotonic() - t_load:.1f} s): latency to the answer "
                    f"p50 {pct(lat, 50):,.0f} ms, p95 {pct(lat, 95):,.0f} ms, "
                    f"p99 {pct(lat, 99):,.0f} ms; recorder "
                    f"{max(0.0, t_lrec - last_bus) * 1000:,.0f} ms behind the bus"
                )
                dup = sum(1 for n in seen.answers.values() if n > 1)
                print(
                    f"outcomes: {len(seen.answers)} answered, {seen.failed} failed, "
                    f"{dup} with a second final answer"
                )
            finally:
                await sub.unsubscribe()
                await store.close()
                await nc.drain()
                await stop_edge(edge)
    print("baseline (bench/hop.py, same run):")
    hop = await hop_baseline(args.hop_n)
    print("  " + hop.strip().replace("\n", "\n  "))
    m = re.search(r"raw-pipe ([\d,]+) msg/s", hop)
    if m:
        raw = float(m.group(1).replace(",", ""))
        print(
            f"answered tasks/s / raw-pipe hop msg/s = {answered_rate / raw:.4f} "
            "(a ticket makes 7 hops: router, triage, retriever, planner, validator, "
            "escalation, recorder; co-located, the 4 between agent roles are in memory)"
        )


if __name__ == "__main__":
    asyncio.run(main())
