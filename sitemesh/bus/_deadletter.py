"""Dead letters: what a worker publishes for a rejected message, and the sweeper
that dead-letters messages whose every delivery killed or stalled its worker."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Final, Self

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ..config import BusSettings
from ..schemas import ENCODER, DeadLetter, TaskFailed
from ._streams import DEADLETTER, MAX_MSG_BYTES
from ._subjects import HDR_MSG_ID, HDR_TASK_ID, Subjects
from ._types import MsgContext, Outbound, TaskIdOf

MAX_DELIVERIES_EXCEEDED: Final = "MaxDeliveriesExceeded"
"""``error_class`` of dead letters made from max-deliveries advisories."""


DEAD_LETTER_MAX_BYTES: Final = MAX_MSG_BYTES * 3 // 4
"""Largest encoded :class:`DeadLetter` sent with its original whole (768 KiB; the
original is base64 in it, 4/3 its size). A larger one carries a truncated original."""

TRUNCATED_ORIGINAL_BYTES: Final = 256 * 1024
"""How much of an original too large to dead-letter whole is kept (256 KiB: about
342 KiB in base64, well under :data:`MAX_MSG_BYTES` with the headers and the reason)."""

_RAW_TASK_ID: Final = re.compile(rb'"task_id"\s*:\s*"([A-Za-z0-9._:-]{1,128})"')
_MSG_ID_TASK: Final = re.compile(r"^([A-Za-z0-9._:-]{1,128}?):[a-z_]+:[A-Za-z0-9_-]+$")
_SCAN_BYTES: Final = 64 * 1024


def raw_task_id(data: bytes, headers: Mapping[str, str]) -> str | None:
    """Best-effort task id of a message that may not decode at all (too large, invalid
    UTF-8, nested too deep): the ``sm-task-id`` header, else the first ``"task_id":
    "<id>"`` in its first 64 KiB (a well-formed id only), else the task part of a
    derived ``Nats-Msg-Id`` (``<task_id>:<step>:<role>``); ``None`` if none fits."""
    if tid := headers.get(HDR_TASK_ID):
        return tid
    if (m := _RAW_TASK_ID.search(data, 0, _SCAN_BYTES)) is not None:
        return m.group(1).decode("ascii")
    if (mid := headers.get(HDR_MSG_ID)) and (m2 := _MSG_ID_TASK.match(mid)) is not None:
        return m2.group(1)
    return None


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """The first at most ``limit`` bytes of ``data``, never splitting a UTF-8 character
    (a cut inside one backs off to its first byte), so UTF-8 stays UTF-8."""
    if len(data) <= limit:
        return data
    cut = limit
    # back off over continuation bytes (0b10xxxxxx) to the start of a character
    while cut > 0 and cut > limit - 4 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def dead_letter_msg_id(stream: str, stream_seq: int) -> str:
    """``dlq:<stream>:<seq>``: the same for a worker's and the sweeper's dead letter."""
    return f"dlq:{stream}:{stream_seq}"


def dead_letter_outbounds(
    subjects: Subjects,
    *,
    role: str,
    subject: str,
    stream: str,
    stream_seq: int,
    data: bytes,
    headers: Mapping[str, str],
    reason: str,
    error_class: str,
    field: str | None,
    deliveries: int,
    task_id: str | None,
    producer: str | None = None,
) -> list[Outbound]:
    """A :class:`DeadLetter` on ``dlq(role)`` and, with a task id, a :class:`TaskFailed`.

    Args:
        subjects: the site's subject map.
        role: the role whose consumer rejected the message.
        subject: the subject the original was published on.
        stream: its stream.
        stream_seq: its sequence in ``stream``.
        data: the original payload, byte for byte.
        headers: the original headers.
        reason: why (names the field and what was expected).
        error_class: the exception class name.
        field: JSON path of the offending field, if known.
        deliveries: how many times it was delivered.
        task_id: the task it belongs to, if known.
        producer: who publishes the ``TaskFailed`` (its event subject's last token,
            which that identity's permissions allow); default ``role``.

    Returns:
        One or two messages, with msg ids ``dlq:<stream>:<seq>`` and
        ``<task_id>:failed:<role>``. The letter carries the original's size and
        SHA-256; an original too large to carry whole (the encoded letter would pass
        :data:`DEAD_LETTER_MAX_BYTES`) is cut to :data:`TRUNCATED_ORIGINAL_BYTES`
        (``original_truncated``). A missing ``task_id`` is looked for in the raw
        bytes (:func:`raw_task_id`).
    """
    task_id = task_id or raw_task_id(data, headers)
    letter = DeadLetter(
        site=subjects.site,
        role=role,
        subject=subject,
        stream=stream,
        stream_seq=stream_seq,
        task_id=task_id,
        reason=reason,
        error_class=error_class,
        field=field,
        deliveries=deliveries,
        original=data,
        original_size=len(data),
        original_sha256=hashlib.sha256(data).hexdigest(),
        original_headers=dict(headers),
    )
    # base64 is 4/3 of the original: only a large one can make the letter too big
    if len(data) * 4 // 3 + len(reason) > DEAD_LETTER_MAX_BYTES // 2 and (
        len(ENCODER.encode(letter)) > DEAD_LETTER_MAX_BYTES
    ):
        letter = msgspec.structs.replace(
            letter,
            original=truncate_utf8(data, TRUNCATED_ORIGINAL_BYTES),
            original_truncated=True,
            reason=reason[:4096],
        )
    outs = [
        Outbound(
            subject=subjects.dlq(role),
            payload=letter,
            msg_id=dead_letter_msg_id(stream, stream_seq),
            task_id=task_id,
        )
    ]
    if task_id:
        failed = TaskFailed(
            task_id=task_id,
            site=subjects.site,
            role=role,
            reason=reason,
            error_class=error_class,
            field=field,
        )
        outs.append(
            Outbound(
                subject=subjects.event(task_id, producer or role),
                payload=failed,
                msg_id=f"{task_id}:failed:{role}",
                task_id=task_id,
            )
        )
    return outs


class MaxDeliveriesAdvisory(msgspec.Struct, frozen=True):
    """``io.nats.jetstream.advisory.v1.max_deliver`` (the fields sitemesh reads).

    See the NATS server's ``JSConsumerDeliveryExceededAdvisory``.
    """

    stream: str
    consumer: str
    stream_seq: int
    deliveries: int


_ADVISORY_DECODER: Final = msgspec.json.Decoder(MaxDeliveriesAdvisory)


class MaxDeliveriesSweeper:
    """Dead-letters messages whose ``max_deliver`` ran out without a verdict.

    A worker dead-letters a failing message itself on its last delivery; but when
    every delivery kills or stalls the process (OOM, segfault, hang past
    ``ack_wait``), no worker lives to do so. The server then publishes a
    max-deliveries advisory, captured by ``ADVISORIES_<site>``; this sweeper reads
    it on the ``deadletter`` consumer, fetches the original with ``get_msg`` and
    publishes a :class:`DeadLetter` (``error_class="MaxDeliveriesExceeded"``) and a
    :class:`TaskFailed`. It reuses the worker's msg id ``dlq:<stream>:<seq>``, so a
    worker's and the sweeper's dead letter for one message dedupe to one.

    Lifecycle as :class:`sitemesh.bus.Worker`: ``run()``, ``shutdown()``, ``async with``.

    Args:
        js: a JetStream context.
        site: the site.
        settings: worker settings (batch, ack_wait, graceful timeout).
        task_id_of: best-effort task id of an original; default: ``sm-task-id``.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        site: str,
        settings: BusSettings,
        task_id_of: TaskIdOf | None = None,
    ) -> None:
        from ._worker import Worker  # local: _worker imports this module

        self._js = js
        self._subjects = subjects = Subjects(site)
        self._task_id_of = task_id_of
        self.worker: Worker[MaxDeliveriesAdvisory] = Worker(
            js,
            site=site,
            role=DEADLETTER,
            stream=subjects.advisories_stream,
            durable=DEADLETTER,
            decoder=_ADVISORY_DECODER.decode,
            handler=self._handle,
            settings=settings,
        )

    async def _handle(self, adv: MaxDeliveriesAdvisory, ctx: MsgContext) -> Sequence[Outbound]:
        del ctx
        subject, data, headers = "", b"", {}
        note = ""
        try:
            raw = await self._js.get_msg(adv.stream, adv.stream_seq)
        except NotFoundError:
            note = " (original no longer in the stream)"
        else:
            subject, data = raw.subject or "", raw.data or b""
            headers = {str(k): str(v) for k, v in (raw.headers or {}).items()}
        task_id = None
        if self._task_id_of is not None:
            try:
                task_id = self._task_id_of(data, headers)
            except Exception:  # hostile bytes: dead_letter_outbounds scans them raw
                task_id = None
        return dead_letter_outbounds(
            self._subjects,
            role=self._subjects.role_of_stream_subject(adv.stream, adv.consumer),
            subject=subject,
            stream=adv.stream,
            stream_seq=adv.stream_seq,
            data=data,
            headers=headers,
            reason=f"max_deliver ({adv.deliveries}) exhausted without an ack, nak or "
            f"term: every delivery crashed or stalled its worker{note}",
            error_class=MAX_DELIVERIES_EXCEEDED,
            field=None,
            deliveries=adv.deliveries,
            task_id=task_id,
            producer=DEADLETTER,  # the sweeper (in the router process), not that role
        )

    async def run(self) -> None:
        """Sweep until :meth:`shutdown`."""
        await self.worker.run()

    async def shutdown(self) -> None:
        """Stop sweeping, finishing advisories in flight. Idempotent."""
        await self.worker.shutdown()

    async def __aenter__(self) -> Self:
        await self.worker.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.worker.__aexit__(exc_type, exc, tb)
