"""What every bundled tool server shares: its command line, logging, transports, the
site database, the site's NATS bucket, and tool errors that name the field."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, NoReturn

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from nats.aio.client import Client
    from sqlalchemy.ext.asyncio import AsyncEngine

    from ...bus import SiteArtifacts
    from ...config import Settings

log = logging.getLogger("sitemesh.tools.servers")

LOG_FORMAT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""Log lines of a tool server, on stderr (stdout is the stdio transport)."""

MCP_PATH: Final = "/mcp"
"""Where the streamable HTTP endpoint is served (``http://HOST:PORT/mcp``)."""

TASK_ID_PATTERN: Final = r"^[A-Za-z0-9._:-]{1,128}$"
"""A task id (``sitemesh.schemas.TaskId``)."""

_HTTP = re.compile(r"^(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


@dataclass(frozen=True, slots=True)
class HttpAddress:
    """Where ``--http HOST:PORT`` serves streamable HTTP.

    Attributes:
        host: the address to bind (``127.0.0.1``, ``0.0.0.0``, ``::1``).
        port: the TCP port, 1-65535.
    """

    host: str
    port: int

    @property
    def url(self) -> str:
        """The endpoint clients connect to, ``http://HOST:PORT/mcp``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{MCP_PATH}"


def parse_http(value: str) -> HttpAddress:
    """``HOST:PORT`` (IPv6 as ``[::1]:PORT``) as an :class:`HttpAddress`.

    Raises:
        argparse.ArgumentTypeError: not ``HOST:PORT`` or the port is out of range.
    """
    m = _HTTP.match(value.strip())
    port = int(m.group("port")) if m else 0
    if m is None or not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"--http: expected HOST:PORT (port 1-65535), got {value!r}"
        )
    return HttpAddress(m.group("v6") or m.group("host"), port)


def parser(prog: str, description: str, *, db: bool) -> argparse.ArgumentParser:
    """The command line every server takes: ``--http``, ``--log-level`` (and ``--db-url``).

    Args:
        prog: ``python -m sitemesh.tools.servers.<name>``.
        description: the first line of the module docstring.
        db: the server reads the state database (adds ``--db-url``).
    """
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument(
        "--http",
        type=parse_http,
        metavar="HOST:PORT",
        help=f"serve streamable HTTP at http://HOST:PORT{MCP_PATH} instead of stdio",
    )
    if db:
        p.add_argument(
            "--db-url",
            help="SQLAlchemy async URL of the state database (default: the settings' "
            "db_url: SITEMESH_DB_URL, else SQLite under SITEMESH_STATE_DIR)",
        )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return p


def configure_logging(level: str) -> None:
    """Log to stderr only: with stdio, stdout carries the JSON-RPC messages. With
    ``SITEMESH_LOG_FORMAT=json``, one JSON object per line (:mod:`sitemesh.logs`)."""
    from ...logs import JsonFormatter

    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr, force=True)
    try:
        conf = settings()
    except Exception:  # a bad setting is the server's to report, in its own words
        return
    if conf.log_format == "json":
        formatter = JsonFormatter(conf.telemetry.service_for(None), conf.site)
        for handler in logging.getLogger().handlers:
            handler.setFormatter(formatter)


def settings() -> Settings:
    """The process's settings (``SITEMESH_*``; see :mod:`sitemesh.config`)."""
    from ...config import load_settings

    return load_settings()


def safe_db_url(url: str) -> str:
    """``url`` without its password, for logs."""
    return make_url(url).render_as_string(hide_password=True)


async def serve(server: MCPServer[Any], http: HttpAddress | None) -> None:
    """Serve ``server`` over stdio (``http=None``) or streamable HTTP until it ends.

    stdio ends when the client closes stdin; HTTP on SIGINT/SIGTERM (uvicorn's handlers).
    """
    if http is None:
        log.info("%s: serving MCP over stdio", server.name)
        await server.run_stdio_async()
        return
    log.info("%s: serving MCP over streamable HTTP at %s", server.name, http.url)
    await server.run_streamable_http_async(
        host=http.host, port=http.port, streamable_http_path=MCP_PATH
    )


def tool_error(field: str, message: str) -> NoReturn:
    """Fail the call with an MCP tool error (``isError``) that starts with the field."""
    raise ToolError(f"{field}: {message}")


def one_of(**given: object) -> str:
    """The one argument of ``given`` that is set.

    Raises:
        ToolError: none or several are set; the message names them all.
    """
    names = ", ".join(given)
    chosen = [k for k, v in given.items() if v is not None]
    if len(chosen) != 1:
        got = "none" if not chosen else " and ".join(chosen)
        tool_error(names, f"give exactly one of them (got {got})")
    return chosen[0]


class Database:
    """The site's state database of a server: one engine, migrated once at open.

    Args:
        url: SQLAlchemy async URL (SQLite or PostgreSQL).
        auto_migrate: upgrade the schema to head at :meth:`open` (safe with several
            processes, see :func:`sitemesh.state.migrate`).
    """

    def __init__(self, url: str, *, auto_migrate: bool = True) -> None:
        self.url = url
        self._auto_migrate = auto_migrate
        self._engine: AsyncEngine | None = None

    async def open(self) -> None:
        """Migrate (unless told not to) and create the engine. Safe to call twice."""
        if self._engine is not None:
            return
        from ...state import create_engine, migrate

        if self._auto_migrate:
            await migrate(self.url)
        self._engine = create_engine(self.url)
        log.info("state database %s", safe_db_url(self.url))

    @property
    def engine(self) -> AsyncEngine:
        """The engine (after :meth:`open`).

        Raises:
            RuntimeError: not opened.
        """
        if self._engine is None:
            raise RuntimeError("Database.open() was not called")
        return self._engine

    async def close(self) -> None:
        """Dispose of the engine. Safe to call twice."""
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()


@contextlib.asynccontextmanager
async def site_bucket(role: str) -> AsyncIterator[SiteArtifacts | None]:
    """The site's artifact bucket when ``SITEMESH_NATS_URL`` is set, else ``None``.

    Connects as ``role`` (the role whose permissions read the artifacts it needs:
    ``retriever`` for knowledge bases, ``diagnostics`` for telemetry sources) through
    :func:`sitemesh.runtime.connect`. A bucket that does not exist yet (nothing was
    added to the site) is ``None`` too.

    Raises:
        ConfigError, BusConnectionError: the settings name a server that cannot be joined.
    """
    s = settings()
    if not s.nats.url:
        yield None
        return
    from ...bus import ArtifactNotFound, SiteArtifacts
    from ...runtime import connect

    nc: Client = await connect(s, role, name=f"sitemesh-{s.site}-tool-{role}")
    try:
        try:
            bucket: SiteArtifacts | None = await SiteArtifacts.open(nc.jetstream(), s.site)
        except ArtifactNotFound:
            log.info("site %s has no artifact bucket yet", s.site)
            bucket = None
        yield bucket
    finally:
        with contextlib.suppress(Exception):
            await nc.drain()


async def run_main(server: MCPServer[Any], http: HttpAddress | None, *closers: Any) -> None:
    """Serve, then close each of ``closers`` (objects with an async ``close()``)."""
    try:
        await serve(server, http)
    finally:
        for c in closers:
            await c.close()


def run(coro: Any) -> None:
    """Run the server's main coroutine; Ctrl-C ends it quietly."""
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(coro)


def join(names: Sequence[str]) -> str:
    """``a, b, c`` (``(none)`` when empty), for error messages that list choices."""
    return ", ".join(names) if names else "(none)"
