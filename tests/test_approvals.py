"""Approvals: parked work items, one final decision, and what each decision publishes.

SQLite in a temp dir; the approve/reject outcomes go through the session's real
``nats-server`` on a unique site's streams.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from rich.console import Console

from sitemesh.bus import HDR_MSG_ID, HDR_TASK_ID, Subjects, provision
from sitemesh.cli._approvals_cmds import (
    EXIT_ALREADY_DECIDED,
    EXIT_OK,
    EXIT_UNKNOWN_APPROVAL,
    approvals_list,
    approve,
    decide_and_publish,
    default_who,
    reject,
)
from sitemesh.config import BusSettings, DbSettings, NatsSettings, Settings
from sitemesh.schemas import (
    EVENT_DECODER,
    WORK_DECODER,
    Envelope,
    PolicyDecision,
    SupportTicket,
    TaskFailed,
    WorkItem,
    decode,
)
from sitemesh.state import Store
from sitemesh.state._approvals import (
    ApprovalAlreadyDecided,
    UnknownApproval,
    decide_approval,
    get_approval,
    list_approvals,
    request_approval,
    undo_decision,
)
from tests._items import work_item
from tests.conftest import stream_messages

T0 = datetime(2026, 11, 22, 0, 40, tzinfo=UTC)


def parked(site: str, task_id: str = "t-1") -> WorkItem:
    env = Envelope(
        task_id=task_id,
        site=site,
        kind="support_ticket",
        tenant="bank",
        data_class="confidential",
        submitted_at=T0,
        accepted_at=T0,
    )
    decision = PolicyDecision(
        task_id=task_id,
        action="require_approval",
        rule_id="regulated-tenant-needs-approval",
        policy_version="0123456789abcdef",
        data_class="confidential",
        decided_at=T0,
        reasons=["a regulated tenant's ticket leaves the site only after a person approves it"],
    )
    ticket = SupportTicket(tenant="bank", body="Our BGP sessions flap since the upgrade.")
    return work_item(env, ticket, decision)


@pytest.fixture
async def store(state_db_url: str) -> AsyncIterator[Store]:
    async with Store(state_db_url) as s:
        yield s


@pytest.fixture
async def bus(js: JetStreamContext, site: str, bus_settings: BusSettings) -> Subjects:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    return subjects


# -- store ------------------------------------------------------------------------------


async def test_request_is_idempotent_per_task(store: Store) -> None:
    first = await request_approval(store, parked("eu1"), now=T0)
    again = await request_approval(store, parked("eu1"))
    assert again == first
    assert (first.status, first.decided_by, first.decided_at) == ("pending", None, None)
    assert (first.task_id, first.site, first.rule_id, first.data_class) == (
        "t-1",
        "eu1",
        "regulated-tenant-needs-approval",
        "confidential",
    )
    assert first.policy_version == "0123456789abcdef"
    assert first.requested_at == T0
    assert first.item() == parked("eu1")
    await request_approval(store, parked("eu1", "t-2"), now=T0 + timedelta(seconds=1))
    assert [a.task_id for a in await list_approvals(store)] == ["t-1", "t-2"]
    assert await get_approval(store, "t-2") == await get_approval(
        store,
        (await get_approval(store, "t-2")).approval_id,  # type: ignore[union-attr]
    )


async def test_a_decision_is_final(store: Store) -> None:
    pending = await request_approval(store, parked("eu1"))
    decided = await decide_approval(store, pending.approval_id, True, "alice", "checked")
    assert (decided.status, decided.decided_by, decided.reason) == ("approved", "alice", "checked")
    assert decided.decided_at is not None
    with pytest.raises(ApprovalAlreadyDecided, match="already approved by alice") as info:
        await decide_approval(store, pending.approval_id, False, "bob", "no")
    assert (info.value.status, info.value.decided_by) == ("approved", "alice")
    assert isinstance(info.value, ValueError)
    with pytest.raises(ApprovalAlreadyDecided):
        await decide_approval(store, pending.approval_id, True, "alice")
    assert (await get_approval(store, pending.approval_id)) == decided  # unchanged
    assert await list_approvals(store) == []
    assert await list_approvals(store, "approved") == [decided]
    with pytest.raises(UnknownApproval, match="nope"):
        await decide_approval(store, "nope", True, "alice")
    with pytest.raises(ValueError, match="must not be empty"):
        await decide_approval(store, pending.approval_id, True, " ")


async def test_concurrent_deciders_one_wins(store: Store) -> None:
    pending = await request_approval(store, parked("eu1"))
    results = await asyncio.gather(
        *(decide_approval(store, pending.approval_id, n % 2 == 0, f"p{n}") for n in range(6)),
        return_exceptions=True,
    )
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, ApprovalAlreadyDecided) for r in results if r not in wins)


async def test_undo_puts_exactly_that_decision_back(store: Store) -> None:
    pending = await request_approval(store, parked("eu1"))
    decided = await decide_approval(store, pending.approval_id, False, "alice", "no")
    assert await undo_decision(store, decided) is True
    assert await get_approval(store, pending.approval_id) == pending
    assert await undo_decision(store, decided) is False  # nothing to undo any more


# -- outcomes on the bus ----------------------------------------------------------------


async def test_approve_sends_the_work_item_on(
    store: Store, js: JetStreamContext, bus: Subjects
) -> None:
    pending = await request_approval(store, parked(bus.site))
    record = await decide_and_publish(store, js, pending.approval_id, True, "alice", "ok by me")
    assert record.status == "approved"
    [msg] = await stream_messages(js, bus.work_stream, bus.work("triage"))
    assert msg.headers is not None
    assert msg.headers[HDR_MSG_ID] == "t-1:work:triage"  # <task>:work:<first step>
    assert msg.headers[HDR_TASK_ID] == "t-1"
    item = decode(msg.data or b"", WORK_DECODER)
    assert item.task == parked(bus.site).task
    assert item.envelope == parked(bus.site).envelope
    assert item.decision.action == "require_approval"
    assert item.decision.approved_by == "alice"
    assert item.decision.approved_at == record.decided_at
    assert item.decision.reasons[-1] == "approved by alice: ok by me"
    [event] = await stream_messages(js, bus.events_stream, bus.task_events("t-1"))
    decision = decode(event.data or b"", EVENT_DECODER)
    assert isinstance(decision, PolicyDecision)
    assert decision.approved_by == "alice"


async def test_reject_fails_the_task(store: Store, js: JetStreamContext, bus: Subjects) -> None:
    pending = await request_approval(store, parked(bus.site))
    await decide_and_publish(store, js, pending.approval_id, False, "bob", "customer unknown")
    [msg] = await stream_messages(js, bus.events_stream, bus.task_events("t-1"))
    failed = decode(msg.data or b"", EVENT_DECODER)
    assert isinstance(failed, TaskFailed)
    assert failed.reason == "rejected by bob: customer unknown"
    assert (failed.task_id, failed.site, failed.error_class) == (
        "t-1",
        bus.site,
        "ApprovalRejected",
    )
    assert await stream_messages(js, bus.work_stream, bus.all_work) == []


async def test_failed_publish_leaves_the_approval_pending(
    store: Store, js: JetStreamContext
) -> None:
    # no streams for this site: the server refuses the publish
    pending = await request_approval(store, parked("unprovisioned"))
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever NATS raises
        await decide_and_publish(store, js, pending.approval_id, True, "alice", "")
    assert await get_approval(store, pending.approval_id) == pending


# -- CLI bodies -------------------------------------------------------------------------


async def test_cli_list_approve_reject(
    tmp_path: Path, js: JetStreamContext, bus: Subjects, nats_server: object, state_db_url: str
) -> None:
    db = state_db_url
    settings = Settings(
        site=bus.site,
        state_dir=tmp_path,
        nats=NatsSettings(url=nats_server.client_url),  # type: ignore[attr-defined]
        db=DbSettings(url=db),
    )
    out = io.StringIO()
    console = Console(file=out, width=200)
    assert await approvals_list(settings, console) == EXIT_OK
    assert "no pending approvals" in out.getvalue()

    async with Store(db) as s:
        one = await request_approval(s, parked(bus.site, "t-1"))
        two = await request_approval(s, parked(bus.site, "t-2"))

    assert await approvals_list(settings, console) == EXIT_OK
    text = out.getvalue()
    assert one.approval_id in text
    assert two.approval_id in text
    assert "regulated-tenant-needs-approval" in text
    cols80 = io.StringIO()  # ids whole on one line at 80 columns, so they can be copied
    assert await approvals_list(settings, Console(file=cols80, width=80)) == EXIT_OK
    lines = cols80.getvalue().splitlines()
    assert any(one.approval_id in line and "t-1" in line for line in lines), cols80.getvalue()
    narrow = io.StringIO()
    assert await approvals_list(settings, Console(file=narrow, width=40), as_json=True) == 0
    doc = json.loads(narrow.getvalue())
    assert doc["status"] == "pending"
    assert [a["approval_id"] for a in doc["approvals"]] == [one.approval_id, two.approval_id]
    assert doc["approvals"][0]["rule_id"] == "regulated-tenant-needs-approval"
    assert "work_item" not in doc["approvals"][0]  # the ticket stays in `show`

    assert await approve(settings, one.approval_id, "alice", "fine", console) == EXIT_OK
    assert await reject(settings, "t-2", "bob", "no", console) == EXIT_OK  # by task id
    assert await approve(settings, one.approval_id, "bob", "", console) == EXIT_ALREADY_DECIDED
    assert "already approved by alice" in out.getvalue()
    assert await reject(settings, "missing", "bob", "", console) == EXIT_UNKNOWN_APPROVAL

    work = await stream_messages(js, bus.work_stream, bus.work("triage"))
    assert [m.headers[HDR_TASK_ID] for m in work if m.headers] == ["t-1"]
    failed = await stream_messages(js, bus.events_stream, bus.task_events("t-2"))
    assert decode(failed[0].data or b"", EVENT_DECODER).reason == "rejected by bob: no"  # type: ignore[union-attr]

    out.truncate(0)
    assert await approvals_list(settings, console, status=None) == EXIT_OK
    assert "approved" in out.getvalue()
    assert "rejected" in out.getvalue()
    assert default_who()
