"""State store and migrations, on SQLite (temp file) and on the local PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, select

from sitemesh.schemas import (
    DeadLetter,
    EntityCount,
    Event,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    TaskAccepted,
    TaskFailed,
)
from sitemesh.state import (
    Base,
    DeadLetterRow,
    Store,
    TaskEventRow,
    alembic_config,
    create_engine,
    migrate,
)
from tests._dbs import DB_KINDS, fresh_db

EVENTS = "EVENTS_eu1"
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


# -- fixtures ---------------------------------------------------------------------------
@pytest.fixture(params=DB_KINDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database per test: a SQLite file, or a PostgreSQL database dropped after."""
    async with fresh_db(
        request.param, tmp_path, tag="state", sqlite_file=tmp_path / "state" / "sitemesh.db"
    ) as url:
        yield url


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    async with Store(db_url) as s:
        yield s


# -- builders ---------------------------------------------------------------------------
def accepted(task_id: str, at: datetime = T0, **kw: object) -> TaskAccepted:
    return TaskAccepted(
        task_id=task_id,
        site="eu1",
        kind="support_ticket",
        title="support_ticket twcs:1",
        submitted_at=at,
        accepted_at=at + timedelta(milliseconds=20),
        **kw,  # type: ignore[arg-type]
    )


def decided(task_id: str, data_class: str = "confidential") -> PolicyDecision:
    return PolicyDecision(
        task_id=task_id,
        action="pin_edge",
        rule_id="pii-pin-edge",
        policy_version="0123456789abcdef",
        data_class=data_class,  # type: ignore[arg-type]
        entities=[
            EntityCount(entity_type="PERSON", count=2, max_score=0.85),
            EntityCount(entity_type="EMAIL_ADDRESS", count=1, max_score=1.0),
        ],
        reasons=["PERSON detected"],
        analyzer_ms=12.5,
        decided_at=T0 + timedelta(milliseconds=30),
    )


def step(task_id: str, role: str, start_ms: int, end_ms: int) -> StepCompleted:
    return StepCompleted(
        task_id=task_id,
        site="eu1",
        role=role,
        summary=f"{role} done",
        started_at=T0 + timedelta(milliseconds=start_ms),
        finished_at=T0 + timedelta(milliseconds=end_ms),
    )


def answer(
    task_id: str, latency_ms: int = 1500, outcome: str = "resolved", at: datetime = T0
) -> FinalAnswer:
    return FinalAnswer(
        task_id=task_id,
        site="eu1",
        outcome=outcome,  # type: ignore[arg-type]
        reasons=["runbook matched"],
        customer_message="Please restart the router.",
        data_class="confidential",
        submitted_at=at,
        answered_at=at + timedelta(milliseconds=latency_ms),
    )


def dead_letter(task_id: str | None, seq: int, **kw: object) -> DeadLetter:
    return DeadLetter(
        site="eu1",
        role="router",
        subject="sm.v1.task.eu1.support_ticket",
        stream="TASKS_eu1",
        stream_seq=seq,
        task_id=task_id,
        reason="Expected `str`, got `int` - at `$.body`",
        error_class="SchemaError",
        field="$.body",
        deliveries=1,
        original=b'{"type":"support_ticket.v1","body":1}\xff',
        original_headers={"Nats-Msg-Id": "m1"},
        dead_at=T0 + timedelta(seconds=1),
        **kw,  # type: ignore[arg-type]
    )


async def full_task(store: Store, task_id: str, seq0: int, latency_ms: int = 1500) -> None:
    events = [
        accepted(task_id),
        decided(task_id),
        step(task_id, "retriever", 40, 90),
        step(task_id, "planner", 100, 400),
        answer(task_id, latency_ms),
    ]
    for i, ev in enumerate(events):
        assert await store.record_event(EVENTS, seq0 + i, ev)


async def count_rows(url: str, model: type[Base]) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())
    finally:
        await engine.dispose()


# -- store ------------------------------------------------------------------------------
async def test_round_trip(store: Store) -> None:
    await full_task(store, "t-1", 1)
    view = await store.get_task("t-1")
    assert view is not None
    t = view.task
    assert (t.status, t.outcome, t.data_class, t.kind, t.site) == (
        "answered",
        "resolved",
        "confidential",
        "support_ticket",
        "eu1",
    )
    assert t.reasons == ("runbook matched",)
    assert t.customer_message == "Please restart the router."
    assert t.submitted_at == T0
    assert t.submitted_at.utcoffset() == timedelta(0)
    assert t.accepted_at == T0 + timedelta(milliseconds=20)
    assert t.finished_at == T0 + timedelta(milliseconds=1500)
    assert t.latency_ms == pytest.approx(1500.0)

    assert [e.type for e in view.events] == [
        "task_accepted.v1",
        "policy_decision.v1",
        "step_completed.v1",
        "step_completed.v1",
        "final_answer.v1",
    ]
    assert [e.role for e in view.events][:4] == ["router", "router", "retriever", "planner"]
    assert view.events[3].duration_ms == pytest.approx(300.0)
    assert view.events[3].summary == "planner done"
    assert all(e.at.tzinfo is not None for e in view.events)
    assert view.events[4].payload["outcome"] == "resolved"

    d = view.decision
    assert d is not None
    assert (d.action, d.rule_id, d.policy_version, d.data_class) == (
        "pin_edge",
        "pii-pin-edge",
        "0123456789abcdef",
        "confidential",
    )
    assert [(e.entity_type, e.count) for e in d.entities] == [
        ("PERSON", 2),
        ("EMAIL_ADDRESS", 1),
    ]
    assert d.decided_at == T0 + timedelta(milliseconds=30)
    assert view.dead_letters == ()
    assert await store.get_task("nope") is None


async def test_same_event_twice_is_recorded_once(store: Store, db_url: str) -> None:
    assert await store.record_event(EVENTS, 7, accepted("t-1"))
    assert not await store.record_event(EVENTS, 7, accepted("t-1"))
    assert await store.record_event(EVENTS, 8, step("t-1", "retriever", 1, 2))
    assert not await store.record_event(EVENTS, 8, step("t-1", "retriever", 1, 2))
    assert await count_rows(db_url, TaskEventRow) == 2
    # The same sequence number on another stream is another message.
    assert await store.record_event("EVENTS_us2", 7, accepted("t-2"))


async def test_second_final_answer_is_dropped(store: Store, db_url: str) -> None:
    await full_task(store, "t-1", 1, latency_ms=1000)
    # Published again (e.g. outside the duplicate window) with another outcome.
    assert not await store.record_event(EVENTS, 99, answer("t-1", 5000, outcome="escalate"))
    view = await store.get_task("t-1")
    assert view is not None
    assert [e.type for e in view.events].count("final_answer.v1") == 1
    assert (view.task.outcome, view.task.latency_ms) == ("resolved", pytest.approx(1000.0))
    counts = await store.counts()
    assert counts.by_status["answered"] == 1
    assert counts.by_outcome == {"resolved": 1}
    assert await store.latencies() == [pytest.approx(1000.0)]


async def test_latency_across_time_zones(store: Store) -> None:
    cest = timezone(timedelta(hours=2))
    submitted = datetime(2026, 3, 1, 14, 0, 0, tzinfo=cest)  # 12:00 UTC
    ev = FinalAnswer(
        task_id="tz",
        site="eu1",
        outcome="resolved",
        submitted_at=submitted,
        answered_at=datetime(2026, 3, 1, 12, 0, 2, 250000, tzinfo=UTC),
    )
    await store.record_event(EVENTS, 1, ev)
    view = await store.get_task("tz")
    assert view is not None
    assert view.task.latency_ms == pytest.approx(2250.0)
    assert view.task.submitted_at == T0
    assert view.task.submitted_at is not None
    assert view.task.submitted_at.utcoffset() == timedelta(0)


async def test_events_out_of_order(store: Store) -> None:
    # The answer and a step arrive before task_accepted (several recorders).
    await store.record_event(EVENTS, 5, answer("t-1", 800))
    await store.record_event(EVENTS, 3, step("t-1", "planner", 10, 20))
    await store.record_event(EVENTS, 1, accepted("t-1"))
    await store.record_event(EVENTS, 2, decided("t-1", data_class="restricted"))
    view = await store.get_task("t-1")
    assert view is not None
    assert view.task.status == "answered"
    assert view.task.kind == "support_ticket"
    assert view.task.data_class == "restricted"
    assert view.task.latency_ms == pytest.approx(800.0)
    assert [e.stream_seq for e in view.events] == [1, 2, 3, 5]


async def test_dead_letter(store: Store, db_url: str) -> None:
    await store.record_event(EVENTS, 1, accepted("t-1"))
    assert await store.record_dead_letter(dead_letter("t-1", 42))
    assert not await store.record_dead_letter(dead_letter("t-1", 42))  # redelivered
    assert await store.record_dead_letter(dead_letter(None, 43))  # task unknown
    assert await count_rows(db_url, DeadLetterRow) == 2

    view = await store.get_task("t-1")
    assert view is not None
    assert view.task.status == "failed"
    assert view.task.reasons == ("SchemaError: Expected `str`, got `int` - at `$.body`",)
    (dl,) = view.dead_letters
    assert (dl.stream, dl.stream_seq, dl.role, dl.field, dl.error_class) == (
        "TASKS_eu1",
        42,
        "router",
        "$.body",
        "SchemaError",
    )
    assert dl.original == b'{"type":"support_ticket.v1","body":1}\xff'
    assert dl.original_headers == {"Nats-Msg-Id": "m1"}
    assert dl.dead_at == T0 + timedelta(seconds=1)
    assert await store.failed_ids() == {"t-1"}
    assert len(await store.dead_letters(10)) == 2
    assert [d.stream_seq for d in await store.dead_letters(10, task_id_prefix="t-")] == [42]


async def test_failure_never_overrides_an_answer(store: Store) -> None:
    await full_task(store, "t-1", 1)
    await store.record_dead_letter(dead_letter("t-1", 42))
    failed = TaskFailed(
        task_id="t-1", site="eu1", role="planner", reason="boom", error_class="PermanentError"
    )
    await store.record_event(EVENTS, 50, failed)
    view = await store.get_task("t-1")
    assert view is not None
    assert view.task.status == "answered"
    assert len(view.dead_letters) == 1


async def test_task_failed_event(store: Store) -> None:
    await store.record_event(EVENTS, 1, accepted("t-1"))
    failed = TaskFailed(
        task_id="t-1",
        site="eu1",
        role="planner",
        reason="message is 70000 bytes, larger than the limit of 65536 bytes",
        error_class="MessageTooLarge",
        field="$",
        failed_at=T0 + timedelta(seconds=2),
    )
    await store.record_event(EVENTS, 2, failed)
    view = await store.get_task("t-1")
    assert view is not None
    assert view.task.status == "failed"
    assert view.task.finished_at == T0 + timedelta(seconds=2)
    assert view.events[-1].role == "planner"
    assert "MessageTooLarge" in view.events[-1].summary


async def test_counts_lists_and_prefixes(store: Store) -> None:
    await full_task(store, "run_a-1", 1, latency_ms=1000)
    await full_task(store, "run_a-2", 10, latency_ms=3000)
    await store.record_event(EVENTS, 20, accepted("run_a-3", at=T0 + timedelta(seconds=5)))
    await store.record_event(EVENTS, 21, decided("run_a-3", data_class="public"))
    await store.record_event(EVENTS, 30, accepted("runXa-9"))  # '_' must not be a wildcard
    await store.record_dead_letter(dead_letter("runXa-9", 1))

    c = await store.counts()
    assert c.total == 4
    assert c.by_status == {"accepted": 1, "answered": 2, "failed": 1}
    assert c.by_outcome == {"resolved": 2}
    assert c.by_data_class == {"confidential": 2, "public": 1, "unknown": 1}
    assert c.dead_letters == 1

    c = await store.counts(prefix="run_a-")
    assert (c.total, c.dead_letters) == (3, 0)
    assert c.by_status == {"accepted": 1, "answered": 2, "failed": 0}

    assert await store.answered_ids("run_a-") == {"run_a-1", "run_a-2"}
    assert await store.failed_ids("run_a-") == set()
    assert await store.failed_ids() == {"runXa-9"}
    assert sorted(await store.latencies("run_a-")) == [
        pytest.approx(1000.0),
        pytest.approx(3000.0),
    ]
    recent = await store.list_tasks(limit=2, prefix="run_a-")
    assert [t.task_id for t in recent] == ["run_a-3", "run_a-2"]
    assert [t.task_id for t in await store.list_tasks(status="failed")] == ["runXa-9"]


async def test_close_is_idempotent(db_url: str) -> None:
    s = Store(db_url)
    await s.open()
    await s.close()
    await s.close()


# -- migrations -------------------------------------------------------------------------
def test_single_head() -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert heads == ["0008_console_audit"]


async def test_migrations_match_models(db_url: str) -> None:
    await migrate(db_url)
    await migrate(db_url)  # at head: a no-op
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(
                    MigrationContext.configure(sync, opts={"compare_type": True}), Base.metadata
                )
            )
            version = await conn.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )
    finally:
        await engine.dispose()
    assert diff == []
    assert version == "0008_console_audit"


async def test_downgrade_and_upgrade_again(db_url: str) -> None:
    await migrate(db_url)
    engine = create_engine(db_url)
    try:

        def downgrade(sync: object) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = sync
            command.downgrade(cfg, "base")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    async with Store(db_url) as s:
        await full_task(s, "t-1", 1)
        assert await s.answered_ids() == {"t-1"}


async def test_concurrent_migrations_from_several_processes(db_url: str) -> None:
    code = "import asyncio, sys, sitemesh.state as s; asyncio.run(s.migrate(sys.argv[1]))"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, db_url, stderr=subprocess.PIPE
        )
        for _ in range(2)
    ]
    results = await asyncio.gather(*(p.communicate() for p in procs))
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()
    async with Store(db_url, auto_migrate=False) as s:
        assert (await s.counts()).total == 0


# -- batches ------------------------------------------------------------------------------
def mixed_history() -> list[tuple[int, Event]]:
    """Events of several tasks, interleaved and partly out of order, as a stream has them."""
    failed = TaskFailed(task_id="b-2", site="eu1", role="planner", reason="boom",
                        error_class="PermanentError", failed_at=T0 + timedelta(seconds=3),
                        )  # fmt: skip
    late_failure = TaskFailed(task_id="b-1", site="eu1", role="validator", reason="late",
                              error_class="TransientError")  # fmt: skip
    events: list[Event] = [
        answer("b-3", 700),  # before its task_accepted
        accepted("b-1"),
        accepted("b-2"),
        step("b-3", "planner", 10, 20),
        decided("b-1"),
        decided("b-1", data_class="restricted"),  # a second decision: the latest wins
        step("b-1", "retriever", 40, 90),
        failed,
        answer("b-2", 900),  # an answer after a failure: answered is final, and wins
        answer("b-1", 1200),
        late_failure,  # a failure after the answer changes nothing
        answer("b-1", 5000, outcome="escalate"),  # a second answer is dropped
        accepted("b-3"),
        step("b-4", "retriever", 1, 2),  # only a step: the row is created
        decided("b-5", data_class="public"),
        TaskFailed(task_id="b-5", site="eu1", role="router", reason="x", error_class="E"),
        TaskFailed(task_id="b-5", site="eu1", role="router", reason="y", error_class="E"),
        accepted("b-1", at=T0 + timedelta(hours=1)),  # a resubmission
    ]
    return [(10 + i, ev) for i, ev in enumerate(events)]


async def snapshot(store: Store) -> dict[str, object]:
    tasks = await store.list_tasks(limit=100)
    return {t.task_id: await store.get_task(t.task_id) for t in tasks}


@pytest.mark.parametrize("kind", DB_KINDS)
@pytest.mark.parametrize("chunk", [3, 100])
async def test_a_batch_records_what_one_by_one_does(kind: str, chunk: int, tmp_path: Path) -> None:
    history = mixed_history()
    async with (
        fresh_db(kind, tmp_path / "a", tag="state", sqlite_file=tmp_path / "a.db") as url_a,
        fresh_db(kind, tmp_path / "b", tag="state", sqlite_file=tmp_path / "b.db") as url_b,
        Store(url_a) as one_by_one,
        Store(url_b) as batched,
    ):
        recorded = [await one_by_one.record_event(EVENTS, seq, ev) for seq, ev in history]
        await one_by_one.record_dead_letter(dead_letter("b-4", 42))
        n = 0
        for i in range(0, len(history), chunk):
            n += await batched.record_events(EVENTS, history[i : i + chunk])
        assert await batched.record_dead_letters([dead_letter("b-4", 42)]) == 1
        assert n == sum(recorded) == len(history) - 1  # the second answer of b-1
        assert await snapshot(batched) == await snapshot(one_by_one)
        # Recorded again (a redelivered batch): nothing changes.
        assert await batched.record_events(EVENTS, history) == 0
        assert await batched.record_dead_letters([dead_letter("b-4", 42)] * 2) == 0
        assert await snapshot(batched) == await snapshot(one_by_one)

        tasks = {t.task_id: t for t in await batched.list_tasks(limit=100)}
        dead = await batched.dead_letters(10)

    b1, b2, b3, b4, b5 = (tasks[f"b-{i}"] for i in range(1, 6))
    assert (b1.status, b1.outcome, b1.data_class) == ("answered", "resolved", "restricted")
    assert b1.latency_ms == pytest.approx(1200.0)
    assert (b1.submitted_at, b1.accepted_at) == (T0, T0 + timedelta(milliseconds=20))
    assert (b2.status, b2.reasons) == ("answered", ("runbook matched",))
    assert (b3.status, b3.kind, b3.latency_ms) == ("answered", "support_ticket", 700.0)
    assert (b4.status, b4.site) == ("failed", "eu1")
    assert b4.reasons == ("SchemaError: Expected `str`, got `int` - at `$.body`",)
    assert [(d.stream_seq, d.task_id) for d in dead] == [(42, "b-4")]
    assert (b5.status, b5.reasons, b5.data_class) == ("failed", ("E: x",), "public")


async def test_resubmission_keeps_the_first_submitted_at(store: Store) -> None:
    await full_task(store, "t-1", 1, latency_ms=1000)
    again = T0 + timedelta(hours=2)
    assert await store.record_event(EVENTS, 20, accepted("t-1", at=again, tenant="acme"))
    view = await store.get_task("t-1")
    assert view is not None
    assert (view.task.submitted_at, view.task.tenant) == (T0, "acme")  # the rest follows it
    # and in one batch with another task's first submission
    await store.record_events(
        EVENTS,
        [(21, accepted("t-2")), (22, accepted("t-2", at=again)), (23, accepted("t-1", at=again))],
    )
    t1, t2 = [await store.get_task(t) for t in ("t-1", "t-2")]
    assert t1 is not None
    assert t2 is not None
    assert (t1.task.submitted_at, t1.task.accepted_at) == (T0, T0 + timedelta(milliseconds=20))
    assert (t1.task.status, t1.task.latency_ms) == ("answered", pytest.approx(1000.0))
    assert t2.task.submitted_at == T0
    assert [t.task_id for t in await store.list_tasks()] == ["t-2", "t-1"]  # by submission
