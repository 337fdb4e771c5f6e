"""Throwaway databases for tests that run on both kinds: a SQLite file or a PostgreSQL db.

PostgreSQL is the local server at 127.0.0.1:5432 (trust auth, maintenance database
``test``), as in ``tests/test_state_store.py``; tests using it skip when it is down.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
PG_USERS = ("postgres", "root")

_PG_USER: list[str | None] = []

DB_KINDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
"""``pytest.mark.parametrize`` values for a test that runs on both databases."""


async def _pg_user() -> str | None:
    if not _PG_USER:
        found = None
        for user in PG_USERS:
            try:
                conn = await asyncpg.connect(
                    host=PG_HOST, port=PG_PORT, user=user, database="test", timeout=2
                )
            except (OSError, asyncpg.PostgresError, TimeoutError):
                continue
            await conn.close()
            found = user
            break
        _PG_USER.append(found)
    return _PG_USER[0]


async def _admin(user: str, sql: str) -> None:
    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=user, database="test")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_db(
    kind: str, tmp_path: Path, *, tag: str = "budget", sqlite_file: Path | None = None
) -> AsyncIterator[str]:
    """The URL of a new empty database of ``kind`` (``sqlite`` / ``postgres``), dropped after.

    Args:
        kind: ``sqlite`` or ``postgres``.
        tmp_path: where the SQLite file goes.
        tag: database name prefix (``sm_<tag>_<hex>``), for a readable ``\\l``.
        sqlite_file: the SQLite file to use (its folder need not exist yet).
    """
    if kind == "sqlite":
        path = sqlite_file or tmp_path / f"{tag}-{uuid.uuid4().hex[:8]}.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    user = await _pg_user()
    if user is None:
        pytest.skip(f"PostgreSQL unreachable at {PG_HOST}:{PG_PORT} (users {PG_USERS}, db test)")
    name = f"sm_{tag}_{uuid.uuid4().hex[:12]}"
    await _admin(user, f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await _admin(user, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
