"""Provisioning a site's streams and durable consumers (idempotent, concurrency-safe)."""

from __future__ import annotations

import asyncio
from typing import Final

from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamSource,
)
from nats.js.errors import BadRequestError

from ..config import BusSettings
from ._subjects import ROLES, Subjects

MAX_MSG_BYTES: Final = 1 << 20
"""Largest message any sitemesh stream accepts (1 MiB, the server's default max_payload)."""

RECORDER: Final = "recorder"
"""Durable on EVENTS and DLQ read by the state recorder."""

DEADLETTER: Final = "deadletter"
"""Durable on ADVISORIES read by :class:`sitemesh.bus.MaxDeliveriesSweeper`."""

_STREAM_IN_USE: Final = 10058
"""JetStream API error code: stream name already in use with a different configuration."""


def stream_config(
    bus: BusSettings,
    name: str,
    subjects: list[str] | None = None,
    sources: list[StreamSource] | None = None,
) -> StreamConfig:
    """The configuration every sitemesh stream shares: limits retention (history kept
    for replay), file storage, oldest dropped first, ``bus`` limits, 1 MiB messages,
    and a duplicate window no longer than the history.

    Args:
        bus: ``max_age_s``, ``max_bytes``, ``duplicate_window_s``.
        name: the stream name.
        subjects: subjects it captures (``None`` for a stream that only sources).
        sources: streams it sources (outbox/inbox across the site boundary).
    """
    return StreamConfig(
        name=name,
        subjects=subjects,
        sources=sources,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=DiscardPolicy.OLD,
        max_age=bus.max_age_s,
        max_bytes=bus.max_bytes,
        max_msg_size=MAX_MSG_BYTES,
        duplicate_window=min(bus.duplicate_window_s, bus.max_age_s),
        num_replicas=1,
    )


def stream_configs(subjects: Subjects, bus: BusSettings) -> list[StreamConfig]:
    """The site's stream configurations (limits retention, file storage).

    Args:
        subjects: the site's subject map.
        bus: stream limits (``max_age_s``, ``max_bytes``, ``duplicate_window_s``).
    """

    def cfg(name: str, subs: list[str]) -> StreamConfig:
        return stream_config(bus, name, subs)

    return [
        cfg(subjects.tasks_stream, [subjects.all_tasks]),
        cfg(subjects.work_stream, [subjects.all_work]),
        cfg(subjects.events_stream, [subjects.all_events]),
        cfg(subjects.dlq_stream, [subjects.all_dlq]),
        cfg(subjects.advisories_stream, subjects.max_deliveries_advisories()),
    ]


def consumer_configs(subjects: Subjects, bus: BusSettings) -> list[tuple[str, ConsumerConfig]]:
    """``(stream, config)`` of every durable pull consumer of the site.

    One per role (:data:`ROLES`, ack explicit, ``ack_wait``/``max_deliver`` from
    ``bus``), ``recorder`` on EVENTS and DLQ, ``deadletter`` on ADVISORIES.
    """
    max_ack_pending = max(1024, bus.batch * 32)

    def cfg(durable: str, filter_subject: str | None, *, max_deliver: int) -> ConsumerConfig:
        return ConsumerConfig(
            name=durable,
            durable_name=durable,
            filter_subject=filter_subject,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=bus.ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=max_ack_pending,
            max_waiting=512,
        )

    out: list[tuple[str, ConsumerConfig]] = []
    for role in ROLES:
        stream, durable, filter_subject = subjects.consumer_for(role)
        out.append((stream, cfg(durable, filter_subject, max_deliver=bus.max_deliver)))
    # Bookkeeping consumers retry "forever": their messages must never be lost.
    out.append((subjects.events_stream, cfg(RECORDER, subjects.all_events, max_deliver=-1)))
    out.append((subjects.dlq_stream, cfg(RECORDER, subjects.all_dlq, max_deliver=-1)))
    out.append((subjects.advisories_stream, cfg(DEADLETTER, None, max_deliver=-1)))
    return out


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise
        await js.update_stream(config)


async def provision(js: JetStreamContext, subjects: Subjects, bus: BusSettings) -> None:
    """Create or update the site's streams and durable consumers.

    Idempotent and safe to run from several processes at once: creating a stream
    or consumer with the configuration it already has is a no-op on the server,
    and a changed configuration is applied as an update.

    Args:
        js: a JetStream context.
        subjects: the site's subject map.
        bus: stream and consumer settings.

    Raises:
        nats.js.errors.APIError: the server refused a configuration (e.g. a
            stream's subjects overlap another stream's).
    """
    await asyncio.gather(*(_ensure_stream(js, c) for c in stream_configs(subjects, bus)))
    await asyncio.gather(
        *(js.add_consumer(stream, c) for stream, c in consumer_configs(subjects, bus))
    )
