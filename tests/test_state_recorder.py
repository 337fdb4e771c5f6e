"""The recorder against a real nats-server: events and dead letters land once."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from nats.js import JetStreamContext
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from sitemesh.bus import HDR_MSG_ID, HDR_TASK_ID, RECORDER, Subjects, provision
from sitemesh.config import BusSettings
from sitemesh.schemas import (
    DeadLetter,
    Event,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    TaskAccepted,
    encode,
)
from sitemesh.state import Recorder, Store, TaskEventRow, is_sqlite
from sitemesh.state._recorder import _transient
from sitemesh.telemetry import Instruments
from tests.conftest import assert_eventually

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class LosesAcks(Store):
    """Records a batch, then fails once as if the ack had been lost (a redelivery) when
    the batch holds one of ``fail_once``."""

    def __init__(self, url: str, fail_once: set[str]) -> None:
        super().__init__(url)
        self.fail_once = set(fail_once)
        self.calls: Counter[str] = Counter()

    async def record_events(self, stream: str, events: Sequence[tuple[int, Event]]) -> int:
        keys = [f"{event.task_id}:{type(event).__name__}" for _, event in events]
        self.calls.update(keys)
        recorded = await super().record_events(stream, events)
        if lost := self.fail_once.intersection(keys):
            self.fail_once -= lost
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        return recorded

    async def record_dead_letters(self, dls: Sequence[DeadLetter]) -> int:
        self.calls["dead_letter"] += len(dls)
        return await super().record_dead_letters(dls)


@pytest.fixture
async def store(state_db_url: str) -> AsyncIterator[LosesAcks]:
    url = state_db_url
    async with LosesAcks(url, {"t-1:StepCompleted"}) as s:
        yield s


async def publish(js: JetStreamContext, subject: str, data: bytes, msg_id: str, **hdrs: str) -> int:
    ack = await js.publish(subject, data, headers={HDR_MSG_ID: msg_id, **hdrs})
    return ack.seq


async def test_recorder_records_events_and_dead_letters_once(
    js: JetStreamContext, site: str, bus_settings: BusSettings, store: LosesAcks
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    tid = "t-1"
    events: list[Event] = [
        TaskAccepted(task_id=tid, site=site, kind="support_ticket", submitted_at=T0),
        PolicyDecision(
            task_id=tid,
            action="pin_edge",
            rule_id="pii",
            policy_version="abc",
            data_class="confidential",
        ),
        StepCompleted(
            task_id=tid,
            site=site,
            role="retriever",
            summary="3 passages",
            started_at=T0 + timedelta(milliseconds=50),
            finished_at=T0 + timedelta(milliseconds=80),
        ),
        FinalAnswer(
            task_id=tid,
            site=site,
            outcome="resolved",
            submitted_at=T0,
            answered_at=T0 + timedelta(milliseconds=900),
        ),
    ]
    for i, ev in enumerate(events):
        await publish(js, subjects.event(tid, "router"), encode(ev), f"{tid}:{i}")
    # A second answer for the same task, published under another msg id.
    dup = FinalAnswer(task_id=tid, site=site, outcome="escalate", submitted_at=T0)
    await publish(js, subjects.event(tid, "router"), encode(dup), f"{tid}:again")
    letter = DeadLetter(
        site=site,
        role="router",
        subject=subjects.task("support_ticket"),
        stream=subjects.tasks_stream,
        stream_seq=17,
        task_id="t-2",
        reason="Object missing required field `body`",
        error_class="SchemaError",
        field="$.body",
        original=b'{"type":"support_ticket.v1"}',
    )
    await publish(js, subjects.dlq("router"), encode(letter), "dlq:a")
    # Garbage on the events subject: the recorder's runtime dead-letters it itself.
    await publish(
        js, subjects.event("t-3", "router"), b"not json", "garbage", **{HDR_TASK_ID: "t-3"}
    )

    async def settled() -> bool:
        t1, t2, t3 = [await store.get_task(t) for t in ("t-1", "t-2", "t-3")]
        return (
            t1 is not None
            and t1.task.status == "answered"
            and len(t1.events) == 4
            and store.calls["t-1:StepCompleted"] >= 2  # redelivered after the lost ack
            and store.calls["t-1:FinalAnswer"] >= 2  # the duplicate was seen
            and t2 is not None
            and t2.task.status == "failed"
            and t3 is not None
            and t3.task.status == "failed"
            and len(t3.dead_letters) == 1
        )

    # One message at a time: which of two different final answers wins is decided by
    # commit order, which is stream order only without concurrency (on PostgreSQL two
    # in-flight handlers commit in either order; SQLite serialises them).
    async with Recorder(js, store, site, bus_settings, max_inflight=1):
        await assert_eventually(settled, timeout_s=15)

    view = await store.get_task(tid)
    assert view is not None
    assert [e.type for e in view.events] == [
        "task_accepted.v1",
        "policy_decision.v1",
        "step_completed.v1",
        "final_answer.v1",
    ]
    assert all(e.stream == subjects.events_stream for e in view.events)
    assert (view.task.outcome, view.task.latency_ms) == ("resolved", pytest.approx(900.0))
    assert view.decision is not None
    assert view.decision.data_class == "confidential"
    (garbage,) = (await store.get_task("t-3")).dead_letters  # type: ignore[union-attr]
    assert (garbage.role, garbage.error_class, garbage.original) == (
        "recorder",
        "SchemaError",
        b"not json",
    )
    assert len(await store.dead_letters(10)) == 2

    # Replay the whole history from a fresh consumer: nothing is recorded twice.
    await js.delete_consumer(subjects.events_stream, RECORDER)
    await js.delete_consumer(subjects.dlq_stream, RECORDER)
    await provision(js, subjects, bus_settings)
    before = store.calls.copy()
    async with Recorder(js, store, site, bus_settings):
        # 6 decodable events (with the TaskFailed of t-3) and 2 dead letters again.
        await assert_eventually(lambda: store.calls.total() - before.total() >= 8, timeout_s=10)
    assert store.calls["dead_letter"] - before["dead_letter"] == 2
    view = await store.get_task(tid)
    assert view is not None
    assert len(view.events) == 4
    assert len(await store.dead_letters(10)) == 2
    counts = await store.counts()
    assert counts.by_status == {"accepted": 0, "answered": 1, "failed": 2}


# -- batches --------------------------------------------------------------------------
class Counting(Store):
    """Counts what the recorder hands the store, per ``<task>:<event type>`` and batch;
    fails the first ``fail`` batches mid-transaction (after the event rows are written)
    or, with ``lose_acks``, just after committing them (as if the acks were lost)."""

    def __init__(self, url: str, *, fail: int = 0, lose_acks: int = 0) -> None:
        super().__init__(url)
        self.fail, self.lose_acks = fail, lose_acks
        self.calls: Counter[str] = Counter()
        self.batches: list[int] = []

    async def record_events(self, stream: str, events: Sequence[tuple[int, Event]]) -> int:
        self.calls.update(f"{ev.task_id}:{type(ev).__name__}" for _, ev in events)
        self.batches.append(len(events))
        recorded = await super().record_events(stream, events)
        if self.lose_acks:
            self.lose_acks -= 1
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        return recorded

    async def _fold_tasks(self, conn: Any, changes: Any) -> None:
        if self.fail:
            self.fail -= 1
            raise OperationalError(
                "UPDATE tasks SET title=?", {"title": "Jane Doe's card"}, OSError("disk I/O error")
            )
        await super()._fold_tasks(conn, changes)


def ticket_events(site: str, tid: str) -> list[Event]:
    """The event mix of one answered ticket."""
    return [
        TaskAccepted(task_id=tid, site=site, kind="support_ticket", submitted_at=T0),
        PolicyDecision(
            task_id=tid,
            action="pin_edge",
            rule_id="pii",
            policy_version="abc",
            data_class="confidential",
        ),
        *(
            StepCompleted(
                task_id=tid,
                site=site,
                role=role,
                summary="ok",
                started_at=T0,
                finished_at=T0 + timedelta(milliseconds=10 * i),
            )
            for i, role in enumerate(("retriever", "planner", "validator"), 1)
        ),
        FinalAnswer(
            task_id=tid,
            site=site,
            outcome="resolved",
            submitted_at=T0,
            answered_at=T0 + timedelta(milliseconds=500),
        ),
    ]


async def publish_tickets(js: JetStreamContext, site: str, n: int) -> list[Event]:
    subjects = Subjects(site)
    await provision(js, subjects, BusSettings(max_bytes=1 << 24))
    events = [ev for i in range(n) for ev in ticket_events(site, f"t-{i}")]
    for i, ev in enumerate(events):
        await publish(js, subjects.event(ev.task_id, "router"), encode(ev), f"m-{i}")
    return events


async def all_answered(store: Store, n: int) -> bool:
    return len(await store.answered_ids()) == n


async def test_an_undecodable_message_is_dead_lettered_and_the_rest_recorded(
    js: JetStreamContext, site: str, bus_settings: BusSettings, state_db_url: str
) -> None:
    events = await publish_tickets(js, site, 2)  # 12 events, and one bad message among them
    subjects = Subjects(site)
    bad = {"type": "step_completed.v1", "task_id": "t-bad", "site": site}  # fields missing
    await publish(js, subjects.event("t-bad", "router"), msgspec.json.encode(bad), "bad",
                  **{HDR_TASK_ID: "t-bad"})  # fmt: skip
    for i, ev in enumerate(ticket_events(site, "t-9")):
        await publish(js, subjects.event(ev.task_id, "router"), encode(ev), f"late-{i}")
    async with Counting(state_db_url) as store:
        async with Recorder(js, store, site, bus_settings.model_copy(update={"batch": 64})):
            await assert_eventually(lambda: all_answered(store, 3), timeout_s=15)

            async def bad_one_failed() -> bool:
                view = await store.get_task("t-bad")
                return view is not None and view.task.status == "failed"

            await assert_eventually(bad_one_failed, timeout_s=15)
        # the batch was not failed: every good event was handed over once, and the
        # bad one's task_failed (published by the recorder's dead-lettering)
        good = [*events, *ticket_events(site, "t-9")]
        expected = Counter(f"{ev.task_id}:{type(ev).__name__}" for ev in good)
        assert store.calls == expected + Counter(["t-bad:TaskFailed"])
        assert max(store.batches) > 1
        (letter,) = await store.dead_letters(10)
        assert (letter.role, letter.error_class, letter.task_id) == ("recorder", "SchemaError",
                                                                     "t-bad")  # fmt: skip
        assert letter.field == "$.role"  # the first missing field
        assert letter.original == msgspec.json.encode(bad)
        assert (await store.counts()).by_status == {"accepted": 0, "answered": 3, "failed": 1}


async def test_a_database_error_mid_batch_loses_nothing(
    js: JetStreamContext,
    site: str,
    bus_settings: BusSettings,
    state_db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    n = 5
    events = await publish_tickets(js, site, n)
    # more failures than max_deliver (3): a database error is never dead-lettered
    async with Counting(state_db_url, fail=bus_settings.max_deliver + 1) as store:
        caplog.set_level(logging.WARNING, logger="sitemesh.state.recorder")
        async with Recorder(js, store, site, bus_settings, db_retry_after_s=0.01):
            await assert_eventually(lambda: all_answered(store, n), timeout_s=30)
        assert store.fail == 0
        assert store.calls.total() > len(events)  # redelivered after the failures
        async with store._engine.connect() as conn:
            rows = (await conn.execute(select(TaskEventRow.stream_seq))).scalars().all()
        assert sorted(rows) == list(range(1, len(events) + 1))  # each event once
        assert await store.dead_letters(10) == []
        for i in range(n):
            view = await store.get_task(f"t-{i}")
            assert view is not None
            assert (view.task.status, view.task.data_class) == ("answered", "confidential")
            assert view.decision is not None
    failures = [r.getMessage() for r in caplog.records if "not recorded" in r.getMessage()]
    assert failures
    assert "OperationalError (OSError): disk I/O error" in failures[0]
    assert not any("Jane" in r.getMessage() for r in caplog.records)  # no SQL parameters


async def test_a_redelivered_batch_is_recorded_once(
    js: JetStreamContext, site: str, bus_settings: BusSettings, state_db_url: str
) -> None:
    n = 3
    events = await publish_tickets(js, site, n)
    async with Counting(state_db_url, lose_acks=2) as store:
        async with Recorder(js, store, site, bus_settings, db_retry_after_s=0.01):
            await assert_eventually(lambda: all_answered(store, n), timeout_s=30)
            await assert_eventually(lambda: store.lose_acks == 0 and len(store.batches) > 2)
        assert store.calls.total() > len(events)  # some were handed over twice or more
        for i in range(n):
            view = await store.get_task(f"t-{i}")
            assert view is not None
            assert [e.type for e in view.events].count("step_completed.v1") == 3
            assert len(view.events) == len(events) // n
            assert view.task.latency_ms == pytest.approx(500.0)


async def test_the_lag_is_exported_and_logged(
    js: JetStreamContext,
    site: str,
    bus_settings: BusSettings,
    state_db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = await publish_tickets(js, site, 2)
    reader = InMemoryMetricReader()
    instruments = Instruments(MeterProvider(metric_readers=[reader]).get_meter("test"))
    stream = Subjects(site).events_stream

    def points(name: str) -> list[Any]:
        data = reader.get_metrics_data()
        assert data is not None
        return [
            p
            for rm in data.resource_metrics
            for sm in rm.scope_metrics
            for m in sm.metrics
            if m.name == name
            for p in m.data.data_points
        ]

    def gauge(name: str) -> dict[str, int]:
        return {str(p.attributes["messaging.destination.name"]): p.value for p in points(name)}

    async def caught_up() -> bool:
        return await recorder.read_lag(stream) == 0

    async with Store(state_db_url) as store:
        recorder = Recorder(js, store, site, bus_settings, lag_warn=5, instruments=instruments)
        caplog.set_level(logging.INFO, logger="sitemesh.state.recorder")
        assert await recorder.read_lag(stream) == len(events)  # nothing recorded yet
        assert gauge("sitemesh.consumer.lag")[stream] == len(events)
        assert gauge("sitemesh.queue.depth")[stream] == len(events)
        assert any("behind" in r.getMessage() for r in caplog.records)
        async with recorder:
            await assert_eventually(lambda: all_answered(store, 2), timeout_s=15)
            await assert_eventually(caught_up, timeout_s=15)
        assert gauge("sitemesh.consumer.lag")[stream] == 0
        assert recorder.lag[stream] == 0
        assert any("caught up" in r.getMessage() for r in caplog.records)


async def test_two_recorders_share_the_consumers_on_postgresql(
    js: JetStreamContext, site: str, bus_settings: BusSettings, state_db_url: str
) -> None:
    if is_sqlite(state_db_url):
        pytest.skip("one recorder per SQLite database (one writer)")
    n = 12
    events = await publish_tickets(js, site, n)
    async with Counting(state_db_url) as one, Counting(state_db_url) as two:
        # small batches, so both recorders fold events of the same tasks concurrently
        async with (
            Recorder(js, one, site, bus_settings, max_inflight=4),
            Recorder(js, two, site, bus_settings, max_inflight=4),
        ):
            await assert_eventually(lambda: all_answered(one, n), timeout_s=30)
        assert one.calls.total() + two.calls.total() >= len(events)
        for i in range(n):
            view = await one.get_task(f"t-{i}")
            assert view is not None
            task = view.task
            assert (task.status, task.kind, task.data_class) == ("answered", "support_ticket",
                                                                 "confidential")  # fmt: skip
            assert (task.submitted_at, task.latency_ms) == (T0, pytest.approx(500.0))
            assert len(view.events) == len(events) // n


def test_a_database_error_is_named_without_its_parameters() -> None:
    orig = OSError("duplicate key value\nDETAIL:  Key (title)=(Jane Doe) already exists.")
    exc = OperationalError("INSERT INTO tasks (title) VALUES (?)", {"title": "Jane Doe"}, orig)
    assert "Jane" in str(exc)  # what SQLAlchemy's own text would have logged
    err = _transient(exc, 0.5)
    assert str(err) == "state database error: OperationalError (OSError): duplicate key value"
    assert err.retry_after_s == 0.5
    assert (
        str(_transient(ValueError("ticket text: Jane Doe"), 1.0)) == "recording failed: ValueError"
    )
