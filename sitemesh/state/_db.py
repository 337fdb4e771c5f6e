"""Engines and migrations for SQLite (aiosqlite) and PostgreSQL (asyncpg).

:func:`migrate` upgrades a database to the Alembic head programmatically. It is
safe to call from several processes at once: on PostgreSQL the upgrade runs in one
transaction holding an advisory lock (DDL is transactional there, so a second
process waits and then finds the database at head); on SQLite an exclusive
``flock`` on ``<db file>.migrate.lock`` serialises the processes.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from pathlib import Path
from typing import Any, Final

import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, StaticPool

log = logging.getLogger(__name__)

MIGRATIONS_DIR: Final = Path(__file__).parent / "migrations"
"""Alembic script directory (``env.py``, ``versions/``)."""

MIGRATE_LOCK_KEY: Final = 0x5317_E5A7_E000_0001
"""PostgreSQL advisory lock key taken while migrating (any constant 64-bit value)."""

SQLITE_BUSY_TIMEOUT_MS: Final = 10_000
"""How long a SQLite connection waits for another writer, in milliseconds."""


def is_sqlite(url: str) -> bool:
    """Whether ``url`` is a SQLite URL."""
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite ``url``, or ``None`` for an in-memory database."""
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database)


def _sqlite_pragmas(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")  # readers never block the writer
        cursor.execute("PRAGMA synchronous = NORMAL")
    finally:
        cursor.close()


_JSON: Final = msgspec.json.Encoder()


def _json_text(value: Any) -> str:
    """A JSON column's text (what ``json.dumps`` would store, without its spaces)."""
    return _JSON.encode(value).decode()


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url`` with sitemesh's connection settings.

    SQLite: WAL journal and a busy timeout, so the CLI can read while the recorder
    writes; the parent directory of the file is created; an in-memory database is
    shared by every session of the engine. PostgreSQL: ``pool_pre_ping``. JSON
    columns are written and read with msgspec (compact UTF-8 JSON; the recorder
    stores every event's payload, and the standard library's encoder was the largest
    single cost of a write, ``bench/pipeline.py``).

    Args:
        url: ``sqlite+aiosqlite:///path.db`` or ``postgresql+asyncpg://user@host/db``.
        **kwargs: passed to :func:`sqlalchemy.ext.asyncio.create_async_engine`.

    Returns:
        The engine; dispose it with ``await engine.dispose()``.
    """
    kwargs.setdefault("json_serializer", _json_text)
    kwargs.setdefault("json_deserializer", msgspec.json.decode)
    if is_sqlite(url):
        path = sqlite_path(url)
        if path is None:
            kwargs.setdefault("poolclass", StaticPool)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def alembic_config() -> Config:
    """The Alembic configuration of the state database (no ``alembic.ini`` needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    return cfg


def _upgrade(connection: Connection, revision: str) -> None:
    if connection.dialect.name == "postgresql":
        # Held until the transaction ends; DDL is transactional on PostgreSQL.
        connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATE_LOCK_KEY})
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, revision)


async def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (Alembic), creating it if needed.

    Works for ``sqlite+aiosqlite`` and ``postgresql+asyncpg`` URLs. For SQLite the
    parent directory of the file is created. Safe to call concurrently from several
    processes (see the module docstring).

    Args:
        url: SQLAlchemy async URL of the database.
        revision: Alembic revision to upgrade to; ``"head"`` for the latest.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable or the upgrade
            failed (the transaction is rolled back on PostgreSQL).
    """
    path = sqlite_path(url) if is_sqlite(url) else None
    engine = create_engine(url)
    try:
        if path is None:
            await _run_upgrade(engine, revision)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = path.with_name(path.name + ".migrate.lock")
        fh = await asyncio.to_thread(lock_path.open, "a")
        try:
            # Blocking flock in a thread: the event loop keeps running meanwhile.
            await asyncio.to_thread(fcntl.flock, fh, fcntl.LOCK_EX)
            await _run_upgrade(engine, revision)
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
    finally:
        await engine.dispose()


async def _run_upgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade, revision)
    log.debug("state database at %s", revision)
