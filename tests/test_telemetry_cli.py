"""``sitemesh telemetry add|list|show|remove`` and ``sitemesh watch`` against a real
``nats-server``, and the diagnostics agent reading a registered source from the
site's bucket."""

from __future__ import annotations

import asyncio
import json
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from click.testing import Result
from typer.testing import CliRunner

from sitemesh.agents import AgentResources, DiagnosticsAgent, EscalationAgent
from sitemesh.bus import NatsServer, Subjects, connect
from sitemesh.cli import app
from sitemesh.errors import PermanentError
from sitemesh.schemas import (
    Envelope,
    Plan,
    PlanStep,
    PolicyDecision,
    RetrievalResult,
    TelemetryAlert,
    ValidationReport,
)
from tests._items import work_item
from tests.conftest import stream_messages

runner = CliRunner()
PLAN = Plan(
    task_id="t-1",
    steps=[PlanStep(n=1, action="check_status", description="check", grounding=["d#s"])],
    customer_message="We are on it.",
)
OK = ValidationReport(task_id="t-1", ok=True, checks=["schema"])

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
N = 3 * 288
SPIKE = int(2.5 * 288)


async def cli(env: dict[str, str], *args: str) -> Result:
    """``sitemesh ARGS`` in a worker thread (the CLI runs its own event loop)."""
    return await asyncio.to_thread(runner.invoke, app, list(args), env=env)


@pytest.fixture
def env(nats_server: NatsServer, site: str, tmp_path: Path) -> dict[str, str]:
    return {
        "SITEMESH_NATS_URL": nats_server.client_url,
        "SITEMESH_SITE": site,
        "SITEMESH_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "250",
        "NO_COLOR": "1",
    }


def _series(spike: bool, seed: int) -> str:
    rnd = random.Random(seed)
    rows = ["timestamp,value"]
    for i in range(N):
        v = 50 + 10 * math.sin(2 * math.pi * i / 288) + rnd.gauss(0, 1.0)
        if spike and SPIKE <= i < SPIKE + 6:
            v += 60
        rows.append(f"{(T0 + i * STEP).strftime('%Y-%m-%d %H:%M:%S')},{v:.4f}")
    return "\n".join(rows) + "\n"


def lab_dir(tmp_path: Path) -> Path:
    """Two devices, one CSV each: r1 has a spike at day 2.5, r2 is normal."""
    root = tmp_path / "lab"
    for device, spike in (("r1", True), ("r2", False)):
        (root / device).mkdir(parents=True)
        (root / device / "cpu.csv").write_text(_series(spike, seed=len(device) + spike))
    return root


def _alert(device: str, source: str | None = "lab", **kw: object) -> TelemetryAlert:
    return TelemetryAlert(
        task_id=f"a-{device}",
        device=device,
        window_start=T0 + (SPIKE - 12) * STEP,
        window_end=T0 + (SPIKE + 12) * STEP,
        telemetry_source=source,
        **kw,  # type: ignore[arg-type]
    )


def _item(alert: TelemetryAlert):  # type: ignore[no-untyped-def]
    env = Envelope(task_id=str(alert.task_id), site="lab", kind="telemetry_alert",
                   submitted_at=T0, accepted_at=T0)
    decision = PolicyDecision(task_id=str(alert.task_id), action="pin_edge", rule_id="r1",
                              policy_version="0", data_class="internal")
    return env, decision, work_item(env, alert, decision)


async def test_add_list_show_remove(env: dict[str, str], site: str, tmp_path: Path) -> None:
    root = lab_dir(tmp_path)
    res = await cli(env, "telemetry", "add", "lab", str(root))
    assert res.exit_code == 0, res.output
    assert f"stored telemetry/lab at site {site}: series {root}" in res.output
    assert "2 series" in res.output
    assert "devices r1, r2" in res.output

    res = await cli(env, "telemetry", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)["sources"]}
    assert set(rows) == {"cisco-leaf7", "lab"}
    assert rows["lab"]["origin"] == "site"
    assert rows["lab"]["kind"] == "series"
    assert rows["lab"]["checked"]["series"] == "2"
    assert rows["cisco-leaf7"]["origin"] == "bundled"

    res = await cli(env, "telemetry", "show", "lab", "--json")
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert shown["now"]["devices"] == ["r1", "r2"]
    assert shown["location"] == str(root)

    res = await cli(env, "telemetry", "remove", "lab")
    assert res.exit_code == 0
    assert "removed telemetry/lab" in res.output
    res = await cli(env, "telemetry", "remove", "lab")
    assert res.exit_code == 1
    res = await cli(env, "telemetry", "show", "lab")
    assert res.exit_code == 1
    res = await cli(env, "telemetry", "remove", "cisco-leaf7")
    assert res.exit_code == 2
    assert "bundled" in res.output


async def test_bad_input_is_one_line_and_nothing_is_stored(
    env: dict[str, str], tmp_path: Path
) -> None:
    res = await cli(env, "telemetry", "add", "lab", str(tmp_path / "missing"))
    assert res.exit_code == 2
    assert "missing" in res.output
    assert "Traceback" not in res.output
    res = await cli(env, "telemetry", "add", "Bad Name", str(lab_dir(tmp_path)))
    assert res.exit_code == 2
    assert "name" in res.output
    assert "Traceback" not in res.output
    res = await cli(env, "telemetry", "add", "lab", str(tmp_path), "--kind", "nope")
    assert res.exit_code == 2
    assert "--kind 'nope'" in res.output
    res = await cli(env, "telemetry", "add", "cisco-leaf7", str(lab_dir(tmp_path / "x")))
    assert res.exit_code == 2
    assert "bundled source" in res.output
    res = await cli(env, "telemetry", "list", "--json")
    assert {r["name"] for r in json.loads(res.output)["sources"]} == {"cisco-leaf7"}


async def test_the_agent_reads_a_registered_source_and_the_outcome_follows_the_data(
    env: dict[str, str], nats_server: NatsServer, site: str, tmp_path: Path
) -> None:
    root = lab_dir(tmp_path)
    res = await cli(env, "telemetry", "add", "lab", str(root))
    assert res.exit_code == 0, res.output
    nc = await connect(nats_server.client_url, name="test-telemetry")
    try:
        agent = DiagnosticsAgent()
        await agent.setup(AgentResources(site, js=nc.jetstream()))
        for device, anomalous in (("r1", True), ("r2", False)):
            alert = _alert(device)
            env_, decision, item = _item(alert)
            d = await agent.handle(item, None)  # type: ignore[arg-type]
            assert "source_metrics" in d.checks_run, d.summary
            assert bool(d.findings) is anomalous, d.summary
            retrieval = RetrievalResult(task_id=str(alert.task_id), query="q", confidence=0.1)
            item = work_item(env_, alert, decision, retrieval, d, PLAN, OK)
            answer = EscalationAgent().answer(item)
            assert answer.outcome == ("escalate" if anomalous else "resolved"), answer.reasons
        with pytest.raises(PermanentError) as err:
            await agent.handle(_item(_alert("r1", source="nope"))[2], None)  # type: ignore[arg-type]
        assert err.value.field == "$.task.telemetry_source"
        assert "'nope'" in str(err.value)
        # the source removed: the next alert naming it is refused, not diagnosed on stale data
        res = await cli(env, "telemetry", "remove", "lab")
        assert res.exit_code == 0
        await agent._artifact_changed("telemetry/lab")
        with pytest.raises(PermanentError):
            await agent.handle(_item(_alert("r1"))[2], None)  # type: ignore[arg-type]
    finally:
        await nc.drain()


async def test_watch_raises_each_incident_once(
    env: dict[str, str], nats_server: NatsServer, site: str, tmp_path: Path
) -> None:
    root = lab_dir(tmp_path)
    assert (await cli(env, "telemetry", "add", "lab", str(root))).exit_code == 0
    res = await cli(env, "watch", "lab", "--once", "--since", "2026-03-01", "--dry-run")
    assert res.exit_code == 0, res.output
    assert "watch-lab-" in res.output
    res = await cli(env, "watch", "lab", "--once", "--since", "2026-03-01")
    assert res.exit_code == 0, res.output
    raised = [ln.split(" ", 1)[0] for ln in res.output.splitlines() if ln.startswith("watch-")]
    assert raised, res.output
    assert all(" r1 " in ln for ln in res.output.splitlines() if ln.startswith("watch-"))
    res = await cli(env, "watch", "lab", "--once")
    assert res.exit_code == 0, res.output
    assert "0 alert(s) raised" in res.output
    nc = await connect(nats_server.client_url, name="test-telemetry")
    try:
        subjects = Subjects(site)
        msgs = await stream_messages(nc.jetstream(), subjects.tasks_stream,
                                     subjects.task("telemetry_alert"))
        tasks = [msgspec.json.decode(m.data, type=TelemetryAlert) for m in msgs]
    finally:
        await nc.drain()
    assert sorted(str(t.task_id) for t in tasks) == sorted(raised)
    assert {t.telemetry_source for t in tasks} == {"lab"}
    res = await cli(env, "watch", "nope", "--once")
    assert res.exit_code == 1
    assert "no telemetry source 'nope'" in res.output
