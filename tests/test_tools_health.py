"""Tool health (counters, latency, breaker state), its spans and metrics, its publication
in ``sitemesh_tools_<site>`` and ``sitemesh tools``; the recorded calls in the state
database."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats.errors
import pytest
from nats.js import JetStreamContext
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from rich.console import Console
from typer.testing import CliRunner

from sitemesh.agents import AgentResources
from sitemesh.bus import find_nats_server
from sitemesh.cli import app
from sitemesh.cli._tools_cmds import tools_health, tools_list
from sitemesh.config import (
    BusSettings,
    DbSettings,
    NatsSettings,
    Settings,
    TelemetrySettings,
    load_settings,
)
from sitemesh.models import CircuitBreaker
from sitemesh.runtime import (
    TOOLS_BUCKET_PREFIX,
    ToolHealthPublisher,
    provision_tool_health,
    read_tool_health,
    tools_bucket,
)
from sitemesh.runtime._tools import health_source, model_health_source
from sitemesh.state import Store
from sitemesh.telemetry import setup_telemetry, shutdown_telemetry
from sitemesh.tools import (
    StoreToolRecorder,
    ToolCall,
    ToolRegistry,
    ToolResponse,
    ToolSpec,
    ToolUnavailable,
)
from sitemesh.tools._health import HealthTracker, TokenBucket
from sitemesh.topology import Security, Topology, TopologySpec, generate_creds, load_creds
from sitemesh.topology._permissions import TOOLS_BUCKET_PREFIX as TOPOLOGY_MIRROR
from tests._mcp import inproc
from tests._mcp.helpers import FakeTime, NoPii
from tests._mcp.http_server import HttpState, serve

pytestmark = pytest.mark.timeout(60)

PY = ToolSpec(name="p", transport="python", target="tests._mcp.inproc:server")


def test_latency_percentiles_are_nearest_rank_and_the_mean_is_an_ewma() -> None:
    t = FakeTime()
    tracker = HealthTracker("p.plain", "p", "python", CircuitBreaker("p.plain", clock=t.clock))
    for ms in (10, 20, 30, 40, 50, 60, 70, 80, 90, 100):
        tracker.answered(ms)
    tracker.error("ToolTimeout", "timed out after 1 s", timeout=True)
    h = tracker.snapshot()
    assert (h.latency_ms_p50, h.latency_ms_p95) == (50, 100)
    ewma = 10.0
    for ms in (20, 30, 40, 50, 60, 70, 80, 90, 100):
        ewma = 0.2 * ms + 0.8 * ewma
    assert h.latency_ms_ewma == pytest.approx(ewma, abs=1e-3)
    assert (h.ok, h.errors, h.timeouts, h.breaker) == (10, 1, 1, "closed")
    assert [(e.kind, e.reason) for e in h.last_errors] == [("ToolTimeout", "timed out after 1 s")]


def test_the_token_bucket_refills_at_its_rate() -> None:
    t = FakeTime()
    bucket = TokenBucket(2, 1.0, clock=t.clock)
    assert (bucket.take(), bucket.take()) == (0.0, 0.0)
    assert bucket.take() == pytest.approx(0.5)
    t.now += 0.5
    assert bucket.take() == 0.0


@pytest.fixture
def spans() -> Iterator[tuple[InMemorySpanExporter, InMemoryMetricReader]]:
    shutdown_telemetry()
    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    assert setup_telemetry(TelemetrySettings(), span_exporter=exporter, metric_reader=reader)
    yield exporter, reader
    shutdown_telemetry()


def _metric(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, object], float]]:
    data = reader.get_metrics_data()
    assert data is not None
    out = []
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        out.append(
                            (
                                dict(p.attributes or {}),
                                getattr(p, "value", None) or getattr(p, "count", 0),
                            )
                        )
    return out


async def test_each_attempt_is_a_span_with_tool_metrics(
    spans: tuple[InMemorySpanExporter, InMemoryMetricReader],
) -> None:
    exporter, reader = spans
    state = HttpState(limit_next=1, retry_after="0")
    t = FakeTime()
    async with serve(state) as url:
        spec = ToolSpec(name="h", transport="http", url=url, retries=0)
        async with ToolRegistry([spec], scanner=NoPii(), sleep=t.sleep, clock=t.clock) as tools:
            await tools.call("h.ping", {}, task_id="a", step="s", call_index=0)
            state.fail_status = 503
            with pytest.raises(ToolUnavailable):
                await tools.call("h.ping", {}, task_id="a", step="s", call_index=1)
    ours = [s for s in exporter.get_finished_spans() if s.name == "execute_tool h.ping"]
    assert [(s.attributes or {}).get("error.type") for s in ours] == [
        "ToolRateLimited",
        None,
        "ToolUnavailable",
    ]
    assert all((s.attributes or {})["gen_ai.tool.name"] == "h.ping" for s in ours)
    assert [v for _, v in _metric(reader, "sitemesh.tool.rate_limited")] == [1]
    errors = {a["error.type"]: v for a, v in _metric(reader, "sitemesh.tool.errors")}
    assert errors == {"ToolRateLimited": 1, "ToolUnavailable": 1}
    assert sum(v for _, v in _metric(reader, "sitemesh.tool.duration")) == 3


async def test_calls_are_recorded_in_the_state_database_and_replayed(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    store = Store(url)
    recorder = StoreToolRecorder(store, site="eu1", migrate=True)
    try:
        async with ToolRegistry([PY], scanner=NoPii(), recorder=recorder) as live:
            a = await live.call(
                "p.plain", {"topic": "bgp"}, task_id="t-9", step="s", call_index=0, agent="planner"
            )
        executed = len(inproc.CALLS)
        async with ToolRegistry([PY], scanner=NoPii(), recorder=recorder, replay="strict") as r:
            b = await r.call("p.plain", {"topic": "bgp"}, task_id="t-9", step="s", call_index=0)
        assert len(inproc.CALLS) == executed
        assert (b.text, b.source) == (a.text, "replay")
        calls = await recorder.calls("t-9")
        assert [(c.outcome, c.agent) for c in calls] == [("ok", "planner"), ("replayed", "")]
        assert calls[0].response == ToolResponse(texts=[a.text], structured={"result": a.text})
        assert (await recorder.lookup(a.call_id)) == calls[0]  # the answered one
        again = ToolCall(
            **{**_fields(calls[0]), "record_id": calls[0].record_id, "outcome": "timeout"}
        )
        await recorder.record(again)  # the same record id: dropped
        assert len(await recorder.calls("t-9")) == 2
    finally:
        await store.close()
    with sqlite3.connect(tmp_path / "state.db") as db:
        row = db.execute(
            "select tool, server, site, arguments_hash, outcome from tool_calls"
        ).fetchone()
        assert row[:3] == ("p.plain", "p", "eu1")
        assert len(row[3]) == 64
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("update tool_calls set outcome = 'ok'")


def _fields(call: ToolCall) -> dict[str, object]:
    return {f: getattr(call, f) for f in call.__struct_fields__}


@pytest.fixture
async def registry_with_history() -> AsyncIterator[ToolRegistry]:
    state = HttpState()
    t = FakeTime()
    async with serve(state) as url:
        spec = ToolSpec(name="h", transport="http", url=url, retries=0, breaker_failures=1)
        async with ToolRegistry([spec], scanner=NoPii(), sleep=t.sleep, clock=t.clock) as tools:
            await tools.call("h.ping", {}, task_id="a", step="s", call_index=0)
            state.fail_status = 503
            with pytest.raises(ToolUnavailable):
                await tools.call("h.ping", {}, task_id="a", step="s", call_index=1)
            yield tools


async def _printed(settings: Settings, *, width: int = 200, as_json: bool = False) -> str:
    """What ``sitemesh tools health`` prints (it must exit 0)."""
    console = Console(record=True, width=width)
    assert await tools_health(settings, console, as_json=as_json) == 0, console.export_text()
    return console.export_text()


async def test_processes_publish_their_tool_health_on_the_bus(
    js: JetStreamContext, site: str, registry_with_history: ToolRegistry, nats_server: object
) -> None:
    resources = AgentResources(site, tools=lambda: registry_with_history)
    source = health_source(resources)
    publisher = ToolHealthPublisher(js, site=site, role="planner", source=source)
    assert await publisher.publish() is False  # no registry built yet: nothing to say
    assert await read_tool_health(js, site) == []
    assert resources.tools is registry_with_history
    assert await publisher.publish() is True
    (report,) = await read_tool_health(js, site)
    assert (report.site, report.role, report.key) == (site, "planner", publisher.key)
    (h,) = report.tools
    assert (h.tool, h.calls, h.ok, h.errors, h.breaker) == ("h.ping", 2, 1, 1, "open")
    assert h.last_errors[0].reason == "HTTP 503"

    settings = load_settings(site=site, nats={"url": nats_server.client_url})  # type: ignore[attr-defined]
    text = await _printed(settings)
    assert "h.ping" in text
    assert "open" in text
    assert "ToolUnavailable: HTTP 503" in text
    doc = json.loads(await _printed(settings, as_json=True))
    assert doc["processes"][0]["tools"][0]["breaker"] == "open"

    await publisher.shutdown()
    assert await read_tool_health(js, site) == []
    await publisher.shutdown()  # twice is fine
    info = await js.stream_info(f"KV_{tools_bucket(site)}")
    assert info.config.max_age == pytest.approx(20.0)


async def test_processes_publish_their_model_breakers_and_the_console_shows_them(
    js: JetStreamContext, site: str, nats_server: object, tmp_path: Path
) -> None:
    """A process whose site model fails: its report carries the open breaker, the
    counts and the last error; ``tools health`` prints them; the console's health page
    shows them to a viewer with the PII the backend echoed masked."""
    from starlette.testclient import TestClient

    from sitemesh.console import create_app
    from sitemesh.models import CallContext, ChatMessage, ModelRequest
    from tests._fakes.llm_server import Reply
    from tests._fakes.models import fake_servers
    from tests.test_console import _users, login

    echoed = b'{"error": {"message": "bad prompt from Alice Johnson, +1 212 555 0199"}}'
    with fake_servers() as servers:
        servers.vllm.default = Reply(status=400, raw=echoed)
        client = servers.client(max_attempts=1, breaker_failures=5)
        resources = AgentResources(site, models=lambda: client)
        publisher = ToolHealthPublisher(js, site=site, role="triage",
                                        source=health_source(resources),
                                        models=model_health_source(resources))  # fmt: skip
        assert await publisher.publish() is False  # no client built yet: nothing to say
        models = resources.models
        assert models is client
        site_only = CallContext(kind="classification", agent="triage", task_id="t-1")
        req = ModelRequest(messages=[ChatMessage(role="user", content="hi")])
        for _ in range(2):
            assert (await models.complete(req, site_only, fallback=lambda: "-")).source == (
                "fallback"
            )
        assert await publisher.publish() is True
    (report,) = await read_tool_health(js, site)
    assert report.tools == []
    vllm = {m.provider: m for m in report.models}["vllm"]
    assert (vllm.breaker, vllm.calls, vllm.failed) == ("closed", 2, 2)  # 4xx: not a fault
    assert vllm.last_error.startswith("ModelRequestError: vllm/")
    assert "+1 212 555 0199" in vllm.last_error

    settings = load_settings(site=site, nats={"url": nats_server.client_url})  # type: ignore[attr-defined]
    text = await _printed(settings, width=240)
    assert "model backends of site" in text
    assert "ModelRequestError" in text
    assert "no tool calls reported" in text

    web = Settings(site=site, state_dir=tmp_path, nats=settings.nats,
                   db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path}/s.db"))  # fmt: skip
    app = create_app(web, users_file=_users(tmp_path / "users.toml"), secret_key="k" * 32,
                     nats_url=nats_server.client_url)  # type: ignore[attr-defined]  # fmt: skip
    with TestClient(app) as http:
        login(http, "vera")
        page = http.get("/health")
        assert page.status_code == 200
        models_table = page.text.split('id="models"', 1)[1].split("</table>", 1)[0]
        assert "triage" in models_table
        assert "vllm" in models_table
        assert "ModelRequestError" in models_table
        assert "555 0199" not in page.text  # masked for every role on this page
        assert "Alice Johnson" not in page.text
        assert "no tool reports" in page.text
    await publisher.shutdown()
    assert await read_tool_health(js, site) == []


async def test_tools_list_starts_the_servers_and_shows_their_tools(tmp_path: Path) -> None:
    path = tmp_path / "tools.toml"
    path.write_text(
        'bundled = false\n[[tools]]\nname = "p"\ntransport = "python"\n'
        'target = "tests._mcp.inproc:server"\n'
        '[[tools]]\nname = "gone"\ntransport = "python"\ntarget = "tests._mcp.nowhere:server"\n'
        "connect_timeout_s = 5\n",
        encoding="utf-8",
    )
    settings = load_settings(state_dir=tmp_path, tools={"file": path})
    console = Console(record=True, width=200)
    assert await tools_list(settings, console) == 2  # a server could not be reached
    text = console.export_text()
    assert "p.customer_record" in text
    assert "customer_id: string (required)" in text
    assert "tool server 'gone' is unavailable: cannot connect: ModuleNotFoundError" in text


def test_tools_list_json_on_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "tools.toml"
    path.write_text(
        'bundled = false\n[[tools]]\nname = "p"\ntransport = "python"\n'
        'target = "tests._mcp.inproc:server"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        app,
        ["tools", "list", "--json"],
        env={"SITEMESH_TOOLS_FILE": str(path), "SITEMESH_STATE_DIR": str(tmp_path)},
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    (server,) = doc["servers"]
    assert server["name"] == "p"
    assert server["error"] is None
    names = [t["name"] for t in server["tools"]]
    assert "p.plain" in names
    plain = next(t for t in server["tools"] if t["name"] == "p.plain")
    assert plain["input_schema"]["required"] == ["topic"]


def test_a_bad_tools_file_fails_the_command_naming_the_field(tmp_path: Path) -> None:
    path = tmp_path / "tools.toml"
    path.write_text('[[tools]]\nname = "x"\ntransport = "stdio"\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["tools", "list"], env={"SITEMESH_TOOLS_FILE": str(path)})
    assert result.exit_code == 2
    assert "tools[0] 'x': command: required for transport 'stdio'" in " ".join(
        result.output.split()
    )


async def test_the_runtime_builds_the_registry_on_first_use_and_closes_it() -> None:
    from sitemesh.runtime import ToolsService

    built: list[ToolRegistry] = []

    def build() -> ToolRegistry:
        built.append(ToolRegistry([PY], scanner=NoPii()))
        return built[-1]

    resources = AgentResources("eu1", tools=build)
    service = ToolsService(resources)
    await service.run()  # no publisher: returns at once
    assert not resources.tools_built
    assert built == []  # nothing built until an agent asks
    registry = resources.tools
    assert registry is not None
    assert resources.tools is registry
    assert len(built) == 1
    await registry.call("p.plain", {"topic": "x"}, task_id="t", step="s", call_index=0)
    assert registry.pool._connections
    await service.aclose()
    await service.aclose()  # twice is fine
    assert registry.pool._connections == {}
    with pytest.raises(ToolUnavailable, match="closed"):
        await registry.call("p.plain", {"topic": "x"}, task_id="t", step="s", call_index=1)


# -- a site with per-role identities (sitemesh creds) -----------------------------------


@pytest.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    """A hub and site eu1 with one NKey identity per role (as ``sitemesh creds``)."""
    root = tmp_path_factory.mktemp("secure-tools")
    generate_creds(root / "creds", ["eu1"])
    security = Security.from_dirs(["eu1"], certs_dir=None, creds_dir=root / "creds")
    spec = TopologySpec.for_sites(["eu1"], root / "topology")
    bus = BusSettings(max_bytes=4 * 1024 * 1024, duplicate_window_s=120)
    async with Topology(spec, binary=find_nats_server(None), bus=bus, security=security) as t:
        yield t


@pytest.mark.timeout(90)
async def test_tool_health_on_a_secured_site(
    secured: Topology, registry_with_history: ToolRegistry
) -> None:
    """A worker identity puts (and deletes) only its own report, never creates the
    bucket; the provisioner does; the operator reads it, ``sitemesh tools health`` too."""
    assert TOPOLOGY_MIRROR == TOOLS_BUCKET_PREFIX  # the permissions name the same bucket
    nc = await secured.connect_identity("eu1", "planner")
    js = nc.jetstream(timeout=1)
    publisher = ToolHealthPublisher(
        js, site="eu1", role="planner", source=registry_with_history.health, create_bucket=True
    )
    assert await publisher.publish() is False  # a worker may not create the bucket
    prov = await secured.connect_identity("eu1", "provisioner")
    await provision_tool_health(prov.jetstream(), "eu1")
    assert await publisher.publish() is True
    op = await secured.connect_identity("eu1", "operator")
    (report,) = await read_tool_health(op.jetstream(), "eu1")
    assert (report.role, report.key, report.tools[0].tool) == ("planner", publisher.key, "h.ping")
    with pytest.raises(nats.errors.TimeoutError):  # another role's report: refused
        await js.publish(f"$KV.{tools_bucket('eu1')}.retriever.somewhere_1", b"{}")

    s = secured.spec.site("eu1")
    seed = load_creds(secured.spec.state_dir.parent / "creds").get("eu1", "operator").seed_file
    settings = load_settings(
        site="eu1", nats=NatsSettings(url=f"nats://{s.host}:{s.client_port}", nkey_seed_file=seed)
    )
    text = await _printed(settings)
    assert "h.ping" in text
    assert "planner" in text
    await publisher.shutdown()
    assert await read_tool_health(op.jetstream(), "eu1") == []
