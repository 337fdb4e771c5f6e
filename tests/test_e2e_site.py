"""One site end to end: every role a separate OS process on a real nats-server,
real tickets and alerts in through ``sitemesh publish``, answers and dead letters
out, recorded in the state database (SQLite, or PostgreSQL with SITEMESH_TEST_DB)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from nats.js.client import JetStreamContext

from sitemesh.bus import NatsServer, Subjects, connect, provision
from sitemesh.cli._run import site_roles
from sitemesh.config import Settings
from sitemesh.edge_node import Supervisor, child_env, process_environ
from sitemesh.runtime import wait_ready
from sitemesh.schemas import EVENT_DECODER, FinalAnswer, decode
from sitemesh.state import Store, migrate
from tests._sites import process_site_settings
from tests.conftest import (
    StateDatabases,
    assert_eventually,
    stream_messages,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

DATA = Path(__file__).resolve().parents[1] / "examples" / "data"
MANIFEST = {
    k: v
    for k, v in json.loads((DATA / "malformed" / "MANIFEST.json").read_text("utf-8")).items()
    if not k.startswith("_")
}

CLI_TIMEOUT_S = 180
"""Seconds a ``sitemesh`` subprocess may take: it imports the whole platform from source
(no bytecode cache under PYTHONDONTWRITEBYTECODE), over a minute next to other test
workers on 2 cores."""


@dataclass
class SiteRun:
    settings: Settings
    js: JetStreamContext
    sup: Supervisor
    store: Store
    subjects: Subjects
    tmp: Path


def _publish(run: SiteRun, files: list[Path], prefix: str, raw: str | None = None) -> list[str]:
    """``sitemesh publish`` as a user runs it; returns the printed task ids."""
    args = [
        sys.executable,
        "-m",
        "sitemesh",
        "publish",
        *map(str, files),
        "--task-id-prefix",
        prefix,
    ]
    if raw:
        args += ["--raw", raw]
    env = child_env(process_environ(), run.settings.to_env()) | {"COLUMNS": "400"}
    out = subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=True
    )
    return [ln.strip() for ln in out.stdout.splitlines() if ln.startswith(prefix)]


def _head(path: Path, n: int, dest: Path) -> Path:
    dest.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:n]))
    return dest


async def _final_answers(run: SiteRun) -> Counter[str]:
    msgs = await stream_messages(run.js, run.subjects.events_stream, run.subjects.all_events)
    counts: Counter[str] = Counter()
    for m in msgs:
        ev = decode(m.data or b"", EVENT_DECODER)
        if isinstance(ev, FinalAnswer):
            counts[ev.task_id] += 1
    return counts


@pytest.fixture(scope="module")
async def site_run(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory, state_db: StateDatabases
) -> AsyncIterator[SiteRun]:
    tmp = tmp_path_factory.mktemp("site")
    async with state_db.fresh(tmp, "e2e") as db_url:
        async for run in _site_run(nats_server, tmp, db_url):
            yield run


async def _site_run(nats_server: NatsServer, tmp: Path, db_url: str) -> AsyncIterator[SiteRun]:
    site = "e" + uuid.uuid4().hex[:7]
    settings = process_site_settings(site, tmp, nats_server.client_url, db_url)
    subjects = Subjects(site)
    nc = await connect(nats_server.client_url, name="e2e", timeout_s=5)
    js = nc.jetstream()
    await provision(js, subjects, settings.bus)
    await migrate(settings.db_url)
    roles = [*site_roles(1), "planner"]  # two planner processes share the planner's work
    sup = Supervisor(
        site,
        roles,
        env=child_env(process_environ(), settings.to_env()),
        log_dir=tmp / "logs",
        graceful_timeout_s=15,
    )
    store = Store(settings.db_url)
    await sup.start()
    try:
        await wait_ready([(js, sup)], timeout_s=300)  # every process registered ready
        yield SiteRun(settings, js, sup, store, subjects, tmp)
    finally:
        codes = await sup.stop()
        await store.close()
        await nc.drain()
    # SIGTERM: every worker finished its in-flight work and exited cleanly
    assert all(code == 0 for code in codes.values()), codes


async def test_tickets_alerts_and_malformed_tasks(site_run: SiteRun, tmp_path: Path) -> None:
    run = site_run
    prefix = "p1-"
    tickets = _head(DATA / "tickets.jsonl", 25, tmp_path / "tickets.jsonl")
    alerts = _head(DATA / "telemetry_alerts.jsonl", 4, tmp_path / "alerts.jsonl")
    valid = set(_publish(run, [tickets, alerts], prefix))
    assert len(valid) == 29
    malformed: dict[str, str] = {}
    for kind in ("support_ticket", "telemetry_alert"):
        files = [DATA / "malformed" / n for n, spec in MANIFEST.items() if spec["kind"] == kind]
        for tid in _publish(run, files, prefix, raw=kind):
            malformed[tid] = MANIFEST[tid.removeprefix(prefix) + ".json"]["field"]
    assert len(malformed) == len(MANIFEST)
    # a task from a plain NATS client: no SDK, no headers, id in the body
    body = {"type": "support_ticket.v1", "task_id": f"{prefix}raw-nats", "body": "VPN is down"}
    await run.js.publish(run.subjects.task("support_ticket"), json.dumps(body).encode())
    valid.add(f"{prefix}raw-nats")

    everything = valid | malformed.keys()
    await assert_eventually(
        lambda: _ended_all(run.store, prefix, everything),
        timeout_s=120,
        msg="not every task ended",
    )
    assert await run.store.answered_ids(prefix) == valid
    assert await run.store.failed_ids(prefix) == set(malformed)
    dead = {d.task_id: d for d in await run.store.dead_letters(limit=100, task_id_prefix=prefix)}
    for tid, field in malformed.items():
        assert dead[tid].field == field, (tid, dead[tid].reason)
        assert dead[tid].original, "the original bytes are kept"
    answers = await _final_answers(run)
    assert {t for t in answers if t.startswith(prefix)} == valid
    assert all(n == 1 for t, n in answers.items() if t.startswith(prefix))

    view = await run.store.get_task(f"{prefix}tickets-1")
    assert view is not None
    assert view.decision is not None
    roles = [e.role for e in view.events if e.type == "step_completed.v1"]
    assert roles == ["triage", "retriever", "planner", "validator", "escalation"]  # "support"

    env = child_env(process_environ(), run.settings.to_env()) | {"COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "sitemesh", "show", f"{prefix}tickets-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=True,
    )
    assert "validator" in shown.stdout
    assert "pin_edge" in shown.stdout
    status = subprocess.run(
        [sys.executable, "-m", "sitemesh", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=True,
    )
    assert "answered" in status.stdout


async def _ended_all(store: Store, prefix: str, wanted: set[str]) -> bool:
    return wanted <= await store.ended_ids(prefix)


async def test_sigkilled_workers_lose_nothing(site_run: SiteRun, tmp_path: Path) -> None:
    """SIGKILL the retriever and both planners mid-stream: the supervisor restarts them,
    unacked work is redelivered, and every task gets exactly one final answer.

    The planners are stopped (SIGSTOP) before the tickets are published, so the work
    piles up at them (fetched and unacked, or still queued) and none is answered
    before the kill, however fast the rest of the site is."""
    run = site_run
    prefix = "p2-"
    tickets = _head(DATA / "tickets.jsonl", 120, tmp_path / "tickets.jsonl")
    before = run.sup.pids
    for pid in before["planner"]:
        os.kill(pid, signal.SIGSTOP)
    valid = set(_publish(run, [tickets], prefix))

    async def at_the_planners() -> bool:
        info = await run.js.consumer_info(run.subjects.work_stream, "planner")
        return (info.num_pending or 0) + (info.num_ack_pending or 0) >= 3

    await assert_eventually(at_the_planners, timeout_s=60, interval_s=0.05)
    victims = before["retriever"] + before["planner"]
    for pid in victims:
        os.kill(pid, signal.SIGKILL)  # a stopped process dies too
    assert len(await run.store.answered_ids(prefix)) < len(valid), "killed too late"
    await assert_eventually(
        lambda: _ended_all(run.store, prefix, valid), timeout_s=180, msg="tasks lost"
    )
    # every task can end before the restarted retriever is back (it loads and calibrates
    # its knowledge bases first, and all tickets may have passed retrieval already)
    await assert_eventually(
        lambda: "retriever" in run.sup.pids and len(run.sup.pids.get("planner", [])) == 2,
        timeout_s=120,
        msg="victims not restarted",
    )
    after = run.sup.pids
    assert not set(victims) & set(after["retriever"] + after["planner"]), "restarted"
    assert await run.store.answered_ids(prefix) == valid
    answers = await _final_answers(run)
    assert all(answers[t] == 1 for t in valid), {t: answers[t] for t in valid if answers[t] != 1}
    # the restarted processes are back at work (and so stop cleanly at teardown)
    await wait_ready([(run.js, run.sup)], timeout_s=300)  # their new pids, not the old records
