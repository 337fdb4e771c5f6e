"""``--site`` on ``status``, ``show`` and ``trace``: sites may share one state database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rich.console import Console

from sitemesh.cli._state_cmds import EXIT_OK, EXIT_UNKNOWN_TASK, show_status, show_task
from sitemesh.cli._trace_cmds import show_trace
from sitemesh.config import DbSettings, Settings, load_settings
from sitemesh.schemas import DeadLetter, FinalAnswer, PolicyDecision, TaskAccepted
from sitemesh.state import Store

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def _console(width: int = 200) -> Console:
    return Console(record=True, width=width, color_system=None, force_terminal=False)


def _settings(tmp_path: Path, url: str, site: str) -> Settings:
    return load_settings(site=site, state_dir=tmp_path / ".sitemesh", db=DbSettings(url=url))


async def _seed(url: str) -> None:
    """eu1: one answered task and a dead letter; us1: two answered tasks, one with a
    dead letter; ``tk-x``: a decision recorded before its task_accepted (site ``""``)."""
    async with Store(url) as store:
        seq = 0
        for task_id, site, ms in (("tk-eu", "eu1", 100), ("tk-us", "us1", 900),
                                  ("tk-us2", "us1", 700)):  # fmt: skip
            for ev in (
                TaskAccepted(task_id=task_id, site=site, kind="support_ticket", title="t",
                             submitted_at=T0, accepted_at=T0 + timedelta(milliseconds=5)),
                FinalAnswer(task_id=task_id, site=site, outcome="resolved", reasons=["ok"],
                            customer_message="hi", submitted_at=T0,
                            answered_at=T0 + timedelta(milliseconds=ms)),
            ):  # fmt: skip
                seq += 1
                await store.record_event(f"EVENTS_{site}", seq, ev)
        await store.record_event(
            "EVENTS_eu1", 99,
            PolicyDecision(task_id="tk-x", action="pin_edge", rule_id="r", policy_version="v",
                           data_class="internal", decided_at=T0),
        )  # fmt: skip
        for site, task_id, stream_seq in (("eu1", "tk-eu", 1), ("us1", "tk-us", 2)):
            await store.record_dead_letter(
                DeadLetter(site=site, role="router", subject=f"sm.v1.task.{site}.x",
                           stream=f"TASKS_{site}", stream_seq=stream_seq, task_id=task_id,
                           reason="bad", error_class="SchemaError")
            )  # fmt: skip


async def test_status_counts_and_lists_only_the_sites_tasks(
    tmp_path: Path, state_db_url: str
) -> None:
    await _seed(state_db_url)
    out = _console(40)
    settings = _settings(tmp_path, state_db_url, "us1")
    assert await show_status(settings, out, as_json=True, site="us1") == EXIT_OK
    doc = json.loads(out.export_text())
    assert doc["site"] == "us1"
    assert (doc["counts"]["total"], doc["counts"]["dead_letters"]) == (2, 1)
    assert sorted(t["task_id"] for t in doc["latest"]) == ["tk-us", "tk-us2"]
    assert doc["latency_ms"]["n"] == 2
    assert doc["latency_ms"]["max"] == 900

    out = _console()
    assert await show_status(_settings(tmp_path, state_db_url, "eu1"), out, site="eu1") == 0
    text = out.export_text()
    assert "1 task(s), 1 dead letter(s)" in text
    assert "tk-eu" in text
    assert "tk-us" not in text
    assert "over 1 answered tasks" in text

    out = _console(40)  # without --site: every site's tasks, as before
    assert await show_status(settings, out, as_json=True) == EXIT_OK
    doc = json.loads(out.export_text())
    assert (doc["counts"]["total"], doc["counts"]["dead_letters"]) == (4, 2)
    async with Store(state_db_url) as store:  # positive control of the "" site below
        view = await store.get_task("tk-x")
    assert view is not None
    assert view.task.site == ""


async def test_show_and_trace_refuse_another_sites_task(tmp_path: Path, state_db_url: str) -> None:
    await _seed(state_db_url)
    eu1 = _settings(tmp_path, state_db_url, "eu1")
    for show in (show_task, show_trace):
        for as_json in (False, True):
            out = _console()
            code = await show(eu1, "tk-us", out, as_json=as_json, site="eu1")
            assert code == EXIT_UNKNOWN_TASK, (show, as_json)
            assert "no task tk-us at site eu1" in out.export_text()
            out = _console()  # its own site, and no --site at all, show it
            assert await show(eu1, "tk-eu", out, as_json=as_json, site="eu1") == EXIT_OK
            assert await show(eu1, "tk-us", _console(), as_json=as_json) == EXIT_OK
        out = _console()  # site "" until task_accepted is recorded: it matches
        assert await show(eu1, "tk-x", out, site="us1") == EXIT_OK
        assert "no task" not in out.export_text()
