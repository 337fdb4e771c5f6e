"""A hub and its sites on one machine: servers, every site's workers, the cloud agents.

Used by ``sitemesh up --sites eu1,us1`` and ``sitemesh demo --sites eu1,us1``. The
servers come from :class:`sitemesh.topology.Topology` (leaf nodes, accounts,
outbox/inbox sourcing); each site gets its own state directory and database under
``<state_dir>/<site>`` and its workers as separate processes; the cloud synthesiser
runs as a process on the hub.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from rich.console import Console

from ..bus import Subjects, connect, provision
from ..config import HubSettings, Settings
from ..edge_node import Supervisor, child_env, process_environ
from ..topology import Topology, TopologySpec
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
    settings: Settings, sites: Sequence[str], console: Console, *, replicas: int = 1
) -> AsyncIterator[HybridStack]:
    """Start servers, sites and cloud; stop everything (workers first) on exit."""
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
            nc = await connect(topo.site_url(site), name=f"up-{site}", timeout_s=5)
            await provision(nc.jetstream(), Subjects(site), s.bus)
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
            yield stack
        finally:
            for sup in stack.supervisors:
                await sup.stop()


async def run_up(settings: Settings, console: Console, sites: Sequence[str]) -> int:
    """``sitemesh up``: run the hub, the sites and their workers until SIGINT/SIGTERM."""
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with hybrid_stack(settings, sites, console) as stack:
        console.print(f"hub   {stack.topo.hub_url}   (cloud agents; CLOUD_IN / CLOUD_OUT)")
        for site, s in stack.sites.items():
            console.print(f"site  {site:<5} {s.nats.url}   (workers, operators: SITE account)")
        for sup in stack.supervisors:
            console.print(f"  {sup.site}: {sup.pids}", highlight=False)
        console.print(f"logs in {settings.state_dir.resolve() / 'logs'}; Ctrl-C to stop")
        await stop.wait()
        console.print("stopping (workers finish in-flight work first)...")
    return 0
