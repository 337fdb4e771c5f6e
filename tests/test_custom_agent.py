"""The example agent package, ``examples/custom_agent`` (role ``sentiment``, VADER), on
the platform as it ships: nothing under ``sitemesh/`` knows it.

* fast: the agent scores tickets without a broker; the example's workflows check
  against a registry that has it and fail, naming the role, against one that has
  not; ``pip install`` of the package registers its entry point (``sitemesh agents``).
* slow: a site's workers as OS processes on a real nats-server, the example's
  ``workflows.toml`` published live with ``sitemesh workflows``, real tickets in with
  ``sitemesh publish``; they wait on ``WORK_<site>`` until the agent's own worker
  process (``sitemesh worker --agent sitemesh_sentiment:SentimentAgent``, found by
  import path through ``PYTHONPATH``) starts; then every ticket carries its
  sentiment, ``show`` and ``trace`` print it, and ``replay`` reproduces it.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.js.client import JetStreamContext

from sitemesh.agents import AgentContext, AgentResources, AgentSpec, Registry, import_agent
from sitemesh.bus import NatsServer, Subjects, connect, provision
from sitemesh.cli._trace_cmds import elide_text
from sitemesh.config import Settings
from sitemesh.edge_node import Supervisor, child_env, process_environ
from sitemesh.errors import WorkflowError
from sitemesh.replay import delete_sandbox, read_outcomes
from sitemesh.runtime import wait_ready
from sitemesh.schemas import (
    EVENT_DECODER,
    Envelope,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    StepSkipped,
    SupportTicket,
    TaskAccepted,
    WorkItem,
    decode,
)
from sitemesh.state import Store, migrate
from sitemesh.workflows import Workflows, WorkflowStore, check_workflows, new_item, next_step
from tests._sites import process_site_settings
from tests.conftest import StateDatabases, assert_eventually, stream_messages

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "custom_agent"
SRC = EXAMPLE / "src"
WORKFLOWS = EXAMPLE / "workflows.toml"
TICKETS = ROOT / "examples" / "data" / "tickets.jsonl"
AGENT = "sitemesh_sentiment:SentimentAgent"
N_TICKETS = 10
SITE_ROLES = ["recorder", "router", "retriever", "planner", "validator", "escalation"]
"""The platform's own processes for tickets; the sentiment worker is started apart."""

NOW = datetime(2026, 12, 2, tzinfo=UTC)


@pytest.fixture(scope="module")
def spec() -> Iterator[AgentSpec]:
    """The example agent, loaded by import path from ``examples/custom_agent/src``."""
    sys.path.insert(0, str(SRC))
    try:
        yield import_agent(AGENT)
    finally:
        sys.path.remove(str(SRC))


def _item(ticket: SupportTicket, doc: Workflows | None = None) -> WorkItem:
    env = Envelope(
        task_id="t1", site="lab", kind="support_ticket", submitted_at=NOW, accepted_at=NOW
    )
    decision = PolicyDecision(
        task_id="t1", action="pin_edge", rule_id="r1", policy_version="p1", data_class="internal"
    )
    return new_item(env, ticket, decision, doc or Workflows.load(str(WORKFLOWS)))


async def _agent(spec: AgentSpec) -> Any:
    agent = spec.create()
    await agent.setup(AgentResources("lab"))
    return agent


def _tickets(n: int) -> list[SupportTicket]:
    lines = TICKETS.read_text("utf-8").splitlines()[:n]
    return [msgspec.json.decode(line, type=SupportTicket) for line in lines]


def _jumps(doc: Workflows, output: msgspec.Struct) -> bool:
    """Whether the example workflow jumps from ``sentiment`` to ``decide`` on ``output``."""
    item = _item(SupportTicket(body="-"), doc).with_output("sentiment", output)
    advance = next_step(item, "sentiment")
    assert advance.step is not None
    return advance.step.name == "decide"


# -- without a broker -----------------------------------------------------------------


async def test_the_agent_scores_tickets_offline(spec: AgentSpec) -> None:
    agent = await _agent(spec)
    ctx = AgentContext(site="lab", worker="test:1", step="sentiment")
    angry = SupportTicket(title="Refund", body="Worst service ever, I am furious and disgusted!")
    happy = SupportTicket(body="Thanks a lot, the fix works great :)")
    flat = SupportTicket(body="The router was restarted at noon.")
    got = {t.body: await agent.handle(_item(t), ctx) for t in (angry, happy, flat)}
    assert [g.label for g in got.values()] == ["negative", "positive", "neutral"]
    out = got[angry.body]
    assert out.compound <= -0.75 < got[flat.body].compound
    assert abs(out.negative + out.neutral + out.positive - 1) < 0.01
    assert out.analyzer.startswith("vaderSentiment 3.")
    encoded = json.loads(msgspec.json.encode(out))
    assert encoded["type"] == "sentiment.v1"
    # the summary carries label and score, never the ticket's words
    summary = agent.summarize(out)
    assert summary == f"negative {out.compound:+.2f}"
    assert not {"furious", "disgusted", "Refund"} & set(summary.split())
    # deterministic: a redelivery or a replay computes the same output
    assert await agent.handle(_item(angry), ctx) == out


async def test_the_example_workflow_jumps_on_a_very_negative_ticket(spec: AgentSpec) -> None:
    doc = Workflows.load(str(WORKFLOWS))
    agent = await _agent(spec)
    ctx = AgentContext(site="lab", worker="test:1")
    angry = await agent.handle(_item(SupportTicket(body="I hate this, awful, furious!")), ctx)
    calm = await agent.handle(_item(SupportTicket(body="The app is slow today.")), ctx)
    item = _item(SupportTicket(body="-"), doc)
    jumped = next_step(item.with_output("sentiment", angry), "sentiment")
    assert jumped.step is not None
    assert jumped.step.name == "decide"
    assert [s.step.name for s in jumped.skipped] == ["plan", "validate"]
    assert "jumped from sentiment to decide" in jumped.skipped[0].reason
    walked = next_step(item.with_output("sentiment", calm), "sentiment")
    assert walked.step is not None
    assert walked.step.name == "plan"
    assert walked.skipped == ()


def test_the_example_workflows_check_against_the_registry(spec: AgentSpec) -> None:
    doc = Workflows.load(str(WORKFLOWS))
    support = doc.for_kind("support_ticket")
    assert support is not None
    assert [s.role for s in support.steps][:2] == ["retriever", "sentiment"]
    check_workflows(doc, Registry.load([AGENT]))
    with pytest.raises(WorkflowError, match=r"step 'sentiment': unknown role 'sentiment'"):
        check_workflows(doc, Registry.load())
    # a condition reading a field the output lacks is refused before publishing
    bad = WORKFLOWS.read_text("utf-8").replace("sentiment.compound", "sentiment.score")
    with pytest.raises(WorkflowError, match=r"Sentiment has no field 'score'"):
        check_workflows(Workflows.from_toml(bad), Registry.load([AGENT]))


def _copy_example(dest: Path) -> Path:
    """The example's sources in ``dest`` (a pip build writes build/ and *.egg-info
    next to them: never into the repository)."""
    return Path(
        shutil.copytree(
            EXAMPLE, dest, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
        )
    )


def test_pip_install_registers_the_entry_point(tmp_path: Path) -> None:
    """``pip install`` the example (offline, into a target folder) and the role appears
    in ``sitemesh agents`` with its entry point as origin; ``sitemesh workflows
    --check`` then needs no ``--agent``."""
    source = _copy_example(tmp_path / "custom_agent")
    target = tmp_path / "site-packages"
    subprocess.run(
        [
            sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
            "--no-build-isolation", "--no-index", "--target", str(target), str(source),
        ],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    env = {**process_environ(), "PYTHONPATH": str(target), "COLUMNS": "400"}
    out = subprocess.run(
        [sys.executable, "-m", "sitemesh", "agents", "--json"],
        env=env, check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    rows = {r["role"]: r for r in json.loads(out.stdout)}
    print(f"sitemesh agents: {sorted(rows)}; sentiment from {rows['sentiment']['origin']!r}")
    assert rows["sentiment"] == {
        "role": "sentiment",
        "input": ["support_ticket.v1"],
        "output": "sentiment.v1",
        "zones": ["edge"],
        "final": False,
        "origin": "sitemesh-sentiment 0.1.0, entry point sentiment",
        "description": "VADER sentiment of a ticket (Hutto & Gilbert 2014), offline",
    }
    assert rows["retriever"]["origin"].startswith("sitemesh 0.1.0, entry point")
    checked = subprocess.run(
        [sys.executable, "-m", "sitemesh", "workflows", str(WORKFLOWS), "--check"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stderr
    assert "valid workflows" in checked.stdout


# -- on a live site ---------------------------------------------------------------------


@dataclass
class LiveRun:
    settings: Settings
    js: JetStreamContext
    subjects: Subjects
    store: Store
    cli_env: dict[str, str]
    """The CLI's environment: the site's ``SITEMESH_*`` and ``PYTHONPATH`` to the example."""
    version: str
    ids: list[str]
    expected: dict[str, Any]
    """Task id -> the output the agent gives in this process for that ticket."""
    jumped: set[str]
    sentiment_pid: int


def _cli(
    env: Mapping[str, str], *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sitemesh", *args],
        env=dict(env), capture_output=True, text=True, timeout=120, check=check,
    )  # fmt: skip


def _head(path: Path, n: int, dest: Path) -> Path:
    dest.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:n]))
    return dest


async def _events(js: JetStreamContext, subjects: Subjects, prefix: str) -> list[Any]:
    msgs = await stream_messages(js, subjects.events_stream, subjects.all_events)
    events = [decode(m.data or b"", EVENT_DECODER) for m in msgs]
    return [e for e in events if e.task_id.startswith(prefix)]


@pytest.fixture(scope="module")
async def live(
    nats_server: NatsServer,
    tmp_path_factory: pytest.TempPathFactory,
    state_db: StateDatabases,
    spec: AgentSpec,
) -> AsyncIterator[LiveRun]:
    tmp = tmp_path_factory.mktemp("custom-agent")
    async with state_db.fresh(tmp, "custom") as db_url:
        async for run in _live(nats_server, tmp, db_url, spec):
            yield run


async def _live(
    nats_server: NatsServer, tmp: Path, db_url: str, spec: AgentSpec
) -> AsyncIterator[LiveRun]:
    site = "c" + uuid.uuid4().hex[:7]
    settings = process_site_settings(site, tmp, nats_server.client_url, db_url)
    subjects = Subjects(site)
    nc = await connect(nats_server.client_url, name="custom-agent", timeout_s=5)
    js = nc.jetstream()
    await provision(js, subjects, settings.bus)
    await migrate(settings.db_url)
    base_env = child_env(process_environ(), settings.to_env())
    base_env.pop("PYTHONPATH", None)  # the platform's workers never see the example
    sup = Supervisor(site, SITE_ROLES, env=base_env, log_dir=tmp / "logs", graceful_timeout_s=15)
    store = Store(settings.db_url)
    cli_env = base_env | {"PYTHONPATH": str(SRC), "COLUMNS": "400"}
    sentiment: asyncio.subprocess.Process | None = None
    await sup.start()
    try:
        await wait_ready([(js, sup)], timeout_s=120)  # every process registered ready

        # 1. check, then publish the example's workflows live, as this site's override
        _cli(cli_env, "workflows", str(WORKFLOWS), "--check", "--agent", AGENT)
        published = _cli(cli_env, "workflows", str(WORKFLOWS), "--agent", AGENT, "--site", site)
        version = Workflows.load(str(WORKFLOWS)).version
        assert f"published workflows {version}" in published.stdout, published.stdout
        router_log = tmp / "logs" / f"{site}-router-1.log"
        await assert_eventually(
            lambda: f"version={version!r}" in router_log.read_text("utf-8"),
            timeout_s=30,
            msg="the router did not apply the published workflows",
        )

        # 2. real tickets in; with no sentiment worker yet they wait on WORK_<site>
        prefix = "ca-"
        tickets = _head(TICKETS, N_TICKETS, tmp / "tickets.jsonl")
        out = _cli(cli_env, "publish", str(tickets), "--task-id-prefix", prefix)
        ids = [ln.strip() for ln in out.stdout.splitlines() if ln.startswith(prefix)]
        assert len(ids) == N_TICKETS
        stream, durable, _ = subjects.consumer_for("sentiment")

        async def waiting() -> bool:
            return bool((await js.consumer_info(stream, durable)).num_pending == N_TICKETS)

        await assert_eventually(waiting, timeout_s=60, msg="tickets not waiting for sentiment")
        assert not [e for e in await _events(js, subjects, prefix) if isinstance(e, FinalAnswer)]

        # 3. the agent's own worker process, found by import path
        log_path = tmp / "logs" / f"{site}-sentiment.log"
        with log_path.open("ab") as log_file:
            sentiment = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sitemesh", "worker", "--agent", AGENT, "--site", site,
                env={k: v for k, v in cli_env.items() if k != "COLUMNS"},
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                start_new_session=True,
            )  # fmt: skip

        async def answered() -> bool:
            return await store.answered_ids(prefix) == set(ids)

        await assert_eventually(answered, timeout_s=120, interval_s=0.1, msg="not all answered")

        agent = await _agent(spec)
        ctx = AgentContext(site=site, worker="test:1")
        doc = Workflows.load(str(WORKFLOWS))
        expected = {
            tid: await agent.handle(_item(t), ctx)
            for tid, t in zip(ids, _tickets(N_TICKETS), strict=True)
        }
        jumped = {tid for tid, out in expected.items() if _jumps(doc, out)}
        yield LiveRun(
            settings, js, subjects, store, cli_env, version, ids, expected, jumped, sentiment.pid
        )
    finally:
        if sentiment is not None and sentiment.returncode is None:
            sentiment.send_signal(signal.SIGTERM)
        sentiment_code = await sentiment.wait() if sentiment is not None else 0
        codes = await sup.stop()
        await WorkflowStore(js).remove_override(site)
        await store.close()
        await nc.drain()
    # SIGTERM: every worker, the example's included, finished its work and exited cleanly
    assert sentiment_code == 0
    assert all(code == 0 for code in codes.values()), codes


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_every_ticket_carries_its_sentiment(live: LiveRun) -> None:
    run = live
    events = await _events(run.js, run.subjects, "ca-")
    by_task: dict[str, list[Any]] = {tid: [] for tid in run.ids}
    for ev in events:
        by_task[ev.task_id].append(ev)
    labels: dict[str, int] = {}
    for tid, evs in by_task.items():
        accepted = [e for e in evs if isinstance(e, TaskAccepted)]
        assert [(a.workflow, a.workflow_version) for a in accepted] == [("support", run.version)]
        done = [e for e in evs if isinstance(e, StepCompleted)]
        (step,) = [e for e in done if e.step == "sentiment"]
        assert (step.role, step.output_type) == ("sentiment", "sentiment.v1")
        assert step.workflow_version == run.version
        assert step.worker.endswith(f":{run.sentiment_pid}"), "ran in the example's process"
        output = msgspec.json.decode(step.output, type=type(run.expected[tid]))
        assert output == run.expected[tid]
        assert output.label in ("negative", "neutral", "positive")
        assert step.summary == f"{output.label} {output.compound:+.2f}"
        labels[output.label] = labels.get(output.label, 0) + 1
        skipped = {e.step: e.reason for e in evs if isinstance(e, StepSkipped)}
        (final,) = [e for e in evs if isinstance(e, FinalAnswer)]
        assert (final.workflow, final.workflow_version) == ("support", run.version)
        if tid in run.jumped:
            assert [e.step for e in done] == ["retrieve", "sentiment", "decide"]
            assert set(skipped) == {"plan", "validate"}
            assert all("jumped from sentiment to decide" in r for r in skipped.values())
            assert final.outcome == "needs_human"
        else:
            assert [e.step for e in done] == ["retrieve", "sentiment", "plan", "validate", "decide"]
            assert not skipped
        # the recorder kept the output in the state database
        view = await run.store.get_task(tid)
        assert view is not None
        recorded = [e.payload for e in view.events if e.payload.get("step") == "sentiment"]
        assert recorded[0]["output"]["label"] == output.label
    print(
        f"{len(run.ids)} tickets on workflows {run.version}: sentiment {labels}; "
        f"{len(run.jumped)} jumped to decide (compound <= -0.75)"
    )
    assert run.jumped, "no ticket took the jump"
    assert set(run.ids) - run.jumped, "every ticket took the jump"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_show_and_trace_print_the_sentiment_output(live: LiveRun) -> None:
    run = live
    tid = sorted(run.jumped)[0]
    out = run.expected[tid]
    # field by field: PostgreSQL's JSONB keeps the recorded output, not its key order
    fields = [f'"{k}":{json.dumps(v)}' for k, v in msgspec.to_builtins(out).items()]
    shown = _cli(run.cli_env, "show", tid).stdout
    assert "sentiment.v1" in shown
    assert all(f in shown for f in fields), (fields, shown)
    assert f"{out.label} {out.compound:+.2f}" in shown
    assert "step_skipped.v1" in shown
    traced = _cli(run.cli_env, "trace", tid).stdout
    assert "step completed sentiment" in traced
    assert "sentiment.v1 {" in traced
    # trace elides free text (``analyzer`` has a space); labels and numbers stay
    elided = [f'"{k}":{json.dumps(elide_text(v))}' for k, v in msgspec.to_builtins(out).items()]
    assert all(f in traced for f in elided), (elided, traced)
    assert '"analyzer":"<text ' in traced
    assert "step skipped plan" in traced
    print(f"show/trace {tid}: sentiment.v1 {','.join(fields)}")


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_replay_reproduces_the_sentiment_outputs(live: LiveRun) -> None:
    run = live
    picked = [sorted(run.jumped)[0], sorted(set(run.ids) - run.jumped)[0]]
    args = ["replay", "--task", picked[0], "--task", picked[1], "--agent", AGENT, "--keep"]
    res = _cli(run.cli_env, *args, check=False)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 match" in res.stdout, res.stdout
    assert "diff empty" in res.stdout
    found = re.search(r"replay (\S+): 2 task\(s\)", res.stdout)
    assert found is not None, res.stdout
    sandbox = Subjects.sandbox(run.subjects.site, found[1])
    try:
        replayed = (await read_outcomes(run.js, sandbox, picked)).outcomes()
    finally:
        await delete_sandbox(run.js, sandbox, run.settings.bus)
    for tid in picked:
        want = msgspec.json.decode(msgspec.json.encode(run.expected[tid]))
        assert replayed[tid]["status"] == "answered"
        assert replayed[tid]["steps"]["sentiment"] == want
        assert replayed[tid]["summaries"]["sentiment"] == f"{want['label']} {want['compound']:+.2f}"
    assert set(replayed[picked[0]]["skipped"]) == {"plan", "validate"}
    assert "skipped" not in replayed[picked[1]]
    print(f"replay {found[1]}: {picked} match, sentiment outputs reproduced")


def test_no_file_under_sitemesh_names_the_example() -> None:
    """The platform knows the example only through the registry and the workflows."""
    files = [p for p in (ROOT / "sitemesh").rglob("*") if p.suffix in (".py", ".toml")]
    hits = [p for p in files if "sitemesh_sentiment" in p.read_text("utf-8")]
    assert hits == []
