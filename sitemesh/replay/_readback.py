"""Fast read-back of a stream's stored messages (the input of every replay).

One ephemeral pull consumer per read (``AckPolicy.NONE``, memory storage, deleted
afterwards) with two pull requests of ``batch`` messages kept outstanding, read on a
raw subscription: no acks, no per-message ``Msg.metadata`` parsing (the stream
sequence and the stored time come from the reply subject, as in the worker
runtime). ``bench/replay.py`` measures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from ..bus import ack_metadata

DEFAULT_BATCH: Final = 4096
"""Messages per pull request of a read-back."""

_PULL_ENCODER: Final = msgspec.json.Encoder()
_EXPIRES_S: Final = 5.0
_NO_HEADERS: Final[Mapping[str, str]] = {}


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One stored message as read back.

    Attributes:
        stream: the stream it is stored in.
        seq: its stream sequence.
        subject: the subject it was published on.
        headers: its NATS headers (``Nats-Msg-Id``, ``sm-task-id``...).
        data: the payload, byte for byte.
        time_ns: when the server stored it, Unix epoch nanoseconds.
    """

    stream: str
    seq: int
    subject: str
    headers: Mapping[str, str]
    data: bytes
    time_ns: int


def _ns(value: datetime) -> int:
    return int(value.timestamp() * 1e9)


async def read_stream(
    js: JetStreamContext,
    stream: str,
    *,
    subject: str | None = None,
    seq_from: int | None = None,
    seq_to: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    batch: int = DEFAULT_BATCH,
    timeout_s: float = 10.0,
) -> AsyncIterator[list[StreamRecord]]:
    """Read the messages stored in ``stream``, in stream order, in chunks.

    Reads what the stream holds when the read starts (later messages are not
    waited for). Bounds are inclusive; a sequence bound and a time bound may be
    combined.

    Args:
        stream: the stream name.
        subject: filter subject (wildcards allowed); ``None``: every subject.
        seq_from: first stream sequence to read.
        seq_to: last stream sequence to read.
        since: first stored time to read (timezone-aware).
        until: last stored time to read (timezone-aware).
        batch: messages per pull request, and the most records a chunk holds.
        timeout_s: seconds without a message before giving up.

    Yields:
        Lists of :class:`StreamRecord`, each 1 to ``batch`` long. More than
        ``batch`` messages can arrive while the caller holds a chunk (up to three
        pull requests are outstanding); they are handed out in slices.

    Raises:
        nats.js.errors.NotFoundError: no stream ``stream``.
        TimeoutError: the server stopped delivering for ``timeout_s``.
    """
    info = await js.stream_info(stream)
    last = info.state.last_seq or 0
    if not info.state.messages or (seq_from is not None and seq_from > last):
        return
    end_seq = last if seq_to is None else min(seq_to, last)
    until_ns = _ns(until) if until is not None else None
    since_ns = _ns(since) if since is not None else None
    if seq_from is not None:
        start = {"deliver_policy": DeliverPolicy.BY_START_SEQUENCE, "opt_start_seq": seq_from}
    elif since is not None:
        start = {"deliver_policy": DeliverPolicy.BY_START_TIME, "opt_start_time": since}
    else:
        start = {"deliver_policy": DeliverPolicy.ALL}
    name = f"replay-read-{uuid.uuid4().hex[:12]}"
    created = await js.add_consumer(
        stream,
        ConsumerConfig(
            name=name,
            ack_policy=AckPolicy.NONE,
            filter_subject=subject,
            inactive_threshold=60.0,
            mem_storage=True,
            num_replicas=1,
            max_waiting=16,
            **start,  # type: ignore[arg-type]
        ),
    )
    total = created.num_pending or 0
    nc = js._nc  # the connection; nats-py exposes no public accessor
    prefix = getattr(js, "_prefix", "$JS.API")
    next_subject = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{name}"
    chunk: list[StreamRecord] = []
    wake = asyncio.Event()
    state = {"outstanding": 0}

    async def on_msg(msg: Msg) -> None:
        hdrs = msg.headers
        if not msg.reply:  # a status message: 404/408 end of a request, 100 heartbeat
            status = hdrs.get("Status") if hdrs else None
            if status in ("404", "408", "409"):
                left = hdrs.get("Nats-Pending-Messages") if hdrs else None
                state["outstanding"] = (
                    max(0, state["outstanding"] - int(left)) if left is not None else 0
                )
                wake.set()
            return
        _, _, seq, stored_ns = ack_metadata(msg.reply)
        state["outstanding"] -= 1
        chunk.append(
            StreamRecord(stream, seq, msg.subject, hdrs or _NO_HEADERS, msg.data, stored_ns)
        )
        if len(chunk) >= batch or state["outstanding"] <= batch:
            wake.set()

    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox, cb=on_msg, pending_msgs_limit=0, pending_bytes_limit=0)
    expires_ns = int(_EXPIRES_S * 1e9)
    requested = received = short = 0
    try:
        while received < total:
            while state["outstanding"] < 2 * batch and requested < total:
                n = min(batch, total - requested)
                req = _PULL_ENCODER.encode({"batch": n, "expires": expires_ns})
                await nc.publish(next_subject, req, reply=inbox)
                requested += n
                state["outstanding"] += n
            if not chunk:
                wake.clear()
                async with asyncio.timeout(timeout_s):
                    await wake.wait()
                if state["outstanding"] <= 0 and not chunk:
                    # the requests ended short with nothing new: the stream holds
                    # fewer messages than counted (removed by its limits meanwhile)
                    short += 1
                    if short > 1:
                        return
                    requested = received
                continue
            short = 0
            out, chunk = chunk, []
            received += len(out)
            stop = out[-1].seq >= end_seq or (until_ns is not None and out[-1].time_ns > until_ns)
            if stop:
                out = [
                    r
                    for r in out
                    if r.seq <= end_seq and (until_ns is None or r.time_ns <= until_ns)
                ]
            if since_ns is not None and out and out[0].time_ns < since_ns:
                out = [r for r in out if r.time_ns >= since_ns]  # a sequence start came first
            for i in range(0, len(out), batch):
                yield out[i : i + batch]
            if stop:
                return
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception, NotFoundError):
            await js.delete_consumer(stream, name)


async def read_all(js: JetStreamContext, stream: str, **kwargs: object) -> list[StreamRecord]:
    """Every record :func:`read_stream` yields, as one list (same arguments)."""
    out: list[StreamRecord] = []
    async for chunk in read_stream(js, stream, **kwargs):  # type: ignore[arg-type]
        out.extend(chunk)
    return out
