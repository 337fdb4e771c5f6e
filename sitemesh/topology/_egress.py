"""Store-and-forward across the site boundary: outbox/inbox streams and the inbox relay.

Path of an outbox event (site -> hub)::

    SITE worker --js.publish sm.v1.out.<site>.<role>--> (service import) -->
    EGRESS OUTBOX_<site> --(sourced over the leaf, $JS.<site>.API)--> hub CLOUD_IN

Path of a cloud answer (hub -> site)::

    cloud agent --js.publish sm.v1.in.<site>.<task>--> hub CLOUD_OUT
    --(sourced over the leaf, $JS.hub.API, filter sm.v1.in.<site>.>)-->
    EGRESS INBOX_LANDING_<site> --InboxRelay: js.publish, same Nats-Msg-Id-->
    (service import) --> SITE INBOX_<site>

Stream sourcing keeps its own position in the origin stream, so while the link is
down messages wait in the origin stream and are copied once when it returns
(nats-server docs, "JetStream > Source and Mirror Streams"; cross-domain sourcing
via ``external.api = $JS.<domain>.API``). The relay acks a landing message only
after SITE's INBOX acked the copy; a re-delivery re-publishes the same
``Nats-Msg-Id`` and the duplicate window drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from types import TracebackType
from typing import Final, Self

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ExternalStream,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import BadRequestError

from ..bus import (
    ALL_IN,
    CLOUD_IN,
    CLOUD_OUT,
    HDR_MSG_ID,
    Subjects,
    consumer_config,
    stream_config,
)
from ..config import BusSettings
from ._model import HUB_DOMAIN
from ._permissions import INBOX_DURABLE

log = logging.getLogger("sitemesh.topology")

RELAY: Final = "relay"
"""Durable on ``INBOX_LANDING_<site>`` read by :class:`InboxRelay`."""

_STREAM_IN_USE: Final = 10058


def js_api(domain: str) -> str:
    """The JetStream API prefix of ``domain``: ``$JS.<domain>.API``."""
    return f"$JS.{domain}.API"


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise
        await js.update_stream(config)


def hub_stream_configs(sites: Iterable[str], bus: BusSettings) -> list[StreamConfig]:
    """``CLOUD_OUT`` (subjects ``sm.v1.in.>``) and ``CLOUD_IN`` (sources every outbox).

    Args:
        sites: site names (JetStream domains) whose ``OUTBOX_<site>`` is sourced.
        bus: stream limits.
    """
    sources = [
        StreamSource(name=Subjects(site).outbox_stream, external=ExternalStream(api=js_api(site)))
        for site in sorted(set(sites))
    ]
    return [stream_config(bus, CLOUD_OUT, [ALL_IN]), stream_config(bus, CLOUD_IN, sources=sources)]


def site_egress_stream_configs(
    subjects: Subjects, bus: BusSettings, *, hub_domain: str = HUB_DOMAIN
) -> list[StreamConfig]:
    """The ``EGRESS`` account's streams: ``OUTBOX_<site>`` and ``INBOX_LANDING_<site>``.

    Args:
        subjects: the site's subject map.
        bus: stream limits.
        hub_domain: the hub's JetStream domain (``CLOUD_OUT`` is sourced from it).
    """
    landing_source = StreamSource(
        name=CLOUD_OUT,
        filter_subject=subjects.all_in,
        external=ExternalStream(api=js_api(hub_domain)),
    )
    return [
        stream_config(bus, subjects.outbox_stream, [subjects.all_out]),
        stream_config(bus, subjects.inbox_landing_stream, sources=[landing_source]),
    ]


async def provision_hub(js: JetStreamContext, sites: Iterable[str], bus: BusSettings) -> None:
    """Create or update the hub's ``CLOUD_OUT`` and ``CLOUD_IN``. Idempotent.

    Adding a site later and provisioning again adds its outbox to CLOUD_IN's sources
    (an update; existing sources keep their positions).

    Args:
        js: JetStream context of a ``CLOUD`` user on the hub (domain ``hub``).
        sites: every site name.
        bus: stream limits.

    Raises:
        nats.js.errors.APIError: the server refused a configuration.
    """
    for config in hub_stream_configs(sites, bus):
        await _ensure_stream(js, config)


async def provision_site_egress(
    egress_js: JetStreamContext,
    site_js: JetStreamContext,
    subjects: Subjects,
    bus: BusSettings,
    *,
    hub_domain: str = HUB_DOMAIN,
) -> None:
    """Create or update a site's boundary streams. Idempotent.

    In ``EGRESS``: ``OUTBOX_<site>`` and ``INBOX_LANDING_<site>`` (sources
    ``CLOUD_OUT`` of ``hub_domain`` filtered to this site) with the durable
    :data:`RELAY`. In ``SITE``: ``INBOX_<site>`` (subjects ``sm.v1.in.<site>.>``),
    where the relay's copies land and site workers read answers.

    Works while the hub is unreachable: the landing stream's source starts copying
    once the leaf connection is up.

    Args:
        egress_js: JetStream context of the site's ``EGRESS`` user.
        site_js: JetStream context of a ``SITE`` user.
        subjects: the site's subject map.
        bus: stream limits.
        hub_domain: the hub's JetStream domain.

    Raises:
        nats.js.errors.APIError: the server refused a configuration.
    """
    await provision_egress(egress_js, subjects, bus, hub_domain=hub_domain)
    await provision_inbox(site_js, subjects, bus)


async def provision_egress(
    egress_js: JetStreamContext,
    subjects: Subjects,
    bus: BusSettings,
    *,
    hub_domain: str = HUB_DOMAIN,
) -> None:
    """The ``EGRESS`` half of :func:`provision_site_egress`: ``OUTBOX_<site>``,
    ``INBOX_LANDING_<site>`` and the relay's durable consumer. Idempotent; run by the
    inbox relay (``sitemesh worker relay``) with the site's EGRESS identity."""
    for config in site_egress_stream_configs(subjects, bus, hub_domain=hub_domain):
        await _ensure_stream(egress_js, config)
    await egress_js.add_consumer(
        subjects.inbox_landing_stream,
        ConsumerConfig(
            name=RELAY,
            durable_name=RELAY,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=max(bus.ack_wait_s, 5.0),
            max_deliver=-1,  # answers are never dropped; the relay retries until SITE acks
            max_ack_pending=1024,
        ),
    )


async def provision_inbox(site_js: JetStreamContext, subjects: Subjects, bus: BusSettings) -> None:
    """The ``SITE`` half of :func:`provision_site_egress`: ``INBOX_<site>``
    (subjects ``sm.v1.in.<site>.>``), where cloud answers land, and its durable
    consumer ``inbox`` that the escalation role binds (it may not create one).
    Idempotent."""
    await _ensure_stream(site_js, stream_config(bus, subjects.inbox_stream, [subjects.all_in]))
    await site_js.add_consumer(
        subjects.inbox_stream, consumer_config(bus, INBOX_DURABLE, subjects.all_in)
    )


def _relay_headers(msg: Msg, landing: str) -> dict[str, str]:
    """Headers for the copy: the original ones minus JetStream's ``Nats-*`` ones.

    ``Nats-Msg-Id`` is kept (or derived from the landing sequence when the cloud
    publisher set none), so a re-delivered landing message is a duplicate in INBOX.
    """
    hdr = {k: v for k, v in (msg.headers or {}).items() if not k.startswith("Nats-")}
    original = (msg.headers or {}).get(HDR_MSG_ID)
    hdr[HDR_MSG_ID] = original or f"{landing}:{msg.metadata.sequence.stream}"
    return hdr


async def restart_stalled_sources(
    js: JetStreamContext, stream: str, *, stalled_after_s: float = 10.0
) -> list[str]:
    """Restart the sources of ``stream`` that have been silent for ``stalled_after_s``.

    Why: a sourcing server that restarts sets its source consumers up before the
    leaf connections are back; the failed attempt is retried with a growing backoff
    (10 s, 20 s, ... up to 2 min in nats-server 2.15, ``calculateRetryBackoff`` in
    ``server/stream.go``), so the backlog would wait that long after the link
    returned. Removing the silent sources and adding them back (two stream
    updates) sets them up at once; the server derives each re-added source's
    start sequence from the ``Nats-Stream-Source`` headers it stored, so nothing
    is copied twice or skipped (checked by the store-and-forward tests).

    A healthy source is never touched: its consumer's idle heartbeats keep its
    ``active`` (time since last contact) near zero.

    Args:
        js: JetStream context of the account that owns ``stream``.
        stream: a stream with ``sources``.
        stalled_after_s: seconds of silence (or no consumer at all) that count as
            stalled.

    Returns:
        Names of the restarted sources (empty if all were healthy).

    Raises:
        nats.js.errors.APIError: the stream does not exist or an update failed.
    """
    info = await js.stream_info(stream)
    limit_ns = stalled_after_s * 1e9
    stalled = {
        s.name
        for s in info.sources or []
        if s.active is None or s.active < 0 or s.active > limit_ns
    }
    config = info.config
    if not stalled or not config.sources:
        return []
    keep = [src for src in config.sources if src.name not in stalled]
    await js.update_stream(replace(config, sources=keep))
    await js.update_stream(config)
    log.info("restarted stalled sources of %s: %s", stream, sorted(stalled))
    return sorted(stalled)


class InboxRelay:
    """Moves cloud answers from ``EGRESS``'s landing stream into ``SITE``'s INBOX.

    Connected as the site's ``EGRESS`` user. For each landing message it
    JetStream-publishes a copy on the same subject (which SITE imports as a
    service, so SITE's ``INBOX_<site>`` stores it and the PubAck comes back), then
    acks. A failed publish naks with a delay; nothing is acked before it is stored.

    Use as ``async with InboxRelay(nc, Subjects("eu1")) as relay: await relay.run()``
    or start ``run()`` as a task and call ``shutdown()``.

    Args:
        nc: a client connected as the site's ``EGRESS`` user.
        subjects: the site's subject map.
        batch: messages fetched per pull.
        fetch_timeout_s: seconds a pull waits for messages.
        publish_timeout_s: seconds to wait for INBOX's PubAck.
        retry_delay_s: ``nak`` delay in seconds after a failed publish.
        stalled_after_s: every this many seconds the relay checks the landing
            stream's source and restarts it if silent that long
            (:func:`restart_stalled_sources`); ``0`` disables the check.
    """

    def __init__(
        self,
        nc: Client,
        subjects: Subjects,
        *,
        batch: int = 64,
        fetch_timeout_s: float = 1.0,
        publish_timeout_s: float = 5.0,
        retry_delay_s: float = 1.0,
        stalled_after_s: float = 10.0,
    ) -> None:
        self.nc = nc
        self.js = nc.jetstream()
        self.subjects = subjects
        self.batch = batch
        self.fetch_timeout_s = fetch_timeout_s
        self.publish_timeout_s = publish_timeout_s
        self.retry_delay_s = retry_delay_s
        self.stalled_after_s = stalled_after_s
        self.relayed = 0
        """Messages stored in INBOX (duplicates included) since start."""
        self._stop = asyncio.Event()
        self._done = asyncio.Event()
        self._done.set()  # not running

    async def _relay_one(self, msg: Msg) -> None:
        landing = self.subjects.inbox_landing_stream
        try:
            await self.js.publish(
                msg.subject,
                msg.data,
                timeout=self.publish_timeout_s,
                headers=_relay_headers(msg, landing),
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # any failure: retry later, never ack unstored
            log.warning("inbox relay %s: publish failed, retrying: %s", msg.subject, exc)
            with contextlib.suppress(Exception):
                await msg.nak(delay=self.retry_delay_s)
            return
        await msg.ack()
        self.relayed += 1

    async def run(self) -> None:
        """Relay until :meth:`shutdown`. Survives NATS disconnects (it keeps retrying)."""
        self._done.clear()
        try:
            sub = await self.js.pull_subscribe_bind(RELAY, self.subjects.inbox_landing_stream)
            next_check = time.monotonic() + self.stalled_after_s
            while not self._stop.is_set():
                if self.stalled_after_s and time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.stalled_after_s
                    await self._check_source()
                try:
                    msgs = await sub.fetch(self.batch, timeout=self.fetch_timeout_s)
                except (NatsTimeoutError, TimeoutError):
                    continue
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # disconnected, server restarting
                    log.info("inbox relay fetch: %s", exc)
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._stop.wait(), self.retry_delay_s)
                    continue
                for msg in msgs:
                    await self._relay_one(msg)
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        finally:
            self._done.set()

    async def _check_source(self) -> None:
        try:
            await restart_stalled_sources(
                self.js, self.subjects.inbox_landing_stream, stalled_after_s=self.stalled_after_s
            )
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # disconnected: try again next round
            log.info("inbox relay source check: %s", exc)

    async def shutdown(self, timeout_s: float = 5.0) -> None:
        """Stop after the current batch; wait up to ``timeout_s`` seconds. Idempotent."""
        self._stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout_s)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
