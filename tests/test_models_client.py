"""ModelClient: fallback order, privacy-first routing, streaming in both wire formats,
tool calls and structured output (repair or reject), the labelled deterministic
fallback, prompt hashes, replay and the budget hook — all through the official SDKs
against the fake server."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sitemesh.errors import AllModelsFailed, InvalidModelOutput, ReplayMiss, SitemeshError
from sitemesh.models import (
    CallContext,
    ChatMessage,
    InMemoryRecorder,
    ModelRequest,
    OutputSchema,
    ToolSpec,
    Usage,
)
from tests._fakes.llm_server import Reply, rate_limited, server_error
from tests._fakes.models import Servers, fake_servers
from tests.conftest import assert_eventually

REQ = ModelRequest(
    messages=[
        ChatMessage(role="system", content="You are terse."),
        ChatMessage(role="user", content="Summarise the incident."),
    ]
)
GOLDEN_HASH = "fcfde9a75c6267d9df4625dfa95a793332e446669231d1594fc9c32da02775d8"
COMPLEX_ALLOWED = CallContext(kind="synthesis", complexity=0.9, action="allow_cloud",
                              tenant="acme", agent="synthesiser", task_id="t-9")


@pytest.fixture
def servers() -> Iterator[Servers]:
    with fake_servers() as s:
        yield s


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    severity: int
    summary: str


# --- routing and fallback -------------------------------------------------------------


async def test_fallback_order_openai_then_anthropic_then_vllm(servers: Servers) -> None:
    servers.openai.script(server_error(500))
    servers.anthropic.script(rate_limited("60"))  # longer than max_retry_after_s: move on
    servers.vllm.default = Reply(text="site answer")
    recorder = InMemoryRecorder()
    async with servers.client(max_attempts=1, recorder=recorder) as client:
        response = await client.complete(REQ, COMPLEX_ALLOWED)
    assert (response.provider, response.text) == ("vllm", "site answer")
    assert [(c.provider, c.outcome) for c in recorder.calls] == [
        ("openai", "unavailable"), ("anthropic", "rate_limited"), ("vllm", "ok"),
    ]
    order = sorted(
        [(r.at, name) for name, srv in [("openai", servers.openai),
                                        ("anthropic", servers.anthropic),
                                        ("vllm", servers.vllm)]
         for r in srv.model_requests]
    )
    assert [name for _, name in order] == ["openai", "anthropic", "vllm"]


async def test_cloud_first_answer_wins(servers: Servers) -> None:
    async with servers.client() as client:
        response = await client.complete(REQ, COMPLEX_ALLOWED)
    assert response.ref == "openai/gpt-4.1"
    assert servers.vllm.model_requests == []
    assert servers.anthropic.model_requests == []


@pytest.mark.parametrize(
    "ctx",
    [
        CallContext(kind="synthesis", complexity=1.0, action="pin_edge"),
        CallContext(kind="synthesis", complexity=1.0, action="deny"),
        CallContext(kind="synthesis", complexity=1.0, action="require_approval"),
    ],
    ids=["pin_edge", "deny", "require_approval-unapproved"],
)
async def test_site_pinned_work_never_touches_cloud(servers: Servers, ctx: CallContext) -> None:
    servers.vllm.script(*[server_error(500)] * 3)
    async with servers.client(max_attempts=3) as client:
        with pytest.raises(AllModelsFailed):
            await client.complete(REQ, ctx)  # site down: still no cloud
        servers.vllm.default = Reply(text="ok on site")
        assert (await client.complete(REQ, ctx)).provider == "vllm"
    assert servers.openai.requests == []
    assert servers.anthropic.requests == []


async def test_approved_requires_approval_may_use_cloud(servers: Servers) -> None:
    ctx = CallContext(kind="synthesis", complexity=0.9, action="require_approval", approved=True)
    async with servers.client() as client:
        assert (await client.complete(REQ, ctx)).provider == "openai"


async def test_small_kinds_go_to_the_site_model_first(servers: Servers) -> None:
    ctx = CallContext(kind="classification", complexity=0.9, action="allow_cloud")
    async with servers.client() as client:
        assert (await client.complete(REQ, ctx)).provider == "vllm"
    assert servers.openai.requests == []


async def test_deterministic_fallback_is_labelled(servers: Servers) -> None:
    for srv in (servers.openai, servers.anthropic, servers.vllm):
        srv.default = server_error(503)
    recorder = InMemoryRecorder()
    async with servers.client(max_attempts=2, recorder=recorder) as client:
        response = await client.complete(REQ, COMPLEX_ALLOWED, fallback=lambda: "runbook text")
        with pytest.raises(AllModelsFailed) as err:
            await client.complete(REQ, COMPLEX_ALLOWED)
    assert response.source == "fallback"
    assert (response.provider, response.model, response.text) == (
        "fallback", "deterministic", "runbook text")
    assert "openai/gpt-4.1" in response.fallback_reason
    assert "vllm/qwen2.5-7b-instruct" in response.fallback_reason
    assert recorder.calls[3].outcome == "fallback"
    assert [ref for ref, _ in err.value.attempts] == [
        "openai/gpt-4.1", "anthropic/claude-sonnet-4-6", "vllm/qwen2.5-7b-instruct"]


async def test_no_backend_configured_takes_the_fallback() -> None:
    from sitemesh.config import ModelsSettings
    from sitemesh.models import ModelClient

    async with ModelClient.from_settings(ModelsSettings()) as client:
        assert not client.configured
        response = await client.complete(REQ, fallback=lambda: "extractive summary")
    assert response.source == "fallback"
    assert "none is configured" in response.fallback_reason


# --- streaming and tool calls -----------------------------------------------------------


@pytest.mark.parametrize("ctx", [
    CallContext(kind="classification"),  # vllm: OpenAI SSE
    COMPLEX_ALLOWED,  # openai: OpenAI SSE
])
async def test_streaming_openai_wire_format(servers: Servers, ctx: CallContext) -> None:
    text = "Interface HundredGigE0/0/0/10 on leaf7 flapped twice."
    servers.vllm.default = servers.openai.default = Reply(text=text)
    pieces: list[str] = []
    async with servers.client() as client:
        response = await client.complete(msgspec.structs.replace(REQ, stream=True), ctx,
                                         on_delta=pieces.append)
    assert response.text == text
    assert len(pieces) > 3
    assert "".join(pieces) == text
    assert response.usage.tokens_in > 0
    assert response.usage.tokens_out > 0
    assert response.finish_reason == "stop"
    body = (servers.openai.model_requests or servers.vllm.model_requests)[0].body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


async def test_streaming_anthropic_wire_format(servers: Servers) -> None:
    text = "Proposal: upgrade the line card firmware, then re-enable BFD."
    servers.openai.default = server_error(500)
    servers.anthropic.default = Reply(text=text)
    pieces: list[str] = []
    async with servers.client(max_attempts=1) as client:
        response = await client.complete(msgspec.structs.replace(REQ, stream=True),
                                         COMPLEX_ALLOWED, on_delta=pieces.append)
    assert response.provider == "anthropic"
    assert response.text == text
    assert "".join(pieces) == text
    assert len(pieces) > 3
    assert response.usage.tokens_in > 0
    assert response.usage.tokens_out > 1
    assert response.finish_reason == "end_turn"
    body = servers.anthropic.model_requests[0].body
    assert body["system"] == "You are terse."
    assert [m["role"] for m in body["messages"]] == ["user"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["openai", "anthropic", "vllm"])
async def test_tool_calls(servers: Servers, provider: str, stream: bool) -> None:
    tool = ToolSpec(name="get_interface", description="Read an interface",
                    parameters={"type": "object", "properties": {"name": {"type": "string"}}})
    for srv in (servers.openai, servers.anthropic, servers.vllm):
        srv.default = server_error(500)
    getattr(servers, provider).default = Reply(
        tool_calls=[("get_interface", {"name": "eth0"})])
    req = ModelRequest(messages=REQ.messages, tools=[tool], stream=stream)
    async with servers.client(max_attempts=1) as client:
        response = await client.complete(req, COMPLEX_ALLOWED)
    assert response.provider == provider
    [call] = response.tool_calls
    assert call.name == "get_interface"
    assert json.loads(call.arguments) == {"name": "eth0"}


# --- structured output ---------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_structured_output_is_validated(servers: Servers, provider: str,
                                              stream: bool) -> None:
    servers.openai.default = server_error(500)
    getattr(servers, provider).default = Reply(json={"severity": 2, "summary": "link down"})
    async with servers.client(max_attempts=1) as client:
        result = await client.structured(msgspec.structs.replace(REQ, stream=stream),
                                         Verdict, COMPLEX_ALLOWED)
    assert result.value == Verdict(severity=2, summary="link down")
    assert not result.repaired
    assert result.response.provider == provider
    body = getattr(servers, provider).model_requests[-1].body
    if provider == "openai":
        fmt = body["response_format"]
        assert fmt["type"] == "json_schema"
        assert fmt["json_schema"]["name"] == "Verdict"
        assert fmt["json_schema"]["schema"]["type"] == "object"
    else:
        assert body["tool_choice"] == {"type": "tool", "name": "Verdict"}
        assert body["tools"][0]["input_schema"]["required"] == ["severity", "summary"]


async def test_invalid_output_is_repaired_once(servers: Servers) -> None:
    servers.vllm.script(Reply(text="Severity two, link down."),
                        Reply(json={"severity": 2, "summary": "link down"}))
    recorder = InMemoryRecorder()
    async with servers.client(recorder=recorder) as client:
        result = await client.structured(REQ, Verdict, CallContext(kind="extraction"))
    assert result.repaired
    assert result.value.severity == 2
    first, repair = (r.body for r in servers.vllm.model_requests)
    assert len(repair["messages"]) == len(first["messages"]) + 2
    assert repair["messages"][-2] == {"role": "assistant", "content": "Severity two, link down."}
    assert "not valid JSON" in repair["messages"][-1]["content"]
    assert "JSON is malformed" in repair["messages"][-1]["content"]  # msgspec's error
    assert [c.outcome for c in recorder.calls] == ["invalid_output", "ok"]


async def test_invalid_twice_is_a_clear_error(servers: Servers) -> None:
    servers.openai.default = server_error(500)
    servers.anthropic.script(Reply(json={"severity": "high", "summary": "x"}),
                             Reply(json={"severity": "high", "summary": "x"}))
    async with servers.client(max_attempts=1) as client:
        with pytest.raises(InvalidModelOutput) as err:
            await client.structured(REQ, Verdict, COMPLEX_ALLOWED)
    assert "Expected `int`, got `str` - at `$.severity`" in err.value.validation_error
    assert err.value.provider == "anthropic"
    assert isinstance(err.value, ValueError)  # permanent: dead-lettered, not retried


async def test_semantic_check_rejects_and_repairs(servers: Servers) -> None:
    servers.vllm.script(Reply(json={"severity": 9, "summary": "x"}),
                        Reply(json={"severity": 3, "summary": "x"}))

    def check(v: Verdict) -> None:
        if not 0 <= v.severity <= 3:
            raise ValueError(f"severity {v.severity} not in 0..3 - at `$.severity`")

    async with servers.client() as client:
        result = await client.structured(REQ, Verdict, CallContext(), check=check)
    assert result.repaired
    assert result.value.severity == 3
    assert "not in 0..3" in servers.vllm.model_requests[1].body["messages"][-1]["content"]


# --- hashing, recording, replay, budget ---------------------------------------------------


def test_prompt_hash_is_stable() -> None:
    schema = OutputSchema(name="Verdict", schema=msgspec.json.schema(Verdict))
    a = ModelRequest(messages=REQ.messages, output=schema)
    b = ModelRequest(messages=list(REQ.messages), output=schema, stream=True)
    assert a.prompt_hash == b.prompt_hash  # streaming is transport, not prompt
    assert len(a.prompt_hash) == 64
    assert a.prompt_hash != msgspec.structs.replace(a, temperature=0.5).prompt_hash
    assert a.prompt_hash != ModelRequest(messages=REQ.messages).prompt_hash
    # The canonical form is plain sorted JSON, so any process or language gets the same.
    canonical = json.dumps({"messages": [{"content": m.content, "role": m.role}
                                         for m in REQ.messages]},
                           sort_keys=True, separators=(",", ":"))
    assert REQ.prompt_hash == hashlib.sha256(canonical.encode()).hexdigest()
    assert REQ.prompt_hash == GOLDEN_HASH  # pinned: replay archives depend on it


async def test_calls_are_recorded_and_replayed(servers: Servers) -> None:
    recorder = InMemoryRecorder()
    servers.openai.default = Reply(text="first answer")
    async with servers.client(recorder=recorder) as client:
        live = await client.complete(REQ, COMPLEX_ALLOWED)
    [call] = recorder.calls
    assert call.prompt_hash == REQ.prompt_hash == live.prompt_hash
    assert (call.provider, call.model, call.outcome) == ("openai", "gpt-4.1", "ok")
    assert call.tokens_in > 0
    assert call.tokens_out > 0
    assert call.latency_ms > 0
    assert (call.tenant, call.agent, call.task_id) == ("acme", "synthesiser", "t-9")
    assert call.response is not None
    assert call.response.text == "first answer"
    assert msgspec.json.decode(msgspec.json.encode(call), type=type(call)) == call

    servers.openai.default = Reply(text="a different answer now")
    async with servers.client(recorder=recorder, replay="strict") as client:
        replayed = await client.complete(REQ, COMPLEX_ALLOWED)
        with pytest.raises(ReplayMiss):
            await client.complete(ModelRequest(messages=[ChatMessage(role="user",
                                                                     content="new")]))
    assert replayed.text == "first answer"
    assert replayed.source == "replay"
    assert len(servers.openai.model_requests) == 1  # nothing went to the server
    assert recorder.calls[-1].outcome == "replayed"


class RecordingBudget:
    def __init__(self, refuse: set[str] | None = None) -> None:
        self.refuse = refuse or set()
        self.events: list[tuple[Any, ...]] = []

    async def reserve(self, call_key: str, tenant: str, agent: str, task_id: str,
                      est_tokens_in: int, est_tokens_out: int, model: str) -> Any:
        if model in self.refuse:
            raise SitemeshError(f"budget exhausted for {model}")
        self.events.append(("reserve", call_key, tenant, agent, task_id, est_tokens_in,
                            est_tokens_out, model))
        return (call_key, model)

    async def settle(self, reservation: Any, usage: Usage) -> float | None:
        self.events.append(("settle", reservation[1], usage.tokens_in, usage.tokens_out))
        return 0.0042

    async def release(self, reservation: Any) -> None:
        self.events.append(("release", reservation[1]))


async def test_budget_hooks_reserve_settle_release_and_refuse(servers: Servers) -> None:
    budget = RecordingBudget(refuse={"anthropic/claude-sonnet-4-6"})
    recorder = InMemoryRecorder()
    servers.openai.default = server_error(500)
    async with servers.client(max_attempts=1, budget=budget, recorder=recorder) as client:
        response = await client.complete(REQ, COMPLEX_ALLOWED)
    assert response.provider == "vllm"
    kinds = [(e[0], e[-1] if e[0] == "reserve" else e[1]) for e in budget.events]
    assert kinds == [("reserve", "openai/gpt-4.1"), ("release", "openai/gpt-4.1"),
                     ("reserve", "vllm/qwen2.5-7b-instruct"),
                     ("settle", "vllm/qwen2.5-7b-instruct")]
    reserve = budget.events[0]
    assert reserve[2:5] == ("acme", "synthesiser", "t-9")
    assert reserve[5] > 0
    assert reserve[6] == 1024
    assert [c.outcome for c in recorder.calls] == ["unavailable", "budget_denied", "ok"]
    assert recorder.calls[-1].cost_usd == 0.0042
    assert servers.anthropic.model_requests == []


async def test_cancelled_call_releases_its_reservation(servers: Servers) -> None:
    budget = RecordingBudget()
    servers.vllm.script(Reply(hang_s=10))
    async with servers.client(budget=budget) as client:
        task = asyncio.create_task(client.complete(REQ, CallContext()))
        await assert_eventually(lambda: servers.vllm.model_requests, 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert [e[0] for e in budget.events] == ["reserve", "release"]


_text = st.text(max_size=40)
_messages = st.lists(
    st.builds(ChatMessage, role=st.sampled_from(["system", "user", "assistant"]),
              content=_text),
    min_size=1, max_size=4,
)


@given(messages=_messages, temperature=st.floats(0, 2), max_tokens=st.none() | st.integers(1, 9))
def test_requests_round_trip_with_the_same_hash(
    messages: list[ChatMessage], temperature: float, max_tokens: int | None
) -> None:
    req = ModelRequest(messages=messages, temperature=temperature, max_tokens=max_tokens)
    again = msgspec.json.decode(msgspec.json.encode(req), type=ModelRequest)
    assert again == req
    assert again.prompt_hash == req.prompt_hash


# --- telemetry ------------------------------------------------------------------------


class _Priced:
    """A budget hook that prices every call at 0.0042 USD."""

    async def reserve(self, *args: Any) -> Any:
        return "r"

    async def settle(self, reservation: Any, usage: Usage) -> float | None:
        return 0.0042

    async def release(self, reservation: Any) -> None:
        return None


async def test_each_live_call_gets_its_span_and_gen_ai_metrics(servers: Servers) -> None:
    """With telemetry on, every call to a backend (not a replay, not a refused breaker)
    has a client span and records its duration, tokens and cost: what a worker's
    ``/metrics`` shows as ``gen_ai_client_*`` and ``sitemesh_model_cost``."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sitemesh.config import TelemetrySettings
    from sitemesh.telemetry import setup_telemetry, shutdown_telemetry

    spans, reader = InMemorySpanExporter(), InMemoryMetricReader()
    shutdown_telemetry()
    setup_telemetry(TelemetrySettings(), span_exporter=spans, metric_reader=reader)
    try:
        servers.openai.script(server_error(500))
        servers.anthropic.script(server_error(500))
        servers.vllm.default = Reply(text="site answer")
        async with servers.client(max_attempts=1, budget=_Priced()) as client:
            response = await client.complete(REQ, COMPLEX_ALLOWED)
        assert response.provider == "vllm"
        calls = [s for s in spans.get_finished_spans() if s.name.startswith("chat ")]
        by_provider = {str((s.attributes or {}).get("sitemesh.model.provider")): s for s in calls}
        assert set(by_provider) >= {"openai", "vllm"}
        assert (by_provider["openai"].attributes or {}).get("error.type")
        ok = by_provider["vllm"].attributes or {}
        assert ok.get("error.type") is None
        assert ok["sitemesh.tokens.input"] == response.usage.tokens_in > 0
        assert ok["sitemesh.cost_usd"] == pytest.approx(0.0042)
        data = reader.get_metrics_data()
        assert data is not None
        seen: dict[str, float] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "sum", None) or getattr(point, "value", 0)
                        seen[metric.name] = seen.get(metric.name, 0) + float(value)
        assert seen.get("gen_ai.client.token.usage", 0) > 0
        assert seen.get("gen_ai.client.operation.duration", 0) > 0
        assert any(name.startswith("sitemesh.model.cost") for name in seen), sorted(seen)
    finally:
        shutdown_telemetry()


# --- health: breakers and live call counts --------------------------------------------


async def test_health_reports_each_breaker_and_counts_live_calls_only(servers: Servers) -> None:
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sitemesh.config import TelemetrySettings
    from sitemesh.telemetry import setup_telemetry, shutdown_telemetry, watch_breakers

    site_only = CallContext(kind="classification", agent="triage", task_id="t-1")
    servers.vllm.default = server_error(503)
    reader = InMemoryMetricReader()
    shutdown_telemetry()
    assert not watch_breakers("eu1", "triage", list)  # no telemetry set up: nothing watched
    setup_telemetry(TelemetrySettings(), span_exporter=InMemorySpanExporter(),
                    metric_reader=reader)  # fmt: skip
    try:
        async with servers.client(max_attempts=1, breaker_failures=2, breaker_reset_s=600) as c:
            assert [(h.provider, h.breaker, h.calls) for h in c.health()] == [
                ("anthropic", "closed", 0), ("openai", "closed", 0), ("vllm", "closed", 0),
            ]  # fmt: skip
            assert watch_breakers(
                "eu1", "triage", lambda: [("model", h.provider, h.breaker) for h in c.health()]
            )
            for _ in range(3):  # two 503s open the breaker; the third call is refused
                answer = await c.complete(REQ, site_only, fallback=lambda: "held")
                assert answer.source == "fallback"
            vllm = {h.provider: h for h in c.health()}["vllm"]
            assert (vllm.breaker, vllm.calls, vllm.ok, vllm.failed, vllm.circuit_open) == (
                "open", 3, 0, 2, 1,
            )  # fmt: skip
            assert 599 <= vllm.retry_in_s <= 600
            assert vllm.last_error.startswith("ModelUnavailable")
            assert vllm.last_error_at is not None
            assert len(servers.vllm.model_requests) == 2  # the open breaker sent nothing
            openai = {h.provider: h for h in c.health()}["openai"]
            assert (openai.breaker, openai.calls) == ("closed", 0)  # site-pinned: never asked
        data = reader.get_metrics_data()
        assert data is not None
        states = {
            (p.attributes["sitemesh.dependency.kind"], p.attributes["sitemesh.dependency"]): p.value
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
            if m.name == "sitemesh.breaker.state" for p in m.data.data_points
        }  # fmt: skip
        assert states == {("model", "anthropic"): 0, ("model", "openai"): 0, ("model", "vllm"): 2}
    finally:
        shutdown_telemetry()


async def test_health_after_a_probe_closes_the_breaker(servers: Servers) -> None:
    clock = [0.0]
    site_only = CallContext(kind="classification", agent="triage", task_id="t-2")
    servers.vllm.script(server_error(503))
    servers.vllm.default = Reply(text="back")
    async with servers.client(max_attempts=1, breaker_failures=1, breaker_reset_s=10,
                              clock=lambda: clock[0]) as c:  # fmt: skip
        assert (await c.complete(REQ, site_only, fallback=lambda: "held")).source == "fallback"
        assert {h.provider: h.breaker for h in c.health()}["vllm"] == "open"
        clock[0] = 10.0
        assert {h.provider: h.breaker for h in c.health()}["vllm"] == "half_open"
        assert (await c.complete(REQ, site_only)).text == "back"
        vllm = {h.provider: h for h in c.health()}["vllm"]
        assert (vllm.breaker, vllm.calls, vllm.ok, vllm.failed) == ("closed", 2, 1, 1)
        assert vllm.last_error.startswith("ModelUnavailable")  # the last failure stays shown


async def test_an_answer_rejected_as_invalid_output_still_counts_its_tokens_and_cost(
    servers: Servers,
) -> None:
    """The backend answered and was paid: the ledger row of an ``invalid_output`` call
    has its cost, and ``gen_ai.client.token.usage`` / ``sitemesh.model.cost`` count it."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sitemesh.config import TelemetrySettings
    from sitemesh.telemetry import setup_telemetry, shutdown_telemetry

    reader = InMemoryMetricReader()
    shutdown_telemetry()
    setup_telemetry(TelemetrySettings(), span_exporter=InMemorySpanExporter(),
                    metric_reader=reader)  # fmt: skip
    try:
        servers.vllm.script(Reply(text="Severity two, link down."),
                            Reply(json={"severity": 2, "summary": "link down"}))  # fmt: skip
        recorder = InMemoryRecorder()
        async with servers.client(recorder=recorder, budget=_Priced()) as client:
            result = await client.structured(REQ, Verdict, CallContext(kind="extraction"))
        assert result.repaired
        assert [(c.outcome, c.cost_usd) for c in recorder.calls] == [
            ("invalid_output", 0.0042), ("ok", 0.0042),
        ]  # fmt: skip
        assert all(c.tokens_in > 0 for c in recorder.calls)
        data = reader.get_metrics_data()
        assert data is not None
        points = {
            m.name: m.data.data_points
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        }  # fmt: skip
        tokens_in = sum(p.sum for p in points["gen_ai.client.token.usage"]
                        if p.attributes.get("gen_ai.token.type") == "input")  # fmt: skip
        assert tokens_in == sum(c.tokens_in for c in recorder.calls)
        assert sum(p.value for p in points["sitemesh.model.cost"]) == pytest.approx(0.0084)
    finally:
        shutdown_telemetry()
