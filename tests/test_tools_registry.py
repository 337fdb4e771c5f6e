"""The tool registry against real MCP servers (the official SDK): stdio subprocesses,
streamable HTTP on a free port, and servers in this process.

Counts are taken at the servers (the stdio server's execution log, the HTTP server's
request list), so "not called" is checked after a positive control that was. Waits
(backoff, ``Retry-After``) go through a fake sleep that records them; breaker
cool-downs run on a fake clock: no test depends on timing, and every one is fast.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sitemesh.agents import AgentContext, AgentResources
from sitemesh.errors import PermanentError, TransientError
from sitemesh.tools import (
    InMemoryToolRecorder,
    InvalidToolArguments,
    ToolCircuitOpen,
    ToolRateLimited,
    ToolRegistry,
    ToolReplayMiss,
    ToolResponseUnscanned,
    ToolSpec,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
    idempotency_key,
)
from tests._mcp.helpers import BrokenScanner, FakeTime, NoPii, executions, stdio_spec
from tests._mcp.http_server import HttpState, serve

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def calls(tmp_path: Path) -> Path:
    return tmp_path / "calls.jsonl"


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def http() -> AsyncIterator[tuple[HttpState, str]]:
    state = HttpState()
    async with serve(state) as url:
        yield state, url


def http_spec(url: str, **fields: object) -> ToolSpec:
    base: dict[str, object] = {"name": "h", "transport": "http", "url": url, "timeout_s": 5.0}
    return ToolSpec(**{**base, **fields})  # type: ignore[arg-type]


def registry(*specs: ToolSpec, t: FakeTime | None = None, **kw: object) -> ToolRegistry:
    t = t or FakeTime()
    kw.setdefault("scanner", NoPii())
    return ToolRegistry(specs, sleep=t.sleep, clock=t.clock, **kw)  # type: ignore[arg-type]


# -- stdio: listing, timeouts, errors, validation, idempotency -----------------------------


async def test_stdio_server_lists_its_tools_with_input_schemas(calls: Path) -> None:
    async with registry(stdio_spec(calls)) as tools:
        listed = {t.name: t for t in await tools.list_tools()}
        result = await tools.call("t.echo", {"text": "hi"}, task_id="a", step="s", call_index=0)
    assert {"t.echo", "t.slow", "t.fail", "t.lookup", "t.pid", "t.create_note"} <= set(listed)
    assert listed["t.create_note"].side_effects  # from its annotations
    assert listed["t.create_note"].idempotent
    assert not listed["t.echo"].side_effects
    lookup = listed["t.lookup"]
    assert lookup.input_schema["properties"]["customer_id"]["type"] == "integer"
    assert lookup.summary() == "customer_id: integer (required)"
    assert listed["t.create_note"].takes_idempotency_key
    assert not listed["t.echo"].takes_idempotency_key
    assert (result.text, result.source, result.attempts, result.is_error) == (
        "echo: hi",
        "live",
        1,
        False,
    )
    assert [e["tool"] for e in executions(calls)] == ["echo"]


async def test_a_hanging_tool_is_cut_at_its_timeout_and_retried(calls: Path) -> None:
    async with registry(stdio_spec(calls, timeout_s=0.3, retries=1)) as tools:
        with pytest.raises(ToolTimeout) as caught:
            await tools.call("t.slow", {"seconds": 30}, task_id="a", step="s", call_index=0)
        (health,) = tools.health()
    assert isinstance(caught.value, TransientError)
    assert caught.value.timeout_s == 0.3
    assert caught.value.attempts == 2
    assert len(executions(calls, "slow")) == 2  # both attempts reached the server
    assert (health.timeouts, health.errors, health.ok) == (2, 2, 0)
    assert [e.kind for e in health.last_errors] == ["ToolTimeout", "ToolTimeout"]


async def test_jsonrpc_errors_are_retried_then_fail_without_the_servers_text(
    calls: Path, fake_time: FakeTime
) -> None:
    async with registry(stdio_spec(calls, retries=2), t=fake_time) as tools:
        with pytest.raises(ToolUnavailable) as caught:
            await tools.call("t.fail", {}, task_id="a", step="s", call_index=0)
        (health,) = tools.health()
    assert len(executions(calls, "fail")) == 3  # first try + 2 retries, at the server
    assert len(fake_time.sleeps) == 2  # a backoff before each retry
    assert caught.value.reason == "JSON-RPC error -32603"
    # the server's error text names a person; it is never repeated
    assert "jane" not in str(caught.value)
    assert all("jane" not in e.reason for e in health.last_errors)


async def test_arguments_are_validated_against_the_schema_naming_the_field(
    calls: Path,
) -> None:
    async with registry(stdio_spec(calls)) as tools:
        with pytest.raises(InvalidToolArguments) as wrong_type:
            await tools.call(
                "t.lookup", {"customer_id": "jane@example.com"}, task_id="a", step="s", call_index=0
            )
        with pytest.raises(InvalidToolArguments) as missing:
            await tools.call("t.lookup", {}, task_id="a", step="s", call_index=1)
        assert executions(calls, "lookup") == []
        ok = await tools.call("t.lookup", {"customer_id": 7}, task_id="a", step="s", call_index=2)
    assert isinstance(wrong_type.value, PermanentError)
    assert wrong_type.value.field == "$.customer_id"
    assert "expected type 'integer'" in str(wrong_type.value)
    assert "jane" not in str(wrong_type.value)  # the value passed is never quoted
    assert missing.value.field == "$.customer_id"
    assert "required" in str(missing.value)
    assert ok.text == "customer 7"
    assert len(executions(calls, "lookup")) == 1  # the positive control reached it


async def test_unknown_servers_and_tools_are_permanent_errors_listing_what_exists(
    calls: Path,
) -> None:
    async with registry(stdio_spec(calls)) as tools:
        with pytest.raises(UnknownTool, match="servers: t"):
            await tools.call("crm.lookup", {}, task_id="a", step="s", call_index=0)
        with pytest.raises(UnknownTool, match=r"offers no tool .nope.*echo"):
            await tools.call("t.nope", {}, task_id="a", step="s", call_index=0)
        with pytest.raises(UnknownTool, match="offers 6 tools"):
            await tools.call("t", {}, task_id="a", step="s", call_index=0)


async def test_the_idempotency_key_is_the_same_when_a_step_is_redelivered(calls: Path) -> None:
    """Two deliveries of one step: the same keys, in _meta and as the argument; the
    server executes the side effect once. Another step gets other keys."""
    async with registry(stdio_spec(calls)) as tools:
        resources = AgentResources("eu1", tools=lambda: tools)
        for delivery in (1, 2):
            ctx = AgentContext(
                site="eu1",
                worker="w",
                num_delivered=delivery,
                step="plan",
                resources=resources,
                task_id="t-1",
                role="planner",
            )
            view = ctx.tools
            assert view is not None
            assert ctx.tools is view
            await view.call("t.echo", {"text": "first"})
            note = await view.call("t.create_note", {"customer": "c-9", "text": "called back"})
            assert view.calls == 2
            assert note.text == "note 1 for c-9"
        other = AgentContext(
            site="eu1", worker="w", step="reply", resources=resources, task_id="t-1"
        )
        assert other.tools is not None
        await other.tools.call("t.create_note", {"customer": "c-9", "text": "called back"})
    notes = executions(calls, "create_note")
    key = idempotency_key("t-1", "plan", 1)
    assert [n["meta_key"] for n in notes[:2]] == [key, key]
    assert [n["arg_key"] for n in notes[:2]] == [key, key]
    assert [n["executed"] for n in notes] == [True, False, True]
    assert notes[2]["meta_key"] == idempotency_key("t-1", "reply", 0) != key
    assert {e["meta_key"] for e in executions(calls, "echo")} == {idempotency_key("t-1", "plan", 0)}


async def test_a_side_effect_is_served_from_its_record_on_redelivery(calls: Path) -> None:
    recorder = InMemoryToolRecorder()
    spec = stdio_spec(calls, side_effects=True)
    args = {"customer": "c-9", "text": "called back"}
    async with registry(spec, recorder=recorder) as tools:
        first = await tools.call("t.create_note", args, task_id="t-1", step="plan", call_index=0)
        again = await tools.call("t.create_note", args, task_id="t-1", step="plan", call_index=0)
        other = await tools.call("t.create_note", args, task_id="t-1", step="plan", call_index=1)
    assert (first.source, again.source, other.source) == ("live", "deduplicated", "live")
    assert again.text == first.text
    assert again.idempotency_key == first.idempotency_key
    assert len(executions(calls, "create_note")) == 2  # once per key, at the server
    assert [c.outcome for c in recorder.calls] == ["ok", "deduplicated", "ok"]


async def test_a_side_effect_with_an_unknown_outcome_is_not_retried(calls: Path) -> None:
    spec = stdio_spec(calls, side_effects=True, timeout_s=0.3, retries=3)
    async with registry(spec) as tools:
        with pytest.raises(ToolUnavailable, match="not retried"):
            await tools.call("t.slow", {"seconds": 30}, task_id="a", step="s", call_index=0)
    assert len(executions(calls, "slow")) == 1


async def test_a_server_that_died_is_started_again(calls: Path, fake_time: FakeTime) -> None:
    async with registry(stdio_spec(calls, retries=1), t=fake_time) as tools:
        first = await tools.call("t.pid", {}, task_id="a", step="s", call_index=0)
        os.kill(int(first.text), signal.SIGKILL)
        second = await tools.call("t.pid", {}, task_id="a", step="s", call_index=1)
        (health,) = tools.health()
    assert second.text != first.text
    assert second.attempts == 2
    assert health.errors == 1
    assert len(executions(calls, "pid")) == 2


# -- HTTP: 5xx, 429, rate-limited tool errors, the breaker -------------------------------


async def test_http_5xx_is_retried(http: tuple[HttpState, str], fake_time: FakeTime) -> None:
    state, url = http
    state.fail_status, state.fail_next = 503, 1
    async with registry(http_spec(url, retries=2), t=fake_time) as tools:
        result = await tools.call("h.ping", {}, task_id="a", step="s", call_index=0)
        (health,) = tools.health()
    assert (result.text, result.attempts) == ("pong", 2)
    assert state.calls == ["ping", "ping"]
    assert state.executed == ["ping"]
    assert (health.errors, health.ok) == (1, 1)
    assert health.last_errors[0].reason == "HTTP 503"


async def test_breaker_opens_then_half_opens_and_closes_on_success(
    http: tuple[HttpState, str], fake_time: FakeTime
) -> None:
    state, url = http
    spec = http_spec(url, retries=0, breaker_failures=2, breaker_reset_s=30)
    async with registry(spec, t=fake_time) as tools:
        breaker = tools.breaker("h.ping")
        state.fail_status = 500
        for i in range(2):
            with pytest.raises(ToolUnavailable, match="HTTP 500"):
                await tools.call("h.ping", {}, task_id="a", step="s", call_index=i)
        assert breaker.state == "open"
        assert len(state.calls) == 2  # positive control: both reached the server
        with pytest.raises(ToolCircuitOpen) as refused:
            await tools.call("h.ping", {}, task_id="a", step="s", call_index=2)
        assert len(state.calls) == 2  # refused without trying
        assert refused.value.retry_after_s == pytest.approx(30)
        assert isinstance(refused.value, TransientError)
        fake_time.now += 30
        assert breaker.state == "half_open"
        state.fail_status = 0
        ok = await tools.call("h.ping", {}, task_id="a", step="s", call_index=3)
        assert breaker.state == "closed"
        (health,) = tools.health()
    assert ok.text == "pong"
    assert len(state.calls) == 3
    assert (health.calls, health.errors, health.circuit_open, health.breaker) == (4, 2, 1, "closed")


async def test_a_failed_half_open_probe_opens_the_breaker_again(
    http: tuple[HttpState, str], fake_time: FakeTime
) -> None:
    state, url = http
    spec = http_spec(url, retries=0, breaker_failures=1, breaker_reset_s=10)
    async with registry(spec, t=fake_time) as tools:
        state.fail_status = 502
        with pytest.raises(ToolUnavailable):
            await tools.call("h.ping", {}, task_id="a", step="s", call_index=0)
        fake_time.now += 10
        assert tools.breaker("h.ping").state == "half_open"
        with pytest.raises(ToolUnavailable, match="HTTP 502"):  # the probe went through
            await tools.call("h.ping", {}, task_id="a", step="s", call_index=1)
        assert tools.breaker("h.ping").state == "open"
        with pytest.raises(ToolCircuitOpen):
            await tools.call("h.ping", {}, task_id="a", step="s", call_index=2)
    assert len(state.calls) == 2


async def test_http_429_waits_its_retry_after_and_retries(
    http: tuple[HttpState, str], fake_time: FakeTime
) -> None:
    state, url = http
    state.limit_next, state.retry_after = 2, "0.25"
    async with registry(http_spec(url, retries=0), t=fake_time) as tools:
        result = await tools.call("h.ping", {}, task_id="a", step="s", call_index=0)
        (health,) = tools.health()
    assert result.text == "pong"
    assert result.attempts == 3
    assert fake_time.sleeps == [0.25, 0.25]
    assert len(state.calls) == 3
    assert state.executed == ["ping"]
    assert (health.rate_limited, health.errors, health.breaker) == (2, 0, "closed")


async def test_a_rate_limit_beyond_the_wait_budget_fails_with_the_reason(
    http: tuple[HttpState, str], fake_time: FakeTime
) -> None:
    state, url = http
    state.limit_next, state.retry_after = 5, "30"
    async with registry(http_spec(url, max_rate_limit_wait_s=2), t=fake_time) as tools:
        with pytest.raises(ToolRateLimited) as caught:
            await tools.call("h.ping", {}, task_id="a", step="s", call_index=0)
    assert caught.value.retry_after_s == 30
    assert "exceeds the call's remaining wait budget of 2 s" in str(caught.value)
    assert caught.value.reason == "HTTP 429"
    assert fake_time.sleeps == []
    assert len(state.calls) == 1


async def test_a_rate_limited_tool_error_is_waited_out(
    http: tuple[HttpState, str], fake_time: FakeTime
) -> None:
    state, url = http
    state.tool_limits = 2
    async with registry(http_spec(url), t=fake_time) as tools:
        result = await tools.call("h.limited", {}, task_id="a", step="s", call_index=0)
    assert result.text == "finally"
    assert not result.is_error
    assert state.executed == ["limited"] * 3  # a counter at the server
    assert fake_time.sleeps == [0.05, 0.05]  # "retry after 0.05 s" in its error text


async def test_the_local_rate_limit_spaces_calls_within_the_budget(
    http: tuple[HttpState, str], fake_time: FakeTime
) -> None:
    state, url = http
    spec = http_spec(url, rate_limit_calls=1, rate_limit_per_s=10, max_rate_limit_wait_s=15)
    async with registry(spec, t=fake_time) as tools:
        await tools.call("h.ping", {}, task_id="a", step="s", call_index=0)
        await tools.call("h.ping", {}, task_id="a", step="s", call_index=1)
        assert fake_time.sleeps == [pytest.approx(10)]
        tight = ToolRegistry(
            [
                http_spec(
                    url, name="h2", rate_limit_calls=1, rate_limit_per_s=10, max_rate_limit_wait_s=5
                )
            ],
            scanner=NoPii(),
            sleep=fake_time.sleep,
            clock=fake_time.clock,
        )
        async with tight:
            await tight.call("h2.ping", {}, task_id="a", step="s", call_index=0)
            with pytest.raises(ToolRateLimited, match="local rate limit"):
                await tight.call("h2.ping", {}, task_id="a", step="s", call_index=1)
    assert len(state.calls) == 3


# -- replay ----------------------------------------------------------------------------


async def test_strict_replay_serves_recorded_responses_with_zero_live_calls(
    http: tuple[HttpState, str], calls: Path
) -> None:
    state, url = http
    recorder = InMemoryToolRecorder()
    specs = (http_spec(url), stdio_spec(calls))
    async with registry(*specs, recorder=recorder) as live:
        a = await live.call("h.ping", {"text": "x"}, task_id="t", step="s", call_index=0)
        b = await live.call("t.echo", {"text": "y"}, task_id="t", step="s", call_index=1)
    assert len(state.calls) == 1
    assert len(executions(calls)) == 1
    async with registry(*specs, recorder=recorder, replay="strict") as replay:
        a2 = await replay.call("h.ping", {"text": "x"}, task_id="t", step="s", call_index=0)
        b2 = await replay.call("t.echo", {"text": "y"}, task_id="t", step="s", call_index=1)
        with pytest.raises(ToolReplayMiss, match="other arguments"):
            await replay.call("h.ping", {"text": "z"}, task_id="t", step="s", call_index=0)
        with pytest.raises(ToolReplayMiss, match="no recorded response"):
            await replay.call("h.ping", {"text": "x"}, task_id="t", step="s", call_index=2)
        assert replay.pool._connections == {}  # no server was even started
    assert (a2.text, b2.text) == (a.text, b.text)
    assert (a2.source, a2.attempts, a2.idempotency_key) == ("replay", 0, a.idempotency_key)
    assert len(state.calls) == 1
    assert len(executions(calls)) == 1


async def test_prefer_replay_falls_back_to_a_live_call(http: tuple[HttpState, str]) -> None:
    state, url = http
    recorder = InMemoryToolRecorder()
    async with registry(http_spec(url), recorder=recorder) as live:
        await live.call("h.ping", {"text": "x"}, task_id="t", step="s", call_index=0)
    async with registry(http_spec(url), recorder=recorder, replay="prefer") as tools:
        known = await tools.call("h.ping", {"text": "x"}, task_id="t", step="s", call_index=0)
        new = await tools.call("h.ping", {"text": "n"}, task_id="t", step="s", call_index=1)
    assert (known.source, new.source, new.text) == ("replay", "live", "pong n")
    assert len(state.calls) == 2


# -- in-process tools, privacy fail-closed ---------------------------------------------


async def test_python_tools_share_the_interface() -> None:
    specs = (
        ToolSpec(name="p", transport="python", target="tests._mcp.inproc:server"),
        ToolSpec(name="wc", transport="python", target="tests._mcp.inproc:word_count"),
    )
    async with registry(*specs) as tools:
        names = [t.name for t in await tools.list_tools()]
        words = await tools.call("wc", {"text": "a b c"}, task_id="t", step="s", call_index=0)
        with pytest.raises(InvalidToolArguments, match=r"\$\.text"):
            await tools.call("wc", {"text": 3}, task_id="t", step="s", call_index=1)
    assert names == ["p.contacts", "p.customer_record", "p.key_seen", "p.plain", "wc.wc"]
    assert words.text == "3"
    assert words.structured == {"result": 3}


async def test_a_scanner_failure_withholds_the_response() -> None:
    scanner = BrokenScanner()
    spec = ToolSpec(name="p", transport="python", target="tests._mcp.inproc:server")
    recorder = InMemoryToolRecorder()
    async with registry(spec, scanner=scanner, recorder=recorder) as tools:
        with pytest.raises(ToolResponseUnscanned) as caught:
            await tools.call(
                "p.customer_record", {"customer_id": "c-1"}, task_id="t", step="s", call_index=0
            )
    assert isinstance(caught.value, PermanentError)
    assert caught.value.reason == "scanner_failed"
    assert scanner.calls == 1
    assert "Jane" not in str(caught.value)
    assert "@" not in str(caught.value)
    assert [c.outcome for c in recorder.calls] == ["ok"]  # the call happened; its answer is held


async def test_the_idempotency_key_reaches_an_in_process_server_too() -> None:
    spec = ToolSpec(name="p", transport="python", target="tests._mcp.inproc:server")
    async with registry(spec) as tools:
        seen = await tools.call("p.key_seen", {}, task_id="t-2", step="plan", call_index=4)
    assert seen.text == idempotency_key("t-2", "plan", 4) == seen.idempotency_key
