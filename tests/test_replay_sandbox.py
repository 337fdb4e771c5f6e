"""Replay end to end: record a run of real tickets and alerts through in-process
workers, replay it into a sandbox (diff empty), replay it with one rule changed
(diff = exactly the tasks that rule affects), and never touch a live stream."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from rich.console import Console

from sitemesh.agents import Agent
from sitemesh.bus import NatsServer, Subjects, connect
from sitemesh.bus._streams import stream_configs
from sitemesh.cli._publish import prepare, publish
from sitemesh.config import BusSettings, NatsSettings, Settings, ToolsSettings
from sitemesh.policy import PiiScanner, Policy
from sitemesh.replay import (
    InProcessSite,
    Selection,
    build_agents,
    read_outcomes,
    replay_tasks,
    select_tasks,
)
from tests.conftest import TEST_STREAM_BYTES, assert_eventually

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data"
BUNDLED_RULES = ROOT / "sitemesh" / "policy" / "rules" / "default.toml"
N_TICKETS, N_ALERTS = 20, 2
DENIED_TENANT = "AdobeCare"


@dataclass
class Recorded:
    js: JetStreamContext
    subjects: Subjects
    bus: BusSettings
    scanner: PiiScanner
    agents: dict[str, Agent]
    ids: list[str]
    tmp: Path


def _head(path: Path, n: int, dest: Path) -> Path:
    dest.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:n]))
    return dest


def _changed_rules(tmp: Path) -> Path:
    """The bundled rules with one rule added first: deny :data:`DENIED_TENANT`."""
    rules = tmp / "changed.toml"
    deny = (
        f'[[rule]]\nid = "deny-{DENIED_TENANT.lower()}"\n'
        f'description = "{DENIED_TENANT} is denied while its contract is renegotiated"\n'
        f'action = "deny"\nmatch = {{ tenants = ["{DENIED_TENANT}"] }}\n\n'
    )
    text = BUNDLED_RULES.read_text("utf-8")
    first = text.index("[[rule]]")
    rules.write_text(text[:first] + deny + text[first:], "utf-8")
    return rules


def _affected(ids: list[str]) -> set[str]:
    lines = (DATA / "tickets.jsonl").read_text("utf-8").splitlines()[:N_TICKETS]
    return {
        tid
        for tid, line in zip(ids, lines, strict=False)
        if json.loads(line).get("tenant") == DENIED_TENANT
    }


@pytest.fixture(scope="module")
async def recorded(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Recorded]:
    """A site run of 20 real tickets and 2 alerts, recorded in its live streams."""
    tmp = tmp_path_factory.mktemp("replay")
    site = "r" + uuid.uuid4().hex[:7]
    bus = BusSettings(
        batch=32,
        max_deliver=3,
        ack_wait_s=10,
        backoff_base_s=0.02,
        backoff_max_s=0.2,
        graceful_timeout_s=5,
        max_bytes=TEST_STREAM_BYTES,
    )
    scanner = PiiScanner()
    scanner.load()
    agents = await build_agents()
    nc = await connect(nats_server.client_url, name="replay-test", timeout_s=5)
    js = nc.jetstream()
    subjects = Subjects(site)
    tickets = _head(DATA / "tickets.jsonl", N_TICKETS, tmp / "tickets.jsonl")
    alerts = _head(DATA / "telemetry_alerts.jsonl", N_ALERTS, tmp / "alerts.jsonl")
    prepared = prepare([tickets, alerts], prefix="rec-")
    ids = [p.task_id for p in prepared]
    async with InProcessSite(
        js, subjects, bus, policy=Policy.load(None), scanner=scanner, agents=agents
    ):
        await publish(js, site, prepared)

        async def all_ended() -> bool:
            return set(ids) <= (await read_outcomes(js, subjects, ids)).ended()

        await assert_eventually(all_ended, timeout_s=90, interval_s=0.2)
    try:
        yield Recorded(js, subjects, bus, scanner, agents, ids, tmp)
    finally:
        await nc.drain()


async def _counts(js: JetStreamContext, subjects: Subjects, bus: BusSettings) -> dict[str, int]:
    out = {}
    for cfg in stream_configs(subjects, bus):
        assert cfg.name is not None
        out[cfg.name] = (await js.stream_info(cfg.name)).state.messages
    return out


async def test_replay_reproduces_every_decision_and_output(recorded: Recorded) -> None:
    r = recorded
    tasks = await select_tasks(r.js, r.subjects, Selection())
    assert [t for t, _ in tasks] == r.ids
    live_before = await _counts(r.js, r.subjects, r.bus)
    ticks: list[tuple[int, int]] = []
    report = await replay_tasks(
        r.js,
        r.subjects,
        r.bus,
        tasks,
        policy=Policy.load(None),
        scanner=r.scanner,
        agents=r.agents,
        progress=lambda done, total: ticks.append((done, total)),
    )
    assert [t.task_id for t in report.tasks] == r.ids
    assert report.empty, [(t.task_id, t.changes[:3]) for t in report.changed]
    statuses = {t.original_status for t in report.tasks}
    assert statuses <= {"answered", "failed", "parked"}, statuses
    assert ticks[-1] == (len(r.ids), len(r.ids))
    # the sandbox never touched a live stream, and it is gone afterwards
    assert await _counts(r.js, r.subjects, r.bus) == live_before
    sandbox = Subjects.sandbox(r.subjects.site, report.replay_id)
    for cfg in stream_configs(sandbox, r.bus):
        assert cfg.name is not None
        with pytest.raises(NotFoundError):
            await r.js.stream_info(cfg.name)


async def test_rule_change_shows_exactly_the_affected_tasks(recorded: Recorded) -> None:
    r = recorded
    affected = _affected(r.ids)
    assert len(affected) == 2
    rules = _changed_rules(r.tmp)

    # select by sequence range of TASKS: the whole recorded run
    tasks = await select_tasks(r.js, r.subjects, Selection(seq_from=1, seq_to=len(r.ids)))
    report = await replay_tasks(
        r.js,
        r.subjects,
        r.bus,
        tasks,
        policy=Policy.load(rules),
        scanner=r.scanner,
        agents=r.agents,
        keep=True,
    )
    assert {t.task_id for t in report.changed} == affected
    for t in report.changed:
        assert (t.original_status, t.replayed_status) == ("answered", "failed")
        paths = {c.path for c in t.changes}
        assert "$.decision.action" in paths
        assert "$.decision.rule_id" in paths
        assert "$.status" in paths
        assert "$.failed" in paths
        rule = next(c for c in t.changes if c.path == "$.decision.rule_id")
        assert rule.replayed == "deny-adobecare"
    # --keep: the sandbox is still there, with the replayed tasks
    sandbox = Subjects.sandbox(r.subjects.site, report.replay_id)
    assert (await r.js.stream_info(sandbox.tasks_stream)).state.messages == len(r.ids)
    from sitemesh.replay import delete_sandbox

    await delete_sandbox(r.js, sandbox, r.bus)


async def test_select_by_task_id_and_by_other_stream(recorded: Recorded) -> None:
    r = recorded
    one = await select_tasks(r.js, r.subjects, Selection(task_ids=(r.ids[3],)))
    assert [t for t, _ in one] == [r.ids[3]]
    # a sequence range of EVENTS names the tasks whose events fall in it
    events = await select_tasks(
        r.js, r.subjects, Selection(stream=r.subjects.events_stream, seq_from=1, seq_to=1)
    )
    assert len(events) == 1
    assert events[0][0] in r.ids


async def test_cli_replay_exit_codes_and_report(
    recorded: Recorded, nats_server: NatsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sitemesh replay`` as the CLI runs it: 0 when reproduced, 1 with the changed
    tasks and paths printed, 2 when nothing matches the selection."""
    import sitemesh.cli._replay_cmds as cmds
    from sitemesh.cli._replay_cmds import replay

    r = recorded
    monkeypatch.setattr(PiiScanner, "from_settings", classmethod(lambda cls, s: r.scanner))

    async def built(*args: object, **kwargs: object) -> object:
        return r.agents

    monkeypatch.setattr(cmds, "build_agents", built)
    no_tools = r.tmp / "no-tools.toml"  # as in the recorded run: its agents had no tools
    no_tools.write_text("bundled = false\n", encoding="utf-8")
    settings = Settings(
        site=r.subjects.site,
        state_dir=r.tmp,
        nats=NatsSettings(url=nats_server.client_url),
        bus=r.bus,
        tools=ToolsSettings(file=no_tools),
    )
    console = Console(record=True, width=250)
    assert await replay(settings, console, since="1h", speed="original") == 0
    assert "diff empty" in console.export_text()

    console = Console(record=True, width=250)
    code = await replay(settings, console, rules_file=_changed_rules(r.tmp))
    out = console.export_text()
    assert code == 1, out
    for tid in _affected(r.ids):
        assert tid in out
    assert "$.decision.rule_id" in out
    assert "deny-adobecare" in out
    assert f"{len(r.ids) - 2} match" in out

    console = Console(record=True, width=250)
    assert await replay(settings, console, task_ids=["no-such-task"]) == 2
    assert "no recorded task" in console.export_text()
