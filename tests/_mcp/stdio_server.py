"""An MCP server over stdio with the tools the registry tests need.

Tools: ``echo`` (text back), ``slow`` (sleeps past any short timeout), ``fail`` (a
JSON-RPC internal error, like a backend that is down), ``lookup`` (an integer
``customer_id``, for argument validation), ``pid`` (the server's process id),
``create_note`` (a side effect, annotated so, executed once per idempotency key: a
repeated key answers the first note). Every execution is
appended as a JSON line (tool, the ``_meta`` key, the argument key) to the file named
by ``SITEMESH_TEST_CALLS``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import anyio
from mcp import MCPError
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import INTERNAL_ERROR, ToolAnnotations

META_KEY = "sitemesh/idempotency-key"

server = MCPServer("sitemesh-test-stdio")
_notes: dict[str, int] = {}


def _log(tool: str, ctx: Context | None, **extra: Any) -> None:
    meta = dict((ctx.request_context.meta or {}) if ctx is not None else {})
    line = {"tool": tool, "meta_key": meta.get(META_KEY, ""), **extra}
    path = os.environ.get("SITEMESH_TEST_CALLS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


@server.tool()
def echo(text: str, ctx: Context) -> str:
    """Answer the text back."""
    _log("echo", ctx)
    return f"echo: {text}"


@server.tool()
async def slow(seconds: float, ctx: Context) -> str:
    """Sleep for ``seconds``, then answer."""
    _log("slow", ctx)
    await anyio.sleep(seconds)
    return "done"


@server.tool()
def fail(ctx: Context) -> str:
    """Fail like a backend that is down (JSON-RPC internal error)."""
    _log("fail", ctx)
    raise MCPError(INTERNAL_ERROR, "backend for jane.doe@example.com is down")


@server.tool()
def lookup(customer_id: int, ctx: Context) -> str:
    """Look a customer up by number."""
    _log("lookup", ctx, customer_id=customer_id)
    return f"customer {customer_id}"


@server.tool()
def pid(ctx: Context) -> int:
    """This server's process id."""
    _log("pid", ctx)
    return os.getpid()


@server.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True))
def create_note(customer: str, text: str, ctx: Context, idempotency_key: str = "") -> str:
    """Create a note (a side effect), once per idempotency key."""
    meta_key = str((ctx.request_context.meta or {}).get(META_KEY, ""))
    key = idempotency_key or meta_key
    executed = key not in _notes
    if executed:
        _notes[key] = len(_notes) + 1
    _log("create_note", ctx, arg_key=idempotency_key, executed=executed)
    return f"note {_notes[key]} for {customer}"


if __name__ == "__main__":
    server.run()
