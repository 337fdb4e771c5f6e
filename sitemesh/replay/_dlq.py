"""Dead letters: list them, show one, and redrive one exactly once.

A redrive republishes a dead letter's original bytes and headers on its original
subject with the new ``Nats-Msg-Id`` ``<original msg id>:redrive:<dlq seq>``:
derived, so JetStream drops a repeated redrive of the same dead letter within the
stream's duplicate window. Beyond the window, the redrive is also recorded in the
KV bucket ``sitemesh_redrive_<site>`` (key: the dead letter's DLQ sequence) and a
dead letter already redriven is not published again. Together: one dead letter,
one redrive, one re-processing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KeyValue

from ..bus import HDR_MSG_ID, Subjects, dead_letter_msg_id
from ..errors import PermanentError
from ..schemas import DLQ_DECODER, DeadLetter, utcnow
from ._readback import read_all

HDR_REDRIVE_OF: Final = "sm-redrive-of"
"""Header on a redriven message: ``<DLQ stream>:<seq>`` of the dead letter."""


class DeadLetterNotFound(PermanentError, LookupError):
    """No dead letter matches the sequence or task id.

    Attributes:
        ref: what was looked up.
    """

    def __init__(self, ref: str) -> None:
        super().__init__(f"no dead letter with DLQ sequence or task id {ref!r}")
        self.ref = ref


class RedriveMark(msgspec.Struct, frozen=True, kw_only=True):
    """What the redrive bucket holds per redriven dead letter."""

    msg_id: str
    """``Nats-Msg-Id`` the original was republished with."""
    stream: str
    """Stream that stored the republished message."""
    seq: int
    """Its sequence there."""
    at: str
    """When (RFC 3339, UTC)."""


_MARK_DECODER: Final = msgspec.json.Decoder(RedriveMark)


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """A dead letter as stored in ``DLQ_<site>``.

    Attributes:
        seq: its sequence in the DLQ stream (what ``dlq show|redrive`` take).
        letter: the decoded dead letter.
        redrive: the redrive record, if it was redriven.
    """

    seq: int
    letter: DeadLetter
    redrive: RedriveMark | None = None


@dataclass(frozen=True, slots=True)
class RedriveResult:
    """The outcome of :func:`redrive`.

    Attributes:
        dlq_seq: the dead letter's DLQ sequence.
        subject: where the original was republished.
        msg_id: its new ``Nats-Msg-Id``.
        stream: the stream that stored it.
        seq: its sequence there.
        already: ``True`` when this dead letter had been redriven before (nothing
            was published now; ``stream``/``seq`` are from that redrive).
    """

    dlq_seq: int
    subject: str
    msg_id: str
    stream: str
    seq: int
    already: bool = False


def redrive_msg_id(letter: DeadLetter, dlq_seq: int) -> str:
    """``<original Nats-Msg-Id>:redrive:<dlq seq>`` (``dlq:<stream>:<seq>`` stands in
    for an original without a msg id)."""
    original = letter.original_headers.get(HDR_MSG_ID) or dead_letter_msg_id(
        letter.stream, letter.stream_seq
    )
    return f"{original}:redrive:{dlq_seq}"


async def _bucket(js: JetStreamContext, subjects: Subjects, *, create: bool) -> KeyValue | None:
    try:
        return await js.key_value(subjects.redrive_bucket)
    except BucketNotFoundError:
        if not create:
            return None
        return await js.create_key_value(
            bucket=subjects.redrive_bucket,
            description="sitemesh dlq redrive records; key: DLQ sequence",
            history=1,
        )


async def _mark(kv: KeyValue | None, dlq_seq: int) -> RedriveMark | None:
    if kv is None:
        return None
    try:
        entry = await kv.get(str(dlq_seq))
    except (KeyNotFoundError, NotFoundError):
        return None
    try:
        return _MARK_DECODER.decode(entry.value or b"")
    except msgspec.MsgspecError:
        return None


async def list_dead_letters(
    js: JetStreamContext, subjects: Subjects, *, role: str | None = None, limit: int = 50
) -> list[DeadLetterRecord]:
    """The newest ``limit`` dead letters of the site (oldest first).

    Args:
        js: a JetStream context.
        subjects: the site's subject map.
        role: only those rejected by this role.
        limit: at most this many.
    """
    subject = subjects.dlq(role) if role else subjects.all_dlq
    try:
        records = await read_all(js, subjects.dlq_stream, subject=subject)
    except NotFoundError:
        return []
    kv = await _bucket(js, subjects, create=False)
    out: list[DeadLetterRecord] = []
    for rec in records[-limit:] if limit > 0 else []:
        try:
            letter = DLQ_DECODER.decode(rec.data)
        except msgspec.MsgspecError:
            continue
        out.append(DeadLetterRecord(rec.seq, letter, await _mark(kv, rec.seq)))
    return out


async def find_dead_letter(
    js: JetStreamContext, subjects: Subjects, seq_or_task_id: str
) -> DeadLetterRecord:
    """The dead letter with this DLQ sequence, or the newest one of this task.

    Raises:
        DeadLetterNotFound: there is none.
    """
    kv = await _bucket(js, subjects, create=False)
    if seq_or_task_id.isdigit():
        try:
            raw = await js.get_msg(subjects.dlq_stream, int(seq_or_task_id))
        except NotFoundError:
            raise DeadLetterNotFound(seq_or_task_id) from None
        try:
            letter = DLQ_DECODER.decode(raw.data or b"")
        except msgspec.MsgspecError:
            raise DeadLetterNotFound(seq_or_task_id) from None
        seq = int(seq_or_task_id)
        return DeadLetterRecord(seq, letter, await _mark(kv, seq))
    found: DeadLetterRecord | None = None
    with contextlib.suppress(NotFoundError):
        for rec in await read_all(js, subjects.dlq_stream, subject=subjects.all_dlq):
            try:
                letter = DLQ_DECODER.decode(rec.data)
            except msgspec.MsgspecError:
                continue
            if letter.task_id == seq_or_task_id:
                found = DeadLetterRecord(rec.seq, letter)
    if found is None:
        raise DeadLetterNotFound(seq_or_task_id)
    return DeadLetterRecord(found.seq, found.letter, await _mark(kv, found.seq))


async def redrive(js: JetStreamContext, subjects: Subjects, seq_or_task_id: str) -> RedriveResult:
    """Republish a dead letter's original for its consumer to process again, once.

    Args:
        js: a JetStream context.
        subjects: the site's subject map.
        seq_or_task_id: the DLQ sequence, or a task id (its newest dead letter).

    Returns:
        Where it was republished; ``already=True`` if it had been before.

    Raises:
        DeadLetterNotFound: no such dead letter.
        PermanentError: the original is not kept (it had left its stream before
            it was dead-lettered, or only its first bytes were: too large) or its
            subject is not one of this site's.
    """
    rec = await find_dead_letter(js, subjects, seq_or_task_id)
    letter = rec.letter
    msg_id = redrive_msg_id(letter, rec.seq)
    if rec.redrive is not None:
        r = rec.redrive
        return RedriveResult(rec.seq, letter.subject, r.msg_id, r.stream, r.seq, already=True)
    if not letter.subject or not letter.original:
        raise PermanentError(
            f"dead letter {rec.seq} kept no original message to redrive", field="original"
        )
    if letter.original_truncated:
        raise PermanentError(
            f"dead letter {rec.seq} kept only the first {len(letter.original)} of the "
            f"original's {letter.original_size} bytes (too large to carry whole): "
            "nothing to redrive",
            field="original",
        )
    if not letter.subject.startswith(f"{subjects.prefix}.") or f".{subjects.site}." not in (
        letter.subject
    ):
        raise PermanentError(
            f"dead letter {rec.seq} came from {letter.subject!r}, not a subject of site "
            f"{subjects.site!r}",
            field="subject",
        )
    headers = dict(letter.original_headers)
    headers[HDR_MSG_ID] = msg_id
    headers[HDR_REDRIVE_OF] = f"{subjects.dlq_stream}:{rec.seq}"
    ack = await js.publish(letter.subject, letter.original, headers=headers)
    kv = await _bucket(js, subjects, create=True)
    assert kv is not None
    mark = RedriveMark(msg_id=msg_id, stream=ack.stream, seq=ack.seq, at=utcnow().isoformat())
    with contextlib.suppress(Exception):  # a racing redrive recorded it first: same msg
        await kv.create(str(rec.seq), msgspec.json.encode(mark))
    return RedriveResult(
        rec.seq, letter.subject, msg_id, ack.stream, ack.seq, already=bool(ack.duplicate)
    )
