"""Dead letters: what a worker publishes for a rejected message, and the sweeper
that dead-letters messages whose every delivery killed or stalled its worker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Final, Self

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ..config import BusSettings
from ..schemas import DeadLetter, TaskFailed
from ._streams import DEADLETTER
from ._subjects import HDR_TASK_ID, Subjects
from ._types import MsgContext, Outbound, TaskIdOf

MAX_DELIVERIES_EXCEEDED: Final = "MaxDeliveriesExceeded"
"""``error_class`` of dead letters made from max-deliveries advisories."""


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

    Returns:
        One or two messages, with msg ids ``dlq:<stream>:<seq>`` and
        ``<task_id>:failed:<role>``.
    """
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
        original_headers=dict(headers),
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
                subject=subjects.event(task_id),
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
        task_id = self._task_id_of(data, headers) if self._task_id_of else None
        task_id = task_id or headers.get(HDR_TASK_ID)
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
