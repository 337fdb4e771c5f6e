"""A hub and its sites on one machine: servers, every site's workers, the cloud agents.

Used by ``sitemesh up --sites eu1,us1`` and ``sitemesh demo --sites eu1,us1``. The
servers come from :class:`sitemesh.topology.Topology` (leaf nodes, accounts,
outbox/inbox sourcing); each site gets its own state directory and database under
``<state_dir>/<site>`` and its workers as separate processes; the cloud synthesiser
runs as a process on the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from rich.console import Console

from ..bus import Subjects, provision
from ..config import HubSettings, Settings
from ..edge_node import Supervisor, child_env, process_environ
from ..runtime import connect, provision_workers
from ..topology import Topology, TopologySpec
from ._ready import pids_line, wait_workers
from ._run import site_roles

HUB_SITE = "hub"


@dataclass
class HybridStack:
    """What :func:`hybrid_stack` runs."""

    topo: Topology
    sites: dict[str, Settings]
    """Settings of each site's processes (URL of its ``SITE`` account, own state)."""
    hub: Settings
    supervisors: list[Supervisor] = field(default_factory=list)
    ready_s: float | None = None
    """Seconds until every process was ready; ``None``: stopped before that."""


def site_settings(base: Settings, site: str, url: str) -> Settings:
    """``base`` for the processes of ``site``: its URL, its state dir, hub enabled."""
    state = base.state_dir.resolve() / site
    return base.model_copy(
        update={
            "site": site,
            "state_dir": state,
            "nats": base.nats.model_copy(update={"url": url}),
            "hub": HubSettings(enabled=True),
        }
    )


@contextlib.asynccontextmanager
async def hybrid_stack(
    settings: Settings,
    sites: Sequence[str],
    console: Console,
    *,
    replicas: int = 1,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[HybridStack]:
    """Start servers, sites and cloud, and wait until every worker process reports
    ready on its server's bus; stop everything (workers first) on exit.

    Args:
        settings: the base settings (state dir, bus, health).
        sites: the site names.
        console: where the "still loading" spinner goes.
        replicas: processes per agent role.
        stop: stop waiting when it is set (the stack is yielded with ``ready_s=None``).

    Raises:
        NotReadyError: a process was not ready within ``health.ready_timeout_s``.
    """
    from ..state import migrate

    state = settings.state_dir.resolve()
    spec = TopologySpec.for_sites(list(sites), state / "topology")
    async with Topology(spec, bus=settings.bus) as topo:
        hub = settings.model_copy(
            update={
                "site": HUB_SITE,
                "state_dir": state / HUB_SITE,
                "nats": settings.nats.model_copy(update={"url": topo.hub_url}),
            }
        )
        stack = HybridStack(topo=topo, sites={}, hub=hub)
        for site in sites:
            s = site_settings(settings, site, topo.site_url(site))
            s.state_dir.mkdir(parents=True, exist_ok=True)
            stack.sites[site] = s
            await migrate(s.db_url)
            nc = await connect(s, "provisioner", url=topo.site_url(site), name=f"up-{site}")
            await provision(nc.jetstream(), Subjects(site), s.bus)
            await provision_workers(nc.jetstream(), site, s.health)
            await nc.drain()
            stack.supervisors.append(
                Supervisor(
                    site,
                    site_roles(replicas),
                    env=child_env(process_environ(), s.to_env()),
                    log_dir=state / "logs",
                    graceful_timeout_s=settings.bus.graceful_timeout_s,
                )
            )
        stack.supervisors.append(
            Supervisor(
                HUB_SITE,
                ["synthesiser"],
                env=child_env(process_environ(), hub.to_env()),
                log_dir=state / "logs",
                graceful_timeout_s=settings.bus.graceful_timeout_s,
            )
        )
        try:
            for sup in stack.supervisors:
                await sup.start()
            stack.ready_s = await _wait_stack(stack, console, settings, stop)
            yield stack
        finally:
            for sup in stack.supervisors:
                await sup.stop()


async def _wait_stack(
    stack: HybridStack, console: Console, settings: Settings, stop: asyncio.Event | None
) -> float | None:
    """Wait for every site's and the hub's processes, each on its own server's registry."""
    where = [*stack.sites.values(), stack.hub]
    ncs = [await connect(s, "operator", name=f"up-ready-{s.site}") for s in where]
    try:
        groups = [(nc.jetstream(), sup) for nc, sup in zip(ncs, stack.supervisors, strict=True)]
        return await wait_workers(
            console, groups, timeout_s=settings.health.ready_timeout_s, stop=stop
        )
    finally:
        for nc in ncs:
            await nc.close()  # nothing to drain: it only read the registries


async def run_up(settings: Settings, console: Console, sites: Sequence[str]) -> int:
    """``sitemesh up``: run the hub, the sites and their workers until SIGINT/SIGTERM.

    Says "ready" once every process of every site and the hub registered ready.

    Raises:
        NotReadyError: a process was not ready within ``health.ready_timeout_s``.
    """
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with hybrid_stack(settings, sites, console, stop=stop) as stack:
        console.print(f"hub   {stack.topo.hub_url}   (cloud agents; CLOUD_IN / CLOUD_OUT)")
        for site, s in stack.sites.items():
            console.print(f"site  {site:<5} {s.nats.url}   (workers, operators: SITE account)")
        if stack.ready_s is not None:
            console.print(
                f"[green]ready[/green] in {stack.ready_s:.1f} s: {pids_line(stack.supervisors)}",
                highlight=False,
            )
        console.print(f"logs in {settings.state_dir.resolve() / 'logs'}; Ctrl-C to stop")
        await stop.wait()
        console.print("stopping (workers finish in-flight work first)...")
    return 0
