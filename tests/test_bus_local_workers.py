"""Workers of one process hand each other work in memory (:class:`LocalWorkers`)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import pytest
from nats.js import JetStreamContext

from sitemesh.bus import (
    LocalWorkers,
    MsgContext,
    Outbound,
    Publisher,
    Subjects,
    Worker,
    provision,
)
from sitemesh.config import BusSettings
from sitemesh.errors import TransientError
from tests.conftest import assert_eventually, stream_messages


class Item(msgspec.Struct, frozen=True):
    n: int
    trail: list[str] = []


ITEM = msgspec.json.Decoder(Item)


def _worker(
    js: JetStreamContext,
    site: str,
    role: str,
    settings: BusSettings,
    handler: object,
    local: LocalWorkers | None,
) -> Worker[Item]:
    stream, durable, subject = Subjects(site).consumer_for(role)
    return Worker(
        js,
        site=site,
        role=role,
        stream=stream,
        durable=durable,
        decoder=ITEM.decode,
        handler=handler,  # type: ignore[arg-type]
        settings=settings,
        local=local,
        local_subject=subject,
    )


def _chain(subjects: Subjects, seen: dict[str, list[MsgContext]], fail_once: set[str]):  # type: ignore[no-untyped-def]
    """planner -> validator -> escalation: each publishes an event, then the next item."""
    order = ["planner", "validator", "escalation"]

    def handler(role: str):  # type: ignore[no-untyped-def]
        async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
            seen.setdefault(role, []).append(ctx)
            if role in fail_once and ctx.stream_seq == 0:
                raise TransientError(f"{role} busy in memory")
            tid = f"t{item.n}"
            event = Outbound(
                subjects.event(tid, role), b"{}", f"{tid}:step:{role}", task_id=tid
            )
            nxt = order.index(role) + 1
            if nxt == len(order):
                return [event]
            following = Outbound(
                subjects.work(order[nxt]),
                Item(n=item.n, trail=[*item.trail, role]),
                f"{tid}:work:{order[nxt]}",
                task_id=tid,
            )
            return [event, following]

        return handle

    return {role: handler(role) for role in order}


async def _run(
    js: JetStreamContext, site: str, settings: BusSettings, fail_once: set[str]
) -> tuple[dict[str, list[MsgContext]], LocalWorkers]:
    subjects = Subjects(site)
    await provision(js, subjects, settings)
    seen: dict[str, list[MsgContext]] = {}
    handlers = _chain(subjects, seen, fail_once)
    local = LocalWorkers()
    workers = [_worker(js, site, r, settings, h, local) for r, h in handlers.items()]
    await Publisher(js).publish(
        Outbound(subjects.work("planner"), Item(n=1), "t1:work:planner", task_id="t1")
    )
    for w in workers:
        await w.__aenter__()
    try:
        await assert_eventually(lambda: len(seen.get("escalation", [])) >= 1, 20)
        for role in handlers:

            async def settled(role: str = role) -> bool:
                info = await js.consumer_info(subjects.work_stream, role)
                return info.num_pending == 0 and info.num_ack_pending == 0

            await assert_eventually(settled, 20)
    finally:
        for w in workers:
            await w.shutdown()
    return seen, local


async def test_a_chain_of_local_roles_runs_in_memory_with_events_in_step_order(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    seen, local = await _run(js, site, bus_settings, fail_once=set())
    assert local.handed_over == {"validator": 1, "escalation": 1}
    # the handed-over steps saw what the bus would have delivered: their own role,
    # the item's headers, no stream sequence (never stored)
    v, e = seen["validator"][0], seen["escalation"][0]
    assert (v.role, v.stream_seq, v.num_delivered) == ("validator", 0, 1)
    assert v.headers["Nats-Msg-Id"] == "t1:work:validator"
    assert v.headers["sm-task-id"] == "t1"
    assert msgspec.json.decode(e.data, type=Item).trail == ["planner", "validator"]
    # only the first item was stored in the work stream
    work = await stream_messages(js, subjects.work_stream, f"{subjects.prefix}.work.{site}.>")
    assert [m.subject for m in work] == [subjects.work("planner")]
    events = await stream_messages(js, subjects.events_stream, subjects.task_events("t1"))
    assert [m.subject.rsplit(".", 1)[1] for m in events] == ["planner", "validator", "escalation"]


async def test_a_failed_hand_over_goes_over_the_bus_and_nothing_is_lost(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    seen, local = await _run(js, site, bus_settings, fail_once={"validator"})
    # validator failed in memory, then took the item from its consumer; escalation
    # was handed over from there
    assert [c.stream_seq > 0 for c in seen["validator"]] == [False, True]
    assert local.handed_over == {"escalation": 1}
    work = await stream_messages(js, subjects.work_stream, f"{subjects.prefix}.work.{site}.>")
    assert [m.subject for m in work] == [subjects.work("planner"), subjects.work("validator")]
    events = await stream_messages(js, subjects.events_stream, subjects.task_events("t1"))
    assert [m.subject.rsplit(".", 1)[1] for m in events] == ["planner", "validator", "escalation"]


def test_local_subjects_are_exact_and_taken_once() -> None:
    local = LocalWorkers()
    with pytest.raises(ValueError, match="exact"):
        local.add("sm.v1.work.eu1.*", object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exact"):
        local.add("sm.v1.work.>", object())  # type: ignore[arg-type]
    a, b = object(), object()
    local.add("sm.v1.work.eu1.planner", a)  # type: ignore[arg-type]
    local.add("sm.v1.work.eu1.planner", a)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already"):
        local.add("sm.v1.work.eu1.planner", b)  # type: ignore[arg-type]
    assert local.taker("sm.v1.work.eu1.planner") is a
    assert local.taker("sm.v1.work.eu1.validator") is None


async def test_a_handler_that_keeps_addressing_itself_goes_over_the_bus_past_the_depth(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    """At most MAX_HANDOVER_DEPTH steps of one input run in memory; the next item of
    the chain is stored on the bus (no unbounded recursion)."""
    from sitemesh.bus._worker import MAX_HANDOVER_DEPTH

    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    last = MAX_HANDOVER_DEPTH + 5
    seen: list[int] = []

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        seen.append(item.n)
        if item.n == last:
            return []
        nxt = Item(n=item.n + 1)
        return [Outbound(subjects.work("planner"), nxt, f"t:{nxt.n}", task_id="t")]

    local = LocalWorkers()
    worker = _worker(js, site, "planner", bus_settings, handle, local)
    await Publisher(js).publish(Outbound(subjects.work("planner"), Item(n=0), "t:0", task_id="t"))
    async with worker:
        await assert_eventually(lambda: last in seen, 20)
    assert sorted(seen) == list(range(last + 1))
    work = await stream_messages(js, subjects.work_stream, subjects.work("planner"))
    assert [msgspec.json.decode(m.data, type=Item).n for m in work] == [0, MAX_HANDOVER_DEPTH + 1]
    assert local.handed_over == {"planner": last - 1}


async def test_a_handed_over_step_gets_its_process_span_and_metrics(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    """The middleware chain runs for a handed-over step as for a delivered one: its own
    process span (marked ``sitemesh.handed_over``, no stream sequence) under the trace
    of the step before, and the process metrics of its role; no queue-depth reading."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sitemesh.config import TelemetrySettings
    from sitemesh.telemetry import setup_telemetry, shutdown_telemetry

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    shutdown_telemetry()
    setup_telemetry(TelemetrySettings(), span_exporter=spans, metric_reader=reader)
    try:
        _, local = await _run(js, site, bus_settings, fail_once=set())
        assert local.handed_over == {"validator": 1, "escalation": 1}
        process = {
            s.attributes["messaging.consumer.group.name"]: s  # type: ignore[index]
            for s in spans.get_finished_spans()
            if s.name.startswith("process ") and s.attributes
        }
        assert set(process) >= {"planner", "validator", "escalation"}
        assert process["planner"].attributes.get("sitemesh.handed_over") is None  # type: ignore[union-attr]
        for role in ("validator", "escalation"):
            attrs = process[role].attributes or {}
            assert attrs["sitemesh.handed_over"] is True
            assert attrs["sitemesh.stream_seq"] == 0
            assert process[role].context.trace_id == process["planner"].context.trace_id  # type: ignore[union-attr]
        data = reader.get_metrics_data()
        assert data is not None
        consumed: dict[str, float] = {}
        depth_roles: set[str] = set()
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        role = str(point.attributes.get("sitemesh.role", ""))
                        if metric.name == "messaging.client.consumed.messages":
                            consumed[role] = consumed.get(role, 0) + point.value  # type: ignore[union-attr]
                        if metric.name == "sitemesh.queue.depth":
                            depth_roles.add(role)
        assert consumed.get("validator") == 1
        assert consumed.get("escalation") == 1
        assert "validator" not in depth_roles  # handed over: no consumer pending count
    finally:
        shutdown_telemetry()
