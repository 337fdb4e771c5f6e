"""The worker runtime in-process: retries, dead letters, graceful shutdown."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import msgspec
import pytest
from nats.js import JetStreamContext

from sitemesh.bus import (
    HDR_TASK_ID,
    MaxDeliveriesSweeper,
    MsgContext,
    Outbound,
    Publisher,
    Subjects,
    Worker,
    provision,
)
from sitemesh.bus._acking import Action, backoff_s, decide
from sitemesh.config import BusSettings
from sitemesh.errors import PermanentError, TransientError
from sitemesh.schemas import DLQ_DECODER, EVENT_DECODER, DeadLetter, TaskFailed
from tests.conftest import assert_eventually, stream_messages


class Item(msgspec.Struct, frozen=True):
    n: int


ITEM = msgspec.json.Decoder(Item)


def _worker(
    js: JetStreamContext,
    site: str,
    settings: BusSettings,
    handler: object,
) -> Worker[Item]:
    stream, durable, _ = Subjects(site).consumer_for("planner")
    return Worker(
        js,
        site=site,
        role="planner",
        stream=stream,
        durable=durable,
        decoder=ITEM.decode,
        handler=handler,  # type: ignore[arg-type]
        settings=settings,
    )


async def _submit(js: JetStreamContext, site: str, data: bytes, task_id: str) -> None:
    await Publisher(js).publish(
        Outbound(
            subject=Subjects(site).work("planner"), payload=data, msg_id=f"{task_id}:in",
            task_id=task_id,
        )
    )  # fmt: skip


async def _dead_letters(js: JetStreamContext, site: str) -> list[DeadLetter]:
    s = Subjects(site)
    return [
        DLQ_DECODER.decode(m.data or b"")
        for m in await stream_messages(js, s.dlq_stream, s.all_dlq)
    ]


async def _settled(js: JetStreamContext, site: str) -> bool:
    info = await js.consumer_info(Subjects(site).work_stream, "planner")
    return info.num_pending == 0 and info.num_ack_pending == 0


def test_decide_maps_outcomes_in_one_place(bus_settings: BusSettings) -> None:
    assert decide(None, 1, bus_settings).action is Action.ACK
    perm = decide(PermanentError("bad", field="$.x"), 1, bus_settings)
    assert (perm.action, perm.field, perm.error_class) == (
        Action.DEAD_LETTER, "$.x", "PermanentError",
    )  # fmt: skip
    nak = decide(TransientError("busy", retry_after_s=0.7), 1, bus_settings)
    assert nak.action is Action.NAK
    assert nak.delay_s >= 0.7
    assert decide(RuntimeError("x"), 2, bus_settings).action is Action.NAK
    last = decide(RuntimeError("boom"), bus_settings.max_deliver, bus_settings)
    assert last.action is Action.DEAD_LETTER
    assert last.error_class == "RuntimeError"
    assert "boom" in last.reason
    with pytest.raises(asyncio.CancelledError):
        decide(asyncio.CancelledError(), 1, bus_settings)
    for n in range(1, 20):
        assert bus_settings.backoff_base_s / 2 <= backoff_s(n, bus_settings)
        assert backoff_s(n, bus_settings) <= bus_settings.backoff_max_s


async def test_transient_error_is_redelivered_with_delay_then_succeeds(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    seen: list[tuple[int, float]] = []

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        seen.append((ctx.num_delivered, time.monotonic()))
        if ctx.num_delivered == 1:
            raise TransientError("backend busy", retry_after_s=0.3)
        return [Outbound(subject=subjects.work("validator"), payload=b"ok", msg_id="k1:out")]

    await _submit(js, site, b'{"n": 1}', "k1")
    async with _worker(js, site, bus_settings, handle):
        await assert_eventually(lambda: len(seen) >= 2)
        await assert_eventually(lambda: _settled(js, site))
    assert [d for d, _ in seen] == [1, 2]
    assert seen[1][1] - seen[0][1] >= 0.3
    outs = await stream_messages(js, subjects.work_stream, subjects.work("validator"))
    assert len(outs) == 1
    assert outs[0].headers is not None
    assert outs[0].headers["sm-causation-id"] == "k1:in"
    assert await _dead_letters(js, site) == []


async def test_bad_schema_is_dead_lettered_at_once_with_field_and_event(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    calls = 0

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        nonlocal calls
        calls += 1
        return []

    await _submit(js, site, b'{"n": "seven"}', "bad-1")
    async with _worker(js, site, bus_settings, handle):
        letters = await assert_eventually(lambda: _dead_letters(js, site))
        await assert_eventually(lambda: _settled(js, site))
    assert calls == 0
    [letter] = letters
    assert letter.error_class == "SchemaError"
    assert letter.field == "$.n"
    assert "$.n" in letter.reason
    assert letter.deliveries == 1
    assert letter.original == b'{"n": "seven"}'
    assert letter.original_headers[HDR_TASK_ID] == "bad-1"
    assert letter.task_id == "bad-1"
    assert letter.role == "planner"
    events = await stream_messages(js, subjects.events_stream, subjects.task_events("bad-1"))
    [failed] = [EVENT_DECODER.decode(m.data or b"") for m in events]
    assert isinstance(failed, TaskFailed)
    assert failed.field == "$.n"
    assert failed.role == "planner"


async def test_poison_message_is_dead_lettered_exactly_once_after_max_deliver(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    deliveries: list[int] = []

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        deliveries.append(ctx.num_delivered)
        raise RuntimeError(f"cannot handle item {item.n}")

    await _submit(js, site, b'{"n": 13}', "poison-1")
    sweeper = MaxDeliveriesSweeper(js, site=site, settings=bus_settings)
    async with sweeper, _worker(js, site, bus_settings, handle):
        await assert_eventually(lambda: _dead_letters(js, site))
        # Nothing pending or awaiting an ack: it was termed, so it cannot come back.
        await assert_eventually(lambda: _settled(js, site))
    assert deliveries == [1, 2, 3]
    [letter] = await _dead_letters(js, site)
    assert letter.error_class == "RuntimeError"
    assert letter.deliveries == bus_settings.max_deliver
    assert "cannot handle item 13" in letter.reason
    events = await stream_messages(js, subjects.events_stream, subjects.task_events("poison-1"))
    assert len(events) == 1
    info = await js.stream_info(subjects.advisories_stream)
    assert info.state.messages == 0


async def test_shutdown_finishes_in_flight_messages(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    started: list[int] = []
    done: list[int] = []

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        started.append(item.n)
        await asyncio.sleep(0.3)
        done.append(item.n)
        return []

    for i in range(4):
        await _submit(js, site, b'{"n": %d}' % i, f"g{i}")
    worker = _worker(js, site, bus_settings, handle)
    run = asyncio.create_task(worker.run())
    await assert_eventually(lambda: len(started) == 4)  # all four in flight
    assert done == []
    await worker.shutdown()
    await worker.shutdown()  # idempotent
    await run
    assert sorted(done) == [0, 1, 2, 3]
    await assert_eventually(lambda: _settled(js, site))


async def test_a_handler_slower_than_ack_wait_is_not_redelivered_meanwhile(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    """A local model's plan takes longer than ``ack_wait``: in-progress acks keep the
    delivery alive, so no second delivery (and no duplicate work) happens."""
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    deliveries: list[int] = []

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        deliveries.append(ctx.num_delivered)
        await asyncio.sleep(bus_settings.ack_wait_s * 2.5)  # well past ack_wait
        return []

    await _submit(js, site, b'{"n": 1}', "slow1")
    async with _worker(js, site, bus_settings, handle):
        await assert_eventually(lambda: len(deliveries) >= 1)
        await assert_eventually(lambda: _settled(js, site), timeout_s=15)
        await asyncio.sleep(bus_settings.ack_wait_s)  # a redelivery would show up here
    assert deliveries == [1]
