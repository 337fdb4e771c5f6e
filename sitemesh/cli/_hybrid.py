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

Every server requires an identity and TLS (:func:`stack_security`): on the first
start one NKey identity per role of the hub and of every site is generated under
``<state_dir>/topology/creds`` (seeds mode 0600) and a development CA with the
servers', clients' and leaf links' certificates under ``<state_dir>/topology/certs``;
later starts reuse both (a new site gets its own). Each process gets the creds
directory (``SITEMESH_NATS_CREDS_DIR``) and its server's client certificate, and
picks its own role's identity (:func:`sitemesh.runtime.creds_dir_identity`); URLs
carry no password. ``--insecure`` keeps the shared per-account passwords instead (no
identities, no TLS), with a warning. ``up`` prints the URLs, the creds and certs
directories and env files of mode 0600 that point a command at one server
(:func:`write_env_files`).
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

from ..bus import Subjects, keep_streams, provision
from ..config import HubSettings, ModelsSettings, NatsSettings, Settings
from ..edge_node import Supervisor, child_env, process_environ, provision_task_registry
from ..runtime import connect, models_for, provision_tool_health, provision_workers
from ..topology import (
    SITE_IDENTITIES,
    Security,
    Topology,
    TopologySpec,
    credentials_url,
    ensure_dev_certs,
    generate_creds,
    tenant_client,
)
from ._ready import pids_line, wait_workers
from ._run import site_roles

HUB_SITE = "hub"

INSECURE_WARNING: Final = (
    "[bold yellow]warning:[/bold yellow] --insecure: the hub and the sites run WITHOUT "
    "per-role identities and WITHOUT TLS, on the shared per-account passwords (in the "
    "env files). Every process can act as any role of its account (forge answers, "
    "rewrite the policy, delete streams) and the leaf links are plain TCP. Use it only "
    "on a machine you alone use."
)

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
    security: Security | None = None
    """The identities and TLS files the servers require; ``None``: ``--insecure``."""


def stack_security(topology_dir: Path, sites: Sequence[str], roles: Sequence[str] = ()) -> Security:
    """The identities and development PKI of a hub and ``sites``, made once and reused.

    ``<topology_dir>/creds``: one NKey identity per role of the hub and of every site
    (:func:`sitemesh.topology.generate_creds`: existing seeds are kept, seeds mode
    0600, directory 0700). ``<topology_dir>/certs``: a development CA, a server and a
    client certificate per server and a leaf certificate per site
    (:func:`sitemesh.topology.ensure_dev_certs`: existing certificates are kept unless
    they expire within a day). A site added since the last start gets its own.

    Args:
        topology_dir: ``<state_dir>/topology``.
        sites: the site names.
        roles: agent roles besides the installed ones that need an identity at every
            site (workers added by import path).

    Returns:
        ``Security.from_dirs(...)`` over both directories: every client and leaf
        port requires a certificate from the CA (mutual TLS), every client an identity.

    Raises:
        ConfigError: the CA expired (``certs.ca``) or a file is missing.
    """
    creds, certs = topology_dir / "creds", topology_dir / "certs"
    extra = [r for r in dict.fromkeys(roles) if r not in SITE_IDENTITIES]
    generate_creds(creds, list(sites), roles=extra)
    ensure_dev_certs(certs, sites)
    return Security.from_dirs(sites, certs_dir=certs, creds_dir=creds)


def _nats_for(
    base: NatsSettings, url: str | None, server: str, security: Security | None
) -> NatsSettings:
    """``base`` on ``url`` with the stack's identity settings for ``server`` only: the
    creds directory and the server's client certificate, or none (``--insecure``);
    any seed, creds directory or TLS file of ``base`` is dropped (the stack's servers
    know only their own identities)."""
    update: dict[str, object] = {
        "url": url,
        "nkey_seed_file": None,
        "nkey_seed": None,
        "creds_dir": None,
        "tls_ca_file": None,
        "tls_cert_file": None,
        "tls_key_file": None,
    }
    if security is not None:
        if security.creds is not None:
            update["creds_dir"] = security.creds.directory
        tls = security.client_tls.get(server)
        if tls is not None:
            update |= {
                "tls_ca_file": tls.ca_file,
                "tls_cert_file": tls.cert_file,
                "tls_key_file": tls.key_file,
            }
    return base.model_copy(update=update)


def site_settings(
    base: Settings, site: str, url: str, *, security: Security | None = None
) -> Settings:
    """``base`` for the processes of ``site``: its URL, its state dir, hub enabled, the
    site's ``models`` and none of the hub's (``hub_models`` reset to the defaults);
    with ``security``, the creds directory and the site's client certificate
    (``nats.creds_dir``, ``nats.tls_*``), so each process connects as its own role."""
    state = base.state_dir.resolve() / site
    return base.model_copy(
        update={
            "site": site,
            "state_dir": state,
            "nats": _nats_for(base.nats, url, site, security),
            "hub": HubSettings(enabled=True),
            "hub_models": ModelsSettings(),
        }
    )


def hub_settings(base: Settings, url: str | None, *, security: Security | None = None) -> Settings:
    """``base`` for the hub's processes: its URL, its state dir, the hub's models only.

    ``models`` (the sites' ``SITEMESH_MODELS_*``) is reset to the defaults, so the
    hub's chain is ``base.hub_models`` alone; ``hub.site_endpoints`` lists the sites'
    model servers, which the cloud node refuses to call
    (:func:`sitemesh.models.check_hub_models`). With ``security``, the creds
    directory and the hub's client certificate (the hub's identities: site ``hub``).
    """
    from ..models import site_endpoints

    return base.model_copy(
        update={
            "site": HUB_SITE,
            "state_dir": base.state_dir.resolve() / HUB_SITE,
            "nats": _nats_for(base.nats, url, HUB_SITE, security),
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
    insecure: bool = False,
    roles: Sequence[str] = (),
) -> AsyncIterator[HybridStack]:
    """Start servers, sites and cloud, and wait until every worker process reports
    ready on its server's bus; stop everything (workers first) on exit.

    The servers require per-role identities and mutual TLS (:func:`stack_security`,
    under ``<state_dir>/topology``); the stack provisions every server as its
    ``provisioner`` identity, and each process connects as its own role.

    Args:
        settings: the base settings (state dir, bus, health; ``models`` for the sites,
            ``hub_models`` for the hub). Its NKey seed, creds directory and TLS files
            are not passed on: the stack's processes get the stack's.
        sites: the site names.
        console: where the "still loading" spinner (and the ``--insecure`` warning) go.
        replicas: processes per agent role.
        stop: stop waiting when it is set (the stack is yielded with ``ready_s=None``).
        insecure: the shared per-account users and passwords only, no identities and
            no TLS (prints :data:`INSECURE_WARNING`).
        roles: agent roles besides the installed ones that get an identity at every
            site (workers started beside the stack by import path).

    Raises:
        ConfigError: the hub's model settings name a site endpoint (checked before any
            server starts; the key is named); the development CA expired.
        NotReadyError: a process was not ready within ``health.ready_timeout_s``.
    """
    from ..cloud_node import provision_cloud
    from ..state import migrate

    state = settings.state_dir.resolve()
    models_for(hub_settings(settings, None), "hub")  # refused before any server starts
    spec = TopologySpec.for_sites(list(sites), state / "topology")
    security = None
    if insecure:
        console.print(INSECURE_WARNING)
    else:
        tenants = [tenant_client(t) for t in settings.nats.tenants]
        security = stack_security(state / "topology", sites, [*roles, *tenants])
    async with Topology(spec, bus=settings.bus, security=security) as topo:
        hub = hub_settings(settings, _url(topo, HUB_SITE), security=security)
        stack = HybridStack(topo=topo, sites={}, hub=hub, security=security)
        nc = await connect(hub, "provisioner", name="up-hub")
        await provision_cloud(nc.jetstream(), hub.bus)  # a synthesiser identity may not
        await provision_workers(nc.jetstream(), HUB_SITE, hub.health)
        await nc.drain()
        for site in sites:
            s = site_settings(settings, site, _url(topo, site), security=security)
            s.state_dir.mkdir(parents=True, exist_ok=True)
            stack.sites[site] = s
            await migrate(s.db_url)
            nc = await connect(s, "provisioner", name=f"up-{site}")
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
        # each site's processed history leaves its work streams (no server age limit)
        keepers = [
            await connect(s, "operator", name=f"up-trim-{s.site}") for s in stack.sites.values()
        ]
        trims = [
            asyncio.create_task(keep_streams(nc, Subjects(s.site), s.bus))
            for nc, s in zip(keepers, stack.sites.values(), strict=True)
        ]
        try:
            for sup in stack.supervisors:
                await sup.start()
            stack.ready_s = await _wait_stack(stack, console, settings, stop)
            yield stack
        finally:
            for t in trims:
                t.cancel()
            for nc in keepers:
                await nc.close()  # nothing to drain: it only trims
            for sup in stack.supervisors:
                await sup.stop()


def _url(topo: Topology, server: str) -> str:
    """The client URL of ``server`` (``hub`` or a site) for the stack's processes: no
    credentials with identities, the shared account's password with ``--insecure``."""
    if topo.security is None:
        return topo.hub_url if server == HUB_SITE else topo.site_url(server)
    where = topo.spec.hub if server == HUB_SITE else topo.spec.site(server)
    return credentials_url(where.host, where.client_port, None)


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


ENV_NATS: Final = ("creds_dir", "tls_ca_file", "tls_cert_file", "tls_key_file")
"""The ``nats`` settings an env file carries besides the URL, when set."""


def write_env_files(servers: Mapping[str, Settings], directory: Path) -> dict[str, Path]:
    """Write one env file per server for operators, mode 0600.

    ``<directory>/<server>.env`` sets ``SITEMESH_SITE``, ``SITEMESH_STATE_DIR``,
    ``SITEMESH_NATS_URL`` and, when set, ``SITEMESH_NATS_CREDS_DIR`` and
    ``SITEMESH_NATS_TLS_{CA,CERT,KEY}_FILE`` as the processes of that server have
    them, shell-quoted: after ``set -a; . FILE; set +a`` any ``sitemesh`` command talks
    to that server, as the identity of its role from the creds directory
    (``publish`` as ``client``, the others as ``operator``). The files hold paths
    only, no seed; with ``--insecure`` the URL holds the account's password.

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
        for name in ENV_NATS:
            value = getattr(s.nats, name)
            if value is not None:
                env[f"SITEMESH_NATS_{name.upper()}"] = str(value)
        path = files[server] = directory / f"{server}.env"
        path.touch(mode=0o600, exist_ok=True)
        path.chmod(0o600)
        path.write_text(_env_text(env), encoding="utf-8")
    return files


def _env_text(env: Mapping[str, str]) -> str:
    return "".join(f"{key}={shlex.quote(value)}\n" for key, value in env.items())


async def run_up(
    settings: Settings, console: Console, sites: Sequence[str], *, insecure: bool = False,
    stop: asyncio.Event | None = None, console_port: int | None = None,
) -> int:  # fmt: skip
    """``sitemesh up``: run the hub, the sites and their workers until SIGINT/SIGTERM.

    Prints each server's URL (never a password or seed), the creds and certs
    directories, and the env file per server (mode 0600, :func:`write_env_files`) that
    points a command at it; says "ready" once every process of every site and the
    hub registered ready.

    Args:
        settings: the base settings.
        console: where it prints.
        sites: the site names.
        insecure: shared per-account passwords, no identities and no TLS (warned).
        stop: also stop when this event is set (embedding, tests).
        console_port: also serve each site's operator console on loopback, site ``i``
            on ``console_port + i``, once everything is ready (users:
            ``<state_dir>/console-users.toml``, checked before anything starts).

    Raises:
        ConfigError: the hub's model settings name a site endpoint.
        NotReadyError: a process was not ready within ``health.ready_timeout_s``.
    """
    import signal

    from ..console import default_users_file, load_users
    from ._run import start_console, stop_console

    users = default_users_file(settings.state_dir.resolve())
    if console_port is not None:
        load_users(users)  # a missing users file is a one-line error before anything starts
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    webs: list[asyncio.subprocess.Process] = []
    try:
        async with hybrid_stack(settings, sites, console, stop=stop, insecure=insecure) as stack:
            _print_up(console, stack, settings)
            if console_port is not None and stack.ready_s is not None:
                for i, (site, s) in enumerate(stack.sites.items()):
                    port = console_port + i
                    webs.append(await start_console(
                        s, s.nats.url or "", port, users_file=users,
                        monitor_url=stack.topo.spec.site(site).monitor_url,
                        log_dir=settings.state_dir.resolve() / "logs",
                    ))  # fmt: skip
                    console.print(f"console {site:<5} http://127.0.0.1:{port}/", highlight=False)
            try:
                await stop.wait()
            finally:
                for web in webs:
                    await stop_console(web)
            console.print("stopping (workers finish in-flight work first)...")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0


def _print_up(console: Console, stack: HybridStack, settings: Settings) -> None:
    spec = stack.topo.spec
    env_dir = spec.state_dir / "env"
    files = write_env_files({HUB_SITE: stack.hub, **stack.sites}, env_dir)
    sec = stack.security
    where = "credentials" if sec is None else "env"
    hub_url = credentials_url(spec.hub.host, spec.hub.client_port, None)  # no userinfo
    console.print(
        f"hub   {hub_url}   (cloud agents; CLOUD_IN / CLOUD_OUT; {where} in {files[HUB_SITE]})",
        highlight=False,
    )
    for site in stack.sites:
        s = spec.site(site)
        console.print(
            f"site  {site:<5} {credentials_url(s.host, s.client_port, None)}   (workers, "
            f"operators: SITE account; {where} in {files[site]})",
            highlight=False,
        )
    if sec is not None and sec.creds is not None:
        certs = sec.client_tls[HUB_SITE].ca_file.parent
        console.print(
            f"identities: {sec.creds.directory}   (one NKey per role and server, seeds mode "
            "0600; no connection without one)",
            highlight=False,
        )
        console.print(
            f"certificates: {certs}   (development CA; mutual TLS on every client port "
            "and on the leaf links)",
            highlight=False,
        )
        console.print(
            f"point a command at a server: set -a; . {env_dir}/<server>.env; set +a   "
            "(SITEMESH_NATS_URL, SITEMESH_NATS_CREDS_DIR and the TLS files: `publish` "
            "connects as client, the other commands as operator)",
            highlight=False,
        )
    else:
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
