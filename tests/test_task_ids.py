"""A task id names one task for good: the router's create-only registry
(``sitemesh_tasks_<site>``) against resubmissions after the duplicate window,
different bodies under one id, and redeliveries of the accepted message (real
nats-server, the production ``Ingress`` in a worker, no agents)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from nats.js.client import JetStreamContext

from sitemesh.bus import Subjects, Worker, provision, tenant_token
from sitemesh.client import Client, Submitted
from sitemesh.config import BusSettings
from sitemesh.edge_node import (
    Ingress,
    TaskRecord,
    TaskRegistry,
    provision_task_registry,
    task_decoder,
    task_id_of,
    task_registry_bucket,
)
from sitemesh.schemas import (
    DLQ_DECODER,
    EVENT_DECODER,
    TASK_DECODER,
    WORK_DECODER,
    FinalAnswer,
    PolicyDecision,
    SupportTicket,
    Task,
    TaskAccepted,
    TaskResubmitted,
    decode,
    encode,
    task_digest,
    utcnow,
)
from tests.conftest import assert_eventually, stream_messages


class PinEdge:
    """Decider: every task stays on site."""

    async def decide(self, task: Task, task_id: str) -> PolicyDecision:
        return PolicyDecision(
            task_id=task_id,
            action="pin_edge",
            rule_id="test-pin",
            policy_version="test0001",
            data_class="internal",
        )


def _ticket(tid: str, body: str = "router reboots every night") -> SupportTicket:
    return SupportTicket(task_id=tid, body=body, channel="email", urgency=2)


@pytest.fixture
def short_window(bus_settings: BusSettings) -> BusSettings:
    """A 1 s duplicate window, so a test can wait past it."""
    return bus_settings.model_copy(update={"duplicate_window_s": 1.0})


@pytest.fixture
async def router(
    js: JetStreamContext, site: str, short_window: BusSettings
) -> AsyncIterator[Worker[Any]]:
    """The site's streams, its registry and a running router (Ingress with registry)."""
    await _provision(js, site, short_window)
    worker = _router(js, site, short_window)
    async with worker:
        yield worker


async def _provision(js: JetStreamContext, site: str, bus: BusSettings) -> None:
    await provision(js, Subjects(site), bus)
    await provision_task_registry(js, site, bus)


def _router(js: JetStreamContext, site: str, bus: BusSettings) -> Worker[Any]:
    subjects = Subjects(site)
    stream, durable, _ = subjects.consumer_for("router")
    registry = TaskRegistry(js, subjects, bus, create_bucket=False)
    return Worker(
        js, site=site, role="router", stream=stream, durable=durable,
        decoder=task_decoder(bus.max_task_bytes),
        handler=Ingress(subjects, PinEdge(), registry=registry), settings=bus,
        task_id_of=task_id_of,
    )  # fmt: skip


async def _typed(js: JetStreamContext, site: str, tid: str, cls: type) -> list[Any]:
    s = Subjects(site)
    msgs = await stream_messages(js, s.events_stream, s.task_events(tid))
    return [ev for m in msgs if isinstance(ev := EVENT_DECODER.decode(m.data or b""), cls)]


async def _work_items(js: JetStreamContext, site: str) -> int:
    s = Subjects(site)
    return len(await stream_messages(js, s.work_stream, s.all_work))


async def _answer(js: JetStreamContext, site: str, tid: str) -> FinalAnswer:
    """Stand in for the escalation agent: publish the task's final answer."""
    answer = FinalAnswer(
        task_id=tid, site=site, outcome="resolved", customer_message="Fixed: reboot cron.",
        submitted_at=utcnow(),
    )  # fmt: skip
    await js.publish(Subjects(site).answer(tid, "default"), encode(answer))
    return answer


async def _accepted(js: JetStreamContext, site: str, done: Submitted) -> TaskAccepted:
    found: list[TaskAccepted] = await assert_eventually(
        lambda: _typed(js, site, done.task_id, TaskAccepted), timeout_s=10
    )
    return found[0]


# -- the digest ---------------------------------------------------------------------------


def test_digest_ignores_encoding_id_and_submit_time() -> None:
    base = _ticket("d-1")
    reordered = json.dumps(
        {"urgency": 2, "body": "router reboots every night", "channel": "email",
         "type": "support_ticket.v1", "tenant": "default"},  # a default spelled out
        indent=2,
    ).encode()  # fmt: skip
    again = decode(reordered, TASK_DECODER)
    stamped = msgspec.structs.replace(base, task_id="other", submitted_at=utcnow())
    assert task_digest(again) == task_digest(base) == task_digest(stamped)
    assert task_digest(_ticket("d-1", body="router reboots every hour")) != task_digest(base)
    assert task_digest(msgspec.structs.replace(base, urgency=1)) != task_digest(base)


# -- resubmissions ------------------------------------------------------------------------


async def test_same_task_after_the_window_runs_once_and_reports_the_answer(
    js: JetStreamContext, site: str, router: Worker[Any], short_window: BusSettings
) -> None:
    client = Client(js, site)
    first = await client.submit(_ticket("same-1"))
    accepted = await _accepted(js, site, first)
    assert accepted.stream_seq == first.stream_seq
    answer = await _answer(js, site, "same-1")
    # past the 1 s duplicate window the server stores the same task again
    await asyncio.sleep(short_window.duplicate_window_s + 0.5)
    again = await client.submit(_ticket("same-1"))
    assert not again.duplicate
    assert again.stream_seq > first.stream_seq
    outcome = await client.wait(again, timeout_s=10)
    assert outcome.status == "answered"
    assert outcome.answer == answer
    assert outcome.report is not None
    assert outcome.report.outcome == "duplicate"
    assert outcome.report.status == "answered"
    assert outcome.report.first_stream_seq == first.stream_seq
    assert "'same-1' is a duplicate" in outcome.report.reason
    assert "answer is already published" in outcome.report.reason
    # nothing ran a second time: one acceptance, one work item, one answer
    assert len(await _typed(js, site, "same-1", TaskAccepted)) == 1
    assert len(await _typed(js, site, "same-1", FinalAnswer)) == 1
    assert await _work_items(js, site) == 1


async def test_same_task_reencoded_is_a_duplicate_still_in_progress(
    js: JetStreamContext, site: str, router: Worker[Any]
) -> None:
    client = Client(js, site)
    first = await client.submit(_ticket("enc-1"))
    await _accepted(js, site, first)
    # another client's bytes: other key order and whitespace, the same task
    raw = json.dumps(
        {"channel": "email", "urgency": 2, "type": "support_ticket.v1",
         "body": "router reboots every night", "task_id": "enc-1"}, indent=1
    ).encode()  # fmt: skip
    again = await client.publish_raw("support_ticket", raw, task_id="enc-1")
    assert not again.duplicate  # its msg id hashes the bytes: stored, seen by the router
    reports = await assert_eventually(
        lambda: _typed(js, site, "enc-1", TaskResubmitted), timeout_s=10
    )
    assert reports[0].outcome == "duplicate"
    assert reports[0].code == "task_id_duplicate"
    assert reports[0].status == "in_progress"
    assert reports[0].stream_seq == again.stream_seq
    assert await _work_items(js, site) == 1


async def test_a_different_body_under_an_accepted_id_is_refused(
    js: JetStreamContext, site: str, router: Worker[Any]
) -> None:
    client = Client(js, site)
    first = await client.submit(_ticket("conf-1"))
    await _accepted(js, site, first)
    # within the duplicate window: the body is part of the msg id, so it is stored
    other = await client.submit(_ticket("conf-1", body="my invoice is wrong"))
    assert not other.duplicate
    outcome = await client.wait(other, timeout_s=10)
    assert outcome.status == "refused"
    report = outcome.report
    assert report is not None
    assert report.code == "task_id_conflict"
    assert report.outcome == "conflict"
    assert "'conf-1'" in report.reason
    assert "body differs" in report.reason
    assert report.first_stream_seq == first.stream_seq
    assert len(await _typed(js, site, "conf-1", TaskAccepted)) == 1
    assert await _work_items(js, site) == 1
    # the accepted task is not failed by the refusal, and its own answer still counts
    answer = await _answer(js, site, "conf-1")
    outcome = await client.wait(first, timeout_s=10)
    assert outcome.status == "answered"
    assert outcome.answer == answer


async def test_ids_sharing_event_subjects_are_refused(
    js: JetStreamContext, site: str, router: Worker[Any]
) -> None:
    client = Client(js, site)
    await _accepted(js, site, await client.submit(_ticket("tok.1")))
    clash = await client.submit(_ticket("tok_1"))
    outcome = await client.wait(clash, timeout_s=10)
    assert outcome.status == "refused"
    assert outcome.report is not None
    assert "shares its event subjects with task id 'tok.1'" in outcome.report.reason


async def test_same_task_within_the_window_is_deduplicated_by_the_server(
    js: JetStreamContext, site: str, router: Worker[Any]
) -> None:
    client = Client(js, site)
    first = await client.submit(_ticket("win-1"))
    again = await client.submit(_ticket("win-1"))  # a new submit time, the same task
    assert again.duplicate
    assert again.stream_seq == first.stream_seq
    answer = await _answer(js, site, "win-1")
    outcome = await client.wait(again, timeout_s=10)
    assert outcome.status == "answered"
    assert outcome.answer == answer
    assert outcome.report is None


# -- crash safety -------------------------------------------------------------------------


async def test_redelivery_after_the_create_is_processed_normally(
    js: JetStreamContext, site: str, short_window: BusSettings
) -> None:
    """The router recorded the id, then died before publishing its outputs: the
    message comes again under the recorded stream sequence and runs as usual."""
    await _provision(js, site, short_window)
    task = _ticket("crash-1")
    done = await Client(js, site).submit(task)
    kv = await js.key_value(task_registry_bucket(site))
    record = TaskRecord(
        task_id="crash-1", digest=task_digest(task), stream_seq=done.stream_seq,
        accepted_at=utcnow(),
    )  # fmt: skip
    await kv.create("crash-1", msgspec.json.encode(record))
    async with _router(js, site, short_window):
        accepted = await _accepted(js, site, done)
        await assert_eventually(lambda: _work_items(js, site), timeout_s=10)
    assert accepted.stream_seq == done.stream_seq
    assert await _typed(js, site, "crash-1", TaskResubmitted) == []
    stored = msgspec.json.decode((await kv.get("crash-1")).value or b"", type=TaskRecord)
    assert stored == record  # untouched


async def test_a_redriven_dead_letter_of_the_accepted_task_runs_again(
    js: JetStreamContext, site: str, router: Worker[Any]
) -> None:
    client = Client(js, site)
    first = await client.submit(_ticket("redrive-1"))
    await _accepted(js, site, first)
    raw = encode(_ticket("redrive-1"))
    headers = {"sm-task-id": "redrive-1", "sm-redrive-of": f"DLQ_{site}:7"}
    ack = await js.publish(Subjects(site).task("support_ticket"), raw, headers=headers)
    kv = await js.key_value(task_registry_bucket(site))

    async def moved() -> bool:
        entry = await kv.get("redrive-1")
        return msgspec.json.decode(entry.value or b"", type=TaskRecord).stream_seq == ack.seq

    await assert_eventually(moved, timeout_s=10)
    assert await _typed(js, site, "redrive-1", TaskResubmitted) == []


async def test_a_missing_registry_never_accepts_unrecorded(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    """No bucket and no right to create it: the task is retried, then dead-lettered
    with the registry named; no acceptance, no work."""
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    async with _router(js, site, bus_settings):
        await Client(js, site).submit(_ticket("noreg-1"))
        dead = await assert_eventually(
            lambda: stream_messages(js, subjects.dlq_stream, subjects.all_dlq), timeout_s=20
        )
    assert task_registry_bucket(site) in (dead[0].data or b"").decode()
    assert await _typed(js, site, "noreg-1", TaskAccepted) == []
    assert await _work_items(js, site) == 0


# -- tenant task subjects -----------------------------------------------------------------


async def test_a_task_on_its_tenants_subject_is_accepted_for_that_tenant(
    js: JetStreamContext, site: str, router: Worker[Any]
) -> None:
    client = Client(js, site, tenant="acme")
    done = await client.submit(_ticket("ten-1"))  # the default tenant becomes acme's
    assert done.subject == Subjects(site).task("support_ticket", "acme")
    accepted = await _accepted(js, site, done)
    assert accepted.tenant == "acme"
    s = Subjects(site)
    [work] = await stream_messages(js, s.work_stream, s.all_work)
    assert decode(work.data or b"", WORK_DECODER).envelope.tenant == "acme"


@pytest.mark.parametrize("subject_tenant", ["globex", "a.b"])
async def test_a_task_naming_another_tenant_than_its_subject_is_dead_lettered(
    js: JetStreamContext, site: str, router: Worker[Any], subject_tenant: str
) -> None:
    """A tenant's client may publish only on its own subjects; a body claiming
    another tenant would have its answer go to that tenant's client."""
    s = Subjects(site)
    body = {"type": "support_ticket.v1", "task_id": "ten-2", "tenant": "acme", "body": "hi"}
    subject = f"{s.task('')}{subject_tenant}.support_ticket"
    await js.publish(subject, json.dumps(body).encode())
    [dead] = await assert_eventually(
        lambda: stream_messages(js, s.dlq_stream, s.all_dlq), timeout_s=10
    )
    letter = decode(dead.data or b"", DLQ_DECODER)
    assert letter.field == "$.tenant"
    assert letter.error_class == "SchemaError"
    assert f"published on tenant {subject_tenant!r}" in letter.reason
    assert await _work_items(js, site) == 0


def test_tenant_tokens_are_distinct_for_distinct_tenants() -> None:
    s = Subjects("eu1")
    assert s.answer("t1", "acme") == "sm.v1.event.eu1.t1.final.acme"
    assert s.answer("t1", "zoom_us") == "sm.v1.event.eu1.t1.final.zoom_us"
    # token() would map both to a_b: one tenant's client would read the other's
    assert tenant_token("a.b") != tenant_token("a_b") == "a_b"
    assert tenant_token("a.b").startswith("_")
    assert tenant_token("_x") != "_x"  # a leading _ is kept for the hashed form
    hashed = tenant_token("a.b")
    assert s.task("support_ticket", "a.b") == f"sm.v1.task.eu1.{hashed}.support_ticket"
