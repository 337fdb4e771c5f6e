"""Replay of runs that used tools: recorded responses, zero live calls, no side effects.

* fast: the sandbox's registry (:class:`sitemesh.replay.ReplayTools`) serves what the
  site's database recorded and writes nothing there; a call with no record is a
  ``ToolReplayMiss`` (also when the database cannot be read), never a live call;
  listing or describing tools is a miss too, and starts no server; ``--live-tools``
  calls the tool.
* slow: a site run through in-process workers where a user's agent
  (``tests._agents.tool_user:NoteAgent``) calls the real stdio MCP test server (which
  counts its executions): a side effect runs once per step although the step is
  redelivered; ``sitemesh replay`` of that run reproduces every outcome with zero
  executions at the server; ``--live-tools`` calls the reads again (with the recorded
  idempotency keys) but not the side effect; a replay with no records fails each task
  with the miss as its reason, still without a live call.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from rich.console import Console
from typer.testing import CliRunner

from sitemesh.agents import AgentResources, Registry
from sitemesh.bus import NatsServer, Subjects, connect
from sitemesh.cli import app
from sitemesh.cli._publish import prepare, publish
from sitemesh.cli._replay_cmds import replay
from sitemesh.config import BusSettings, DbSettings, NatsSettings, Settings, ToolsSettings
from sitemesh.policy import PiiScanner, Policy
from sitemesh.replay import (
    InProcessSite,
    ReplayTools,
    Selection,
    build_agents,
    read_outcomes,
    replay_tasks,
    select_tasks,
)
from sitemesh.state import Store, migrate
from sitemesh.tools import (
    ReadOnlyToolRecorder,
    StoreToolRecorder,
    ToolCalls,
    ToolRegistry,
    ToolReplayMiss,
    ToolSpec,
    ToolUnavailable,
    UnknownTool,
    idempotency_key,
)
from sitemesh.workflows import Workflows, WorkflowStore
from tests._agents.tool_user import ROLE
from tests._mcp import inproc
from tests._mcp.helpers import ROOT, NoPii, executions
from tests.conftest import TEST_STREAM_BYTES, assert_eventually

pytestmark = pytest.mark.timeout(240)
slow = pytest.mark.slow

AGENT = "tests._agents.tool_user:NoteAgent"
WORKFLOWS = f"""\
version = "tools-replay.1"

[[workflow]]
name = "support"
kinds = ["support_ticket"]
description = "one step: the note agent answers with what its tools said"

  [[workflow.step]]
  name = "note"
  role = "{ROLE}"
"""
TICKETS = [
    {"type": "support_ticket.v1", "task_id": "vpn", "tenant": "Acme", "channel": "email",
     "title": "VPN drops", "body": "The VPN client disconnects every ten minutes."},
    {"type": "support_ticket.v1", "task_id": "printer", "tenant": "Globex", "channel": "email",
     "title": "Printer jam", "body": "Printer on floor 3 shows a paper jam."},
    {"type": "support_ticket.v1", "task_id": "flaky", "tenant": "Initech", "channel": "email",
     "title": "Mail queue", "body": "flaky: the mail queue stalls at night."},
]  # fmt: skip
CALLS_PER_TICKET = 2


def _tools_file(path: Path, calls: Path) -> Path:
    """A site tools file with only the stdio test server, as ``t``."""
    spec = {
        "name": "t",
        "transport": "stdio",
        "command": "{python}",
        "args": ["-m", "tests._mcp.stdio_server"],
        "cwd": str(ROOT),
        "env": {"SITEMESH_TEST_CALLS": str(calls)},
        "timeout_s": 10,
        "connect_timeout_s": 60,
        "retries": 0,
    }
    lines = ["bundled = false", "", "[[tools]]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in spec.items() if k != "env"]
    lines.append(f"env = {{ SITEMESH_TEST_CALLS = {json.dumps(str(calls))} }}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (n,) = conn.execute("select count(*) from tool_calls").fetchone()
    return int(n)


# -- without a broker ------------------------------------------------------------------


def _python_settings(tmp: Path, db: Path) -> Settings:
    tools = tmp / "tools.toml"
    tools.write_text(
        'bundled = false\n[[tools]]\nname = "p"\ntransport = "python"\n'
        'target = "tests._mcp.inproc:server"\n',
        encoding="utf-8",
    )
    return Settings(
        state_dir=tmp / "state",
        db=DbSettings(url=f"sqlite+aiosqlite:///{db}"),
        tools=ToolsSettings(file=tools),
    )


async def test_the_sandbox_serves_the_records_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    settings = _python_settings(tmp_path, db)
    args = {"topic": "bgp"}
    async with ToolRegistry.from_settings(settings, scanner=NoPii()) as live:
        original = await live.call("p.plain", args, task_id="t-1", step="s", call_index=0)
    executed = len(inproc.CALLS)
    assert _rows(db) == 1

    async with ReplayTools(settings, scanner=NoPii()) as tools:
        assert (tools.mode, tools.registry_mode) == ("recorded", "strict")
        registry = tools.registry()
        assert registry is not None
        assert isinstance(registry.recorder, ReadOnlyToolRecorder)
        served = await registry.call("p.plain", args, task_id="t-1", step="s", call_index=0)
        with pytest.raises(ToolReplayMiss, match="no recorded response"):
            await registry.call("p.plain", args, task_id="t-1", step="s", call_index=1)
        with pytest.raises(ToolReplayMiss, match="other arguments"):
            await registry.call("p.plain", {"topic": "ospf"}, task_id="t-1", step="s", call_index=0)
        for listing in (registry.list_tools("p"), registry.describe("p.plain")):
            with pytest.raises(ToolReplayMiss, match="starts no tool server"):
                await listing
        assert registry.pool._connections == {}  # no server was started
        assert tools.counts() == (1, 0)
    assert (served.text, served.source) == (original.text, "replay")
    assert served.idempotency_key == original.idempotency_key
    assert len(inproc.CALLS) == executed  # zero live calls
    assert _rows(db) == 1  # the sandbox recorded in memory only

    async with ReplayTools(settings, live=True, scanner=NoPii()) as tools:
        assert tools.registry_mode == "off"
        registry = tools.registry()
        assert registry is not None
        again = await registry.call("p.plain", args, task_id="t-1", step="s", call_index=0)
        assert tools.counts() == (0, 1)
    assert (again.source, again.text) == ("live", original.text)
    assert len(inproc.CALLS) == executed + 1
    assert _rows(db) == 1


async def test_an_unreadable_record_store_is_a_miss_not_a_crash(tmp_path: Path) -> None:
    settings = _python_settings(tmp_path, tmp_path / "never-migrated.db")
    executed = len(inproc.CALLS)
    async with ReplayTools(settings, scanner=NoPii()) as tools:
        registry = tools.registry()
        assert registry is not None
        with pytest.raises(ToolReplayMiss, match="strict replay and no recorded response"):
            await registry.call("p.plain", {"topic": "x"}, task_id="t", step="s", call_index=0)
        assert isinstance(registry.recorder, ReadOnlyToolRecorder)
        assert registry.recorder.lookup_errors == 1  # no tool_calls table: logged
    assert len(inproc.CALLS) == executed


async def test_a_strict_replay_lists_and_describes_nothing_and_starts_no_server(
    tmp_path: Path,
) -> None:
    # a server that cannot start: listing it live fails with ToolUnavailable, so a
    # ToolReplayMiss below means that no start was even tried
    missing = ToolSpec(
        name="gone", transport="stdio", command=str(tmp_path / "no-such-server"),
        connect_timeout_s=5.0,
    )  # fmt: skip
    async with ToolRegistry([missing], scanner=NoPii(), replay="strict") as registry:
        view = ToolCalls(registry, task_id="t-1", step="s")
        for listing, named in (
            (registry.list_tools(), "gone"),
            (registry.list_tools("gone"), "gone"),
            (view.list("gone"), "gone"),
            (registry.describe("gone.echo"), "gone.echo"),
            (view.describe("gone"), "gone"),
        ):
            with pytest.raises(ToolReplayMiss, match="starts no tool server") as miss:
                await listing
            assert (miss.value.tool, miss.value.call_id) == (named, "")
            assert str(miss.value).startswith(f"{named}: not ")
        with pytest.raises(UnknownTool):  # a name that is not configured stays unknown
            await registry.list_tools("crm")
        with pytest.raises(UnknownTool):
            await view.describe("crm.lookup")
        await registry.warm("gone")  # loads the scanner only
        assert registry.pool._connections == {}
    async with ToolRegistry([missing], scanner=NoPii()) as live:
        with pytest.raises(ToolUnavailable, match="gone"):  # what starting it gives
            await live.list_tools("gone")


def test_no_tools_configured_means_no_registry(tmp_path: Path) -> None:
    empty = tmp_path / "tools.toml"
    empty.write_text("bundled = false\n", encoding="utf-8")
    settings = Settings(state_dir=tmp_path, tools=ToolsSettings(file=empty))
    tools = ReplayTools(settings)
    assert tools.registry() is None
    assert tools.resources("eu1").tools is None
    assert ReplayTools(None).registry() is None


def test_the_command_line_passes_live_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    async def fake_replay(*args: object, live_tools: bool = False, **kwargs: object) -> int:
        seen.append(live_tools)
        return 0

    monkeypatch.setattr("sitemesh.cli._replay_cmds.replay", fake_replay)
    for flags, live in (([], False), (["--live-tools"], True)):
        result = CliRunner().invoke(app, ["replay", "--task", "t-1", *flags])
        assert result.exit_code == 0, result.output
        assert seen[-1] is live


# -- a recorded run, replayed ------------------------------------------------------------


@dataclass
class Run:
    settings: Settings
    js: JetStreamContext
    scanner: PiiScanner
    ids: list[str]
    calls: Path
    db: Path
    tmp: Path


@pytest.fixture(scope="module")
async def recorded_run(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Run]:
    """Three tickets through in-process workers whose agent calls the stdio server."""
    tmp = tmp_path_factory.mktemp("toolreplay")
    site = "r" + uuid.uuid4().hex[:7]
    calls, db = tmp / "calls.jsonl", tmp / "state.db"
    bus = BusSettings(
        batch=16, max_deliver=4, ack_wait_s=20, backoff_base_s=0.05, backoff_max_s=0.2,
        graceful_timeout_s=10, max_bytes=TEST_STREAM_BYTES, duplicate_window_s=120,
    )  # fmt: skip
    settings = Settings(
        site=site,
        state_dir=tmp / "state",
        nats=NatsSettings(url=nats_server.client_url),
        db=DbSettings(url=f"sqlite+aiosqlite:///{db}"),
        bus=bus,
        tools=ToolsSettings(file=_tools_file(tmp / "tools.toml", calls)),
    )
    await migrate(settings.db_url)
    scanner = PiiScanner()
    scanner.load()
    nc = await connect(nats_server.client_url, name="tools-replay-test", timeout_s=5)
    js = nc.jetstream()
    try:
        workflows = await WorkflowStore(js).publish(WORKFLOWS, site=site)
        tickets = tmp / "tickets.jsonl"
        tickets.write_text("".join(json.dumps(t) + "\n" for t in TICKETS), encoding="utf-8")
        prepared = prepare([tickets], prefix=f"{site}-")
        ids = [p.task_id for p in prepared]
        live = ToolRegistry.from_settings(settings, scanner=scanner)
        resources = AgentResources(site, tools=lambda: live)
        async with (
            live,
            InProcessSite(
                js,
                Subjects(site),
                bus,
                policy=Policy.load(None),
                scanner=scanner,
                workflows=workflows,
                registry=Registry.load([AGENT]),
                resources=resources,
            ),
        ):
            await publish(js, site, prepared)

            async def answered() -> bool:
                outcomes = (await read_outcomes(js, Subjects(site), ids)).outcomes()
                return all(outcomes.get(t, {}).get("status") == "answered" for t in ids)

            await assert_eventually(answered, timeout_s=120, interval_s=0.2)
        yield Run(settings, js, scanner, ids, calls, db, tmp)
    finally:
        await nc.drain()


@pytest.fixture
def one_scanner(recorded_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """``sitemesh replay`` loads the PII analyzer: reuse the loaded one (9 s a load)."""
    monkeypatch.setattr(PiiScanner, "from_settings", staticmethod(lambda _: recorded_run.scanner))


def _flaky(run: Run) -> str:
    return next(t for t in run.ids if t.endswith("flaky"))


@slow
async def test_a_side_effect_runs_once_per_step_across_redeliveries(recorded_run: Run) -> None:
    run = recorded_run
    notes = executions(run.calls, "create_note")
    # one note per ticket at the server, the redelivered flaky step included
    assert len(notes) == len(run.ids), notes
    assert {n["meta_key"] for n in notes} == {idempotency_key(t, "note", 1) for t in run.ids}
    # the read was made again by the second delivery, with the same key
    flaky = _flaky(run)
    echoes = [e["meta_key"] for e in executions(run.calls, "echo")]
    assert echoes.count(idempotency_key(flaky, "note", 0)) == 2
    async with Store(run.settings.db_url) as store:
        recorded = await StoreToolRecorder(store).calls(flaky)
    assert [(c.tool, c.outcome) for c in recorded] == [
        ("t.echo", "ok"), ("t.create_note", "ok"), ("t.echo", "ok"),
        ("t.create_note", "deduplicated"),
    ]  # fmt: skip


@slow
@pytest.mark.usefixtures("one_scanner")
async def test_replay_reproduces_the_run_with_zero_live_tool_calls(recorded_run: Run) -> None:
    run = recorded_run
    before, rows = executions(run.calls), _rows(run.db)
    console = Console(record=True, width=200)
    code = await replay(run.settings, console, task_ids=run.ids, agent_paths=[AGENT])
    text = console.export_text()
    assert code == 0, text
    assert f"{len(run.ids)} match, 0 differ" in text, text
    assert "tool calls recorded" in text, text
    served = CALLS_PER_TICKET * (len(run.ids) + 1)  # the flaky step runs twice
    assert f"tool calls: {served} served from records, 0 live" in text, text
    assert executions(run.calls) == before  # zero executions at the server
    assert _rows(run.db) == rows  # and nothing written to the site database


@slow
@pytest.mark.usefixtures("one_scanner")
async def test_live_tools_calls_the_reads_again_but_repeats_no_side_effect(
    recorded_run: Run,
) -> None:
    run = recorded_run
    before, rows = executions(run.calls), _rows(run.db)
    console = Console(record=True, width=200)
    code = await replay(
        run.settings, console, task_ids=run.ids, agent_paths=[AGENT], live_tools=True
    )
    text = console.export_text()
    assert code == 0, text  # echo answers as it did: the same outcomes
    assert "tool calls live" in text, text
    new = executions(run.calls)[len(before) :]
    assert [x["tool"] for x in new] == ["echo"] * (len(run.ids) + 1), new
    # the replayed contexts carry the task ids and steps: the recorded keys
    assert {x["meta_key"] for x in new} == {idempotency_key(t, "note", 0) for t in run.ids}
    n = len(run.ids) + 1
    assert f"tool calls: {n} served from records, {n} live" in text, text
    assert _rows(run.db) == rows


@slow
async def test_a_replay_without_records_fails_each_task_with_the_reason(
    recorded_run: Run,
) -> None:
    run = recorded_run
    empty = run.tmp / "empty.db"
    settings = run.settings.model_copy(
        update={"db": DbSettings(url=f"sqlite+aiosqlite:///{empty}")}
    )
    await migrate(settings.db_url)
    before = executions(run.calls)
    subjects = Subjects(run.settings.site)
    tasks = await select_tasks(run.js, subjects, Selection(task_ids=tuple(run.ids)))
    registry = Registry.load([AGENT])
    async with ReplayTools(settings, scanner=run.scanner) as tools:
        resources = tools.resources(subjects.site)
        report = await replay_tasks(
            run.js,
            subjects,
            run.settings.bus,
            tasks,
            policy=Policy.load(None),
            scanner=run.scanner,
            agents=await build_agents(registry, [ROLE], resources=resources),
            workflows=Workflows.from_toml(WORKFLOWS),
            registry=registry,
            resources=resources,
            timeout_s=60,
        )
    assert {t.task_id for t in report.changed} == set(run.ids)
    for t in report.tasks:
        assert (t.original_status, t.replayed_status) == ("answered", "failed")
        failed = next(c.replayed for c in t.changes if c.path == "$.failed")
        assert failed["error_class"] == "ToolReplayMiss", failed
        assert "t.echo: strict replay and no recorded response" in failed["reason"], failed
    assert executions(run.calls) == before  # a miss is never a live call
