"""The state recorder: one transaction per message vs. one per fetched batch.

Publishes N tasks' events onto a fresh site's ``EVENTS`` stream, the mix a
support ticket produces (``task_accepted``, ``policy_decision`` with entity counts,
``step_completed`` of the retriever, planner and validator with their outputs, the
``final_answer``; one task in 20 has a ``step_skipped``, one in 50 fails instead
of being answered), built from the wire schemas. Then each variant records them
into a fresh database, timed from start to the last ack:

* ``per-message``: a :class:`sitemesh.bus.Worker` whose handler calls
  :meth:`Store.record_event` per message (how the recorder worked before batches);
* ``batched``: :class:`sitemesh.state.Recorder` (one transaction per fetch).

Usage: ``python bench/recorder.py [--n 2000] [--batch 64] [--db URL]``. SQLite
always (a temp file); PostgreSQL too with ``--db postgresql+asyncpg://...`` (rows are
added to that database: give it a throwaway one). Prints tasks/s, events/s, CPU
milliseconds per task and the ratio; the target is well over 300 tasks/s on SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
from nats.js import JetStreamContext

from sitemesh.bus import (
    RECORDER,
    MsgContext,
    NatsServer,
    Outbound,
    Publisher,
    Subjects,
    Worker,
    connect,
    provision,
)
from sitemesh.config import BusSettings
from sitemesh.schemas import (
    EVENT_DECODER,
    EntityCount,
    Event,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    StepSkipped,
    TaskAccepted,
    TaskFailed,
    utcnow,
)
from sitemesh.state import Recorder, Store

PASSAGE = "Check the optical transceiver on the uplink port and reseat the cable. " * 4


def task_events(site: str, task_id: str, n: int) -> list[Event]:
    """The events of the ``n``-th ticket, in the order the pipeline publishes them."""
    t0 = utcnow()

    def at(ms: int) -> datetime:
        return t0 + timedelta(milliseconds=ms)

    retrieved = {
        "passages": [{"doc": f"runbook-{k}", "score": 0.8, "text": PASSAGE} for k in range(3)]
    }
    plan = {
        "steps": [{"n": k, "action": "check_status", "description": PASSAGE[:80]} for k in range(4)]
    }
    events: list[Event] = [
        TaskAccepted(
            task_id=task_id,
            site=site,
            kind="support_ticket",
            tenant="acme",
            title=f"Uplink flapping on switch {n}",
            submitted_at=t0,
            accepted_at=at(3),
            workflow="support_ticket",
        ),
        PolicyDecision(
            task_id=task_id,
            action="pin_edge",
            rule_id="pii-pin-edge",
            policy_version="0123456789abcdef",
            data_class="confidential",
            entities=[
                EntityCount(entity_type="PERSON", count=1, max_score=0.9),
                EntityCount(entity_type="PHONE_NUMBER", count=1, max_score=0.7),
            ],
            reasons=["PERSON detected"],
            analyzer_ms=8.5,
            decided_at=at(12),
        ),
    ]
    steps = [
        ("retriever", "retrieve", retrieved),
        ("planner", "plan", plan),
        ("validator", "validate", {"ok": True, "issues": []}),
    ]
    for k, (role, step, body) in enumerate(steps):
        events.append(
            StepCompleted(
                task_id=task_id,
                site=site,
                role=role,
                step=step,
                summary=f"{step} ok",
                started_at=at(20 + 100 * k),
                finished_at=at(90 + 100 * k),
                worker="bench:1",
                output_type=f"{step}.v1",
                output=msgspec.Raw(msgspec.json.encode(body)),
            )
        )
    if n % 20 == 7:
        events.append(
            StepSkipped(
                task_id=task_id,
                site=site,
                step="diagnose",
                role="diagnostics",
                reason="no device named",
            )
        )
    if n % 50 == 13:
        events.append(
            TaskFailed(
                task_id=task_id,
                site=site,
                role="planner",
                reason="model unavailable",
                error_class="TransientError",
            )
        )
    else:
        events.append(
            FinalAnswer(
                task_id=task_id,
                site=site,
                outcome="resolved",
                reasons=["runbook matched"],
                data_class="confidential",
                customer_message="Please reseat the uplink cable. " * 3,
                submitted_at=t0,
                answered_at=at(450),
            )
        )
    return events


async def preload(js: JetStreamContext, site: str, n: int) -> int:
    """Publish ``n`` tasks' events; returns how many events."""
    subjects = Subjects(site)
    pub = Publisher(js, timeout_s=30)
    outs: list[Outbound] = []
    for i in range(n):
        task_id = f"{site}-{i}"
        for k, ev in enumerate(task_events(site, task_id, i)):
            subject = (
                subjects.answer(task_id, ev.tenant)
                if isinstance(ev, FinalAnswer)
                else subjects.event(task_id, "router")
            )
            outs.append(Outbound(subject=subject, payload=ev, msg_id=f"{task_id}:{k}"))
    for start in range(0, len(outs), 1000):
        await pub.publish_many(outs[start : start + 1000])
    return len(outs)


async def per_message(
    js: JetStreamContext, store: Store, site: str, events: int, batch: int | None
) -> None:
    subjects = Subjects(site)

    async def handle(event: Event, ctx: MsgContext) -> Sequence[Outbound]:
        await store.record_event(ctx.stream, ctx.stream_seq, event)
        return ()

    w = Worker(
        js,
        site=site,
        role="recorder",
        stream=subjects.events_stream,
        durable=RECORDER,
        decoder=EVENT_DECODER.decode,
        handler=handle,
        settings=BusSettings(batch=batch or 64, max_deliver=1 << 31),
    )
    async with w:
        while w.handled < events:  # noqa: ASYNC110 - settled count, polled every 5 ms
            await asyncio.sleep(0.005)


async def batched(
    js: JetStreamContext, store: Store, site: str, events: int, batch: int | None
) -> None:
    async with Recorder(js, store, site, BusSettings(), max_inflight=batch) as recorder:
        while recorder.recorded < events:  # noqa: ASYNC110 - acked count, polled every 5 ms
            await asyncio.sleep(0.005)


Variant = Callable[[JetStreamContext, Store, str, int, int | None], Awaitable[None]]


async def measure(
    js: JetStreamContext, url: str, variant: Variant, n: int, batch: int | None
) -> tuple[float, float, float]:
    """``(tasks/s, events/s, CPU ms per task)`` of ``variant`` recording ``n`` tasks."""
    site = "b" + uuid.uuid4().hex[:8]
    subjects = Subjects(site)
    await provision(js, subjects, BusSettings())
    events = await preload(js, site, n)
    async with Store(url) as store:
        cpu0, t0 = time.process_time(), time.perf_counter()
        await variant(js, store, site, events, batch)
        elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        counts = await store.counts(prefix=f"{site}-")
    assert counts.total == n, counts
    assert counts.by_status["accepted"] == 0, counts
    for stream in (subjects.events_stream, subjects.dlq_stream):
        await js.delete_stream(stream)
    for stream in (subjects.tasks_stream, subjects.work_stream, subjects.advisories_stream):
        await js.delete_stream(stream)
    return n / elapsed, events / elapsed, cpu * 1000 / n


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=2000, help="tasks (about 6 events each)")
    p.add_argument(
        "--batch",
        type=int,
        help="messages per fetch; default: the bus's 64 per message, the recorder's own "
        "(RECORDER_BATCH, 256) batched",
    )
    p.add_argument("--db", help="also PostgreSQL: a throwaway postgresql+asyncpg:// URL")
    p.add_argument("--only", choices=["per-message", "batched"], help="run one variant")
    args = p.parse_args()
    variants: dict[str, Variant] = {"per-message": per_message, "batched": batched}
    if args.only:
        variants = {args.only: variants[args.only]}
    with tempfile.TemporaryDirectory() as tmp:
        dbs = {"sqlite": f"sqlite+aiosqlite:///{tmp}/state.db"}
        if args.db:
            dbs["postgresql"] = args.db
        async with NatsServer(Path(tmp) / "nats") as srv:
            nc = await connect(srv.client_url, name="bench", timeout_s=5)
            js = nc.jetstream()
            print(f"nats-server {srv.version}, n={args.n} tasks, batch={args.batch or 'default'}")
            for db, url in dbs.items():
                rates: dict[str, float] = {}
                for name, variant in variants.items():
                    tasks_s, events_s, cpu_ms = await measure(js, url, variant, args.n, args.batch)
                    rates[name] = tasks_s
                    print(
                        f"  {db:10s} {name:12s} {tasks_s:8,.0f} tasks/s {events_s:9,.0f} "
                        f"events/s {cpu_ms:6.2f} ms CPU/task"
                    )
                if len(rates) == 2:
                    ratio = rates["batched"] / rates["per-message"]
                    print(f"  {db:10s} batched / per-message = {ratio:.1f}x")
            await nc.drain()


if __name__ == "__main__":
    asyncio.run(main())
