"""Alembic environment of the state database (async engines).

Normally run through :func:`sitemesh.state.migrate`, which passes an open
connection in ``config.attributes["connection"]``. From the command line::

    alembic -c sitemesh/state/alembic.ini -x url=sqlite+aiosqlite:///dev.db upgrade head
    alembic -c sitemesh/state/alembic.ini -x url=... revision --autogenerate -m "..."
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from sitemesh.state._db import create_engine
from sitemesh.state._models import Base

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode recreates the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise SystemExit("pass the database with -x url=<sqlalchemy async url>")
    return url


async def _run_online() -> None:
    engine = create_engine(_url())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


def _run_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


_connection: Connection | None = config.attributes.get("connection")
if context.is_offline_mode():
    _run_offline()
elif _connection is not None:
    _run(_connection)
else:
    asyncio.run(_run_online())
