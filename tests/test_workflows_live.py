"""Workflows published live: running routers follow them without a restart, and work
for a role with no workers waits on the bus until one starts (nothing is lost)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext

from sitemesh.bus import NatsServer, Subjects, connect, provision
from sitemesh.config import BusSettings, NatsSettings, Settings
from sitemesh.edge_node import Supervisor, child_env, process_environ
from sitemesh.schemas import EVENT_DECODER, WORK_DECODER, StepCompleted, TaskAccepted
from sitemesh.workflows import Workflows, WorkflowStore
from tests.conftest import TEST_STREAM_BYTES, assert_eventually, stream_messages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]  # five CLI runs and a router

ROOT = Path(__file__).resolve().parent.parent
TONE = "tests._agents:ToneAgent"

WITH_TONE = """
version = "live-2"

[[workflow]]
name = "support"
kinds = ["support_ticket"]

  [[workflow.step]]
  name = "tone"
  role = "tone"
  jumps = [{ when = "tone.label == 'urgent'", to = "decide" }]

  [[workflow.step]]
  name = "retrieve"
  role = "retriever"

  [[workflow.step]]
  name = "decide"
  role = "escalation"

[[workflow]]
name = "alert"
kinds = ["telemetry_alert"]

  [[workflow.step]]
  name = "decide"
  role = "escalation"
"""


def _env(settings: Settings) -> dict[str, str]:
    env = child_env(process_environ(), settings.to_env())
    env["PYTHONPATH"] = str(ROOT)  # tests._agents, as a user's own package would be
    env["COLUMNS"] = "200"
    return env


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sitemesh", *args],
        env=_env(settings), cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


async def _publish(js: JetStreamContext, s: Subjects, task_id: str, body: str) -> None:
    payload = msgspec.json.encode({"type": "support_ticket.v1", "task_id": task_id, "body": body})
    await js.publish(s.task("support_ticket"), payload, headers={"Nats-Msg-Id": task_id})


async def _accepted(js: JetStreamContext, s: Subjects, task_id: str) -> TaskAccepted:
    async def find() -> TaskAccepted | None:
        for m in await stream_messages(js, s.events_stream, s.task_events(task_id)):
            ev = EVENT_DECODER.decode(m.data or b"")
            if isinstance(ev, TaskAccepted):
                return ev
        return None

    found = await assert_eventually(find, timeout_s=90, msg=f"{task_id} not accepted")
    assert found is not None
    return found


async def _first_work(js: JetStreamContext, s: Subjects, task_id: str) -> tuple[str, str]:
    """``(subject, step)`` of the first work message of ``task_id``."""

    async def find() -> tuple[str, str] | None:
        for m in await stream_messages(js, s.work_stream, s.all_work):
            if (m.headers or {}).get("sm-task-id") == task_id:
                return m.subject, WORK_DECODER.decode(m.data or b"").step
        return None

    found = await assert_eventually(find, timeout_s=30, msg=f"no work for {task_id}")
    assert found is not None
    return found


async def test_published_workflows_reach_running_routers_and_unserved_work_waits(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    site = "w" + uuid.uuid4().hex[:7]
    s = Subjects(site)
    settings = Settings(
        site=site,
        state_dir=tmp_path,
        nats=NatsSettings(url=nats_server.client_url),
        bus=BusSettings(ack_wait_s=5, max_deliver=5, max_bytes=TEST_STREAM_BYTES),
    )
    nc = await connect(nats_server.client_url, name="live-test", timeout_s=5)
    js = nc.jetstream()
    await provision(js, s, settings.bus)
    router = Supervisor(site, ["router"], env=_env(settings), log_dir=tmp_path / "logs")
    tone: Supervisor | None = None
    await router.start()
    try:
        # before: the bundled workflows; the router is running
        await _publish(js, s, "before-1", "my bill is wrong")
        bundled = Workflows.load()
        assert (await _accepted(js, s, "before-1")).workflow_version == bundled.version
        assert await _first_work(js, s, "before-1") == (s.work("triage"), "triage")

        # a malformed change is refused by the CLI and changes nothing
        bad = tmp_path / "bad.toml"
        bad.write_text(WITH_TONE.replace('to = "decide"', 'to = "tone"'), "utf-8")
        refused = _cli(settings, "workflows", str(bad), "--agent", TONE)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "step 'tone' jumps[0]: jumping to 'tone' would make a cycle" in refused.stderr
        assert "Traceback" not in refused.stderr
        unknown = _cli(settings, "workflows", str(bad).replace("bad", "none"))
        assert unknown.returncode == 2  # typer: the file does not exist

        # the change, published live through the operator CLI; no restart
        good = tmp_path / "workflows.toml"
        good.write_text(WITH_TONE, "utf-8")
        without_agent = _cli(settings, "workflows", str(good))
        assert without_agent.returncode == 2
        assert "unknown role 'tone'" in without_agent.stderr
        published = _cli(settings, "workflows", str(good), "--agent", TONE)
        assert published.returncode == 0, published.stdout + published.stderr
        new = Workflows.from_toml(WITH_TONE)
        assert f"published workflows {new.version}" in published.stdout
        assert (await WorkflowStore(js).current(site)).version == new.version

        async def follows_new() -> bool:
            tid = "after-" + uuid.uuid4().hex[:6]
            await _publish(js, s, tid, "where is my order")
            return (await _accepted(js, s, tid)).workflow_version == new.version

        await assert_eventually(follows_new, timeout_s=30, msg="router kept the old workflows")
        await _publish(js, s, "after-x", "where is my order")
        accepted = await _accepted(js, s, "after-x")
        assert (accepted.workflow, accepted.workflow_version) == ("support", new.version)
        assert await _first_work(js, s, "after-x") == (s.work("tone"), "tone")

        # no tone worker runs: the work waits on the bus, visible on its consumer
        info = await js.consumer_info(s.work_stream, "tone")
        assert info.num_pending >= 2  # after-x and the probe(s)
        shown = _cli(settings, "workflows")
        assert shown.returncode == 0
        assert "tone" in shown.stdout
        assert new.version in shown.stdout

        # a worker of the user's agent (by import path) starts and takes the waiting work
        tone = Supervisor(
            site, ["tone"], env=_env(settings), log_dir=tmp_path / "logs", agents=[TONE]
        )
        await tone.start()

        async def tone_done() -> StepCompleted | None:
            for m in await stream_messages(js, s.events_stream, s.task_events("after-x")):
                ev = EVENT_DECODER.decode(m.data or b"")
                if isinstance(ev, StepCompleted) and ev.step == "tone":
                    return ev
            return None

        step = await assert_eventually(tone_done, timeout_s=90, msg="tone never ran")
        assert step is not None
        assert step.workflow_version == new.version
        assert msgspec.json.decode(step.output) == {"type": "tone.v1", "label": "calm",
                                                    "exclamations": 0}  # fmt: skip

        # and the next step got the tone output with the item
        async def handed_on() -> bool:
            for m in await stream_messages(js, s.work_stream, s.work("retriever")):
                item = WORK_DECODER.decode(m.data or b"")
                if item.envelope.task_id == "after-x":
                    return "tone" in item.outputs and item.step == "retrieve"
            return False

        await assert_eventually(handed_on, timeout_s=30, msg="tone's output was not handed on")

        # urgent tickets jump straight to the decision (skipping retrieve)
        await _publish(js, s, "after-urgent", "down!! now!!")

        async def jumped() -> bool:
            for m in await stream_messages(js, s.work_stream, s.work("escalation")):
                item = WORK_DECODER.decode(m.data or b"")
                if item.envelope.task_id == "after-urgent":
                    return item.skipped == ["retrieve"] and item.step == "decide"
            return False

        await assert_eventually(jumped, timeout_s=60, msg="the jump was not taken")
    finally:
        if tone is not None:
            await tone.stop()
        codes = await router.stop()
        await nc.drain()
        await asyncio.sleep(0)
    assert all(code == 0 for code in codes.values()), codes
