"""Replay read-back: how fast recorded events come back off a stream, decoded.

Records N realistic task events (per task: ``TaskAccepted``, ``PolicyDecision``,
five ``StepCompleted``, ``FinalAnswer``; with sitemesh headers and msg ids) into
``EVENTS_<site>`` on a bundled ``nats-server``, then reads them all back and
decodes every one with the typed event decoder:

* ``nats-py fetch`` (baseline, same run): an ephemeral ``js.pull_subscribe`` and
  ``fetch(batch)`` loop, acking nothing (``AckPolicy.NONE``): the textbook way;
* ``read_stream``: :func:`sitemesh.replay.read_stream` (what ``sitemesh replay``
  uses): raw pull requests with two batches outstanding;
* ``read_stream + fold``: the same plus folding the events into per-task outcomes
  (:class:`sitemesh.replay.OutcomeBuilder`), i.e. the replay's whole read side.

Usage: ``python bench/replay.py [--n 100000] [--batch 4096] [--repeat 3]``.
Prints events/s (best of ``--repeat``); the target is >= 20,000 events/s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from nats.errors import TimeoutError as FetchTimeout
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig

from sitemesh.bus import NatsServer, Outbound, Publisher, Subjects, connect, msg_id, provision
from sitemesh.config import BusSettings
from sitemesh.replay import OutcomeBuilder, read_stream
from sitemesh.schemas import (
    EVENT_DECODER,
    EntityCount,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    TaskAccepted,
    utcnow,
)

TARGET: float = 20_000.0
"""Events per second the read-back must reach (issue 5)."""

ROLES = ("retriever", "diagnostics", "planner", "validator", "escalation")


def task_events(site: str, n: int) -> list[Outbound]:
    """The 8 events of task ``n``, as the router and agents publish them."""
    tid = f"bench-{n}"
    now = utcnow()
    ev = Subjects(site).event(tid)
    out = [
        Outbound(
            ev,
            TaskAccepted(
                task_id=tid, site=site, kind="support_ticket", tenant="AdobeCare",
                title="support_ticket via twitter [ibm-twitter-cdp/dev.json#x]",
                submitted_at=now, accepted_at=now,
            ),
            msg_id(tid, "accepted", "router"), tid, "confidential",
        ),
        Outbound(
            ev,
            PolicyDecision(
                task_id=tid, action="pin_edge", rule_id="confidential-stays-on-site",
                policy_version="d90f42726e86a06f", data_class="confidential",
                entities=[EntityCount(entity_type="PERSON", count=2, max_score=0.85),
                          EntityCount(entity_type="EMAIL_ADDRESS", count=1, max_score=1.0)],
                reasons=["data_class confidential in {confidential}"], analyzer_ms=3.2,
            ),
            msg_id(tid, "decision", "router"), tid, "confidential",
        ),
    ]  # fmt: skip
    for role in ROLES:
        step = StepCompleted(
            task_id=tid, site=site, role=role,
            summary=f"{role}: 3 passages, top runbook bgp-session-flap (0.82)",
            started_at=now, finished_at=now + timedelta(milliseconds=4), worker="host:1234",
        )  # fmt: skip
        out.append(Outbound(ev, step, msg_id(tid, "step", role), tid, "confidential"))
    final = FinalAnswer(
        task_id=tid, site=site, outcome="resolved",
        reasons=["validated plan from runbook bgp-session-flap", "no open critical finding"],
        customer_message="We found a flapping BGP session on your uplink and reset it. "
        "Service is back; we keep monitoring the link for the next 24 hours.",
        data_class="confidential", submitted_at=now,
    )  # fmt: skip
    out.append(Outbound(ev, final, msg_id(tid, "final", "escalation"), tid, "confidential"))
    return out


async def record(js: JetStreamContext, site: str, n_events: int) -> int:
    """Publish ``n_events`` (rounded up to whole tasks) into ``EVENTS_<site>``."""
    pub = Publisher(js, timeout_s=60)
    tasks = -(-n_events // 8)
    for start in range(0, tasks, 250):
        outs = [o for t in range(start, min(tasks, start + 250)) for o in task_events(site, t)]
        await pub.publish_many(outs)
    return tasks * 8


async def nats_py_fetch(js: JetStreamContext, site: str, batch: int) -> int:
    """Baseline: ephemeral pull subscription, ``fetch(batch)``, decode each message."""
    s = Subjects(site)
    sub = await js.pull_subscribe(
        s.all_events, stream=s.events_stream,
        config=ConsumerConfig(ack_policy=AckPolicy.NONE, mem_storage=True, inactive_threshold=30),
    )  # fmt: skip
    total = (await js.stream_info(s.events_stream)).state.messages
    n = 0
    try:
        while n < total:
            try:
                msgs = await sub.fetch(batch, timeout=2)
            except FetchTimeout:
                break
            for m in msgs:
                EVENT_DECODER.decode(m.data)
            n += len(msgs)
    finally:
        await sub.unsubscribe()
    return n


async def sitemesh_read(js: JetStreamContext, site: str, batch: int) -> int:
    """``read_stream`` and decode each record."""
    s = Subjects(site)
    n = 0
    decode = EVENT_DECODER.decode
    async for chunk in read_stream(js, s.events_stream, subject=s.all_events, batch=batch):
        for rec in chunk:
            decode(rec.data)
        n += len(chunk)
    return n


async def sitemesh_read_fold(js: JetStreamContext, site: str, batch: int) -> int:
    """``read_stream`` and fold every event into per-task outcomes (decodes inside)."""
    s = Subjects(site)
    total = (await js.stream_info(s.events_stream)).state.messages
    builder = OutcomeBuilder(f"bench-{t}" for t in range(total // 8 + 1))
    n = 0
    async for chunk in read_stream(js, s.events_stream, subject=s.all_events, batch=batch):
        builder.add_events(chunk)
        n += len(chunk)
    assert len(builder.ended()) == total // 8
    return n


Variant = Callable[[JetStreamContext, str, int], Awaitable[int]]


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=100_000, help="events to record")
    p.add_argument("--batch", type=int, default=4096, help="messages per pull request")
    p.add_argument("--repeat", type=int, default=3, help="runs per variant (best is kept)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        async with NatsServer(Path(tmp), name="bench-replay") as srv:
            nc = await connect(srv.client_url, name="bench-replay", timeout_s=5)
            js = nc.jetstream()
            site = "b" + uuid.uuid4().hex[:7]
            await provision(js, Subjects(site), BusSettings(max_bytes=1 << 30))
            t0 = time.perf_counter()
            n = await record(js, site, args.n)
            rec_s = time.perf_counter() - t0
            info = await js.stream_info(Subjects(site).events_stream)
            print(
                f"recorded {n:,} events ({info.state.bytes / n:.0f} B avg) in {rec_s:.1f} s "
                f"({n / rec_s:,.0f} events/s)"
            )
            variants: list[tuple[str, Variant]] = [
                ("nats-py fetch (baseline)", nats_py_fetch),
                ("read_stream", sitemesh_read),
                ("read_stream + fold", sitemesh_read_fold),
            ]
            rates: dict[str, float] = {}
            for name, fn in variants:
                best = 0.0
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    got = await fn(js, site, args.batch)
                    dt = time.perf_counter() - t0
                    assert got == n, (name, got, n)
                    best = max(best, got / dt)
                rates[name] = best
            await nc.drain()
    base = rates["nats-py fetch (baseline)"]
    print(f"\nread-back + decode of {n:,} events (best of {args.repeat}, batch {args.batch}):")
    for name, rate in rates.items():
        print(f"  {name:<26} {rate:>10,.0f} events/s  ({rate / base:.2f}x baseline)")
    ok = rates["read_stream + fold"] >= TARGET
    print(f"\ntarget >= {TARGET:,.0f} events/s (read + fold): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    asyncio.run(main())
