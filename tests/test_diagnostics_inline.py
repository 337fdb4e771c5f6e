"""Diagnosis of telemetry carried inline in a ``telemetry_alert.v1`` (samples, logs),
the no-data case through to the final answer, and the inline fields' limits at ingress."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from sitemesh.agents import DiagnosticsAgent, EscalationAgent
from sitemesh.agents._diagnostics import diagnose_alert
from sitemesh.agents._inline import INLINE_LOGS, INLINE_METRICS
from sitemesh.detect import short_series_config as inline_config
from sitemesh.edge_node import task_decoder
from sitemesh.errors import SchemaError
from sitemesh.schemas import (
    Envelope,
    LogLine,
    MetricSeries,
    Plan,
    PlanStep,
    PolicyDecision,
    RetrievalResult,
    TelemetryAlert,
    ValidationReport,
    reason_codes,
)
from tests._items import work_item

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=UTC)
PLAN = Plan(
    task_id="t-1",
    steps=[PlanStep(n=1, action="check_status", description="check", grounding=["d#s"])],
    customer_message="We are on it.",
)
OK = ValidationReport(task_id="t-1", ok=True, checks=["schema"])
STEP = timedelta(seconds=10)
TIMES = [T0 + i * STEP for i in range(120)]
"""20 minutes at 10 s; the alert window is the second half."""
WINDOW_START, WINDOW_END = TIMES[60], TIMES[-1] + STEP


def _noise(seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [100.0 + rng.gauss(0.0, 2.0) for _ in TIMES]


def _alert(**kw: object) -> TelemetryAlert:
    return TelemetryAlert(
        device="edge3",
        window_start=WINDOW_START,
        window_end=WINDOW_END,
        **kw,  # type: ignore[arg-type]
    )


def test_inline_spike_gives_a_finding_on_its_series_and_time() -> None:
    values = _noise()
    values[90] = 160.0
    series = MetricSeries(
        name="cpu.util", labels={"interface": "eth0"}, timestamps=TIMES, values=values
    )
    d = diagnose_alert(_alert(samples=[series]), task_id="t-1")
    assert d.checks_run == [INLINE_METRICS]
    [f] = d.findings
    assert f.kind == "metric_anomaly"
    assert (f.device, f.interface, f.at) == ("edge3", "eth0", TIMES[90])
    assert "series cpu.util{interface=eth0}" in f.evidence
    assert "baseline" in f.evidence
    assert "deviation +" in f.evidence
    assert "1 finding(s)" in d.summary


def test_clean_inline_series_gives_no_finding_and_says_so() -> None:
    series = MetricSeries(name="cpu.util", timestamps=TIMES, values=_noise())
    d = diagnose_alert(_alert(samples=[series]), task_id="t-1")
    assert d.findings == []
    assert d.checks_run == [INLINE_METRICS]
    assert "inline metrics (1 series): no findings" in d.summary


def test_inline_log_burst_of_a_new_template_gives_log_findings() -> None:
    logs = [
        LogLine(at=T0 + i * timedelta(seconds=5), line=f"user session {i} opened from 10.0.0.{i}")
        for i in range(100)
    ]
    logs += [
        LogLine(at=T0 + timedelta(seconds=500 + i), line=f"BFD to neighbor 10.1.1.{i} went DOWN")
        for i in range(10)
    ]
    logs.sort(key=lambda x: x.at or T0)
    alert = TelemetryAlert(
        device="edge3",
        window_start=T0 + timedelta(seconds=400),
        window_end=T0 + timedelta(seconds=700),
        logs=logs,
    )
    d = diagnose_alert(alert, task_id="t-1")
    assert d.checks_run == [INLINE_LOGS]
    kinds = {f.kind for f in d.findings}
    assert {"log_burst", "log_new_template"} <= kinds
    burst = next(f for f in d.findings if f.kind == "log_burst")
    assert burst.at == T0 + timedelta(seconds=500)
    assert "<IP>" in burst.evidence
    assert "10.1.1." not in burst.evidence


async def test_unknown_device_without_data_says_so_in_diagnosis_and_answer() -> None:
    alert = _alert()
    env = Envelope(
        task_id="t-1", site="lab", kind="telemetry_alert", submitted_at=T0, accepted_at=T0
    )
    decision = PolicyDecision(
        task_id="t-1",
        action="pin_edge",
        rule_id="r1",
        policy_version="0",
        data_class="internal",
    )
    item = work_item(env, alert, decision)
    d = await DiagnosticsAgent().handle(item, None)  # type: ignore[arg-type]
    assert d.findings == []
    assert d.checks_run == []
    assert "no telemetry for device 'edge3'" in d.summary
    retrieval = RetrievalResult(task_id="t-1", query="q", confidence=0.9)
    answer = EscalationAgent().answer(work_item(env, alert, decision, retrieval, d, PLAN, OK))
    assert answer.outcome != "resolved"
    assert "no telemetry for the alert's device and window" in answer.reasons
    assert "no_telemetry" in reason_codes(answer.reasons)


def test_inline_config_scales_with_the_cadence() -> None:
    cfg = inline_config(STEP)
    assert (cfg.window, cfg.min_history, cfg.min_duration) == (30 * STEP, 10 * STEP, STEP)
    assert cfg.seasonal is False


def _raw(**fields: object) -> bytes:
    body = {
        "type": "telemetry_alert.v1",
        "device": "edge3",
        "window_start": "2026-01-01T10:00:00Z",
        "window_end": "2026-01-01T10:10:00Z",
        **fields,
    }
    return msgspec.json.encode(body)


DECODE = task_decoder(64 * 1024 * 1024)
POINT = "2026-01-01T10:00:00Z"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"samples": [{"name": "x", "timestamps": [POINT], "values": [1.0, 2.0]}]},
         "$.samples[0].values"),
        ({"samples": [{"name": "x", "timestamps": [POINT] * 10_001, "values": [1.0] * 10_001}]},
         "$.samples[0].timestamps"),
        ({"samples": [{"name": "x", "timestamps": [], "values": []}] * 33}, "$.samples"),
        ({"samples": [{"name": "x", "labels": {f"k{i}": "v" for i in range(17)},
                       "timestamps": [], "values": []}]}, "$.samples[0].labels"),
        ({"logs": [{"line": "x" * 2_001}]}, "$.logs[0].line"),
        ({"logs": [{"line": "x"}] * 5_001}, "$.logs"),
    ],
)  # fmt: skip
def test_oversize_or_mismatched_inline_telemetry_is_a_schema_error(
    fields: dict[str, object], field: str
) -> None:
    with pytest.raises(SchemaError) as err:
        DECODE(_raw(**fields))
    assert err.value.field == field


def test_inline_telemetry_round_trips_through_the_decoder() -> None:
    task = DECODE(_raw(samples=[{"name": "x", "labels": {"interface": "eth0"},
                                 "timestamps": [POINT], "values": [1.5]}],
                       logs=[{"at": POINT, "line": "link down"}]))  # fmt: skip
    assert isinstance(task, TelemetryAlert)
    assert task.samples[0].values == [1.5]
    assert task.logs[0].line == "link down"
    assert DECODE(_raw()).samples == []


def test_the_demo_alerts_with_inline_samples_decode_and_tell_anomaly_from_normal() -> None:
    """examples/data/telemetry_inline_alerts.jsonl (held-out NAB windows): every alert
    fits the bus's task limit, and two clear cases come out as labelled."""
    from pathlib import Path

    from sitemesh.config import BusSettings

    data = Path(__file__).resolve().parents[1] / "examples" / "data"
    decode = task_decoder(BusSettings().max_task_bytes)
    lines = (data / "telemetry_inline_alerts.jsonl").read_bytes().splitlines()
    alerts = {a.task_id: a for a in (decode(ln) for ln in lines if ln.strip())}
    assert len(alerts) == 14
    for task_id, expect in (
        ("nab-anomalous-ec2_cpu_utilization_77c1ca", True),
        ("nab-normal-rds_cpu_utilization_cc0c53", False),
    ):
        alert = alerts[task_id]
        assert isinstance(alert, TelemetryAlert)
        diagnosis = diagnose_alert(alert, task_id=task_id)
        assert bool(diagnosis.findings) is expect, diagnosis.summary


def _env_decision() -> tuple[Envelope, PolicyDecision]:
    env = Envelope(
        task_id="t-1", site="lab", kind="telemetry_alert", submitted_at=T0, accepted_at=T0
    )
    decision = PolicyDecision(
        task_id="t-1", action="pin_edge", rule_id="r1", policy_version="0",
        data_class="internal",
    )
    return env, decision


def _answer(alert: TelemetryAlert, confidence: float = 0.1):  # type: ignore[no-untyped-def]
    env, decision = _env_decision()
    d = diagnose_alert(alert, task_id="t-1")
    retrieval = RetrievalResult(task_id="t-1", query="q", confidence=confidence)
    return d, EscalationAgent().answer(work_item(env, alert, decision, retrieval, d, PLAN, OK))


def test_outcome_depends_on_what_the_telemetry_shows() -> None:
    clean = MetricSeries(name="cpu.util", timestamps=TIMES, values=_noise())
    spiked_values = _noise()
    spiked_values[90] = 400.0  # far beyond twice the threshold: major
    spiked = MetricSeries(name="cpu.util", timestamps=TIMES, values=spiked_values)
    d, normal = _answer(_alert(samples=[clean]))
    assert d.findings == []
    # a minor alert the data does not confirm is closed, even without a runbook match
    assert normal.outcome == "resolved"
    assert normal.reasons == [
        "alert not confirmed: telemetry checked (inline_metrics), no anomaly in the window"
    ]
    assert "does not confirm this alert" in normal.customer_message
    d, anomalous = _answer(_alert(samples=[spiked]))
    assert [f.severity for f in d.findings] == ["major"]
    assert anomalous.outcome == "escalate"
    assert "major finding: metric_anomaly" in anomalous.reasons
    # a major alert goes to a human even when the data looks normal
    _, major = _answer(_alert(samples=[clean], severity="major"))
    assert major.outcome == "escalate"
    assert "major alert" in major.reasons


def test_a_finding_just_past_the_threshold_is_minor() -> None:
    values = _noise()
    values[90] = 100.0 + 6 * 2.0 * 1.2  # about 7 robust z: fires, but under 10
    series = MetricSeries(name="cpu.util", timestamps=TIMES, values=values)
    d = diagnose_alert(_alert(samples=[series]), task_id="t-1")
    assert d.findings, d.summary
    assert {f.severity for f in d.findings} == {"minor"}
