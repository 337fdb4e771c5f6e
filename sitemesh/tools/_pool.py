"""The registry's tool servers: one lazily started session each, and what they offer.

``<server>.<tool>`` names a tool (``<server>`` alone when the server offers exactly
one). A server is started (stdio) or connected (http, python) on first use, its tools
listed once per session; a session that failed is replaced on the next use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from ._connection import AttemptFailed, ServerConnection
from ._errors import ToolUnavailable, UnknownTool
from ._spec import ToolSpec
from ._types import ToolInfo

__all__ = ["ServerPool"]


def _side_effects(spec: ToolSpec, tool: Any) -> bool:
    """The configuration's word, else the tool's ``readOnlyHint`` (absent: a read)."""
    if spec.side_effects is not None:
        return spec.side_effects
    hints = tool.annotations
    return hints is not None and hints.read_only_hint is False


def _idempotent(spec: ToolSpec, tool: Any) -> bool:
    """The configuration's word, else the tool's ``idempotentHint``."""
    if spec.idempotent is not None:
        return spec.idempotent
    hints = tool.annotations
    return hints is not None and hints.idempotent_hint is True


class ServerPool:
    """The configured servers' sessions and tool listings.

    Args:
        specs: the configured servers.
        env: extra environment of stdio servers with ``sitemesh_env``.
    """

    def __init__(self, specs: Sequence[ToolSpec], *, env: Mapping[str, str] | None = None) -> None:
        self.specs: dict[str, ToolSpec] = {s.name: s for s in specs}
        self._env = dict(env or {})
        self._connections: dict[str, ServerConnection] = {}
        self._listings: dict[str, dict[str, ToolInfo]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.closed = False

    def split(self, tool: str) -> tuple[ToolSpec, str | None]:
        """``(server spec, tool name or None)`` of ``tool``.

        Raises:
            UnknownTool: no such server is configured.
        """
        server, _, name = tool.partition(".")
        spec = self.specs.get(server)
        if spec is None:
            known = ", ".join(self.specs) or "none"
            raise UnknownTool(
                f"no tool server {server!r} is configured (servers: {known})", tool=tool
            )
        return spec, name or None

    def _lock(self, server: str) -> asyncio.Lock:
        lock = self._locks.get(server)
        if lock is None:
            lock = self._locks[server] = asyncio.Lock()
        return lock

    async def connect(self, spec: ToolSpec) -> tuple[ServerConnection, dict[str, ToolInfo]]:
        """The server's live session and its tools (connecting or reconnecting it).

        Raises:
            AttemptFailed: it could not be reached or listed.
        """
        if self.closed:
            raise AttemptFailed(
                "unavailable", "the registry is closed", retryable=False, maybe_executed=False
            )
        async with self._lock(spec.name):
            conn = self._connections.get(spec.name)
            if conn is not None and not conn.broken:
                return conn, self._listings[spec.name]
            if conn is not None:
                self._connections.pop(spec.name, None)
                await conn.aclose()
            conn = ServerConnection(spec, env=self._env if spec.sitemesh_env else None)
            await conn.start()
            try:
                tools = await conn.list_tools()
            except AttemptFailed:
                await conn.aclose()
                raise
            allowed = set(spec.tools)
            self._listings[spec.name] = {
                t.name: ToolInfo(
                    name=f"{spec.name}.{t.name}",
                    server=spec.name,
                    tool=t.name,
                    transport=spec.transport,
                    description=(t.description or "").strip(),
                    input_schema=dict(t.input_schema or {}),
                    side_effects=_side_effects(spec, t),
                    idempotent=_idempotent(spec, t),
                )
                for t in tools
                if not allowed or t.name in allowed
            }
            self._connections[spec.name] = conn
            return conn, self._listings[spec.name]

    def pick(self, tool: str, listing: Mapping[str, ToolInfo]) -> ToolInfo:
        """The tool ``tool`` names in its server's ``listing``.

        Raises:
            UnknownTool: the server does not offer it (or offers several and ``tool``
                names none); the message lists what it offers.
        """
        spec, name = self.split(tool)
        if name is None:
            if len(listing) == 1:
                return next(iter(listing.values()))
            raise UnknownTool(
                f"tool server {spec.name!r} offers {len(listing)} tools; call one of: "
                + ", ".join(sorted(f"{spec.name}.{n}" for n in listing)),
                tool=tool,
            )
        info = listing.get(name)
        if info is None:
            offered = ", ".join(sorted(listing)) or "none"
            raise UnknownTool(
                f"tool server {spec.name!r} offers no tool {name!r} (it offers: {offered})",
                tool=tool,
            )
        return info

    async def listing(self, server: str) -> list[ToolInfo]:
        """The tools of ``server``, by name.

        Raises:
            UnknownTool: ``server`` is not configured.
            ToolUnavailable: it could not be reached or listed.
        """
        spec, _ = self.split(server)
        try:
            _, listing = await self.connect(spec)
        except AttemptFailed as exc:
            raise ToolUnavailable(
                f"tool server {spec.name!r} is unavailable: {exc.reason}",
                tool=spec.name,
                reason=exc.reason,
            ) from exc
        return [listing[k] for k in sorted(listing)]

    async def describe(self, tool: str) -> ToolInfo:
        """The tool's description and input schema.

        Raises:
            UnknownTool: no such server or tool.
            ToolUnavailable: its server could not be reached.
        """
        spec, _ = self.split(tool)
        try:
            _, listing = await self.connect(spec)
        except AttemptFailed as exc:
            raise ToolUnavailable(f"{tool}: {exc.reason}", tool=tool, reason=exc.reason) from exc
        return self.pick(tool, listing)

    async def aclose(self) -> None:
        """End every session. Safe to call twice."""
        self.closed = True
        connections, self._connections = list(self._connections.values()), {}
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)
