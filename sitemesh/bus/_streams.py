"""Provisioning a site's streams and durable consumers (idempotent, concurrency-safe)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, replace
from importlib import metadata
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
    StreamInfo,
    StreamSource,
)
from nats.js.errors import BadRequestError, NotFoundError

from ..config import BusSettings
from ._subjects import Subjects

MAX_MSG_BYTES: Final = 1 << 20
"""Largest message any sitemesh stream accepts (1 MiB, the server's default max_payload)."""

RECORDER: Final = "recorder"
"""Durable on EVENTS and DLQ read by the state recorder."""

DEADLETTER: Final = "deadletter"
"""Durable on ADVISORIES read by :class:`sitemesh.bus.MaxDeliveriesSweeper`."""

AGENT_ENTRY_POINTS: Final = "sitemesh.agents"
"""Entry-point group of agent roles (``sitemesh.agents.Registry`` loads them)."""

_STREAM_IN_USE: Final = 10058
"""JetStream API error code: stream name already in use with a different configuration."""


def stream_config(
    bus: BusSettings,
    name: str,
    subjects: list[str] | None = None,
    sources: list[StreamSource] | None = None,
    *,
    discard: DiscardPolicy = DiscardPolicy.NEW,
    max_age: bool = True,
) -> StreamConfig:
    """The configuration every sitemesh stream shares: limits retention (history kept
    for replay), file storage, ``bus`` limits, 1 MiB messages, a duplicate window no
    longer than the history, and a full stream *refusing new messages*.

    Discard ``NEW`` (the default) is what keeps unprocessed work: with ``OLD`` a full
    stream silently dropped its oldest messages, processed or not. With ``NEW`` the
    publisher of the message that does not fit gets an error
    (:class:`~sitemesh.errors.StreamFull` from :class:`Publisher`), the worker runtime
    holds the input it was handling and publishes again until there is room.

    A stream of work (``max_age`` false) has no age limit on the server, which would
    remove a message by age whether processed or not: its processed history is
    trimmed by :func:`~sitemesh.bus.trim_processed` instead (older than
    ``max_age_s``, or all of it once the stream is nearly full), never what a
    consumer has yet to settle (docs/architecture.md, "Stream limits").

    Args:
        bus: ``max_age_s``, ``max_bytes``, ``duplicate_window_s``.
        name: the stream name.
        subjects: subjects it captures (``None`` for a stream that only sources).
        sources: streams it sources (outbox/inbox across the site boundary).
        discard: what a full stream does; ``OLD`` only for a stream nobody can be told
            about a refusal (``ADVISORIES_<site>``, written by the server itself).
        max_age: let the server remove messages older than ``max_age_s``; false for
            the streams of work (TASKS, WORK, EVENTS, DLQ).
    """
    return StreamConfig(
        name=name,
        subjects=subjects,
        sources=sources,
        retention=RetentionPolicy.LIMITS,
        storage=StorageType.FILE,
        discard=discard,
        max_age=bus.max_age_s if max_age else 0,
        max_bytes=bus.max_bytes,
        max_msg_size=MAX_MSG_BYTES,
        duplicate_window=min(bus.duplicate_window_s, bus.max_age_s),
        num_replicas=1,
    )


def stream_configs(subjects: Subjects, bus: BusSettings) -> list[StreamConfig]:
    """The site's stream configurations (limits retention, file storage).

    TASKS, WORK, EVENTS and DLQ discard new messages when full and have no server
    age limit (see :func:`stream_config`): each holds work someone has yet to do (the
    router, the agents, the recorder), and only :func:`~sitemesh.bus.trim_processed`
    removes their settled history. ADVISORIES keeps ``OLD``: its publisher is the server,
    which drops an advisory a full stream refuses without telling anyone, so the
    oldest advisory (most likely swept already) is the better one to lose.

    Args:
        subjects: the site's subject map.
        bus: stream limits (``max_age_s``, ``max_bytes``, ``duplicate_window_s``).
    """

    def cfg(name: str, subs: list[str]) -> StreamConfig:
        return stream_config(bus, name, subs, max_age=False)

    return [
        cfg(subjects.tasks_stream, [subjects.all_tasks]),
        cfg(subjects.work_stream, [subjects.all_work]),
        # direct gets: a tenant's client identity reads one stored answer of its own
        # (last message of its answer subject) with no stream or consumer API
        replace(cfg(subjects.events_stream, [subjects.all_events]), allow_direct=True),
        cfg(subjects.dlq_stream, [subjects.all_dlq]),
        stream_config(
            bus,
            subjects.advisories_stream,
            subjects.max_deliveries_advisories(),
            discard=DiscardPolicy.OLD,
        ),
    ]


def installed_roles() -> tuple[str, ...]:
    """``router`` and the agent roles installed as :data:`AGENT_ENTRY_POINTS` entry points
    (their names only; nothing is imported), sorted after ``router``."""
    names = {ep.name for ep in metadata.entry_points(group=AGENT_ENTRY_POINTS)}
    return ("router", *sorted(names))


def consumer_config(
    bus: BusSettings, durable: str, filter_subject: str | None, *, max_deliver: int | None = None
) -> ConsumerConfig:
    """The one durable pull-consumer configuration of sitemesh: explicit acks,
    ``ack_wait``/``max_deliver`` from ``bus``, deliver all, room for
    ``max(1024, 32 x batch)`` unacked messages.

    Args:
        bus: ``ack_wait_s``, ``max_deliver``, ``batch``.
        durable: the durable name.
        filter_subject: the subjects it reads (``None``: the whole stream).
        max_deliver: override ``bus.max_deliver``; ``-1`` retries forever (bookkeeping
            consumers, whose messages must never be dropped).
    """
    return ConsumerConfig(
        name=durable,
        durable_name=durable,
        filter_subject=filter_subject,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=bus.ack_wait_s,
        max_deliver=bus.max_deliver if max_deliver is None else max_deliver,
        max_ack_pending=max(1024, bus.batch * 32),
        max_waiting=512,
    )


def consumer_configs(
    subjects: Subjects, bus: BusSettings, roles: Iterable[str] | None = None
) -> list[tuple[str, ConsumerConfig]]:
    """``(stream, config)`` of every durable pull consumer of the site.

    One per role (``roles``, default :func:`installed_roles`), ``recorder`` on EVENTS
    and DLQ, ``deadletter`` on ADVISORIES; all from :func:`consumer_config`.
    """
    out: list[tuple[str, ConsumerConfig]] = []
    for role in dict.fromkeys(installed_roles() if roles is None else roles):
        stream, durable, filter_subject = subjects.consumer_for(role)
        out.append((stream, consumer_config(bus, durable, filter_subject)))
    # Bookkeeping consumers retry "forever": their messages must never be lost.
    out.append(
        (
            subjects.events_stream,
            consumer_config(bus, RECORDER, subjects.all_events, max_deliver=-1),
        )
    )
    out.append(
        (subjects.dlq_stream, consumer_config(bus, RECORDER, subjects.all_dlq, max_deliver=-1))
    )
    out.append((subjects.advisories_stream, consumer_config(bus, DEADLETTER, None, max_deliver=-1)))
    return out


async def _ensure_stream(js: JetStreamContext, config: StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        if exc.err_code != _STREAM_IN_USE:
            raise
        await js.update_stream(config)


async def provision(
    js: JetStreamContext, subjects: Subjects, bus: BusSettings, roles: Iterable[str] | None = None
) -> None:
    """Create or update the site's streams and durable consumers, and create the
    configuration bucket (:func:`~sitemesh.bus.config_bucket`) and the site's
    pending-answers bucket (:func:`~sitemesh.bus.pending_kv`) if they are missing.

    Idempotent and safe to run from several processes at once: creating a stream
    or consumer with the configuration it already has is a no-op on the server,
    and a changed configuration is applied as an update.

    Args:
        js: a JetStream context.
        subjects: the site's subject map.
        bus: stream and consumer settings.
        roles: roles whose work consumers to create; default :func:`installed_roles`
            (``router`` and every installed agent). A role added later gets its
            consumer from its worker or from ``sitemesh workflows`` publishing.

    Raises:
        nats.js.errors.APIError: the server refused a configuration (e.g. a
            stream's subjects overlap another stream's).
    """
    await asyncio.gather(*(_ensure_stream(js, c) for c in stream_configs(subjects, bus)))
    await asyncio.gather(
        *(js.add_consumer(stream, c) for stream, c in consumer_configs(subjects, bus, roles))
    )
    from ._documents import config_bucket, pending_kv  # workers use them, never create them

    await config_bucket(js)
    await pending_kv(js, subjects.site)


FILL_WARNING: Final = 0.8
"""Fraction of a stream's ``max_bytes`` (or ``max_msgs``) at which ``sitemesh edge``
warns and ``sitemesh status`` flags it: streams refuse new messages when full
(``DiscardPolicy.NEW``), so the operator gets room to act first."""


@dataclass(frozen=True, slots=True)
class StreamFill:
    """How full one stream is (from its stream info).

    Attributes:
        stream: the stream name.
        messages: messages stored.
        bytes: bytes stored.
        max_bytes: its byte limit (``-1``: none).
        max_msgs: its message limit (``-1``: none).
    """

    stream: str
    messages: int
    bytes: int
    max_bytes: int
    max_msgs: int

    @property
    def fraction(self) -> float:
        """The larger of bytes / ``max_bytes`` and messages / ``max_msgs``, 0.0 to 1.0
        (0.0 when the stream has no limit)."""
        parts = [0.0]
        if self.max_bytes > 0:
            parts.append(self.bytes / self.max_bytes)
        if self.max_msgs > 0:
            parts.append(self.messages / self.max_msgs)
        return min(1.0, max(parts))


async def stream_fill(js: JetStreamContext, subjects: Subjects) -> list[StreamFill]:
    """The fill of the site's streams that refuse new messages when full (TASKS, WORK,
    EVENTS, DLQ); a stream that does not exist (yet) is left out.

    Raises:
        nats.errors.Error: NATS is unreachable (the caller reports it).
    """
    out: list[StreamFill] = []
    for name in (
        subjects.tasks_stream,
        subjects.work_stream,
        subjects.events_stream,
        subjects.dlq_stream,
    ):
        try:
            info = await js.stream_info(name)
        except NotFoundError:
            continue
        out.append(fill_of(info))
    return out


def fill_of(info: StreamInfo) -> StreamFill:
    """The :class:`StreamFill` of one stream's info."""
    cfg, state = info.config, info.state
    return StreamFill(
        stream=cfg.name or "",
        messages=state.messages,
        bytes=state.bytes,
        max_bytes=cfg.max_bytes if cfg.max_bytes is not None else -1,
        max_msgs=cfg.max_msgs if cfg.max_msgs is not None else -1,
    )
