"""Tool calls during a replay: served from the recorded responses, or live.

A replay must neither depend on what a tool answers today nor repeat a side effect:
by default every tool call of the sandbox is answered from the response recorded in
the original run (the site's ``tool_calls`` table, looked up by call id, i.e. by task
id, step, call index and tool, with the same arguments hash), through a
:class:`~sitemesh.tools.ToolRegistry` in replay mode ``strict``: no tool server is
ever started, and a call with no recorded response raises
:class:`~sitemesh.tools.ToolReplayMiss`, a permanent error that fails that task with
its reason (the diff shows it), never the replay.

``--live-tools`` (:attr:`ReplayTools.live`) uses replay mode ``off`` instead: the
tools are called as they are now, to see what a tool change would do. The registry's
redelivery guard still applies: a side-effecting call the original run made (same
idempotency key, same arguments) is served its recorded response and not made again;
a side-effecting call the original run did not make is made live.

Either way the sandbox's own records stay in memory
(:class:`~sitemesh.tools.ReadOnlyToolRecorder`): a replay writes nothing to the site's
database. The sandbox's agents reach the registry as in production, through
``ctx.tools`` (:meth:`ReplayTools.resources`); the runtime gives each context the
replayed task's id and step, so each call gets the idempotency key and call id it had.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from ..agents import AgentResources

if TYPE_CHECKING:
    from ..config import Settings
    from ..tools import ReplayMode, ResponseScanner, ToolRegistry

__all__ = ["ReplayTools"]


class ReplayTools:
    """Where the sandbox's tool calls are answered from.

    Use as ``async with ReplayTools(settings, ...) as tools:`` or call :meth:`aclose`
    (MCP sessions end, stdio servers exit, the database connection closes).

    Args:
        settings: the site's settings (``tools.file``, ``db_url``, ``privacy``);
            ``None``: no tools (agents see ``ctx.tools is None``).
        live: ``True`` (``--live-tools``): call the tools (replay mode ``off``);
            default: recorded responses only (``strict``).
        scanner: the PII scanner for tool responses (the replay's loaded one);
            ``None``: the site's, loaded on the first response.
    """

    def __init__(
        self,
        settings: Settings | None,
        *,
        live: bool = False,
        scanner: ResponseScanner | None = None,
    ) -> None:
        self.settings = settings
        self.live = live
        self._scanner = scanner
        self._registry: ToolRegistry | None = None
        self._built = False

    @property
    def registry_mode(self) -> ReplayMode:
        """``ToolRegistry(replay=...)`` of the sandbox: ``strict`` serves recorded
        responses only (a miss is a ``ToolReplayMiss``), ``off`` calls live."""
        return "off" if self.live else "strict"

    @property
    def mode(self) -> Literal["live", "recorded"]:
        """``live`` or ``recorded`` (for the report)."""
        return "live" if self.live else "recorded"

    def registry(self) -> ToolRegistry | None:
        """The sandbox's registry (built once; ``None`` when no tool is configured).

        Raises:
            ToolConfigError: the tools file is unreadable or invalid (names the field).
        """
        if not self._built and self.settings is not None:
            from ..tools import ToolRegistry

            registry = ToolRegistry.from_settings(
                self.settings, scanner=self._scanner, replay=self.registry_mode, read_only=True
            )
            self._registry = registry if registry.specs else None
            self._built = True
        return self._registry

    def resources(self, site: str) -> AgentResources:
        """What the sandbox's agents get: no models, no bus, this registry as tools."""
        return AgentResources(site, tools=self.registry)

    def counts(self) -> tuple[int, int]:
        """``(served from records, made live)``: the sandbox's tool calls so far (a
        strict miss is neither: it fails its task)."""
        if self._registry is None:
            return 0, 0
        calls = getattr(self._registry.recorder, "calls", [])
        served = sum(1 for c in calls if c.outcome in ("replayed", "deduplicated"))
        return served, len(calls) - served

    async def __aenter__(self) -> ReplayTools:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the registry (if built). Safe to call twice."""
        if self._registry is not None:
            await self._registry.aclose()
