"""Limits without silent loss, and a bounded cost per hostile message: full streams
refuse (never drop) work, oversized dead letters, hostile JSON, handler budgets and
capped retrieval queries. Real nats-server (the session fixture)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter
from collections.abc import Sequence

import msgspec
import pytest
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy

from sitemesh.agents import KnowledgeBase
from sitemesh.agents._retriever import RetrieverAgent, build_query
from sitemesh.bus import (
    ADMIT_BELOW,
    HDR_MSG_ID,
    TRUNCATED_ORIGINAL_BYTES,
    AdmissionGate,
    MsgContext,
    Outbound,
    Publisher,
    Subjects,
    Worker,
    provision,
    raw_task_id,
    stream_config,
)
from sitemesh.cli._publish import Prepared, publish
from sitemesh.config import BusSettings
from sitemesh.errors import SchemaError, StreamFull
from sitemesh.knowledge import MAX_QUERY_CHARS
from sitemesh.schemas import (
    DLQ_DECODER,
    MAX_NESTING,
    TASK_DECODER,
    DeadLetter,
    SupportTicket,
    check_nesting,
    decode,
    json_path_at,
)
from tests.conftest import assert_eventually, stream_messages

pytestmark = pytest.mark.timeout(60)


def _ticket(task_id: str, body: str = "the vpn drops every hour") -> bytes:
    return json.dumps(
        {"type": "support_ticket.v1", "task_id": task_id, "channel": "email", "body": body},
        ensure_ascii=False,
    ).encode()


async def _letters(js: JetStreamContext, site: str) -> list[DeadLetter]:
    s = Subjects(site)
    return [
        DLQ_DECODER.decode(m.data or b"")
        for m in await stream_messages(js, s.dlq_stream, s.all_dlq)
    ]


async def _shrink(js: JetStreamContext, bus: BusSettings, name: str, max_bytes: int) -> None:
    info = await js.stream_info(name)
    cfg = stream_config(bus, name, info.config.subjects, max_age=False)
    cfg.max_bytes = max_bytes
    await js.update_stream(cfg)


def _router(
    js: JetStreamContext, site: str, bus: BusSettings, handler: object, decoder: object = None
) -> Worker[object]:
    stream, durable, _ = Subjects(site).consumer_for("router")
    return Worker(
        js, site=site, role="router", stream=stream, durable=durable,
        decoder=decoder or (lambda d: decode(d, TASK_DECODER)),  # type: ignore[arg-type]
        handler=handler, settings=bus,  # type: ignore[arg-type]
    )  # fmt: skip


# -- 1. full streams refuse new messages ----------------------------------------------


async def test_streams_refuse_when_full_and_an_old_stream_is_updated_in_place(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    old = stream_config(bus_settings, s.work_stream, [s.all_work], discard=DiscardPolicy.OLD)
    await js.add_stream(old)  # a stream provisioned before this change
    await provision(js, s, bus_settings)
    for name in (s.tasks_stream, s.work_stream, s.events_stream, s.dlq_stream):
        assert (await js.stream_info(name)).config.discard == DiscardPolicy.NEW, name
    assert (await js.stream_info(s.advisories_stream)).config.discard == DiscardPolicy.OLD

    await _shrink(js, bus_settings, s.work_stream, 1024)
    pub = Publisher(js)
    outs = [
        Outbound(subject=s.work("planner"), payload=b"x" * 100, msg_id=f"f{n}") for n in range(30)
    ]
    results = []
    for out in outs:  # one at a time: the stream fills up in order
        results.extend(await pub.publish_each([out]))
    refusals = [r for r in results if isinstance(r, StreamFull)]
    stored = len(results) - len(refusals)
    assert refusals
    assert results[stored:] == refusals  # everything after the first refusal is refused
    with pytest.raises(StreamFull) as refused:
        await pub.publish(outs[-1])
    assert refused.value.subject == s.work("planner")
    assert "maximum bytes exceeded" in str(refused.value)
    info = await js.stream_info(s.work_stream)
    assert info.state.messages == stored  # nothing old was dropped to make room
    assert info.state.first_seq == 1


async def test_a_full_work_stream_loses_nothing(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    await _shrink(js, bus_settings, s.work_stream, 2048)

    async def route(task: SupportTicket, ctx: MsgContext) -> Sequence[Outbound]:
        return [
            Outbound(
                subject=s.work("planner"), payload=b"w" * 120, msg_id=f"{task.task_id}:work",
                task_id=task.task_id,
            )
        ]  # fmt: skip

    total = 30
    async with _router(js, site, bus_settings, route):
        for n in range(total):
            await js.publish(s.task("support_ticket"), _ticket(f"t{n}"))

        # WORK fills up; the router holds the rest of its input, unacked
        async def held() -> bool:
            info = await js.consumer_info(s.tasks_stream, "router")
            work = await js.stream_info(s.work_stream)
            return work.state.messages < total and info.num_ack_pending > 0

        await assert_eventually(held, timeout_s=10)
        await asyncio.sleep(0.5)  # several retries against the full stream
        assert (await js.stream_info(s.work_stream)).state.first_seq == 1
        assert await _letters(js, site) == []

        await _shrink(js, bus_settings, s.work_stream, 1 << 20)  # an operator makes room

        async def drained() -> bool:
            info = await js.consumer_info(s.tasks_stream, "router")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await assert_eventually(drained, timeout_s=20)
    work = await stream_messages(js, s.work_stream, s.work("planner"))
    ids = Counter((m.headers or {}).get(HDR_MSG_ID) for m in work)
    assert ids == Counter({f"t{n}:work": 1 for n in range(total)})
    assert await _letters(js, site) == []


async def test_sitemesh_publish_reports_a_full_tasks_stream(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    await _shrink(js, bus_settings, s.tasks_stream, 1024)
    tasks = [
        Prepared(f"p{n}", "support_ticket", None, _ticket(f"p{n}", "y" * 200)) for n in range(10)
    ]
    with pytest.raises(StreamFull) as exc:
        await publish(js, site, tasks, concurrency=1)
    text = str(exc.value)
    assert "\n" not in text
    assert "of 10 tasks were stored" in text
    assert s.task("support_ticket") in text


# -- 3. oversized dead letters --------------------------------------------------------


async def test_a_900_kb_task_is_dead_lettered_with_digest_truncated_original_and_id(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    data = _ticket("huge-1", "é" * 450_000)  # 2 bytes each: a cut can split one
    assert 880_000 < len(data) < 1 << 20

    async def route(task: object, ctx: MsgContext) -> Sequence[Outbound]:
        raise AssertionError("never handled")

    async with _router(js, site, bus_settings, route):
        await js.publish(s.task("support_ticket"), data, headers={HDR_MSG_ID: "m1"})
        [letter] = await assert_eventually(lambda: _letters(js, site), timeout_s=10)
    assert letter.error_class == "MessageTooLarge"
    assert letter.deliveries == 1
    assert letter.task_id == "huge-1"  # from the raw bytes: no sm-task-id header
    assert letter.original_truncated
    assert letter.original_size == len(data)
    assert letter.original_sha256 == hashlib.sha256(data).hexdigest()
    assert TRUNCATED_ORIGINAL_BYTES - 4 < len(letter.original) <= TRUNCATED_ORIGINAL_BYTES
    assert data.startswith(letter.original)
    letter.original.decode("utf-8")  # valid UTF-8: no half character at the cut


def test_raw_task_id_of_undecodable_bytes() -> None:
    assert raw_task_id(b'{"x": [[[, "task_id" : "t-9", \xff', {}) == "t-9"
    assert raw_task_id(b'{"task_id": "bad id!"}', {}) is None
    assert raw_task_id(b"\xff", {HDR_MSG_ID: "t-7:submit:client"}) == "t-7"
    assert raw_task_id(b"", {"sm-task-id": "h-1"}) == "h-1"


# -- 4. hostile JSON ------------------------------------------------------------------

DEEP = b'{"type": "support_ticket.v1", "task_id": "deep-1", "channel": "email", "body": "b", '
DEEP += b'"extra": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
BAD_UTF8 = _ticket("utf-1", "vpn XX down").replace(b"XX", b"\xff\xfe")


@pytest.mark.parametrize(
    ("data", "tid", "field", "words"),
    [
        (DEEP, "deep-1", "$.extra" + "[0]" * (MAX_NESTING - 1), "deeper than"),
        (BAD_UTF8, "utf-1", "$.body", "invalid UTF-8 at byte"),
    ],
    ids=["nested-10k", "invalid-utf8"],
)
async def test_hostile_tasks_are_dead_lettered_on_the_first_delivery(
    js: JetStreamContext,
    site: str,
    bus_settings: BusSettings,
    data: bytes,
    tid: str,
    field: str,
    words: str,
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    calls = 0

    async def route(task: object, ctx: MsgContext) -> Sequence[Outbound]:
        nonlocal calls
        calls += 1
        return []

    bus = bus_settings.model_copy(update={"max_task_bytes": 1 << 20})
    async with _router(js, site, bus, route):
        await js.publish(s.task("support_ticket"), data)
        [letter] = await assert_eventually(lambda: _letters(js, site), timeout_s=10)
    assert calls == 0
    assert letter.error_class == "SchemaError"
    assert letter.deliveries == 1
    assert letter.field == field
    assert words in letter.reason
    assert letter.task_id == tid


async def test_deep_nesting_on_work_is_a_schema_error_not_a_retry(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    stream, durable, _ = s.consumer_for("planner")
    worker: Worker[object] = Worker(
        js, site=site, role="planner", stream=stream, durable=durable,
        decoder=msgspec.json.Decoder().decode, handler=lambda v, c: asyncio.sleep(0, []),  # type: ignore[arg-type]
        settings=bus_settings,
    )  # fmt: skip
    async with worker:
        await js.publish(s.work("planner"), b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}")
        [letter] = await assert_eventually(lambda: _letters(js, site), timeout_s=10)
    assert letter.deliveries == 1
    assert letter.error_class == "SchemaError"
    assert letter.field is not None
    assert letter.field.startswith("$.a[0]")
    assert "too deeply" in letter.reason


def test_check_nesting_limit_and_paths() -> None:
    check_nesting(b"[" * MAX_NESTING + b"]" * MAX_NESTING)
    check_nesting(b'{"a": "' + b"[" * 500 + b'"}')  # brackets in a string do not count
    check_nesting(b'{"a": "\\"' + b"{" * 500 + b'"}')
    with pytest.raises(SchemaError) as exc:
        check_nesting(b'{"k": {"v": [1, ' + b"{" * 100 + b"}" * 100 + b"]}}")
    assert exc.value.field is not None
    assert exc.value.field.startswith("$.k.v[1]")
    assert json_path_at(b'{"a": [1, {"b": "x', 17) == "$.a[1].b"


# -- 5. bounded cost ------------------------------------------------------------------


async def test_a_handler_past_its_budget_is_dead_lettered_while_others_go_on(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    handled: list[bytes] = []
    release = asyncio.Event()

    async def handle(data: bytes, ctx: MsgContext) -> Sequence[Outbound]:
        if data == b"slow":
            await asyncio.sleep(60)
        handled.append(data)
        if data == b"fast-2":
            release.set()
        return []

    bus = bus_settings.model_copy(update={"handler_timeouts": {"planner": 1.0}})
    stream, durable, _ = s.consumer_for("planner")
    worker: Worker[bytes] = Worker(
        js, site=site, role="planner", stream=stream, durable=durable, decoder=bytes,
        handler=handle, settings=bus,
    )  # fmt: skip
    assert worker.handler_timeout_s == 1.0
    async with worker:
        await js.publish(s.work("planner"), b"slow", headers={"sm-task-id": "slow-1"})
        await js.publish(s.work("planner"), b"fast-1")
        await js.publish(s.work("planner"), b"fast-2")
        await asyncio.wait_for(release.wait(), 10)
        assert await _letters(js, site) == []  # the slow one is still within budget
        [letter] = await assert_eventually(lambda: _letters(js, site), timeout_s=10)
    assert handled == [b"fast-1", b"fast-2"]
    assert letter.error_class == "HandlerTimeout"
    assert letter.reason.startswith("handler_timeout")
    assert letter.task_id == "slow-1"
    assert letter.deliveries == 1


def test_a_hostile_ticket_feeds_a_capped_query_to_the_index(
    kb: KnowledgeBase, monkeypatch: pytest.MonkeyPatch
) -> None:
    fed: list[str] = []
    search = kb.search

    def spy(query: str, k: int = 5) -> object:
        fed.append(query)
        return search(query, k=k)

    monkeypatch.setattr(kb, "search", spy)
    ticket = SupportTicket(task_id="h-1", channel="email", title="vpn", body="1." * 8192)
    query = build_query(ticket)
    assert 0 < len(query) <= MAX_QUERY_CHARS
    RetrieverAgent(kb).retrieve("h-1", query)
    assert [len(q) for q in fed] == [len(query)]
    assert len(build_query(SupportTicket(task_id="h-2", channel="email", body="a b"))) == 3


async def test_a_filling_stream_is_reported_before_it_refuses(
    js: JetStreamContext, site: str
) -> None:
    """``stream_fill`` reads each stream's fill; ``edge``'s watch warns once past
    ``FILL_WARNING`` (console and log), and ``status`` prints it in red."""
    from rich.console import Console

    from sitemesh.bus import FILL_WARNING, Subjects, provision, stream_fill
    from sitemesh.cli._queues import fill_line
    from sitemesh.cli._run import watch_fill

    subjects = Subjects(site)
    await provision(js, subjects, BusSettings(max_bytes=64 * 1024), roles=["router"])
    before = {f.stream: f for f in await stream_fill(js, subjects)}
    assert set(before) == {
        subjects.tasks_stream,
        subjects.work_stream,
        subjects.events_stream,
        subjects.dlq_stream,
    }
    assert before[subjects.work_stream].fraction == 0.0
    body = b"x" * 1000
    n = 0
    while True:  # fill WORK past the warning mark, short of full
        fill = {f.stream: f for f in await stream_fill(js, subjects)}[subjects.work_stream]
        if fill.fraction >= FILL_WARNING:
            break
        await js.publish(subjects.work("retriever"), body, headers={"Nats-Msg-Id": f"w{n}"})
        n += 1
    assert fill.max_bytes == 64 * 1024
    assert FILL_WARNING <= fill.fraction < 1.0
    console = Console(record=True, width=200)
    watch = asyncio.create_task(watch_fill(js, site, console, interval_s=0.05))
    try:
        await assert_eventually(lambda: "full" in console.export_text(clear=False), timeout_s=5)
    finally:
        watch.cancel()
    said = console.export_text()
    assert f"stream {subjects.work_stream} is" in said
    assert said.count("full") >= 1
    assert subjects.tasks_stream not in said  # only the filling one
    line = fill_line([fill])
    assert line.plain.startswith(f"streams: {subjects.work_stream} ")
    assert any(span.style == "bold red" for span in line.spans)


async def test_the_router_admits_no_new_task_into_a_nearly_full_work_stream(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    """AdmissionGate: past ADMIT_BELOW the router holds its tasks (unacked, no delivery
    spent, nothing dead-lettered) while events still pass; room again, they go on."""
    s = Subjects(site)
    await provision(js, s, bus_settings)
    await _shrink(js, bus_settings, s.work_stream, 20_000)
    gate = AdmissionGate(js, s.work_stream, s.all_work.removesuffix(">"))
    pub = Publisher(js)
    n = 0
    while (await js.stream_info(s.work_stream)).state.bytes < ADMIT_BELOW * 20_000:
        await pub.publish(Outbound(subject=s.work("retriever"), payload=b"f" * 200, msg_id=f"f{n}"))
        n += 1
    event = Outbound(subject=s.event("x", "router"), payload=b"{}", msg_id="e")
    assert await gate([event]) is None  # events are not guarded
    refused = await gate([event, Outbound(subject=s.work("planner"), payload=b"w", msg_id="w")])
    assert isinstance(refused, StreamFull)
    assert "new tasks wait" in str(refused)

    async def route(task: SupportTicket, ctx: MsgContext) -> Sequence[Outbound]:
        return [
            Outbound(
                subject=s.work("planner"), payload=b"w", msg_id=f"{task.task_id}:work",
                task_id=task.task_id,
            )
        ]  # fmt: skip

    stream, durable, _ = s.consumer_for("router")
    router = Worker(
        js, site=site, role="router", stream=stream, durable=durable,
        decoder=lambda d: decode(d, TASK_DECODER), handler=route,  # type: ignore[arg-type]
        settings=bus_settings, admit=gate,
    )  # fmt: skip
    async with router:
        for i in range(3):
            await js.publish(s.task("support_ticket"), _ticket(f"g{i}"))

        async def held() -> bool:
            info = await js.consumer_info(s.tasks_stream, "router")
            return info.num_ack_pending == 3 and gate.held >= 6

        await assert_eventually(held, timeout_s=10)
        assert await stream_messages(js, s.work_stream, s.work("planner")) == []
        info = await js.consumer_info(s.tasks_stream, "router")
        assert info.num_redelivered == 0  # held in progress, not redelivered
        await js.purge_stream(s.work_stream)  # the work in progress drained

        async def drained() -> bool:
            info = await js.consumer_info(s.tasks_stream, "router")
            return info.num_pending == 0 and info.num_ack_pending == 0

        await assert_eventually(drained, timeout_s=20)
    work = await stream_messages(js, s.work_stream, s.work("planner"))
    assert sorted((m.headers or {}).get(HDR_MSG_ID) for m in work) == [
        "g0:work", "g1:work", "g2:work"
    ]  # fmt: skip
    assert await _letters(js, site) == []
