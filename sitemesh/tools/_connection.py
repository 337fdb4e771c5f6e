"""One connection to one tool server, through the official MCP SDK (``mcp.Client``).

* ``stdio``: the server is started as a subprocess (``mcp.client.stdio.stdio_client``);
* ``http``: streamable HTTP (``mcp.client.streamable_http.streamable_http_client``)
  over an ``httpx2`` client whose response hook remembers each tool's last HTTP error
  status and ``Retry-After`` (the SDK reports a non-JSON 4xx/5xx only as a JSON-RPC
  internal error);
* ``python``: an ``MCPServer`` in this process (``mcp.Client(server)``), or a function
  served as one tool by an ``MCPServer`` built for it.

The SDK's client is an anyio context: it is entered and left by one background task
per connection (:meth:`ServerConnection.start` / :meth:`ServerConnection.aclose`), so
calls from any task share it. A dropped connection is replaced on the next attempt.

Every failure of an attempt becomes an :class:`AttemptFailed` with a kind
(``timeout``, ``unavailable``, ``rate_limited``, ``invalid``), a PII-free reason built
from classes, codes and statuses (never the server's text), the server's retry delay
when it gave one, and whether the tool may have acted (``maybe_executed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal, cast

from ._spec import ToolSpec
from ._types import ToolResponse

if TYPE_CHECKING:
    import httpx2
    from mcp import Client
    from mcp.types import RequestParamsMeta

__all__ = ["AttemptFailed", "FailureKind", "ServerConnection", "response_of"]

log = logging.getLogger("sitemesh.tools")

FailureKind = Literal["timeout", "unavailable", "rate_limited", "invalid"]

RETRYABLE_META_KEY: Final = "sitemesh/retryable"
"""A tool marks an ``isError`` result transient (retry it, count it against the breaker)
with ``_meta: {"sitemesh/retryable": true}`` (or ``"retryable": true`` in its
structured content)."""

RETRY_AFTER_META_KEY: Final = "sitemesh/retry-after-s"
"""A rate-limited tool says how long to wait, in seconds, in ``_meta`` (or as
``retry_after_s`` in its structured content, or "retry after N s" in its text)."""

_RATE_LIMITED = re.compile(r"rate[ _-]?limit", re.IGNORECASE)
_RETRY_AFTER = re.compile(
    r"retry[ _-]?after\D{0,12}?(\d+(?:\.\d+)?)\s*(ms|milliseconds?|s|sec|seconds?)?",
    re.IGNORECASE,
)
_SDK_CRASH = "Error executing tool {name}"
"""What ``MCPServer`` answers (``isError``) when a tool raised an unexpected exception."""

HTTP_TIMEOUT_S: Final = 30.0
"""Seconds an HTTP tool server may take to accept a connection or a request body (the
MCP SDK's transport default); a call's own limit is :attr:`ToolSpec.timeout_s`."""

HTTP_READ_TIMEOUT_S: Final = 300.0
"""Seconds a streamable-HTTP response may go without data (the SDK's default for its
long-lived event streams)."""


class AttemptFailed(Exception):
    """One attempt of a call failed (internal to the registry).

    Attributes:
        kind: ``timeout``, ``unavailable`` (retryable), ``rate_limited`` or ``invalid``
            (the server refused the arguments or the tool: not retried).
        reason: PII-free, e.g. ``HTTP 503``, ``JSON-RPC error -32603``.
        retry_after_s: the delay the server asked for, in seconds, or ``None``.
        maybe_executed: the tool may have run (a timeout, a dropped connection, a
            server error); ``False`` when the server provably did not act (429, a
            connection that never opened).
        retryable: worth another attempt.
    """

    def __init__(
        self,
        kind: FailureKind,
        reason: str,
        *,
        retry_after_s: float | None = None,
        maybe_executed: bool = True,
        retryable: bool = True,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after_s = retry_after_s
        self.maybe_executed = maybe_executed
        self.retryable = retryable and kind != "invalid"


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside (anyio task groups raise groups)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _retry_after(text: str) -> float | None:
    match = _RETRY_AFTER.search(text)
    if match is None:
        return None
    value = float(match.group(1))
    unit = (match.group(2) or "s").lower()
    return value / 1000.0 if unit.startswith("m") else value


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def response_of(result: Any) -> ToolResponse:
    """A ``CallToolResult`` as a :class:`ToolResponse` (text of each block, structured
    content, ``isError``; blocks without text are counted as omitted)."""
    import mcp.types as t

    texts: list[str] = []
    omitted = 0
    for block in result.content or []:
        if isinstance(block, t.TextContent):
            texts.append(block.text)
        elif isinstance(block, t.EmbeddedResource) and isinstance(
            block.resource, t.TextResourceContents
        ):
            texts.append(block.resource.text)
        elif isinstance(block, t.ResourceLink):
            texts.append(f"{block.name} <{block.uri}>")
        else:
            omitted += 1
    return ToolResponse(
        texts=texts,
        structured=result.structured_content,
        is_error=bool(result.is_error),
        omitted=omitted,
    )


def error_result_failure(tool: str, result: Any, response: ToolResponse) -> AttemptFailed | None:
    """The failure an ``isError`` result stands for, if it is not a plain answer:
    rate limited (its text or structured content says so), marked retryable, or the
    SDK's crash message. ``None``: an answer the agent should read."""
    meta = result.meta or {}
    structured = response.structured if isinstance(response.structured, dict) else {}
    text = "\n".join(response.texts)
    flagged = str(structured.get("error", ""))
    if _RATE_LIMITED.search(text) or _RATE_LIMITED.search(flagged):
        wait = _number(meta.get(RETRY_AFTER_META_KEY))
        if wait is None:
            wait = _number(structured.get("retry_after_s"))
        if wait is None:
            wait = _retry_after(text)
        return AttemptFailed(
            "rate_limited", "rate limited (tool error)", retry_after_s=wait, maybe_executed=False
        )
    if meta.get(RETRYABLE_META_KEY) is True or structured.get("retryable") is True:
        return AttemptFailed("unavailable", "tool error marked retryable")
    if text.strip() == _SDK_CRASH.format(name=tool):
        return AttemptFailed("unavailable", "the tool crashed (unexpected exception)")
    return None


class _HttpErrors:
    """The last HTTP error status and ``Retry-After`` per tool, from the response hook."""

    def __init__(self) -> None:
        self.by_tool: dict[str, tuple[int, float | None]] = {}

    async def on_response(self, response: httpx2.Response) -> None:
        if response.status_code < 400:
            return
        request = response.request
        name = request.headers.get("mcp-name")
        if name is None:
            with contextlib.suppress(Exception):
                body = json.loads(request.content or b"{}")
                if body.get("method") == "tools/call":
                    name = (body.get("params") or {}).get("name")
        if not name:
            return
        from ..models import parse_retry_after

        self.by_tool[name] = (response.status_code, parse_retry_after(response.headers))

    def pop(self, tool: str) -> tuple[int, float | None] | None:
        return self.by_tool.pop(tool, None)


def _http_failure(status: int, retry_after_s: float | None) -> AttemptFailed:
    if status == 429:
        return AttemptFailed(
            "rate_limited", "HTTP 429", retry_after_s=retry_after_s, maybe_executed=False
        )
    if status >= 500 or status in (408, 409, 425):
        return AttemptFailed(
            "unavailable",
            f"HTTP {status}",
            retry_after_s=retry_after_s,
            maybe_executed=status not in (502, 503),
        )
    return AttemptFailed("unavailable", f"HTTP {status}", retryable=False)


def load_target(target: str, name: str) -> Any:
    """The ``MCPServer`` of a ``python`` tool: the object at ``module:attr``, or an
    ``MCPServer`` serving the function there as the single tool ``name``.

    Raises:
        ImportError: the module does not import.
        AttributeError: it has no such attribute.
        TypeError: the attribute is neither an MCP server nor a callable.
    """
    from mcp.server.lowlevel import Server
    from mcp.server.mcpserver import MCPServer

    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if isinstance(obj, MCPServer | Server):
        return obj
    if callable(obj):
        server: MCPServer[Any] = MCPServer(name=name)
        server.add_tool(obj, name=name)
        return server
    raise TypeError(f"{target} is a {type(obj).__name__}, not an MCPServer or a function")


class ServerConnection:
    """A live MCP session with one configured server (see the module docstring).

    Args:
        spec: the server's configuration.
        env: extra environment for a stdio server (``SITEMESH_*`` when
            ``spec.sitemesh_env``), below ``spec.env``.
    """

    def __init__(self, spec: ToolSpec, *, env: Mapping[str, str] | None = None) -> None:
        self.spec = spec
        self._env = dict(env or {})
        self._client: Client | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[None] | None = None
        self._http = _HttpErrors()
        self.broken = False
        """The session failed (the server went away): replace it."""

    def _transport(self) -> Any:
        spec = self.spec
        if spec.transport == "stdio":
            from mcp import StdioServerParameters
            from mcp.client.stdio import stdio_client

            command, args = spec.argv
            params = StdioServerParameters(
                command=command, args=args, env={**self._env, **spec.env}, cwd=spec.cwd
            )
            return stdio_client(params, errlog=sys.stderr)
        if spec.transport == "http":
            import httpx2
            from mcp.client.streamable_http import streamable_http_client

            # The SDK's transport defaults: 30 s to connect, write and wait for the pool,
            # 5 minutes to read (a server may hold a response stream open); redirects
            # are left to the transport, which follows them within the origin only.
            http = httpx2.AsyncClient(
                headers=dict(spec.headers),
                timeout=httpx2.Timeout(HTTP_TIMEOUT_S, read=HTTP_READ_TIMEOUT_S),
                event_hooks={"response": [self._http.on_response]},
            )

            @contextlib.asynccontextmanager
            async def transport() -> AsyncIterator[Any]:
                # the SDK leaves a client it was given open: close it with the session
                async with http, streamable_http_client(spec.url or "", http_client=http) as s:
                    yield s

            return transport()
        return load_target(spec.target or "", spec.name)

    async def _run(self, ready: asyncio.Future[None]) -> None:
        from mcp import Client
        from mcp.types import Implementation

        try:
            async with Client(
                self._transport(),
                cache=None,
                client_info=Implementation(name="sitemesh", version="0.1.0"),
            ) as client:
                self._client = client
                ready.set_result(None)
                await self._stop.wait()
        except BaseException as exc:
            self.broken = True
            if not ready.done():
                ready.set_exception(exc)
            elif not isinstance(exc, asyncio.CancelledError):
                log.warning(
                    "tool server %s: session ended (%s)", self.spec.name, type(_leaf(exc)).__name__
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._client = None

    async def start(self) -> None:
        """Start (or connect to) the server and complete the MCP handshake.

        Raises:
            AttemptFailed: it could not be reached within ``spec.connect_timeout_s``
                (kind ``unavailable``, ``maybe_executed=False``).
        """
        if self._task is not None:
            return
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._ready = ready
        self._task = asyncio.create_task(self._run(ready), name=f"mcp session {self.spec.name}")
        try:
            await asyncio.wait_for(asyncio.shield(ready), self.spec.connect_timeout_s)
        except TimeoutError:
            self.broken = True
            await self.aclose()
            raise AttemptFailed(
                "unavailable",
                f"no MCP handshake within {self.spec.connect_timeout_s:g} s",
                maybe_executed=False,
            ) from None
        except asyncio.CancelledError:
            await self.aclose()
            raise
        except Exception as exc:
            self.broken = True
            await self.aclose()
            raise AttemptFailed(
                "unavailable", f"cannot connect: {type(_leaf(exc)).__name__}", maybe_executed=False
            ) from exc

    @property
    def client(self) -> Client:
        if self._client is None:
            self.broken = True
            raise AttemptFailed("unavailable", "session closed", maybe_executed=False)
        return self._client

    async def list_tools(self) -> list[Any]:
        """Every tool the server offers (``mcp.types.Tool``), all pages.

        Raises:
            AttemptFailed: the listing failed.
        """
        from mcp import MCPError

        tools: list[Any] = []
        cursor: str | None = None
        try:
            async with asyncio.timeout(self.spec.timeout_s):
                for _ in range(100):
                    page = await self.client.list_tools(cursor=cursor)
                    tools.extend(page.tools)
                    cursor = page.next_cursor
                    if cursor is None:
                        break
        except TimeoutError:
            raise AttemptFailed("timeout", "tools/list timed out", maybe_executed=False) from None
        except MCPError as exc:
            self._mark(exc.code)
            raise AttemptFailed(
                "unavailable", f"tools/list: JSON-RPC error {exc.code}", maybe_executed=False
            ) from exc
        return tools

    def _mark(self, code: int) -> None:
        from mcp.types import CONNECTION_CLOSED

        if code == CONNECTION_CLOSED:
            self.broken = True

    async def call(
        self, tool: str, arguments: dict[str, Any], meta: dict[str, Any]
    ) -> ToolResponse:
        """One ``tools/call`` attempt, cut after ``spec.timeout_s``.

        Returns:
            The answer (``is_error`` answers included, unless they stand for a failure:
            see :func:`error_result_failure`).

        Raises:
            AttemptFailed: the attempt failed.
        """
        from mcp import MCPError
        from mcp.types import CONNECTION_CLOSED, INVALID_PARAMS, REQUEST_TIMEOUT

        timeout_s = self.spec.timeout_s
        try:
            result = await self.client.call_tool(
                tool,
                arguments,
                read_timeout_seconds=timeout_s,
                meta=cast("RequestParamsMeta", meta),
            )
        except AttemptFailed:
            raise
        except MCPError as exc:
            http = self._http.pop(tool)
            if http is not None:
                raise _http_failure(*http) from exc
            if exc.code == REQUEST_TIMEOUT:
                raise AttemptFailed("timeout", f"timed out after {timeout_s:g} s") from exc
            if exc.code == CONNECTION_CLOSED:
                self.broken = True
                raise AttemptFailed("unavailable", "connection closed") from exc
            if exc.code == INVALID_PARAMS:
                raise AttemptFailed("invalid", "the server refused the arguments (-32602)") from exc
            data = exc.data if isinstance(exc.data, dict) else {}
            if _RATE_LIMITED.search(exc.message or ""):
                wait = _number(data.get("retry_after_s"))
                raise AttemptFailed(
                    "rate_limited",
                    f"rate limited (JSON-RPC error {exc.code})",
                    retry_after_s=wait if wait is not None else _retry_after(exc.message),
                    maybe_executed=False,
                ) from exc
            raise AttemptFailed("unavailable", f"JSON-RPC error {exc.code}") from exc
        except TimeoutError as exc:
            raise AttemptFailed("timeout", f"timed out after {timeout_s:g} s") from exc
        except RuntimeError as exc:  # invalid structured content, input required
            raise AttemptFailed("unavailable", "invalid result", retryable=False) from exc
        except Exception as exc:
            self.broken = True
            raise AttemptFailed(
                "unavailable", f"transport error: {type(_leaf(exc)).__name__}"
            ) from exc
        response = response_of(result)
        if response.is_error:
            failure = error_result_failure(tool, result, response)
            if failure is not None:
                raise failure
        return response

    async def aclose(self) -> None:
        """End the session (and a stdio server's process). Safe to call twice."""
        self._stop.set()
        task, self._task = self._task, None
        if task is None:
            return
        if self._ready is not None and not self._ready.done():
            task.cancel()  # still connecting: nothing to end gracefully
        done, _ = await asyncio.wait({task}, timeout=10.0)
        if not done:
            task.cancel()
            await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None:
            log.debug("tool server %s: session closed with %r", self.spec.name, task.exception())
