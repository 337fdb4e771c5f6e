"""An MCP server over streamable HTTP, in this process, on a free port (uvicorn).

An ASGI front counts every ``tools/call`` request that reaches the server (the count
at the server, ``calls``) and, when told to, answers them itself with an HTTP error
(``fail_status``, e.g. 503, for the next ``fail_next`` calls; ``None``: every call) or
with 429 and a ``Retry-After`` (``limit_next`` calls) before the MCP app sees them.
The ``limited`` tool answers "rate limited, retry after 0.05 s" (an ``isError``
result) for its first ``tool_limits`` calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError


@dataclass
class HttpState:
    """What the server saw and what it is told to do."""

    calls: list[str] = field(default_factory=list)
    """The tool of every ``tools/call`` that reached the server, in order."""
    executed: list[str] = field(default_factory=list)
    """The tools actually executed (after the ASGI front let the call through)."""
    fail_status: int = 0
    """Answer ``tools/call`` with this HTTP status (0: don't)."""
    fail_next: int | None = None
    """For this many calls (``None``: all of them while ``fail_status`` is set)."""
    limit_next: int = 0
    """Answer this many ``tools/call`` with 429 and ``Retry-After: retry_after``."""
    retry_after: str = "0.05"
    tool_limits: int = 0
    """The ``limited`` tool's remaining "rate limited" answers."""


def build_server(state: HttpState) -> MCPServer:
    server = MCPServer("sitemesh-test-http")

    @server.tool()
    def ping(text: str = "") -> str:
        """Answer pong."""
        state.executed.append("ping")
        return f"pong {text}".strip()

    @server.tool()
    def limited() -> str:
        """Rate-limit the first ``tool_limits`` calls."""
        state.executed.append("limited")
        if state.tool_limits > 0:
            state.tool_limits -= 1
            raise ToolError("rate limited, retry after 0.05 s")
        return "finally"

    return server


class _Front:
    def __init__(self, app: Any, state: HttpState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
            if headers.get("mcp-method") == "tools/call":
                s = self.state
                s.calls.append(headers.get("mcp-name", ""))
                status, extra = 0, []
                if s.limit_next > 0:
                    s.limit_next -= 1
                    status, extra = 429, [(b"retry-after", s.retry_after.encode())]
                elif s.fail_status and (s.fail_next is None or s.fail_next > 0):
                    if s.fail_next is not None:
                        s.fail_next -= 1
                    status = s.fail_status
                if status:
                    await _drain(receive)
                    body = b"unavailable"
                    await send(
                        {
                            "type": "http.response.start",
                            "status": status,
                            "headers": [(b"content-type", b"text/plain"), *extra],
                        }
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)


async def _drain(receive: Any) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


@contextlib.asynccontextmanager
async def serve(state: HttpState) -> AsyncIterator[str]:
    """Serve the MCP server until the block ends; yields its URL (``.../mcp``)."""
    app = _Front(build_server(state).streamable_http_app(), state)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws="none"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        await task
