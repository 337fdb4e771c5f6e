"""The diagnostics agent on the shipped leaf7 capture, scored against the fault log."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from sitemesh.agents._base import AgentContext
from sitemesh.agents._checks import CHECKS, STATE_KINDS
from sitemesh.agents._diagnostics import DiagnosticsAgent, diagnose, diagnose_ticket
from sitemesh.agents._faultlog import SPINE4_SESSION, FaultScore, load_fault_log, score
from sitemesh.agents._telemetry import load_telemetry, parse_time
from sitemesh.schemas import (
    Diagnosis,
    Envelope,
    PolicyDecision,
    SupportTicket,
    TelemetryAlert,
    WorkItem,
)
from tests._items import work_item as make_work_item

ALERTS = Path(__file__).parents[1] / "examples" / "data" / "telemetry_alerts.jsonl"
T0 = datetime(2019, 5, 19, 7, 0, tzinfo=UTC)


def at(hhmmss: str) -> datetime:
    return parse_time(f"2019-05-19 {hhmmss}+00:00")


@pytest.fixture(scope="module")
def alerts() -> list[TelemetryAlert]:
    decoder = msgspec.json.Decoder(TelemetryAlert)
    return [decoder.decode(line) for line in ALERTS.read_bytes().splitlines() if line]


@pytest.fixture(scope="module")
def diagnoses(alerts: list[TelemetryAlert]) -> list[Diagnosis]:
    return [
        diagnose(a.device, a.window_start, a.window_end, task_id=str(a.task_id)) for a in alerts
    ]


@pytest.fixture(scope="module")
def fault_score(diagnoses: list[Diagnosis], alerts: list[TelemetryAlert]) -> FaultScore:
    return score(diagnoses, alerts)


def work_item(task: SupportTicket | TelemetryAlert, task_id: str) -> WorkItem:
    now = datetime(2019, 5, 19, 11, 0, tzinfo=UTC)
    return make_work_item(
        Envelope(task_id=task_id, site="lab", kind="x", submitted_at=now, accepted_at=now),
        task,
        PolicyDecision(
            task_id=task_id,
            action="pin_edge",
            rule_id="test",
            policy_version="0" * 16,
            data_class="internal",
            decided_at=now,
        ),
    )


def test_telemetry_loads_with_utc_times() -> None:
    tel = load_telemetry("leaf7")
    assert tel is not None
    assert tel.start == at("07:03:01.707")
    assert tel.end == at("10:03:08.883")
    assert tel.start.tzinfo is not None
    assert tel.start.utcoffset() == timedelta(0)
    assert len(tel.interface_state) == 38
    assert len(tel.bfd_sessions) == 23
    assert load_telemetry("leaf7") is tel  # cached once per process
    assert load_telemetry("spine9") is None


def test_fault_log_keeps_only_injected_faults() -> None:
    events = load_fault_log()
    assert [e.action for e in events].count("break_bfd") == 3
    assert {e.action for e in events} == {
        "break_bfd",
        "enable_bfd",
        "shutdown_interface",
        "enable_interface",
    }
    assert len(events) == 12
    assert events == sorted(events, key=lambda e: e.at)


def test_alerts_file_decodes_and_covers_the_capture(alerts: list[TelemetryAlert]) -> None:
    tel = load_telemetry("leaf7")
    assert tel is not None
    assert 15 <= len(alerts) <= 25
    assert len({a.task_id for a in alerts}) == len(alerts)
    assert all(str(a.task_id).startswith("alert-leaf7-") for a in alerts)
    scheduled = sorted(
        (a for a in alerts if a.metric == "scheduled.health_check"), key=lambda a: a.window_start
    )
    assert scheduled[0].window_start <= tel.start
    assert scheduled[-1].window_end > tel.end
    for a, b in itertools.pairwise(scheduled):
        assert a.window_end == b.window_start  # no gaps
    assert any(a.metric != "scheduled.health_check" for a in alerts)


def test_every_observable_injected_event_is_detected(fault_score: FaultScore) -> None:
    rows = fault_score.rows
    in_windows = [r for r in rows if r.status != "not_diagnosed"]
    observable = [r for r in in_windows if r.status != "unobservable"]
    assert len(in_windows) == 12
    assert fault_score.misses == 0
    assert fault_score.hits == len(observable) == 8
    for r in rows:
        if r.status == "hit":
            assert r.finding is not None
            assert r.delay_s is not None
            assert 0 <= r.delay_s <= 60
            if r.event.action in ("break_bfd", "enable_bfd"):
                assert r.finding.interface == SPINE4_SESSION[0]
                assert "far end inferred: spine4-3464 eth1/25" in r.finding.evidence
    # Outside the capture (documented in telemetry/cisco-leaf7/SOURCE.md): the first
    # enable_bfd and break_bfd precede the first BFD sample (07:03:11); the last
    # shutdown/enable_interface follow the last interface-brief sample (10:03:00.96).
    unobservable = [
        (r.event.action, r.event.at.strftime("%H:%M:%S"))
        for r in rows
        if r.status == "unobservable"
    ]
    assert unobservable == [
        ("enable_bfd", "07:00:58"),
        ("break_bfd", "07:03:07"),
        ("shutdown_interface", "10:03:01"),
        ("enable_interface", "10:06:21"),
    ]
    assert fault_score.false_positives_state == []
    text = fault_score.render()
    assert "hits 8, misses 0" in text


def test_quiet_window_has_no_state_transitions() -> None:
    d = diagnose("leaf7", at("07:50:00"), at("08:00:00"), task_id="quiet")
    assert d.findings == []
    assert d.checks_run == [name for name, _ in CHECKS]
    assert "no findings" in d.summary
    early = diagnose("leaf7", T0, at("07:20:00"), task_id="early")
    assert not [f for f in early.findings if f.kind in STATE_KINDS]


def test_shutdown_evidence_quotes_series_and_values() -> None:
    d = diagnose("leaf7", at("07:20:00"), at("07:30:00"), task_id="t")
    down = [f for f in d.findings if f.kind == "interface_down"]
    assert len(down) == 1
    assert down[0].interface == "HundredGigE0/0/0/10"
    assert "interface-brief" in down[0].evidence
    assert "up/up" in down[0].evidence
    assert "admin-down/admin-down" in down[0].evidence
    drop = [f for f in d.findings if f.kind == "traffic_drop"]
    assert drop
    assert drop[0].interface == "HundredGigE0/0/0/10"
    assert drop[0].severity == "major"
    assert any(f.kind == "fib_drops" for f in d.findings)


def test_unknown_device_and_empty_windows_say_so() -> None:
    d = diagnose("spine9", T0, at("07:20:00"), task_id="u")
    assert d.findings == []
    assert "no telemetry for device 'spine9'" in d.summary
    d = diagnose("leaf7", T0 - timedelta(days=1), T0 - timedelta(hours=23), task_id="u")
    assert d.findings == []
    assert "no telemetry for leaf7" in d.summary
    d = diagnose("leaf7", at("08:00:00"), at("07:00:00"), task_id="u")
    assert d.findings == []
    assert "empty window" in d.summary


async def test_agent_handles_alerts_deterministically(alerts: list[TelemetryAlert]) -> None:
    agent = DiagnosticsAgent()
    ctx = AgentContext(site="lab", worker="test:1")
    alert = next(a for a in alerts if a.metric != "scheduled.health_check")
    first = await agent.handle(work_item(alert, str(alert.task_id)), ctx)
    again = await agent.handle(work_item(alert, str(alert.task_id)), ctx)
    assert isinstance(first, Diagnosis)
    assert first.source == "rules"
    assert msgspec.json.encode(first) == msgspec.json.encode(again)
    assert first.findings
    line = agent.summarize(first)
    assert line.startswith("diagnosis (rules):")
    assert "\n" not in line
    assert DiagnosticsAgent.role == "diagnostics"


async def test_ticket_without_device_runs_no_checks() -> None:
    agent = DiagnosticsAgent()
    ticket = SupportTicket(body="My internet is slow since this morning, call me at 555-0100")
    out = await agent.handle(work_item(ticket, "t-1"), AgentContext(site="lab", worker="w"))
    assert isinstance(out, Diagnosis)
    assert out.findings == []
    assert out.summary == "no device referenced; no telemetry checks applicable"
    assert "555" not in agent.summarize(out)


def test_ticket_naming_a_device() -> None:
    body = "Customers behind LEAF7 lost service, Hu0/0/0/10 looks down"
    d = diagnose_ticket(SupportTicket(body=body), task_id="t-2")
    assert d.findings == []
    assert "leaf7 (HundredGigE0/0/0/10)" in d.summary
    assert "no submission time" in d.summary
    d = diagnose_ticket(SupportTicket(body=body, submitted_at=at("07:30:00")), task_id="t-3")
    assert any(
        f.kind == "interface_down" and f.interface == "HundredGigE0/0/0/10" for f in d.findings
    )
    assert "Customers" not in d.summary
