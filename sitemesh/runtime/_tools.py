"""The tools of a process: its registry, built lazily, and its health on the bus.

The same report carries the breakers of the process's model backends
(:class:`~sitemesh.schemas.ModelHealth`) once its model client is built: tools and
models are the two outside dependencies a worker's health depends on.

* :func:`build_tool_registry` — the process's :class:`~sitemesh.tools.ToolRegistry`
  from its settings (``None`` when no tool is configured); agents reach it through
  ``AgentResources.tools`` / ``ctx.tools``, so it is built on the first tool call;
* :class:`ToolHealthPublisher` — puts the process's per-tool (and per-model) health
  (:class:`ToolHealthReport`) in the site's ``sitemesh_tools_<site>`` KV bucket every
  ``tools.health_interval_s`` while a registry exists, like the worker registry
  (``sitemesh_workers_<site>``: key ``<role>.<host>_<pid>``, history 1, a TTL that
  drops the report of a process that stopped), and deletes it on shutdown;
* :func:`read_tool_health` — every live report (``sitemesh tools health``);
* :func:`provision_tool_health` — creates the bucket, for whoever provisions a site
  with per-role identities (workers there may put their own report, not create it).

Publishing is fail-soft: the bucket is a signal, and a KV failure never stops a worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue

from ..config import HealthSettings, Settings
from ..schemas import ModelHealth, utcnow
from ..tools import ToolHealth
from ._presence import (
    KV_TIMEOUT_S,
    ProcessRecord,
    bucket_keys,
    kv_bucket,
    presence_key,
    read_entry,
)

if TYPE_CHECKING:
    from ..agents import AgentResources
    from ..tools import ToolRegistry

__all__ = [
    "TOOLS_BUCKET_PREFIX",
    "ToolHealthPublisher",
    "ToolHealthReport",
    "ToolsService",
    "build_tool_registry",
    "provision_tool_health",
    "read_tool_health",
    "tools_bucket",
]

log = logging.getLogger("sitemesh.tools")

TOOLS_BUCKET_PREFIX: Final = "sitemesh_tools_"
"""Prefix of the per-site tool health bucket (``sitemesh_tools_<site>``)."""


def tools_bucket(site: str) -> str:
    """The KV bucket of ``site``'s tool health: ``sitemesh_tools_<site>``."""
    return f"{TOOLS_BUCKET_PREFIX}{site}"


class ToolHealthReport(ProcessRecord, frozen=True, kw_only=True):
    """One process's tool health (the JSON value of its key in the bucket)."""

    at: datetime
    """When it was published (UTC)."""
    tools: list[ToolHealth] = msgspec.field(default_factory=list)
    """Every tool the process called, by name."""
    models: list[ModelHealth] = msgspec.field(default_factory=list)
    """Every model backend of the process's model client, by provider (empty until an
    agent first used ``ctx.models``, or when no model endpoint is configured)."""


_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder(ToolHealthReport)


def build_tool_registry(settings: Settings) -> ToolRegistry | None:
    """The process's tool registry from ``settings.tools`` (nothing connected yet), or
    ``None`` when no tool server is configured.

    Raises:
        ToolConfigError: the tools file is unreadable or invalid (names the field).
    """
    from ..tools import ToolRegistry

    registry = ToolRegistry.from_settings(settings)
    return registry if registry.specs else None


async def _bucket(
    js: JetStreamContext, site: str, health: HealthSettings, *, create: bool
) -> KeyValue:
    return await kv_bucket(
        js,
        tools_bucket(site),
        description=f"tool health of the processes of site {site} (sitemesh.runtime)",
        ttl_s=health.ttl_s,
        max_value_size=256 * 1024,
        create=create,
    )


async def provision_tool_health(
    js: JetStreamContext, site: str, health: HealthSettings | None = None
) -> KeyValue:
    """Create ``site``'s tool health bucket if it is missing; returns it.

    Run next to :func:`~sitemesh.runtime.provision_workers` by whoever provisions the
    site (``sitemesh edge`` as ``operator``, ``sitemesh up``/the provisioner): on a
    site with per-role identities a worker may put and delete only its own keys
    (``<role>.*``) and never create the bucket. Workers without an identity create it
    themselves on their first report. An existing bucket is used as it is.

    Args:
        js: a JetStream context allowed to create the bucket's stream.
        site: the site name.
        health: ``ttl_s`` for a new bucket (default :class:`HealthSettings`).

    Raises:
        nats.js.errors.APIError: the server refused (e.g. no permission).
    """
    return await _bucket(js, site, health or HealthSettings(), create=True)


class ToolHealthPublisher:
    """Publishes this process's tool health while it runs (see the module docstring).

    Args:
        js: the process's JetStream context on its site.
        site: the site.
        role: the process's role.
        source: this process's tool health now, or ``None`` while it has no registry.
        models: this process's model backends' health now, or ``None`` while it has no
            model client (``None``: models are not reported).
        interval_s: seconds between publications (at most a third of the bucket's TTL).
        health: the bucket's TTL, for a bucket this process creates.
        create_bucket: create the bucket when missing (processes without an identity).
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        site: str,
        role: str,
        source: Callable[[], list[ToolHealth] | None],
        models: Callable[[], list[ModelHealth] | None] | None = None,
        interval_s: float = 5.0,
        health: HealthSettings | None = None,
        create_bucket: bool = True,
    ) -> None:
        self._js = js
        self.site = site
        self.role = role
        self._source = source
        self._models = models
        self._health = health or HealthSettings()
        self._interval_s = min(interval_s, self._health.ttl_s / 3)
        self._create = create_bucket
        self._kv: KeyValue | None = None
        self._stop = asyncio.Event()
        self._stored = False
        self._failing = False
        self.key = presence_key(role, socket.gethostname(), os.getpid())

    async def publish(self) -> bool:
        """Put the current report now (if there is a registry or a model client);
        ``False`` if there is neither or it failed."""
        tools = self._source()
        models = self._models() if self._models is not None else None
        if tools is None and models is None:
            return False
        report = ToolHealthReport(
            site=self.site,
            role=self.role,
            host=socket.gethostname(),
            pid=os.getpid(),
            at=utcnow(),
            tools=tools or [],
            models=models or [],
        )
        try:
            if self._kv is None:
                self._kv = await asyncio.wait_for(
                    _bucket(self._js, self.site, self._health, create=self._create), KV_TIMEOUT_S
                )
            await asyncio.wait_for(self._kv.put(self.key, _ENCODER.encode(report)), KV_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a signal only
            self._kv = None
            if not self._failing:
                log.warning(
                    "cannot publish tool health in %s (retrying): %r", tools_bucket(self.site), exc
                )
            self._failing = True
            return False
        self._failing = False
        self._stored = True
        return True

    async def run(self) -> None:
        """Publish every interval until :meth:`shutdown`."""
        while not self._stop.is_set():
            await self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=self._interval_s)

    async def shutdown(self) -> None:
        """Stop publishing and delete this process's report. Safe to call twice."""
        if self._stop.is_set():
            return
        self._stop.set()
        if not self._stored or self._kv is None:
            return
        try:
            await asyncio.wait_for(self._kv.delete(self.key), KV_TIMEOUT_S)
        except Exception as exc:  # the TTL removes it anyway
            log.warning(
                "cannot remove %s from %s (it expires): %r", self.key, tools_bucket(self.site), exc
            )


class ToolsService:
    """The tools of an agent process: publishes their health; :meth:`aclose` (after the
    worker drained) ends the MCP sessions.

    Args:
        resources: the process's agent resources (their registry is built lazily).
        publisher: the health publisher (``None``: none, e.g. no bus).
    """

    def __init__(
        self, resources: AgentResources, publisher: ToolHealthPublisher | None = None
    ) -> None:
        self._resources = resources
        self._publisher = publisher

    async def run(self) -> None:
        """Publish the tool health until :meth:`shutdown` (returns at once without a publisher)."""
        if self._publisher is not None:
            await self._publisher.run()

    async def shutdown(self) -> None:
        """Stop publishing (and remove the report)."""
        if self._publisher is not None:
            await self._publisher.shutdown()

    async def aclose(self) -> None:
        """Close the registry's MCP sessions (stdio servers exit). Safe to call twice."""
        await self._resources.aclose()


def health_source(resources: AgentResources) -> Callable[[], list[ToolHealth] | None]:
    """The publisher's source for ``resources``: ``None`` until a registry was built."""

    def source() -> list[ToolHealth] | None:
        if not resources.tools_built:
            return None
        registry = resources.tools
        return registry.health() if registry is not None else None

    return source


def model_health_source(resources: AgentResources) -> Callable[[], list[ModelHealth] | None]:
    """The publisher's ``models`` source for ``resources``: ``None`` until an agent
    built the model client (or when none is configured)."""

    def source() -> list[ModelHealth] | None:
        if not resources.models_built:
            return None
        client = resources.models
        return client.health() if client is not None else None

    return source


def breaker_states(resources: AgentResources) -> Callable[[], list[tuple[str, str, str]]]:
    """``(kind, name, state)`` of each model backend and tool breaker ``resources`` has
    built, for :func:`sitemesh.telemetry.watch_breakers` (nothing until first use)."""
    tools, models = health_source(resources), model_health_source(resources)

    def states() -> list[tuple[str, str, str]]:
        out: list[tuple[str, str, str]] = [
            ("model", m.provider, m.breaker) for m in models() or ()
        ]
        out += [("tool", t.tool, t.breaker) for t in tools() or ()]
        return out

    return states


async def read_tool_health(js: JetStreamContext, site: str) -> list[ToolHealthReport]:
    """Every live report of ``site`` (none when the bucket does not exist), by key.

    Raises:
        nats.errors.Error: NATS failed (timeout, no permission).
    """
    bucket = tools_bucket(site)
    keys = await bucket_keys(js, bucket)
    if not keys:
        return []
    try:
        kv = await js.key_value(bucket)
    except BucketNotFoundError:
        return []
    out: list[ToolHealthReport] = []
    for key in keys:
        report = await read_entry(kv, key, _DECODER)
        if report is not None:
            out.append(report)
    return out
