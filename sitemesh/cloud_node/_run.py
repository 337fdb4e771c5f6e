"""``sitemesh cloud``: the cloud agents, as durable workers on the hub's ``CLOUD_IN``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import TYPE_CHECKING

from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from ..bus import CLOUD_IN, Subjects, Worker, stream_config
from ..config import BusSettings, Settings
from ..errors import ConfigError
from ..schemas import INCIDENT_DECODER
from ..telemetry import setup_telemetry, shutdown_telemetry, watch_breakers
from ._synthesiser import Synthesiser

if TYPE_CHECKING:
    from ..models import ModelClient
    from ..runtime import Readiness

log = logging.getLogger("sitemesh.cloud")

HUB = "hub"
"""Site token of the hub in subjects (``sm.v1.dlq.hub.synthesiser``)."""


async def provision_cloud(js: JetStreamContext, bus: BusSettings) -> None:
    """The hub's own dead-letter and event streams and the ``synthesiser`` consumer
    on ``CLOUD_IN`` (which ``sitemesh.topology.provision_hub`` creates). Idempotent."""
    hub = Subjects(HUB)
    for name, subject in ((hub.dlq_stream, hub.all_dlq), (hub.events_stream, hub.all_events)):
        config = stream_config(bus, name, [subject])
        try:
            await js.stream_info(name)
        except NotFoundError:
            await js.add_stream(config)
    await js.add_consumer(
        CLOUD_IN,
        ConsumerConfig(
            durable_name=Synthesiser.role,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=bus.ack_wait_s,
            max_deliver=bus.max_deliver,
        ),
    )


def synthesiser_worker(
    js: JetStreamContext, bus: BusSettings, client: ModelClient | None = None
) -> Worker[object]:
    """The synthesiser as a :class:`~sitemesh.bus.Worker` on ``CLOUD_IN``; model-backed
    when ``client`` is given, else the deterministic composer (labelled as such)."""
    backend = None
    if client is not None:
        from ..models import ModelSynthesiser

        backend = ModelSynthesiser(client)
    return Worker(
        js,
        site=HUB,
        role=Synthesiser.role,
        stream=CLOUD_IN,
        durable=Synthesiser.role,
        decoder=INCIDENT_DECODER.decode,
        handler=Synthesiser(backend),  # type: ignore[arg-type]
        settings=bus,
    )


RESUME_EVERY_S = 5.0
"""How often the cloud node checks ``CLOUD_IN``'s sources for a stall (seconds)."""


async def _resume_sources(js: JetStreamContext, stop: asyncio.Event) -> None:
    """Restart stalled ``CLOUD_IN`` sources after a hub or site restart; without it
    nats-server retries them only after its own backoff (up to 2 min, see
    :func:`sitemesh.topology.restart_stalled_sources`)."""
    from ..topology import restart_stalled_sources

    while not stop.is_set():
        try:
            restarted = await restart_stalled_sources(js, CLOUD_IN)
            if restarted:
                log.info("restarted stalled CLOUD_IN sources: %s", restarted)
        except Exception as exc:  # the hub may be restarting; try again later
            log.debug("source check failed: %r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), RESUME_EVERY_S)


async def run_cloud(settings: Settings, *, readiness: Readiness | None = None) -> int:
    """Run the cloud agents against the hub at ``settings.nats.url`` until SIGTERM.

    The synthesiser's models come from ``settings.hub_models``
    (``SITEMESH_HUB_MODELS_*``) only, checked before anything connects: no site
    endpoint in the chain, no site settings (``SITEMESH_MODELS_*``) given
    (:func:`sitemesh.runtime.models_for`).

    Args:
        settings: the process settings (``nats.url`` is the hub).
        readiness: told when the synthesiser is ready and when it stops (it registers
            in the hub's ``sitemesh_workers_hub``); ``None``: not reported.

    Raises:
        ConfigError: no hub URL (``SITEMESH_NATS_URL``); the hub's model chain names a
            site endpoint, or site model settings were given (the key is named).
    """
    if not settings.nats.url:
        raise ConfigError("nats.url", "set SITEMESH_NATS_URL to the hub's client URL")
    from ..runtime import build_model_client, connect, models_for  # the runtime runs this

    models_for(settings, "hub")  # refuse a site endpoint before joining the hub
    setup_telemetry(  # before the Worker
        settings.telemetry,
        site=HUB,
        role=Synthesiser.role,
        prometheus=readiness is not None and readiness.http is not None,
    )

    nc = await connect(settings, "synthesiser", name="sitemesh-cloud")
    js = nc.jetstream()
    if not settings.nats.has_identity:  # the hub provisioner does it in production
        if settings.hub.sites:
            from ..topology import provision_hub

            await provision_hub(js, settings.hub.sites, settings.bus)
        await provision_cloud(js, settings.bus)
    client = build_model_client(settings, side="hub")
    if client is not None:  # sitemesh.breaker.state on /metrics
        hub_client = client
        watch_breakers(
            HUB,
            Synthesiser.role,
            lambda: [("model", m.provider, m.breaker) for m in hub_client.health()],
        )
    worker = synthesiser_worker(js, settings.bus, client)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    run = asyncio.create_task(worker.run())
    resume = asyncio.create_task(_resume_sources(js, stop))
    log.info("cloud synthesiser ready")
    if readiness is not None:
        await readiness.ready(js, origin="sitemesh service")
    await asyncio.wait([run, asyncio.create_task(stop.wait())], return_when="FIRST_COMPLETED")
    stop.set()
    if readiness is not None:
        await readiness.stopping()
    await worker.shutdown()
    await asyncio.gather(run, resume, return_exceptions=True)
    if readiness is not None:
        await readiness.shutdown()
    await nc.drain()
    shutdown_telemetry()  # flushes buffered spans and metrics
    return 0
