"""Rendering of ``sitemesh status`` and ``sitemesh show TASK_ID``, and the state API."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

import sitemesh.state
from sitemesh.cli._state_cmds import (
    EXIT_OK,
    EXIT_UNKNOWN_TASK,
    show_status,
    show_task,
)
from sitemesh.config import DbSettings, Settings, load_settings
from sitemesh.schemas import (
    DeadLetter,
    EntityCount,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    TaskAccepted,
)
from sitemesh.state import Store

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
EVENTS = "EVENTS_eu1"


def console() -> Console:
    return Console(record=True, width=200, color_system=None, force_terminal=False)


async def seed(url: str) -> None:
    async with Store(url) as store:
        for seq, ev in enumerate(
            [
                TaskAccepted(
                    task_id="tk-1",
                    site="eu1",
                    kind="support_ticket",
                    title="[b]x[/b]",
                    submitted_at=T0,
                    accepted_at=T0 + timedelta(milliseconds=12),
                ),
                PolicyDecision(
                    task_id="tk-1",
                    action="pin_edge",
                    rule_id="pii-pin-edge",
                    policy_version="0123456789abcdef",
                    data_class="confidential",
                    entities=[EntityCount(entity_type="PERSON", count=2, max_score=0.9)],
                    reasons=["PERSON detected"],
                    decided_at=T0 + timedelta(milliseconds=20),
                ),
                StepCompleted(
                    task_id="tk-1",
                    site="eu1",
                    role="retriever",
                    summary="3 passages",
                    started_at=T0 + timedelta(milliseconds=30),
                    finished_at=T0 + timedelta(milliseconds=75),
                ),
                FinalAnswer(
                    task_id="tk-1",
                    site="eu1",
                    outcome="resolved",
                    reasons=["runbook matched"],
                    customer_message="Restart the modem.",
                    submitted_at=T0,
                    answered_at=T0 + timedelta(milliseconds=1234),
                ),
            ],
            start=1,
        ):
            await store.record_event(EVENTS, seq, ev)
        await store.record_dead_letter(
            DeadLetter(
                site="eu1", role="router", subject="sm.v1.task.eu1.support_ticket",
                stream="TASKS_eu1", stream_seq=9, task_id="tk-2",
                reason="Expected `str`, got `int` - at `$.body`", error_class="SchemaError",
                field="$.body",
            )
        )  # fmt: skip


def settings_for(tmp_path: Path, db_url: str | None = None) -> Settings:
    return load_settings(state_dir=tmp_path / ".sitemesh", db=DbSettings(url=db_url))


async def test_status(tmp_path: Path, state_db_url: str) -> None:
    settings = settings_for(tmp_path, state_db_url)
    await seed(settings.db_url)
    out = console()
    assert await show_status(settings, out) == EXIT_OK
    text = out.export_text()
    assert "2 task(s), 1 dead letter(s)" in text
    for word in ("answered", "failed", "resolved", "confidential", "tk-1", "tk-2", "1,234"):
        assert word in text, word
    out = Console(record=True, width=40)  # narrow: JSON is never wrapped or cut
    assert await show_status(settings, out, as_json=True) == EXIT_OK
    doc = json.loads(out.export_text())
    assert doc["site"] == settings.site
    assert (doc["counts"]["total"], doc["counts"]["dead_letters"]) == (2, 1)
    by_status = {k: n for k, n in doc["counts"]["by_status"].items() if n}
    assert by_status == {"answered": 1, "failed": 1}
    assert sorted(t["task_id"] for t in doc["latest"]) == ["tk-1", "tk-2"]
    assert all("customer_message" not in t for t in doc["latest"])
    assert doc["latency_ms"]["n"] == 1
    assert doc["workers"] is None  # no NATS here: said so, not a traceback
    assert "NATS" in doc["nats"]


async def test_status_without_database(tmp_path: Path) -> None:
    out = console()
    assert await show_status(settings_for(tmp_path), out) == EXIT_OK
    assert "no tasks recorded yet" in out.export_text()
    assert not (tmp_path / ".sitemesh").exists()


async def test_show_task(tmp_path: Path, state_db_url: str) -> None:
    settings = settings_for(tmp_path, state_db_url)
    await seed(settings.db_url)
    out = console()
    assert await show_task(settings, "tk-1", out) == EXIT_OK
    text = out.export_text()
    for word in (
        "[b]x[/b]",  # data is never parsed as markup
        "retriever",
        "3 passages",
        "75",  # + ms since submit
        "45",  # step duration ms
        "pin_edge by rule pii-pin-edge (policy 0123456789abcdef)",
        "PERSON×2",
        "resolved",
        "runbook matched",
        "Restart the modem.",
    ):
        assert word in text, word

    out = console()
    assert await show_task(settings, "tk-2", out) == EXIT_OK
    text = out.export_text()
    for word in ("SchemaError", "$.body", "TASKS_eu1#9"):
        assert word in text, word


async def test_show_unknown_task(tmp_path: Path, state_db_url: str) -> None:
    settings = settings_for(tmp_path, state_db_url)
    await seed(settings.db_url)
    out = console()
    assert await show_task(settings, "tk", out) == EXIT_UNKNOWN_TASK
    text = out.export_text()
    assert "unknown task 'tk'" in text
    assert "tasks starting with it: tk-1, tk-2" in text
    out = console()
    assert await show_task(settings_for(tmp_path / "none"), "tk", out) == EXIT_UNKNOWN_TASK


def test_public_api() -> None:
    assert sorted(sitemesh.state.__all__) == sorted(
        [
            "RECORDER_DURABLE", "STATUSES", "Base", "DeadLetterRow", "DeadLetterView",
            "DecisionView", "EntityCountView", "PolicyDecisionRow", "Recorder",
            "StatusCounts", "Store", "TaskEventRow", "TaskEventView", "TaskRow",
            "TaskSummary", "TaskView", "alembic_config", "create_engine", "migrate",
            "is_sqlite", "sqlite_path",
            "APPROVAL_STATUSES", "ApprovalAlreadyDecided", "ApprovalRecord", "ApprovalRow",
            "ApprovalStatus", "UnknownApproval", "decide_approval", "get_approval",
            "list_approvals", "request_approval", "undo_decision",
            "BudgetCounterRow", "BudgetHoldRow", "ModelCallRow", "PseudonymVaultRow",
            "AccountRow", "CustomerNoteRow", "CustomerRow", "ToolCallRow",
            "AUDIT_ACTIONS", "AuditEntry", "AuditRow", "audit", "read_audit",
            "final_answer", "left_site", "task_report",
        ]
    )  # fmt: skip
    for name in sitemesh.state.__all__:
        assert hasattr(sitemesh.state, name), name


async def seed_answered(url: str) -> None:
    """A ticket answered from the knowledge base: triage, plan, grounding document."""
    from sitemesh.schemas import Plan, PlanStep, Resolution, Triage

    res = Resolution(kb="banking-faq", doc_id="card_arrival", doc_kind="faq",
                     url="https://help.example.com/banking/card_arrival", confidence=0.91,
                     intent="card_arrival")  # fmt: skip
    async with Store(url) as store:
        for seq, ev in enumerate(
            [
                TaskAccepted(task_id="tk-9", site="eu1", kind="support_ticket", title="card",
                             submitted_at=T0, accepted_at=T0 + timedelta(milliseconds=5)),
                FinalAnswer(
                    task_id="tk-9", site="eu1", outcome="resolved",
                    reasons=["reply grounded in faq card_arrival (banking-faq), confidence 0.91"],
                    customer_message="Hello, New cards arrive within 5 working days.",
                    plan=Plan(task_id="tk-9", source="knowledge", resolution=res,
                              steps=[PlanStep(n=1, action="contact_customer",
                                              description="Reply with the FAQ answer",
                                              grounding=["banking-faq:card_arrival#0"])]),
                    triage=Triage(task_id="tk-9", label="card_arrival", label_set="banking77",
                                  confidence=0.97, urgency=3, language="en"),
                    resolution=res, submitted_at=T0,
                    answered_at=T0 + timedelta(milliseconds=300),
                ),
            ],
            start=1,
        ):  # fmt: skip
            await store.record_event(EVENTS, seq, ev)


async def test_show_answer_section_and_json(tmp_path: Path, state_db_url: str) -> None:
    import json

    settings = settings_for(tmp_path, state_db_url)
    await seed_answered(settings.db_url)
    out = console()
    assert await show_task(settings, "tk-9", out) == EXIT_OK
    text = out.export_text()
    for word in (
        "card_arrival 0.97 (banking77)",
        "faq card_arrival of banking-faq, confidence 0.91",
        "https://help.example.com/banking/card_arrival",
        "contact_customer",
        "nothing: answered on the site",
        "Hello, New cards arrive",
    ):
        assert word in text, word
    out = Console(record=True, width=40, color_system=None, force_terminal=False)
    assert await show_task(settings, "tk-9", out, as_json=True) == EXIT_OK  # never wrapped
    doc = json.loads(out.export_text())
    assert doc["task"]["outcome"] == "resolved"
    assert doc["triage"]["label"] == "card_arrival"
    assert doc["resolution"]["url"] == "https://help.example.com/banking/card_arrival"
    assert doc["plan"]["steps"][0]["action"] == "contact_customer"
    assert doc["left_site"] is None
    assert [e["type"] for e in doc["events"]] == ["task_accepted.v1", "final_answer.v1"]


async def test_trace_json(tmp_path: Path, state_db_url: str) -> None:
    import json

    from sitemesh.cli._trace_cmds import show_trace

    settings = settings_for(tmp_path, state_db_url)
    await seed_answered(settings.db_url)
    out = console()
    assert await show_trace(settings, "tk-9", out, as_json=True) == EXIT_OK
    doc = json.loads(out.export_text())
    assert doc["customer_message"].startswith("Hello, New cards")
    assert doc["trace"]
    assert all("where" in s for s in doc["trace"])
    assert doc["model_calls"] == []


async def test_show_names_what_left_the_site(tmp_path: Path, state_db_url: str) -> None:
    """The forwarder records the incident it sent as its step output; show prints it."""
    import json

    import msgspec

    settings = settings_for(tmp_path, state_db_url)
    incident = {"type": "cloud_incident.v2", "task_id": "rabcdefghijklmnopqrstuvwxyz",
                "site": "eu1", "kind": "support_ticket", "placeholders": ["<PERSON_1>"],
                "steps": [{"n": 1, "action": "escalate", "grounding": []}]}  # fmt: skip
    async with Store(settings.db_url) as store:
        events = [
            TaskAccepted(task_id="tk-7", site="eu1", kind="support_ticket", title="t",
                         submitted_at=T0, accepted_at=T0),
            StepCompleted(task_id="tk-7", site="eu1", role="escalation",
                          summary="forwarded to cloud, structured", started_at=T0,
                          finished_at=T0 + timedelta(milliseconds=9),
                          output_type="cloud_incident.v2",
                          output=msgspec.Raw(json.dumps(incident).encode())),
            FinalAnswer(task_id="tk-7", site="eu1", outcome="escalate", route="cloud",
                        reasons=["low knowledge confidence 0.20 < 0.80"],
                        proposal="A specialist will review the case.", submitted_at=T0),
        ]  # fmt: skip
        for seq, ev in enumerate(events, start=1):
            await store.record_event(EVENTS, seq, ev)
    out = console()
    assert await show_task(settings, "tk-7", out) == EXIT_OK
    text = out.export_text()
    assert "incident rabcdefghijklmnopqrstuvwxyz: 1 steps, placeholders <PERSON_1>" in text
    assert "A specialist will review the case." in text
    out = console()
    assert await show_task(settings, "tk-7", out, as_json=True) == EXIT_OK
    assert json.loads(out.export_text())["left_site"]["placeholders"] == ["<PERSON_1>"]
