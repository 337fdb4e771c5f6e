"""Entry point of one worker process: ``sitemesh worker ROLE --site SITE``.

The one place that turns settings + a role into running services: the runtime's own
services (:data:`SERVICE_ROLES`) and every agent role of the registry
(:class:`sitemesh.agents.Registry`), built-in or yours, run the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

from nats.js.client import JetStreamContext

from ..agents import AgentResources, AgentSpec, Registry, import_agent
from ..bus import (
    HDR_TASK_ID,
    AdmissionGate,
    LocalWorkers,
    MaxDeliveriesSweeper,
    Subjects,
    Worker,
    provision,
)
from ..config import Settings
from ..edge_node import (
    BatchingDecider,
    CloudForwarder,
    InboxFinaliser,
    Ingress,
    TaskRegistry,
    pending_kv,
    task_decoder,
    task_id_of,
)
from ..errors import ConfigError
from ..schemas import ANSWER_DECODER, WORK_DECODER, WorkItem, decode
from ..telemetry import (
    METRICS_PATH,
    metrics_response,
    setup_telemetry,
    shutdown_telemetry,
    watch_breakers,
)
from ._connect import connect
from ._health import Readiness
from ._models import build_model_client, models_for
from ._steps import step_handler
from ._tools import (
    ToolHealthPublisher,
    ToolsService,
    breaker_states,
    build_tool_registry,
    health_source,
    model_health_source,
)

log = logging.getLogger("sitemesh.worker")

SERVICE_ROLES: Final[Mapping[str, str]] = {
    "recorder": "the site's only database writer (events and dead letters)",
    "router": "ingress: classifies each task, applies the policy, starts its workflow",
    "relay": "moves cloud answers from the site's EGRESS account into SITE",
    "synthesiser": "the cloud agent on the hub (anonymised incidents in, answers out)",
}
"""The runtime's own services (not agents); with the registry's agent roles they are
every role ``sitemesh worker`` can run."""


def worker_roles(registry: Registry) -> tuple[str, ...]:
    """Every role ``sitemesh worker`` can run: the services, then the agent roles."""
    return (*SERVICE_ROLES, *registry.roles)


_SIGNALLED: list[int] = []
"""Signals received before the event loop's handlers were installed."""


def catch_early_signals() -> None:
    """Remember SIGTERM/SIGINT from process start on, so a worker told to stop while it
    is still loading (models, indexes) exits cleanly once it can, instead of dying."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: _SIGNALLED.append(signum))


class Service(Protocol):
    async def run(self) -> None: ...
    async def shutdown(self) -> None: ...


def worker_name() -> str:
    """``<host>:<pid>`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _work_task_id(data: bytes, headers: Mapping[str, str]) -> str | None:
    return headers.get(HDR_TASK_ID)


def _decode_work(data: bytes) -> WorkItem:
    return decode(data, WORK_DECODER)


async def _router(settings: Settings, js: JetStreamContext) -> list[Service]:
    from ..policy import MachineDataScanner, PiiScanner, PolicyRouter, PolicyStore
    from ..workflows import WorkflowStore

    subjects = Subjects(settings.site)
    policies = PolicyStore(js)
    if settings.policy.rules_file is not None:
        # an explicitly configured rules file is this site's override (rules.<site>)
        version = await policies.publish(
            settings.policy.rules_file.read_text("utf-8"), site=settings.site
        )
        log.info("published %s as policy %s", settings.policy.rules_file, version)
    live = await policies.live(settings.site).start()
    workflows = await WorkflowStore(js).live(settings.site).start()
    hub_enabled = settings.hub.enabled
    scanner = PiiScanner.from_settings(settings.policy)
    router = PolicyRouter(
        live.policy,
        scanner,
        machine_scanner=MachineDataScanner.from_settings(settings.policy, scanner),
        policy_source=live,
        backend_healthy=lambda: hub_enabled,
    )
    router.scanner.load()
    stream, durable, _ = subjects.consumer_for("router")
    worker: Service = Worker(
        js,
        site=settings.site,
        role="router",
        stream=stream,
        durable=durable,
        decoder=task_decoder(settings.bus.max_task_bytes),
        handler=Ingress(
            subjects,
            BatchingDecider(router, max_batch=settings.bus.batch),
            workflows,
            registry=TaskRegistry(
                js, subjects, settings.bus, create_bucket=not settings.nats.has_identity
            ),
        ),
        settings=settings.bus,
        task_id_of=task_id_of,
        # no new task into a nearly full work stream: the steps in progress need room
        admit=AdmissionGate(js, subjects.work_stream, subjects.all_work.removesuffix(">")),
    )
    sweeper = MaxDeliveriesSweeper(
        js, site=settings.site, settings=settings.bus, task_id_of=_work_task_id
    )
    return [worker, sweeper, live, workflows]


class _ArtifactFollower:
    """Calls an agent's :meth:`~sitemesh.agents.AgentResources.on_artifact_change`
    callbacks while the process runs. Waits for the site's bucket to appear (it is
    created by the first ``sitemesh kb add`` or ``triage train --publish``). When the
    watch starts the callbacks get ``""`` (reload everything): the watch reports only
    later changes, and artifacts may have been put since setup read them."""

    def __init__(self, resources: AgentResources) -> None:
        self._resources = resources
        self._stop = asyncio.Event()

    async def _changed(self, name: str) -> None:
        for callback in self._resources.followers:
            try:
                await callback(name)
            except Exception:
                log.exception("reloading artifact %s failed; keeping what was loaded", name)

    async def run(self) -> None:
        while not self._stop.is_set():
            artifacts = await self._resources.artifacts()
            if artifacts is not None:
                # the watch sees only later changes: reload once for whatever was put
                # between setup and now (or before the bucket was found)
                await self._changed("")
                await artifacts.follow(self._changed, stop=self._stop)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=5.0)

    async def shutdown(self) -> None:
        self._stop.set()


async def _agent(
    settings: Settings, spec: AgentSpec, js: JetStreamContext, local: LocalWorkers | None = None
) -> list[Service]:
    subjects = Subjects(settings.site)
    resources = AgentResources(
        settings.site,
        settings,
        models=lambda: build_model_client(settings),
        js=js,
        tools=lambda: build_tool_registry(settings),  # MCP servers start on first call
    )
    agent = spec.create()
    await agent.setup(resources)  # indexes, models, analyzers: before the first message
    publisher = ToolHealthPublisher(
        js,
        site=settings.site,
        role=spec.role,
        source=health_source(resources),
        models=model_health_source(resources),
        interval_s=settings.tools.health_interval_s,
        health=settings.health,
        create_bucket=not settings.nats.has_identity,
    )
    watch_breakers(settings.site, spec.role, breaker_states(resources))  # on /metrics
    extra: list[Service] = [ToolsService(resources, publisher)]
    if resources.followers:
        extra.append(_ArtifactFollower(resources))
    finaliser = None
    if spec.final and settings.hub.enabled:
        finaliser, inbox = await _boundary(settings, js, subjects)
        extra.append(inbox)
    stream, durable, subject = subjects.consumer_for(spec.role)
    worker = Worker(
        js,
        site=settings.site,
        role=spec.role,
        stream=stream,
        durable=durable,
        decoder=_decode_work,
        handler=step_handler(spec, subjects, agent=agent, resources=resources, finaliser=finaliser),
        settings=settings.bus,
        task_id_of=_work_task_id,
        local=local,
        local_subject=subject if local is not None else None,
    )
    return [worker, *extra]


async def _build_services(
    settings: Settings,
    role: str,
    js: JetStreamContext,
    registry: Registry,
    local: LocalWorkers | None = None,
) -> list[Service]:
    """Build the long-running services of ``role`` (loads models/indexes first);
    ``local``: the process's co-located workers (agent roles only)."""
    if role == "recorder":
        from ..state import Recorder, Store, migrate

        await migrate(settings.db_url)
        store = Store(settings.db_url)
        return [Recorder(js, store, settings.site, settings.bus)]
    if role == "router":
        return await _router(settings, js)
    return await _agent(settings, registry.spec(role), js, local)


def colocated_identity(settings: Settings, role: str) -> Settings:
    """``settings`` for ``role`` when it runs in the process of another role.

    Each co-located role connects with its own identity, so its permissions stay its
    own. With a seed file configured (the process's first role), ``role``'s seed is
    the file next to it: ``sitemesh creds`` and the embedded server keep every role of
    a site as ``<dir>/<site>/<role>.nk``. Without one, ``connect`` picks the role's
    identity itself (``nats.creds_dir``, the embedded server's) or joins an open server.

    Raises:
        ConfigError: key ``nats.nkey_seed_file``: no seed file for ``role`` next to the
            configured one; key ``nats.nkey_seed``: the identity is an inline seed,
            which names one role only.
    """
    nats = settings.nats
    if nats.nkey_seed is not None:
        raise ConfigError(
            "nats.nkey_seed",
            f"co-located role {role!r} needs its own identity: give seed files "
            "(SITEMESH_NATS_NKEY_SEED_FILE, or SITEMESH_NATS_CREDS_DIR) instead of one inline seed",
        )
    if nats.nkey_seed_file is None:
        return settings
    seed = nats.nkey_seed_file.parent / f"{role}.nk"
    if not seed.is_file():
        raise ConfigError(
            "nats.nkey_seed_file",
            f"co-located role {role!r} has no identity {seed} next to "
            f"{nats.nkey_seed_file} (run `sitemesh creds --site {settings.site}`)",
        )
    return settings.model_copy(update={"nats": nats.model_copy(update={"nkey_seed_file": seed})})


def _task_ref(settings: Settings) -> Callable[[str], str] | None:
    """The site's task id -> boundary reference function for span attributes (``None``
    unless ``telemetry.task_ids`` is ``reference`` and telemetry is on)."""
    t = settings.telemetry
    if t.exporter == "none" or t.task_ids != "reference":
        return None
    from ..policy import BoundaryRefs, load_vault_key

    refs = BoundaryRefs(load_vault_key(settings.privacy, settings.state_dir))
    site = settings.site
    return lambda task_id: refs.ref(site, task_id)


INBOX_DURABLE = "inbox"
"""Durable consumer of ``INBOX_<site>`` (cloud answers), bound by the escalation role."""


async def _boundary(
    settings: Settings, js: JetStreamContext, subjects: Subjects
) -> tuple[CloudForwarder, Service]:
    """The forwarder (outbox side) and the inbox worker of a site linked to a hub."""
    from ..policy import (
        BoundaryRefs,
        EgressGuard,
        PiiScanner,
        Pseudonymizer,
        Vault,
        load_vault_key,
    )

    scanner = PiiScanner.from_settings(settings.policy)
    scanner.load()
    key = load_vault_key(settings.privacy, settings.state_dir)
    vault = Vault(settings.db_url, key)
    pseudo = Pseudonymizer(scanner, vault)
    pending = await pending_kv(js, settings.site)
    if not settings.nats.has_identity:  # else the provisioning made stream and consumer
        from ..topology import provision_inbox

        await provision_inbox(js, subjects, settings.bus)
    forwarder = CloudForwarder(subjects, pseudo, EgressGuard(scanner), pending, BoundaryRefs(key))
    inbox = Worker(
        js,
        site=settings.site,
        role="escalation",
        stream=subjects.inbox_stream,
        durable=INBOX_DURABLE,
        decoder=ANSWER_DECODER.decode,
        handler=InboxFinaliser(subjects, pseudo, pending),
        settings=settings.bus,
        task_id_of=_work_task_id,
    )
    return forwarder, inbox


async def run_role(
    settings: Settings,
    role: str | None,
    *,
    agents: Sequence[str] = (),
    colocate: Sequence[str] = (),
) -> int:
    """Run ``role`` for ``settings.site`` until SIGTERM/SIGINT; returns the exit code.

    Readiness (:class:`Readiness`): with ``SITEMESH_HEALTH_PORT`` set, ``/healthz`` and
    ``/readyz`` are served from the start; once the services are built (the agent's
    ``setup()`` ran) the process registers ``ready`` in ``sitemesh_workers_<site>``
    (the hub's for the synthesiser), ``stopping`` on SIGTERM, and removes itself
    after draining.

    Args:
        settings: the process settings.
        role: a service (:data:`SERVICE_ROLES`) or an agent role of the registry;
            ``None``: the role of the single agent named in ``agents``.
        agents: import paths (``module:Class``) of agents to register besides the
            installed ones.
        colocate: further agent roles to run in this process (``sitemesh worker
            triage --with retriever``), each with its own connection, identity and
            registry record; a work item one of them publishes for another is handed
            over in memory (:class:`sitemesh.bus.LocalWorkers`). ``role`` must then be
            an agent role too.

    Raises:
        ConfigError: unknown role, a co-located role that is not an agent role of
            the registry (key ``colocate``), or no NATS URL (``SITEMESH_NATS_URL``).
        AgentError: an entry point or import path does not load.
    """
    registry = Registry.load(agents)
    if role is None:
        if len(agents) != 1:
            raise ConfigError("role", "name a role, or exactly one --agent module:Class")
        role = import_agent(agents[0]).role
    if role not in SERVICE_ROLES and role not in registry:
        raise ConfigError(
            "role", f"unknown role {role!r}; expected one of {list(worker_roles(registry))}"
        )
    colocate = list(dict.fromkeys(r for r in colocate if r != role))
    for r in [role, *colocate] if colocate else []:
        if r not in registry:
            raise ConfigError(
                "colocate",
                f"only agent roles run together in one process, not {r!r}; expected some "
                f"of {list(registry.roles)}",
            )
    readiness = Readiness(settings, role, site="hub" if role == "synthesiser" else None)
    if readiness.http is not None:  # Prometheus pulls the runtime's instruments here
        readiness.http.add_route(METRICS_PATH, metrics_response)
    await readiness.start()  # /healthz answers (and /readyz says 503) while loading
    try:
        if role == "synthesiser":
            from ..cloud_node import run_cloud

            return await run_cloud(settings, readiness=readiness)
        if role == "relay":
            return await _run_relay(settings, readiness)
        origin = registry.spec(role).origin if role in registry else "sitemesh service"
        return await _run_site_role(settings, role, registry, readiness, origin, colocate)
    finally:
        await readiness.shutdown()


async def _run_site_role(
    settings: Settings,
    role: str,
    registry: Registry,
    readiness: Readiness,
    origin: str,
    colocate: Sequence[str] = (),
) -> int:
    """Body of :func:`run_role` for the site's own roles (services and agents)."""
    setup_telemetry(  # before any Worker; spans carry task references, not task ids
        settings.telemetry,
        site=settings.site,
        role=role,
        task_ref=_task_ref(settings),
        prometheus=readiness.http is not None,
    )
    models_for(settings, "site")  # refuses the hub's model settings before joining the bus
    nc = await connect(settings, role)
    js = nc.jetstream()
    if not settings.nats.has_identity:  # restricted identities may not create streams
        roles = ("router", *registry.roles)
        await provision(js, Subjects(settings.site), settings.bus, roles=roles)
    local = LocalWorkers() if colocate else None
    services = await _build_services(settings, role, js, registry, local)
    siblings: list[tuple[Readiness, JetStreamContext, str]] = []
    conns = [nc]
    for other in colocate:  # each with its own identity: its permissions stay its own
        other_settings = colocated_identity(settings, other)
        other_nc = await connect(other_settings, other)
        conns.append(other_nc)
        other_js = other_nc.jetstream()
        services += await _build_services(other_settings, other, other_js, registry, local)
        ready = Readiness(other_settings, other, serve_http=False)
        siblings.append((ready, other_js, registry.spec(other).origin))
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def _on_signal() -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal)
    if _SIGNALLED:  # told to stop while starting: stop before taking any work
        stopping.set()
    names = "+".join([role, *colocate])
    log.info("%s ready at site %s (pid %d)", names, settings.site, os.getpid())
    runs = [asyncio.create_task(s.run()) for s in services]
    if not stopping.is_set():  # loaded: registered in sitemesh_workers_<site>, /readyz 200
        for sibling, sibling_js, sibling_origin in siblings:
            await sibling.ready(sibling_js, origin=sibling_origin)
        await readiness.ready(js, origin=origin)
    stop_wait = asyncio.create_task(stopping.wait())
    done, _ = await asyncio.wait([*runs, stop_wait], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for t in runs:
        if t in done and t.exception() is not None:
            log.error("%s failed: %r", role, t.exception())
            code = 1
    log.info("%s stopping: finishing in-flight work", names)
    for sibling, _, _ in siblings:
        await sibling.stopping()
    await readiness.stopping()
    await asyncio.gather(*(s.shutdown() for s in services), return_exceptions=True)
    await asyncio.gather(*runs, return_exceptions=True)
    for s in services:  # drained: now end what in-flight work used (MCP sessions)
        if isinstance(s, ToolsService):
            await s.aclose()
    stop_wait.cancel()
    for sibling, _, _ in siblings:
        await sibling.shutdown()
    await readiness.shutdown()  # the record goes before the connection does
    for conn in conns:
        await conn.drain()
    if local is not None and local.handed_over:
        log.info("%s: handed over in memory: %s", names, local.handed_over)
    shutdown_telemetry()  # flushes buffered spans and metrics
    log.info("%s stopped", names)
    return code


async def _run_relay(settings: Settings, readiness: Readiness) -> int:
    """``sitemesh worker relay``: provision the site's EGRESS streams and move cloud
    answers into SITE's ``INBOX_<site>`` until SIGTERM (``SITEMESH_NATS_URL`` is the
    site server with the EGRESS account's credentials)."""
    from ..topology import InboxRelay, provision_egress

    if not settings.nats.url:
        raise ConfigError("nats.url", "set SITEMESH_NATS_URL to the site's EGRESS URL")
    nc = await connect(settings, "relay")
    subjects = Subjects(settings.site)
    if not settings.nats.has_identity:
        await provision_egress(nc.jetstream(), subjects, settings.bus)
    relay = InboxRelay(nc, subjects)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(relay.run())
    log.info("relay ready at site %s", settings.site)
    await readiness.ready(None)  # EGRESS has no worker registry: the HTTP probes only
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    await readiness.stopping()
    await relay.shutdown()
    await asyncio.gather(run, return_exceptions=True)
    await nc.drain()
    return 0
