"""A hub and its sites on one machine: servers, every site's workers, the cloud agents.

Used by ``sitemesh up --sites eu1,us1`` and ``sitemesh demo --sites eu1,us1``. The
servers come from :class:`sitemesh.topology.Topology` (leaf nodes, accounts,
outbox/inbox sourcing); each site gets its own state directory and database under
``<state_dir>/<site>`` and its workers as separate processes; the cloud synthesiser
runs as a process on the hub.

Each side gets its own settings: site processes the ``models`` group
(``SITEMESH_MODELS_*``) and no hub model settings, the hub's the ``hub_models`` group
(``SITEMESH_HUB_MODELS_*``) and not the sites' (:func:`site_settings`,
:func:`hub_settings`). The hub's chain is checked before any server starts.
``up`` prints URLs without credentials and writes them, with the credentials, to env
files of mode 0600 (:func:`write_env_files`).
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from rich.console import Console

from ..bus import Subjects, provision
from ..config import HubSettings, ModelsSettings, Settings
from ..edge_node import Supervisor, child_env, process_environ, provision_task_registry
from ..runtime import connect, models_for, provision_tool_health, provision_workers
from ..topology import Topology, TopologySpec, credentials_url
from ._ready import pids_line, wait_workers
from ._run import site_roles

HUB_SITE = "hub"

SDK_ENV: Final = ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL")
"""Variables the model SDKs read when no base URL is configured; not passed to the
processes, whose endpoints come from their own side's settings only."""


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
    """``base`` for the processes of ``site``: its URL, its state dir, hub enabled, the
    site's ``models`` and none of the hub's (``hub_models`` reset to the defaults)."""
    state = base.state_dir.resolve() / site
    return base.model_copy(
        update={
            "site": site,
            "state_dir": state,
            "nats": base.nats.model_copy(update={"url": url}),
            "hub": HubSettings(enabled=True),
            "hub_models": ModelsSettings(),
        }
    )


def hub_settings(base: Settings, url: str | None) -> Settings:
    """``base`` for the hub's processes: its URL, its state dir, the hub's models only.

    ``models`` (the sites' ``SITEMESH_MODELS_*``) is reset to the defaults, so the
    hub's chain is ``base.hub_models`` alone; ``hub.site_endpoints`` lists the sites'
    model servers, which the cloud node refuses to call
    (:func:`sitemesh.models.check_hub_models`).
    """
    from ..models import site_endpoints

    return base.model_copy(
        update={
            "site": HUB_SITE,
            "state_dir": base.state_dir.resolve() / HUB_SITE,
            "nats": base.nats.model_copy(update={"url": url}),
            "models": ModelsSettings(),
            "hub": base.hub.model_copy(update={"site_endpoints": site_endpoints(base.models)}),
        }
    )


def side_env(settings: Settings) -> dict[str, str]:
    """The environment of a process with ``settings``: this process's, without any
    inherited ``SITEMESH_*`` (:func:`child_env`) or :data:`SDK_ENV` variable."""
    base = {k: v for k, v in process_environ().items() if k not in SDK_ENV}
    return child_env(base, settings.to_env())


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
        settings: the base settings (state dir, bus, health; ``models`` for the sites,
            ``hub_models`` for the hub).
        sites: the site names.
        console: where the "still loading" spinner goes.
        replicas: processes per agent role.
        stop: stop waiting when it is set (the stack is yielded with ``ready_s=None``).

    Raises:
        ConfigError: the hub's model settings name a site endpoint (checked before any
            server starts; the key is named).
        NotReadyError: a process was not ready within ``health.ready_timeout_s``.
    """
    from ..state import migrate

    state = settings.state_dir.resolve()
    models_for(hub_settings(settings, None), "hub")  # refused before any server starts
    spec = TopologySpec.for_sites(list(sites), state / "topology")
    async with Topology(spec, bus=settings.bus) as topo:
        hub = hub_settings(settings, topo.hub_url)
        stack = HybridStack(topo=topo, sites={}, hub=hub)
        for site in sites:
            s = site_settings(settings, site, topo.site_url(site))
            s.state_dir.mkdir(parents=True, exist_ok=True)
            stack.sites[site] = s
            await migrate(s.db_url)
            nc = await connect(s, "provisioner", url=topo.site_url(site), name=f"up-{site}")
            await provision(nc.jetstream(), Subjects(site), s.bus)
            await provision_workers(nc.jetstream(), site, s.health)
            await provision_tool_health(nc.jetstream(), site, s.health)
            await provision_task_registry(nc.jetstream(), site, s.bus)
            await nc.drain()
            stack.supervisors.append(
                Supervisor(
                    site,
                    site_roles(replicas),
                    env=side_env(s),
                    log_dir=state / "logs",
                    graceful_timeout_s=settings.bus.graceful_timeout_s,
                )
            )
        stack.supervisors.append(
            Supervisor(
                HUB_SITE,
                ["synthesiser"],
                env=side_env(hub),
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


def write_env_files(servers: Mapping[str, Settings], directory: Path) -> dict[str, Path]:
    """Write one env file per server for operators, mode 0600 (they hold passwords).

    ``<directory>/<server>.env`` sets ``SITEMESH_SITE``, ``SITEMESH_STATE_DIR`` and
    ``SITEMESH_NATS_URL`` (with the account's credentials) as the processes of that
    server have them, shell-quoted: after ``set -a; . FILE; set +a`` any ``sitemesh``
    command talks to that server.

    Args:
        servers: the settings of each server's processes, by server (``hub``, a site).
        directory: where the files go (created).

    Returns:
        The files, by server.
    """
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    for server, s in servers.items():
        env = {
            "SITEMESH_SITE": s.site,
            "SITEMESH_STATE_DIR": str(s.state_dir),
            "SITEMESH_NATS_URL": s.nats.url or "",
        }
        path = files[server] = directory / f"{server}.env"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(_env_text(env), encoding="utf-8")
    return files


def _env_text(env: Mapping[str, str]) -> str:
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())


async def run_up(settings: Settings, console: Console, sites: Sequence[str]) -> int:
    """``sitemesh up``: run the hub, the sites and their workers until SIGINT/SIGTERM.

    Prints each server's URL without credentials and the env file (mode 0600,
    :func:`write_env_files`) that holds them; says "ready" once every process of
    every site and the hub registered ready.

    Raises:
        ConfigError: the hub's model settings name a site endpoint.
        NotReadyError: a process was not ready within ``health.ready_timeout_s``.
    """
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with hybrid_stack(settings, sites, console, stop=stop) as stack:
        spec = stack.topo.spec
        env_dir = spec.state_dir / "env"
        files = write_env_files({HUB_SITE: stack.hub, **stack.sites}, env_dir)
        hub_url = credentials_url(spec.hub.host, spec.hub.client_port, None)  # no userinfo
        console.print(
            f"hub   {hub_url}   (cloud agents; CLOUD_IN / CLOUD_OUT; credentials in "
            f"{files[HUB_SITE]})",
            highlight=False,
        )
        for site in stack.sites:
            s = spec.site(site)
            console.print(
                f"site  {site:<5} {credentials_url(s.host, s.client_port, None)}   (workers, "
                f"operators: SITE account; credentials in {files[site]})",
                highlight=False,
            )
        console.print(
            f"connect as an operator: set -a; . {env_dir}/<server>.env; set +a  (mode 0600)",
            highlight=False,
        )
        if stack.ready_s is not None:
            console.print(
                f"[green]ready[/green] in {stack.ready_s:.1f} s: {pids_line(stack.supervisors)}",
                highlight=False,
            )
        console.print(f"logs in {settings.state_dir.resolve() / 'logs'}; Ctrl-C to stop")
        await stop.wait()
        console.print("stopping (workers finish in-flight work first)...")
    return 0
