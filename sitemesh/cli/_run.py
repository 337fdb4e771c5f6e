"""Bodies of ``sitemesh edge`` and ``sitemesh publish``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from nats.js import JetStreamContext
from rich.console import Console

from ..agents import Registry
from ..bus import FILL_WARNING, Subjects, keep_streams, provision, redact_url, stream_fill
from ..config import Settings
from ..edge_node import Supervisor, child_env, process_environ, provision_task_registry
from ..errors import ConfigError, SitemeshError
from ..runtime import (
    connect,
    models_for,
    provision_tool_health,
    provision_workers,
    read_workers,
)
from ..workflows import Workflows
from ._nats import ensure_streams, nats_url, worker_identities
from ._publish import prepare, publish
from ._ready import pids_line, wait_workers

log = logging.getLogger("sitemesh.cli")

FILL_CHECK_S = 15.0
"""Seconds between ``edge``'s reads of its streams' fill (:func:`watch_fill`)."""


def site_roles(
    replicas: int,
    workflows: Workflows | None = None,
    registry: Registry | None = None,
    *,
    colocate: bool = False,
) -> list[str]:
    """The processes of a site: one recorder and router, then ``replicas`` per agent role
    that the workflows name and the registry has (default: the bundled workflows and
    the installed agents). Roles the registry lacks are left out: deploy their workers
    with ``sitemesh worker --agent``; their work waits for them on the bus.

    ``colocate``: the agent roles run together, ``replicas`` processes of
    ``"triage+retriever+..."`` (:class:`~sitemesh.edge_node.Supervisor`), so one step
    hands the next its work item in memory (:class:`sitemesh.bus.LocalWorkers`)."""
    workflows = workflows if workflows is not None else Workflows.load()
    registry = registry if registry is not None else Registry.load()
    roles = ["recorder", "router"]
    agent_roles = [role for role in workflows.roles if role in registry]
    if colocate and agent_roles:
        return [*roles, *["+".join(agent_roles)] * replicas]
    for role in agent_roles:
        roles.extend([role] * replicas)
    return roles


def on_url(settings: Settings, url: str) -> Settings:
    """``settings`` for a child process: NATS at ``url``, state dir made absolute."""
    return settings.model_copy(
        update={
            "nats": settings.nats.model_copy(update={"url": url}),
            "state_dir": settings.state_dir.resolve(),
        }
    )


def site_supervisor(
    settings: Settings,
    url: str,
    roles: list[str],
    agents: Sequence[str] = (),
    identities: Mapping[str, Path] | None = None,
) -> Supervisor:
    """The supervisor of ``settings.site``'s worker processes, joining NATS at ``url``;
    ``agents``: import paths every child registers (``--agent``); ``identities``:
    each role's seed file (:func:`~sitemesh.cli._nats.worker_identities`), so every
    child runs as its own role and never with this command's identity."""
    return Supervisor(
        settings.site,
        roles,
        agents=agents,
        env=child_env(process_environ(), on_url(settings, url).to_env()),
        log_dir=settings.state_dir / "logs",
        graceful_timeout_s=settings.bus.graceful_timeout_s,
        identities=identities,
        health_port=settings.health.port,
    )


def endpoints_line(sup: Supervisor, host: str) -> str:
    """``recorder-1 http://127.0.0.1:9100/metrics, ...``: where each child serves its
    probes and metrics (empty without ``SITEMESH_HEALTH_PORT``)."""
    return ", ".join(
        f"{child} http://{host}:{port}/metrics" for child, port in sup.health_ports.items()
    )


async def run_edge(
    settings: Settings,
    console: Console,
    *,
    replicas: int = 1,
    agents: Sequence[str] = (),
    insecure: bool = False,
    colocate: bool = False,
    console_port: int | None = None,
) -> int:
    """Run a site until SIGTERM/SIGINT; returns the exit code.

    ``colocate``: the agent roles run in one process per replica (:func:`site_roles`).
    ``console_port``: also serve the operator console (``sitemesh console``, its own
    process, on loopback) on this port once the site is ready; its users file must
    exist before anything starts.

    Says "ready" only once every worker process registered ready on the bus
    (``sitemesh_workers_<site>``); until then a spinner names what is still loading.
    The embedded server is authenticated (one identity per role under
    ``<state_dir>/creds``; each worker process gets its own) unless ``insecure``.

    Raises:
        ConfigError: the hub's model settings (``SITEMESH_HUB_MODELS_*``) are given to
            the site (its workers would refuse them).
        NotReadyError: a role was not ready within ``health.ready_timeout_s``.
    """
    from ..workflows import WorkflowStore

    models_for(settings, "site")
    if console_port is not None:  # a missing users file is a one-line error now
        from ..console import default_users_file, load_users

        load_users(default_users_file(settings.state_dir))
    registry = Registry.load(agents)
    async with nats_url(settings, console, insecure=insecure, roles=registry.roles) as url:
        nc = await connect(settings, "operator", url=url, name=f"sitemesh-edge-{settings.site}")
        try:
            await provision(nc.jetstream(), Subjects(settings.site), settings.bus)
            await provision_workers(nc.jetstream(), settings.site, settings.health)
            await provision_tool_health(nc.jetstream(), settings.site, settings.health)
            await provision_task_registry(nc.jetstream(), settings.site, settings.bus)
            workflows = await WorkflowStore(nc.jetstream()).current(settings.site)
        except BaseException:
            await nc.close()
            raise
        roles = site_roles(replicas, workflows, registry, colocate=colocate)
        missing = [r for r in workflows.roles if r not in registry]
        if missing:  # their work waits on the bus (see `sitemesh status`)
            console.print(
                f"[yellow]workflows {workflows.version} name roles not installed here: "
                f"{', '.join(missing)}; run their workers with `sitemesh worker --agent "
                "module:Class` (or pass --agent to edge)[/yellow]"
            )
        try:
            identities = worker_identities(
                settings, url, [r for entry in roles for r in entry.split("+")]
            )
        except BaseException:
            await nc.close()
            raise
        sup = site_supervisor(settings, url, roles, agents, identities)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        async with sup:
            console.print(f"site [bold]{settings.site}[/bold] starting at {redact_url(url)}")
            console.print(f"logs in {settings.state_dir / 'logs'}; Ctrl-C to stop")
            watch: asyncio.Task[None] | None = None
            web: asyncio.subprocess.Process | None = None
            # processed history leaves the work streams here (they have no server age
            # limit, so nothing unprocessed ever ages out)
            keeper = asyncio.create_task(
                keep_streams(nc, Subjects(settings.site), settings.bus), name="stream-keeper"
            )
            try:
                took = await wait_workers(
                    console, [(nc.jetstream(), sup)],
                    timeout_s=settings.health.ready_timeout_s, stop=stop,
                )  # fmt: skip
                if took is not None:
                    console.print(
                        f"site [bold]{settings.site}[/bold] [green]ready[/green] in "
                        f"{took:.1f} s: " + pids_line([sup])
                    )
                    if sup.health_ports:  # /healthz, /readyz and /metrics of each worker
                        console.print("probes and metrics: " + endpoints_line(
                            sup, settings.health.host))  # fmt: skip
                if took is not None and console_port is not None:
                    web = await start_console(settings, url, console_port)
                    console.print(f"console: http://127.0.0.1:{console_port}/")
                watch = asyncio.create_task(watch_fill(nc.jetstream(), settings.site, console))
                await stop.wait()
            finally:
                if web is not None:
                    await stop_console(web)
                keeper.cancel()
                if watch is not None:
                    watch.cancel()
                await nc.close()  # before the workers stop (and NATS may be going down)
            console.print("stopping workers (finishing in-flight work)...")
    return 0


async def start_console(
    settings: Settings, url: str, port: int, *, users_file: Path | None = None,
    monitor_url: str | None = None, log_dir: Path | None = None,
) -> asyncio.subprocess.Process:  # fmt: skip
    """``sitemesh console --port PORT`` for this site as a child process on loopback,
    as the site's ``operator`` (its identity under ``<state_dir>``), with the users
    file (default ``<state_dir>/console-users.toml``) and, given ``monitor_url``, the
    hub link on its health page; its output in ``<log_dir>/console-<site>.log``
    (default ``<state_dir>/logs``)."""
    logs = log_dir or settings.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = child_env(process_environ(), settings.to_env()) | {"SITEMESH_NATS_URL": url}
    args = ["console", "--port", str(port), "--site", settings.site]
    if users_file is not None:
        args += ["--users", str(users_file)]
    if monitor_url is not None:
        args += ["--monitor", monitor_url]
    log_file = logs / f"console-{settings.site}.log"
    with log_file.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sitemesh", *args, env=env, stdout=out, stderr=out
        )
    try:
        await _console_serving(proc, port, log_file)
    except BaseException:
        await stop_console(proc)
        raise
    return proc


CONSOLE_START_S: Final = 120.0
"""Seconds a console child may take to answer ``/healthz`` (it imports the platform)."""


async def _console_serving(proc: asyncio.subprocess.Process, port: int, log_file: Path) -> None:
    """Wait until the console answers ``GET /healthz``.

    Raises:
        SitemeshError: it exited first, or did not answer within :data:`CONSOLE_START_S`.
    """
    import httpx

    deadline = asyncio.get_running_loop().time() + CONSOLE_START_S
    async with httpx.AsyncClient(timeout=2.0) as http:
        while True:
            if proc.returncode is not None:
                raise SitemeshError(f"the console exited (code {proc.returncode}): see {log_file}")
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise SitemeshError(f"the console did not answer on port {port}: see {log_file}")
            await asyncio.sleep(0.25)


async def stop_console(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the console child and wait for it (SIGKILL after 10 s)."""
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def watch_fill(
    js: JetStreamContext, site: str, console: Console, *, interval_s: float = FILL_CHECK_S
) -> None:
    """Warn (console and log) when one of the site's streams passes
    :data:`~sitemesh.bus.FILL_WARNING` of its limit, and again when it is back below;
    every ``interval_s`` seconds until cancelled. A failed read is logged and retried."""
    subjects = Subjects(site)
    warned: set[str] = set()
    while True:
        await asyncio.sleep(interval_s)
        try:
            fills = await stream_fill(js, subjects)
        except Exception as exc:  # NATS away for a moment: the next check says more
            log.info("stream fill not read: %s", type(exc).__name__)
            continue
        for f in fills:
            if f.fraction >= FILL_WARNING and f.stream not in warned:
                warned.add(f.stream)
                log.warning("stream %s is %.0f%% full", f.stream, f.fraction * 100)
                console.print(
                    f"[bold red]stream {f.stream} is {f.fraction:.0%} full[/bold red] "
                    f"({f.bytes:,} of {f.max_bytes:,} bytes): when full it refuses new work "
                    "(publishers are told; nothing is dropped). Processed history is "
                    "trimmed already; the rest awaits its consumers: check `sitemesh "
                    "status`, add workers, or raise SITEMESH_BUS_MAX_BYTES."
                )
            elif f.fraction < FILL_WARNING * 0.9 and f.stream in warned:
                warned.discard(f.stream)
                console.print(f"stream {f.stream} back to {f.fraction:.0%} full")


async def run_publish(
    settings: Settings,
    console: Console,
    files: Sequence[Path],
    prefix: str,
    raw_kind: str | None,
    *,
    tenant: str | None = None,
    allow_unserved: bool = False,
) -> int:
    """Publish tasks from ``files``; prints one task id per line. With ``tenant``, as
    that tenant's client identity (``client-<tenant>``) on its own task subjects.

    Before publishing, the site's worker registry is read as ``operator`` where this
    command has that identity (the embedded server's, or an open server): with no
    router ready, nothing would accept the tasks, so it says so and publishes nothing
    unless ``allow_unserved``. A client with only its own identity publishes unchecked.

    Returns:
        0, or :data:`EXIT_UNSERVED` when no router is ready and nothing was published.

    Raises:
        ConfigError: ``tenant`` cannot have a client identity (not a subject token).
        SchemaError: a task does not decode, or names a tenant other than ``tenant``.
    """
    from ..topology import tenant_client

    try:
        identity = "client" if tenant is None else tenant_client(tenant)
    except ValueError as exc:
        raise ConfigError("--tenant", str(exc)) from None
    tasks = prepare(files, prefix=prefix, raw_kind=raw_kind)
    async with nats_url(settings, console) as url:
        if not settings.nats.has_identity:  # the client identity may not create streams
            await ensure_streams(settings, url)
        served = await router_ready(settings, url)
        if served is False:
            console.print(
                f"[yellow]no router is ready at site {settings.site}: nothing would accept "
                f"these tasks now (they would wait on {Subjects(settings.site).tasks_stream}). "
                "Start the site (`sitemesh edge`), or pass --allow-unserved to queue them "
                "anyway.[/yellow]"
            )
            if not allow_unserved:
                return EXIT_UNSERVED
        nc = await connect(settings, identity, url=url, name="sitemesh-publish")
        try:
            done = await publish(nc.jetstream(), settings.site, tasks, tenant=tenant)
        finally:
            await nc.drain()
    dup = sum(1 for d in done if d.duplicate)
    for d in done:
        console.print(d.task_id, highlight=False, soft_wrap=True)
    console.print(
        f"[dim]published {len(done)} tasks to site {settings.site}"
        + (f" ({dup} already stored with the same body: deduplicated)" if dup else "")
        + "[/dim]"
    )
    await asyncio.sleep(0)
    return 0


EXIT_UNSERVED = 3
"""``sitemesh publish``: no router is ready at the site, nothing was published."""

READY_CHECK_TIMEOUT_S = 3.0
"""Seconds ``publish`` gives its look at the worker registry before publishing unchecked."""


async def router_ready(settings: Settings, url: str) -> bool | None:
    """Whether a router of ``settings.site`` is registered ``ready`` (the registry:
    :func:`sitemesh.runtime.read_workers`); ``None`` when this command cannot look
    (it runs with an explicit identity, such as a tenant's client, or NATS did not
    answer within :data:`READY_CHECK_TIMEOUT_S`)."""
    if settings.nats.has_identity:  # a client's own identity may not read the registry
        return None
    try:
        nc = await connect(settings, "operator", url=url, name="sitemesh-publish-check")
    except SitemeshError:
        return None
    try:
        records = await asyncio.wait_for(
            read_workers(nc.jetstream(), settings.site), READY_CHECK_TIMEOUT_S
        )
    except Exception as exc:  # a look, not a reason to fail: publish unchecked
        log.info("worker registry not read: %s", type(exc).__name__)
        return None
    finally:
        await nc.drain()
    return any(r.role == "router" and r.state == "ready" for r in records)


async def run_policy(
    settings: Settings, console: Console, rules_text: str | None, site: str | None
) -> int:
    """Show the policy in force, or validate and publish ``rules_text`` to the KV bucket."""
    from ..policy import PolicyStore

    async with nats_url(settings, console) as url:
        nc = await connect(settings, "operator", url=url, name="sitemesh-policy")
        try:
            store = PolicyStore(nc.jetstream())
            if rules_text is not None:
                version = await store.publish(rules_text, site=site)
                console.print(
                    f"published policy {version} ({'site ' + site if site else 'all sites'})"
                )
                return 0
            current = await store.current(site or settings.site)
            console.print(
                f"policy {current.version} ({current.label}), {len(current.rules)} rules:"
            )
            for rule in current.rules:
                console.print(f"  {rule.id:<40} {rule.action}", highlight=False)
            return 0
        finally:
            await nc.drain()
