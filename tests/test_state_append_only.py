"""The audit tables are append-only in the database itself (revision 0005).

Runs on SQLite in the first pass of ``make test`` and on PostgreSQL in the second
(``SITEMESH_TEST_DB``, see ``state_db_url`` in ``tests/conftest.py``): the same raw
SQL a bug or a compromised worker could send is refused by triggers on both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sitemesh.policy import Vault, generate_vault_key
from sitemesh.schemas import DeadLetter, TaskAccepted
from sitemesh.state import Store, create_engine
from sitemesh.state._approvals import decide_approval, request_approval, undo_decision
from tests.test_approvals import parked

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
async def store(state_db_url: str) -> AsyncIterator[Store]:
    """A migrated store (head, so with the triggers)."""
    async with Store(state_db_url) as s:
        yield s


async def _refused(url: str, sql: str) -> str:
    """Run ``sql`` in its own transaction; return the database's refusal message."""
    engine = create_engine(url)
    try:
        with pytest.raises(DBAPIError) as info:  # IntegrityError on both dialects
            async with engine.begin() as conn:
                await conn.execute(text(sql))
    finally:
        await engine.dispose()
    return str(info.value)


async def test_vault_rows_cannot_be_updated_or_deleted(store: Store, state_db_url: str) -> None:
    async with Vault(state_db_url, generate_vault_key()) as vault:
        await vault.put("t-1", {"<PERSON_1>": "Maria Garcia"})
        await vault.put("t-1", {"<PERSON_1>": "Someone Else"})  # insert-or-ignore still works
        assert await vault.get("t-1") == {"<PERSON_1>": "Maria Garcia"}
        assert "append-only" in await _refused(
            state_db_url, "UPDATE pseudonym_vault SET placeholder = '<PERSON_9>'"
        )
        assert "append-only" in await _refused(state_db_url, "DELETE FROM pseudonym_vault")
        if state_db_url.startswith("postgresql"):
            assert "append-only" in await _refused(state_db_url, "TRUNCATE pseudonym_vault")
        assert await vault.get("t-1") == {"<PERSON_1>": "Maria Garcia"}


async def test_events_and_dead_letters_are_append_only(store: Store, state_db_url: str) -> None:
    accepted = TaskAccepted(
        task_id="t-1",
        site="eu1",
        kind="support_ticket",
        title="support_ticket twcs:1",
        submitted_at=T0,
        accepted_at=T0,
    )
    assert await store.record_event("EVENTS_eu1", 1, accepted)
    dl = DeadLetter(
        task_id="t-2",
        site="eu1",
        role="router",
        stream="TASKS_eu1",
        stream_seq=7,
        subject="sm.v1.task.eu1.support_ticket",
        reason="SchemaError: bad",
        error_class="SchemaError",
        deliveries=1,
        dead_at=T0,
    )
    assert await store.record_dead_letter(dl)
    for table in ("task_events", "dead_letters"):
        assert "append-only" in await _refused(state_db_url, f"UPDATE {table} SET task_id = 'x'")
        assert "append-only" in await _refused(state_db_url, f"DELETE FROM {table}")
    view = await store.get_task("t-1")
    assert view is not None
    assert len(view.events) == 1


async def test_approval_request_is_fixed_and_rows_stay(store: Store, state_db_url: str) -> None:
    pending = await request_approval(store, parked("eu1"), now=T0)
    aid = pending.approval_id
    assert "request" in await _refused(
        state_db_url, f"UPDATE approvals SET rule_id = 'other' WHERE approval_id = '{aid}'"
    )
    assert "deleted" in await _refused(state_db_url, "DELETE FROM approvals")
    # the ordinary life cycle still works: decide, undo, decide again
    decided = await decide_approval(store, aid, True, "alice", "checked")
    assert await undo_decision(store, decided)
    decided = await decide_approval(store, aid, False, "bob", "no")
    assert decided.status == "rejected"
    # but a decision cannot be flipped in place
    assert "refused" in await _refused(
        state_db_url, f"UPDATE approvals SET status = 'approved' WHERE approval_id = '{aid}'"
    )


async def test_the_console_audit_log_is_append_only(store: Store, state_db_url: str) -> None:
    """Revision 0008: who viewed raw content stays written (``sitemesh.state.audit``)."""
    from sitemesh.state import audit, read_audit

    await audit(store.engine, user="ada", role="admin", action="view_raw", site="eu1",
                target="task:t-1", detail="task text", client="127.0.0.1")  # fmt: skip
    with pytest.raises(ValueError, match="audit action must be one of"):
        await audit(store.engine, user="ada", role="admin", action="peek")
    assert "append-only" in await _refused(state_db_url, "UPDATE console_audit SET username = 'x'")
    assert "append-only" in await _refused(state_db_url, "DELETE FROM console_audit")
    if state_db_url.startswith("postgresql"):
        assert "append-only" in await _refused(state_db_url, "TRUNCATE console_audit")
    [entry] = await read_audit(store.engine, target="task:t-1")
    assert (entry.user, entry.action, entry.client) == ("ada", "view_raw", "127.0.0.1")
