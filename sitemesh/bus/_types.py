"""Types shared by the worker runtime and the handlers it runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

import msgspec

from ..errors import StreamFull

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outbound:
    """One message a handler wants published after it returns.

    The runtime publishes every ``Outbound`` of a message (awaiting the PubAcks)
    before it acks the input, so a crash in between only causes a redelivery whose
    re-publishes the server drops as duplicates (same ``msg_id``).

    Attributes:
        subject: where to publish (build it with :class:`sitemesh.bus.Subjects`).
        payload: a wire message (encoded with msgspec JSON) or raw bytes.
        msg_id: the ``Nats-Msg-Id``; derive it with :func:`sitemesh.bus.msg_id`.
        task_id: goes into the ``sm-task-id`` header.
        data_class: goes into ``sm-data-class``; ``None`` leaves it out.
        headers: extra headers (``traceparent``...).
        causation_id: goes into ``sm-causation-id``; ``None``: the worker uses the
            input's ``Nats-Msg-Id``.
        create_only: store it only if ``subject`` holds no message yet
            (``Nats-Expected-Last-Subject-Sequence: 0``) and send no ``Nats-Msg-Id``
            (``msg_id`` stays for tracing): the server's duplicate check, which any
            publisher to the stream can pre-empt with a forged id, is not used. A
            second publish (a redelivery) is reported as a duplicate PubAck. Final
            answers are published so (:meth:`sitemesh.bus.Subjects.answer`).
    """

    subject: str
    payload: msgspec.Struct | bytes
    msg_id: str
    task_id: str | None = None
    data_class: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    causation_id: str | None = None
    create_only: bool = False


@dataclass(frozen=True, slots=True)
class MsgContext:
    """What a handler may know about the message it handles.

    Attributes:
        subject: the subject the message was published on.
        headers: its headers (empty dict when none).
        stream: the stream it was read from.
        stream_seq: its sequence in that stream.
        num_delivered: 1 on the first delivery, 2+ on redeliveries.
        site: the worker's site.
        role: the worker's role.
        worker: ``<host>:<pid>`` of this process.
        data: the raw payload bytes.
        published_at: when the server stored the message (UTC), if known.
    """

    subject: str
    headers: Mapping[str, str]
    stream: str
    stream_seq: int
    num_delivered: int
    site: str
    role: str
    worker: str
    data: bytes
    published_at: datetime | None = None

    @property
    def msg_id(self) -> str | None:
        """The input's ``Nats-Msg-Id`` header, if it had one (the causation id)."""
        return self.headers.get("Nats-Msg-Id")


Handler = Callable[[T, MsgContext], Awaitable[Sequence[Outbound]]]
"""``async def handler(msg, ctx) -> [Outbound, ...]``: the runtime decodes ``msg``,
publishes what the handler returns, then acks. Raise
:class:`sitemesh.errors.TransientError` to be redelivered later,
:class:`sitemesh.errors.PermanentError` to be dead-lettered at once."""

TaskIdOf = Callable[[bytes, Mapping[str, str]], str | None]
"""Best-effort task id of a raw message that may not decode (for error events)."""

Admit = Callable[[Sequence[Outbound]], Awaitable[StreamFull | None]]
"""``async def admit(outs) -> StreamFull | None``: asked by the worker runtime before it
publishes a message's outputs; a returned :class:`~sitemesh.errors.StreamFull` holds
them (the input stays in progress) and they are offered again with backoff."""
