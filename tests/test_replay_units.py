"""Replay building blocks without a server: the sandbox subject map, the diff,
volatile-field stripping, time bounds, and the package's public API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import sitemesh.replay
from sitemesh.bus import PREFIX, Subjects
from sitemesh.bus._streams import consumer_configs, stream_configs
from sitemesh.cli._replay_cmds import parse_when
from sitemesh.config import BusSettings
from sitemesh.replay import MISSING, Change, diff_task, diff_values, strip_volatile


def test_default_subjects_are_unchanged() -> None:
    s = Subjects("eu1")
    assert s.prefix == PREFIX
    assert not s.is_sandbox
    assert s.stream_suffix == ""
    assert s.task("support_ticket") == "sm.v1.task.eu1.support_ticket"
    assert s.event("a.b:c", "router") == "sm.v1.event.eu1.a_b_c.router"
    assert s.answer("a.b:c", "acme") == "sm.v1.event.eu1.a_b_c.final.acme"
    assert s.task_events("a.b:c") == "sm.v1.event.eu1.a_b_c.>"
    assert s.all_dlq == "sm.v1.dlq.eu1.>"
    assert (s.tasks_stream, s.work_stream, s.events_stream) == (
        "TASKS_eu1",
        "WORK_eu1",
        "EVENTS_eu1",
    )
    assert s.inbox_landing_stream == "INBOX_LANDING_eu1"
    assert s == Subjects("eu1", prefix="sm.v1")


def test_sandbox_subjects_share_nothing_with_the_live_site() -> None:
    live, sb = Subjects("eu1"), Subjects.sandbox("eu1", "ab12")
    assert sb.is_sandbox
    assert sb.prefix == "sm.replay.ab12"
    assert sb.task("support_ticket") == "sm.replay.ab12.task.eu1.support_ticket"
    assert sb.tasks_stream == "TASKS_eu1_Rab12"
    assert sb.consumer_for("planner") == (
        "WORK_eu1_Rab12",
        "planner",
        "sm.replay.ab12.work.eu1.planner",
    )
    bus = BusSettings()
    live_cfg, sb_cfg = stream_configs(live, bus), stream_configs(sb, bus)
    assert not {c.name for c in live_cfg} & {c.name for c in sb_cfg}
    live_subjects = {x for c in live_cfg for x in c.subjects or []}
    sb_subjects = {x for c in sb_cfg for x in c.subjects or []}
    assert not live_subjects & sb_subjects
    assert all(stream.endswith("_Rab12") for stream, _ in consumer_configs(sb, bus))
    with pytest.raises(ValueError, match="replay id"):
        Subjects.sandbox("eu1", "a.b")


def test_diff_values_names_every_changed_leaf() -> None:
    a = {"decision": {"action": "pin_edge", "rule_id": "r1"}, "steps": {"plan": {"steps": [1, 2]}}}
    b = {"decision": {"action": "deny", "rule_id": "r1"}, "steps": {"plan": {"steps": [1]}}, "x": 1}
    assert diff_values(a, b) == [
        Change("$.decision.action", "pin_edge", "deny"),
        Change("$.steps.plan.steps[1]", 2, MISSING),
        Change("$.x", MISSING, 1),
    ]
    assert diff_values(a, a) == []
    assert diff_values({"n": 1}, {"n": 1.0}) == [Change("$.n", 1, 1.0)]
    assert diff_values({"a-b": 1}, {"a-b": 2})[0].path == '$["a-b"]'


def test_diff_task_and_sections() -> None:
    t = diff_task("t1", {"status": "answered", "final": {"outcome": "resolved"}}, None)
    assert not t.matches
    assert (t.original_status, t.replayed_status) == ("answered", "missing")
    assert t.sections == ("final", "status")
    assert diff_task("t1", {"status": "failed"}, {"status": "failed"}).matches


def test_strip_volatile_recursively() -> None:
    value = {"decided_at": 1, "a": [{"worker": "h:1", "summary": "s"}], "analyzer_ms": 2.0}
    assert strip_volatile(value) == {"a": [{"summary": "s"}]}


def test_parse_when() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_when("15m", now=now) == now - timedelta(minutes=15)
    assert parse_when("2026-01-02T03:00:00Z") == datetime(2026, 1, 2, 3, tzinfo=UTC)
    assert parse_when("2026-01-02T03:00:00") == datetime(2026, 1, 2, 3, tzinfo=UTC)
    assert parse_when(None) is None
    with pytest.raises(ValueError, match="yesterday"):
        parse_when("yesterday")


def test_public_api() -> None:
    assert sorted(sitemesh.replay.__all__) == sorted(
        [
            "DEFAULT_BATCH", "HDR_REDRIVE_OF", "MISSING", "VOLATILE", "Change",
            "DeadLetterNotFound", "DeadLetterRecord", "DiffReport", "InProcessSite",
            "Outcome", "OutcomeBuilder", "Progress", "PromptLookup", "RedriveMark",
            "RedriveResult", "ReplayModels", "ReplayTools", "Selection", "Speed",
            "StreamRecord", "TaskDiff", "build_agents", "delete_sandbox", "diff_task",
            "diff_values",
            "find_dead_letter", "list_dead_letters", "load_recorder", "new_replay_id",
            "original_outcomes", "read_all", "read_outcomes", "read_stream",
            "recorded_task_id", "redrive", "redrive_msg_id", "replay_policy", "replay_workflows",
            "replay_tasks", "select_tasks", "strip_volatile",
        ]
    )  # fmt: skip
    for name in sitemesh.replay.__all__:
        assert getattr(sitemesh.replay, name) is not None
