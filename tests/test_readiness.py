"""Readiness: the worker registry on the bus, the HTTP probes, waiting, ``sitemesh status``.

In-process tests use the real ``nats-server`` of the session; the ``slow`` ones start
``sitemesh worker`` processes (the retriever, and ``tests/_workers/gated_agent.py``,
whose ``setup()`` waits for a file the test creates).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats.errors
import pytest
from nats.js import JetStreamContext
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from sitemesh.bus import (
    NatsServer,
    Outbound,
    Publisher,
    Subjects,
    find_nats_server,
    free_port,
    provision,
)
from sitemesh.cli._state_cmds import EXIT_OK, show_status
from sitemesh.config import BusSettings, DbSettings, HealthSettings, NatsSettings, Settings
from sitemesh.errors import NotReadyError
from sitemesh.runtime import (
    HealthServer,
    WorkerPresence,
    WorkerRecord,
    presence_key,
    provision_workers,
    read_worker,
    read_workers,
    role_queues,
    wait_ready,
    workers_bucket,
)
from sitemesh.topology import (
    Security,
    Topology,
    TopologySpec,
    generate_creds,
    generate_dev_certs,
)
from sitemesh.topology._permissions import WORKERS_BUCKET_PREFIX as TOPOLOGY_MIRROR
from tests.conftest import assert_eventually

ROOT = Path(__file__).resolve().parents[1]
FAST = HealthSettings(heartbeat_s=0.1, ttl_s=2)




class _State:
    """A stand-in for a process's :class:`sitemesh.runtime.Readiness`."""

    def __init__(self) -> None:
        self.state = "loading"

    def describe(self) -> dict[str, object]:
        return {"role": "test", "state": self.state}


# -- the HTTP probes ---------------------------------------------------------------------


async def test_probes_follow_the_state_and_take_more_routes() -> None:
    state = _State()

    async def metrics(request: Request) -> Response:
        return PlainTextResponse("up 1\n")

    server = HealthServer(state, host="127.0.0.1", port=0)
    server.add_route("/metrics", metrics)
    assert await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert (await http.get("/healthz")).status_code == 200
            loading = await http.get("/readyz")
            assert (loading.status_code, loading.json()["state"]) == (503, "loading")
            state.state = "ready"
            assert (await http.get("/readyz")).status_code == 200
            assert (await http.get("/metrics")).text == "up 1\n"
            state.state = "stopping"
            assert (await http.get("/readyz")).status_code == 503
            assert (await http.get("/healthz")).status_code == 200
        with pytest.raises(RuntimeError):
            server.add_route("/late", metrics)
    finally:
        await server.shutdown()
        await server.shutdown()  # idempotent
    assert not server.running


async def test_a_port_in_use_leaves_the_process_without_an_endpoint() -> None:
    first = HealthServer(_State(), host="127.0.0.1", port=0)
    assert await first.start()
    try:
        second = HealthServer(_State(), host="127.0.0.1", port=first.port)
        assert not await second.start()  # logged, not raised
        assert not second.running
        await second.shutdown()
    finally:
        await first.shutdown()


# -- the registry ------------------------------------------------------------------------


def test_key_layout_and_mirrors() -> None:
    assert workers_bucket("eu1") == "sitemesh_workers_eu1"
    assert presence_key("planner", "node-1.example_com", 42) == "planner.node-1-example-com_42"
    assert workers_bucket("eu1").startswith(TOPOLOGY_MIRROR)


async def test_a_worker_registers_beats_and_leaves(js: JetStreamContext, site: str) -> None:
    record = WorkerRecord.now(site=site, role="planner", origin="test")
    presence = WorkerPresence(js, record, FAST)
    assert await presence.start()
    stored = await read_worker(js, site, presence.key)
    assert stored is not None
    assert (stored.role, stored.pid, stored.state) == ("planner", os.getpid(), "ready")
    first_beat = stored.heartbeat_at
    assert first_beat is not None

    async def beaten() -> bool:
        again = await read_worker(js, site, presence.key)
        beat = again.heartbeat_at if again is not None else None
        return beat is not None and beat > first_beat

    await assert_eventually(beaten, timeout_s=5)
    await presence.stopping()
    stopping = await read_worker(js, site, presence.key)
    assert stopping is not None
    assert stopping.state == "stopping"
    await presence.shutdown()
    await presence.shutdown()  # idempotent
    assert await read_worker(js, site, presence.key) is None
    assert await read_workers(js, site) == []


async def test_a_silent_worker_expires_with_the_bucket_ttl(js: JetStreamContext, site: str) -> None:
    kv = await provision_workers(js, site, FAST)
    record = WorkerRecord.now(site=site, role="retriever")
    await kv.put(record.key, msgspec.json.encode(record))  # a process that then died
    assert [r.key for r in await read_workers(js, site)] == [record.key]

    async def gone() -> bool:
        return await read_worker(js, site, record.key) is None

    await assert_eventually(gone, timeout_s=10, interval_s=0.2)


async def test_registry_failures_never_raise(js: JetStreamContext, site: str) -> None:
    record = WorkerRecord.now(site=site, role="planner")
    presence = WorkerPresence(js, record, FAST, create_bucket=False)  # nobody provisioned it
    assert not await presence.start()
    await presence.stopping()
    await presence.shutdown()
    assert await read_workers(js, site) == []


class _Procs:
    def __init__(self, site: str, roles: list[str], pids: Mapping[str, list[int]]) -> None:
        self.site, self.roles, self.pids = site, roles, dict(pids)


async def test_wait_ready_names_what_is_missing_and_returns_once_registered(
    js: JetStreamContext, site: str
) -> None:
    me = os.getpid()
    procs = _Procs(site, ["recorder", "planner", "planner"], {"recorder": [me], "planner": [me]})
    seen: list[list[str]] = []
    with pytest.raises(NotReadyError) as err:
        await wait_ready([(js, procs)], timeout_s=0.3, on_progress=seen.append)
    assert err.value.missing == ["recorder", "planner x2"]
    assert seen[-1] == ["recorder", "planner x2"]
    presences = [
        WorkerPresence(js, WorkerRecord.now(site=site, role=role), FAST)
        for role in ("recorder", "planner")
    ]
    for p in presences:
        await p.start()
    try:
        with pytest.raises(NotReadyError) as err:  # the second planner is not running
            await wait_ready([(js, procs)], timeout_s=0.3)
        assert err.value.missing == ["planner"]
        procs.roles = ["recorder", "planner"]
        await wait_ready([(js, procs)], timeout_s=10, on_progress=seen.append)
        assert seen[-1] == []
    finally:
        for p in presences:
            await p.shutdown()


@pytest.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    """A hub and site eu1 with per-role NKey identities and TLS (as ``sitemesh creds``)."""
    root = tmp_path_factory.mktemp("secure")
    generate_dev_certs(root / "certs", ["eu1"])
    generate_creds(root / "creds", ["eu1"])
    security = Security.from_dirs(["eu1"], certs_dir=root / "certs", creds_dir=root / "creds")
    spec = TopologySpec.for_sites(["eu1"], root / "topology")
    bus = BusSettings(max_bytes=4 * 1024 * 1024, duplicate_window_s=120)
    async with Topology(spec, binary=find_nats_server(None), bus=bus, security=security) as t:
        yield t


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("server", "role"), [("eu1", "planner"), ("eu1", "recorder"),
                                              ("hub", "synthesiser")])  # fmt: skip
async def test_identities_register_their_own_record_only(
    secured: Topology, server: str, role: str
) -> None:
    prov = await secured.connect_identity(server, "provisioner")
    await provision_workers(prov.jetstream(), server)  # the provisioner creates the bucket
    nc = await secured.connect_identity(server, role)
    js = nc.jetstream(timeout=1)
    presence = WorkerPresence(js, WorkerRecord.now(site=server, role=role), create_bucket=False)
    assert await presence.start()
    assert await read_worker(js, server, presence.key) is not None  # its own, read back
    op = await secured.connect_identity(server, "operator")
    assert presence.key in [r.key for r in await read_workers(op.jetstream(), server)]
    other = f"$KV.{workers_bucket(server)}.router.somewhere_1"
    with pytest.raises(nats.errors.TimeoutError):  # another role's record: refused
        await js.publish(other, b"{}")
    await presence.shutdown()
    assert presence.key not in [r.key for r in await read_workers(op.jetstream(), server)]


# -- sitemesh status ---------------------------------------------------------------------


def _console() -> Console:
    return Console(record=True, width=220, color_system=None, force_terminal=False)


def _settings(tmp_path: Path, url: str, site: str = "eu1") -> Settings:
    return Settings(
        site=site,
        state_dir=tmp_path / ".sitemesh",
        nats=NatsSettings(url=url),
        db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'missing.db'}"),
    )


async def test_status_shows_work_waiting_for_a_role_without_workers(
    js: JetStreamContext,
    site: str,
    bus_settings: BusSettings,
    nats_server: NatsServer,
    tmp_path: Path,
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings, roles=("router", "retriever", "sentiment"))
    for i in range(3):  # a workflow's step for a role nobody runs yet
        await js.publish(s.work("sentiment"), b"{}", headers={"Nats-Msg-Id": f"s{i}"})
    await js.publish(s.work("orphan"), b"{}")  # a role without even a consumer
    await js.publish(s.work("retriever"), b"{}")
    presence = WorkerPresence(js, WorkerRecord.now(site=site, role="retriever"), FAST)
    await presence.start()
    try:
        queues = {q.role: q for q in await role_queues(js, site)}
        # positive control: the role with a worker is seen ready, and not flagged
        assert (queues["retriever"].ready, queues["retriever"].pending) == (1, 1)
        assert not queues["retriever"].stranded
        assert (queues["sentiment"].ready, queues["sentiment"].pending) == (0, 3)
        assert queues["sentiment"].stranded
        assert (queues["orphan"].consumer, queues["orphan"].pending) == (False, 1)
        out = _console()
        assert await show_status(_settings(tmp_path, nats_server.client_url, site), out) == EXIT_OK
        text = out.export_text()
    finally:
        await presence.shutdown()
    assert "no tasks recorded yet" in text  # the database part is still there
    assert "workers and queued work" in text
    assert (
        "3 tasks waiting for role sentiment: no worker is running; start one with "
        "`sitemesh worker sentiment` or `--agent module:Class`"
    ) in text
    assert "1 task waiting for role orphan" in text
    assert "waiting for role retriever" not in text


async def test_status_without_nats_prints_the_database_and_a_note(tmp_path: Path) -> None:
    out = _console()
    assert await show_status(_settings(tmp_path, "nats://127.0.0.1:1"), out) == EXIT_OK
    text = out.export_text()
    assert "no tasks recorded yet" in text
    assert "workers: NATS unreachable at nats://127.0.0.1:1" in text
    assert "Traceback" not in text


# -- worker processes --------------------------------------------------------------------


class Workers:
    """``sitemesh worker`` processes started by a test; killed at teardown."""

    def __init__(self, url: str, site: str, tmp: Path) -> None:
        self.url, self.site, self.tmp = url, site, tmp
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SITEMESH_")}
        full = base | {
            "SITEMESH_NATS_URL": self.url,
            "SITEMESH_SITE": self.site,
            "SITEMESH_STATE_DIR": str(self.tmp / ".sitemesh"),
            "SITEMESH_BUS_MAX_BYTES": str(8 * 1024 * 1024),
            "SITEMESH_HEALTH_HEARTBEAT_S": "0.5",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        log = (self.tmp / f"worker-{len(self.started)}.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "sitemesh", "worker", *args],
            env=full, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        log.close()
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def workers(nats_server: NatsServer, site: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(nats_server.client_url, site, tmp_path)
    yield w
    w.close()


async def _record(js: JetStreamContext, site: str, role: str, pid: int) -> WorkerRecord | None:
    return await read_worker(js, site, presence_key(role, socket.gethostname(), pid))


async def _stops_cleanly(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() == 0


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_retriever_registers_once_loaded_and_leaves_on_sigterm(
    js: JetStreamContext, site: str, workers: Workers
) -> None:
    proc = workers.start("retriever")

    async def ready() -> WorkerRecord | None:
        r = await _record(js, site, "retriever", proc.pid)
        return r if r is not None and r.state == "ready" else None

    record = await assert_eventually(ready, timeout_s=120, interval_s=0.1)
    assert (record.role, record.site, record.pid) == ("retriever", site, proc.pid)
    assert "entry point retriever" in record.origin
    assert record.ready_at >= record.started_at
    # registered means taking work: its pull request is waiting on the consumer
    stream, durable, _ = Subjects(site).consumer_for("retriever")

    async def pulling() -> bool:
        return ((await js.consumer_info(stream, durable)).num_waiting or 0) > 0

    await assert_eventually(pulling, timeout_s=30)
    proc.send_signal(signal.SIGTERM)

    async def gone() -> bool:
        return await _record(js, site, "retriever", proc.pid) is None

    await assert_eventually(gone, timeout_s=30)
    await assert_eventually(lambda: _stops_cleanly(proc), timeout_s=30)


def _gated(workers: Workers, gate: Path, port: int) -> subprocess.Popen[bytes]:
    """The gated agent's worker, loaded once ``gate`` exists, its probes on ``port``."""
    return workers.start(
        "--agent", "tests._workers.gated_agent:GatedAgent",
        env={"SITEMESH_HEALTH_PORT": str(port), "GATED_AGENT_GATE": str(gate)},
    )  # fmt: skip


async def _answers(http: httpx.AsyncClient, path: str, code: int) -> Any:
    """The response to ``GET path`` if it has status ``code``, else ``None``."""
    try:
        r = await http.get(path)
    except httpx.TransportError:
        return None
    return r if r.status_code == code else None


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_readyz_is_503_until_the_agent_has_loaded(
    js: JetStreamContext, site: str, workers: Workers, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    port = free_port()
    proc = _gated(workers, gate, port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:

        def answers(path: str, code: int) -> Any:
            return _answers(http, path, code)

        # positive control: the process is up and serving, and its agent is in setup()
        await assert_eventually(lambda: answers("/healthz", 200), timeout_s=60, interval_s=0.1)
        loading = await http.get("/readyz")
        assert loading.status_code == 503
        assert loading.json()["state"] == "loading"
        assert await _record(js, site, "gated", proc.pid) is None  # not on the bus either
        gate.touch()
        ready = await assert_eventually(lambda: answers("/readyz", 200), timeout_s=60)
        assert ready.json() | {"uptime_s": 0} == {
            "role": "gated", "site": site, "pid": proc.pid, "state": "ready", "uptime_s": 0,
        }  # fmt: skip
        record = await assert_eventually(lambda: _record(js, site, "gated", proc.pid))
        assert "tests._workers.gated_agent:GatedAgent" in record.origin
    proc.send_signal(signal.SIGTERM)
    await assert_eventually(lambda: _stops_cleanly(proc), timeout_s=30)
    assert await _record(js, site, "gated", proc.pid) is None


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_worker_serves_prometheus_metrics_next_to_its_probes(
    js: JetStreamContext, site: str, workers: Workers, tmp_path: Path
) -> None:
    """``/metrics`` of a running worker with no collector configured
    (``telemetry.exporter`` ``none``): the runtime's instruments in the Prometheus text
    format, labelled with the role; a message it dead-letters shows up in them."""
    gate = tmp_path / "gate"
    gate.touch()
    port = free_port()
    proc = _gated(workers, gate, port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
        await assert_eventually(
            lambda: _answers(http, "/readyz", 200), timeout_s=60, interval_s=0.1
        )
        idle = await http.get("/metrics")
        assert idle.status_code == 200
        assert idle.headers["content-type"].startswith("text/plain; version=")
        assert "process_cpu_seconds_total" in idle.text  # the process's own series
        # counted from the start at 0, so rate() and alerts work before the first one
        assert _value(idle.text, "sitemesh_dead_letters_total", role="gated") == 0
        assert _value(idle.text, "sitemesh_redeliveries_total", role="gated") == 0
        subjects = Subjects(site)
        await Publisher(js).publish(
            Outbound(subjects.work("gated"), b'{"not": "a work item"}', "m-1", task_id="m-1")
        )

        async def counted() -> str | None:
            text = (await http.get("/metrics")).text
            return text if _value(text, "sitemesh_dead_letters_total", role="gated") else None

        text = await assert_eventually(counted, timeout_s=30)
        assert _value(text, "sitemesh_dead_letters_total", role="gated") == 1
        assert _value(text, "sitemesh_dead_letters_total", role="gated",
                      error_type="SchemaError") == 1  # by reason  # fmt: skip
        assert _value(text, "messaging_process_duration_seconds_count", role="gated") == 1
        assert _value(text, "sitemesh_hop_latency_seconds_count", role="gated") == 1
        consumed = _value(
            text, "messaging_client_consumed_messages_total", role="gated",
            sitemesh_outcome="dead_letter",
        )  # fmt: skip
        assert consumed == 1
        assert _value(text, "sitemesh_queue_depth", role="gated") == 0
        # the dead letter and its failure event went out through the publisher
        assert (_value(text, "messaging_client_sent_messages_total") or 0) >= 2
    proc.send_signal(signal.SIGTERM)
    await assert_eventually(lambda: _stops_cleanly(proc), timeout_s=30)


WORKFLOWS = """
version = "test asker"

[[workflow]]
name = "support"
kinds = ["support_ticket"]

  [[workflow.step]]
  name = "ask"
  role = "asker"
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_a_worker_shows_its_model_breaker_on_metrics_and_in_its_health_report(
    js: JetStreamContext, site: str, workers: Workers, tmp_path: Path
) -> None:
    """A worker whose site model refuses connections: ``sitemesh_breaker_state`` on its
    ``/metrics`` goes from 0 (closed) to 2 (open) after two failed calls, and its health
    report on the bus (what the console's health page shows) says so, with the counts."""
    from sitemesh.runtime import read_tool_health
    from sitemesh.schemas import Envelope, PolicyDecision, SupportTicket, encode, utcnow
    from sitemesh.workflows import Workflows, new_item

    port, dead = free_port(), free_port()  # nothing listens on ``dead``
    proc = workers.start(
        "--agent", "tests._workers.model_agent:ModelAgent",
        env={
            "SITEMESH_HEALTH_PORT": str(port),
            "SITEMESH_MODELS_VLLM_BASE_URL": f"http://127.0.0.1:{dead}/v1",
            "SITEMESH_MODELS_SITE_CHAIN": '["vllm/tiny"]',
            "SITEMESH_MODELS_MAX_ATTEMPTS": "1",
            "SITEMESH_MODELS_BREAKER_FAILURES": "2",
            "SITEMESH_MODELS_BREAKER_RESET_S": "600",
            "SITEMESH_TOOLS_HEALTH_INTERVAL_S": "0.3",
        },
    )  # fmt: skip
    breaker = {"sitemesh_dependency_kind": "model", "sitemesh_dependency": "vllm"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=2) as http:
        await assert_eventually(
            lambda: _answers(http, "/readyz", 200), timeout_s=60, interval_s=0.1
        )
        idle = (await http.get("/metrics")).text
        assert _value(idle, "sitemesh_breaker_state", role="asker", **breaker) == 0
        (tmp_path / "wf.toml").write_text(WORKFLOWS)
        flows = Workflows.load(str(tmp_path / "wf.toml"))
        publisher = Publisher(js)
        for i in range(3):
            now = utcnow()
            env = Envelope(task_id=f"ask-{i}", site=site, kind="support_ticket",
                           submitted_at=now, accepted_at=now)  # fmt: skip
            decision = PolicyDecision(task_id=f"ask-{i}", action="pin_edge", rule_id="r",
                                      policy_version="p", data_class="internal")  # fmt: skip
            item = new_item(env, SupportTicket(body="hello"), decision, flows)
            await publisher.publish(Outbound(Subjects(site).work("asker"), encode(item),
                                             f"ask-{i}", task_id=f"ask-{i}"))  # fmt: skip

        async def opened() -> str | None:
            text = (await http.get("/metrics")).text
            state = _value(text, "sitemesh_breaker_state", role="asker", **breaker)
            return text if state == 2 else None

        await assert_eventually(opened, timeout_s=60)

        async def reported() -> Any:
            for r in await read_tool_health(js, site):
                models = {m.provider: m for m in r.models}
                if r.role == "asker" and r.pid == proc.pid and models["vllm"].calls == 3:
                    return models["vllm"]
            return None

        vllm = await assert_eventually(reported, timeout_s=30)
        # items run concurrently: a third call may pass before the breaker opens
        assert (vllm.breaker, vllm.failed + vllm.circuit_open, vllm.ok) == ("open", 3, 0)
        assert vllm.failed >= 2
        assert vllm.last_error.startswith("ModelUnavailable")
    proc.send_signal(signal.SIGTERM)
    await assert_eventually(lambda: _stops_cleanly(proc), timeout_s=30)


def _value(text: str, name: str, *, role: str | None = None, **labels: str) -> float | None:
    """The sum of series ``name`` in a Prometheus text page whose labels include
    ``sitemesh_role=role`` and ``labels``; ``None`` if there is none."""
    want = {**({"sitemesh_role": role} if role else {}), **labels}
    found: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in want.items()):
                found = (found or 0.0) + sample.value
    return found
