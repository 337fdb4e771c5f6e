"""Retries honour Retry-After and back off with jitter; the breaker opens, rejects fast,
half-opens after the cool-down and closes on success; a hang is cut at timeout_s.

Driven through the official SDK clients against the fake server.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from sitemesh.errors import AllModelsFailed
from sitemesh.models import (
    CallContext,
    ChatMessage,
    CircuitBreaker,
    InMemoryRecorder,
    ModelRequest,
    RetryPolicy,
    parse_retry_after,
)
from tests._fakes.llm_server import Reply, rate_limited, server_error
from tests._fakes.models import Servers, Sleeps, fake_servers

REQ = ModelRequest(messages=[ChatMessage(role="user", content="Is leaf7 healthy?")])
SITE = CallContext(kind="classification", action="pin_edge", agent="test", task_id="t-1")


@pytest.fixture
def servers() -> Iterator[Servers]:
    with fake_servers() as s:
        yield s


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- units ------------------------------------------------------------------------


def test_parse_retry_after_seconds_date_and_ms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    later = format_datetime(now + timedelta(seconds=7), usegmt=True)
    assert parse_retry_after({"retry-after": later}, now=now) == pytest.approx(7.0)
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(max_attempts=5, base_s=1.0, max_s=3.0, max_retry_after_s=10,
                         rng=random.Random(7))
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 3.0), (4, 3.0)]:
        delays = [policy.delay_s(retry) for _ in range(200)]
        assert all(d is not None and 0 <= d <= ceiling for d in delays)
        assert max(d for d in delays if d is not None) > ceiling * 0.8  # spread, not fixed
    assert policy.delay_s(1, retry_after_s=4.0) == 4.0
    assert policy.delay_s(1, retry_after_s=11.0) is None  # too long: next model instead
    assert policy.delay_s(5) is None  # attempts exhausted


def test_breaker_state_machine() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("openai", failures=3, reset_s=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.failure()
    assert breaker.state == "closed"
    breaker.failure()
    assert breaker.state == "open"
    assert not breaker.allow()
    assert breaker.retry_in_s == pytest.approx(10)
    clock.now += 10
    assert breaker.state == "half_open"
    assert breaker.allow()  # the one probe
    assert not breaker.allow()  # no second concurrent probe
    breaker.failure()  # failed probe re-opens at once
    assert breaker.state == "open"
    clock.now += 10
    assert breaker.allow()
    breaker.success()
    assert breaker.state == "closed"
    assert breaker.allow()


# --- through the SDKs -------------------------------------------------------------


async def test_retry_after_is_honoured_then_succeeds(servers: Servers) -> None:
    sleeps = Sleeps()
    servers.vllm.script(rate_limited("2"), rate_limited(None, ms="1500"))
    recorder = InMemoryRecorder()
    async with servers.client(sleep=sleeps, recorder=recorder) as client:
        response = await client.complete(REQ, SITE)
    assert response.text == "Hello from the fake model."
    assert sleeps.delays == [2.0, 1.5]  # exactly what the server asked for
    assert len(servers.vllm.model_requests) == 3
    [call] = recorder.calls
    assert (call.outcome, call.attempts, call.provider) == ("ok", 3, "vllm")


async def test_5xx_backs_off_with_jitter(servers: Servers) -> None:
    sleeps = Sleeps()
    servers.vllm.script(server_error(500), server_error(503))
    async with servers.client(sleep=sleeps, max_attempts=3) as client:
        response = await client.complete(REQ, SITE)
    assert response.source == "model"
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.01
    assert 0 <= sleeps.delays[1] <= 0.02


async def test_retries_exhausted_moves_on_and_records(servers: Servers) -> None:
    servers.vllm.script(*[server_error(502)] * 3)
    recorder = InMemoryRecorder()
    async with servers.client(max_attempts=3, recorder=recorder) as client:
        with pytest.raises(AllModelsFailed) as err:
            await client.complete(REQ, SITE)
    assert err.value.attempts[0][0] == "vllm/qwen2.5-7b-instruct"
    assert "HTTP 502" in err.value.attempts[0][1]
    [call] = recorder.calls
    assert (call.outcome, call.attempts) == ("unavailable", 3)


async def test_breaker_opens_rejects_fast_half_opens_and_closes(servers: Servers) -> None:
    clock = FakeClock()
    servers.vllm.script(*[server_error(500)] * 3)
    recorder = InMemoryRecorder()
    async with servers.client(max_attempts=1, breaker_failures=3, breaker_reset_s=30,
                              recorder=recorder, clock=clock) as client:
        for _ in range(3):
            with pytest.raises(AllModelsFailed):
                await client.complete(REQ, SITE)
        assert client.breakers["vllm"].state == "open"
        seen = len(servers.vllm.model_requests)
        start = time.perf_counter()
        with pytest.raises(AllModelsFailed, match="circuit open"):
            await client.complete(REQ, SITE)
        assert time.perf_counter() - start < 0.05  # rejected without a request
        assert len(servers.vllm.model_requests) == seen
        assert recorder.calls[-1].outcome == "circuit_open"
        clock.now += 30
        assert client.breakers["vllm"].state == "half_open"
        response = await client.complete(REQ, SITE)  # the probe succeeds
        assert response.source == "model"
        assert client.breakers["vllm"].state == "closed"


async def test_a_hang_is_cut_at_timeout(servers: Servers) -> None:
    servers.vllm.script(Reply(hang_s=10))
    recorder = InMemoryRecorder()
    async with servers.client(timeout_s=0.5, max_attempts=1, recorder=recorder) as client:
        start = time.perf_counter()
        with pytest.raises(AllModelsFailed, match=r"no answer within 0.5 s"):
            await client.complete(REQ, SITE)
        elapsed = time.perf_counter() - start
    assert 0.45 <= elapsed < 2.0
    assert recorder.calls[-1].outcome == "timeout"


async def test_a_hanging_stream_is_cut_too(servers: Servers) -> None:
    servers.anthropic.script(Reply(hang_s=10))
    cloud = CallContext(kind="synthesis", complexity=0.9, action="allow_cloud")
    async with servers.client(timeout_s=0.4, max_attempts=1) as client:
        streaming = ModelRequest(messages=REQ.messages, stream=True)
        servers.openai.script(server_error(500))
        start = time.perf_counter()
        response = await client.complete(streaming, cloud)  # openai 500, anthropic hangs
        assert response.provider == "vllm"
        assert time.perf_counter() - start < 2.0
