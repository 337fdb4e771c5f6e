"""The recorder against a real nats-server: events and dead letters land once."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from nats.js import JetStreamContext
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
from sitemesh.state import Recorder, Store
from tests.conftest import assert_eventually

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


class LosesAcks(Store):
    """Records an event, then fails once as if the ack had been lost (a redelivery)."""

    def __init__(self, url: str, fail_once: set[str]) -> None:
        super().__init__(url)
        self.fail_once = set(fail_once)
        self.calls: Counter[str] = Counter()

    async def record_event(self, stream: str, stream_seq: int, event: Event) -> bool:
        key = f"{event.task_id}:{type(event).__name__}"
        self.calls[key] += 1
        recorded = await super().record_event(stream, stream_seq, event)
        if key in self.fail_once:
            self.fail_once.discard(key)
            raise OperationalError("COMMIT", {}, ConnectionResetError("connection lost"))
        return recorded

    async def record_dead_letter(self, dl: DeadLetter) -> bool:
        self.calls["dead_letter"] += 1
        return await super().record_dead_letter(dl)


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
        await publish(js, subjects.event(tid), encode(ev), f"{tid}:{i}")
    # A second answer for the same task, published under another msg id.
    dup = FinalAnswer(task_id=tid, site=site, outcome="escalate", submitted_at=T0)
    await publish(js, subjects.event(tid), encode(dup), f"{tid}:again")
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
    await publish(js, subjects.event("t-3"), b"not json", "garbage", **{HDR_TASK_ID: "t-3"})

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
