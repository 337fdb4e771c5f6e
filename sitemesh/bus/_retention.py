"""Trimming processed history: what ``max_age_s`` and a full stream remove, and only that.

A site's work streams (TASKS, WORK, EVENTS, DLQ) keep no age limit on the server:
nats-server's ``max_age`` removes a message by its age alone, processed or not, so a
work item that waited out an outage longer than ``max_age_s`` would have vanished
unprocessed. Instead :func:`trim_processed` removes, from the front of each stream,
only messages every consumer of the stream has settled (its *processed floor*):

* those older than ``bus.max_age_s`` (the history kept for replay, and the storage
  limit of what the messages carry);
* all of them once the stream is past :data:`TRIM_AT` of its ``max_bytes``, so a busy
  site frees room instead of refusing work while old processed history sits there.

Anything above the floor stays whatever its age; a stream that fills with
unprocessed work refuses new publishes (``DiscardPolicy.NEW``), which the publisher
sees. Before that, the router's :class:`AdmissionGate` stops taking new tasks into a
work stream past :data:`ADMIT_BELOW`, so the steps in progress (each holds its input
until its output is stored) always have room to finish and free theirs.

``sitemesh edge`` and ``sitemesh demo`` run :func:`keep_streams` (every
:data:`TRIM_INTERVAL_S`); deployments that run workers on their own run
``sitemesh trim --watch``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from ..config import BusSettings
from ..errors import StreamFull
from ._streams import fill_of
from ._subjects import Subjects
from ._types import Outbound

log = logging.getLogger("sitemesh.bus")

TRIM_AT: Final = 0.7
"""Fill (of ``max_bytes`` or ``max_msgs``) from which all processed history is trimmed,
not only the part older than ``max_age_s``: below :data:`ADMIT_BELOW`, so the router
never stops admitting tasks while settled history could make room."""

ADMIT_BELOW: Final = 0.8
"""Fill of the work stream from which the router admits no new task
(:class:`AdmissionGate`): the rest is room for the work in progress, whose every step
holds its input until its output is stored. Without it new tasks could take the last
byte and every step would wait on a full stream its own progress must empty."""

ADMIT_REFRESH_S: Final = 0.5
"""Seconds an :class:`AdmissionGate` reuses the stream fill it read."""

TRIM_INTERVAL_S: Final = 5.0
"""Seconds between two trims by :func:`keep_streams`."""

_NO_MESSAGE: Final = 10037
"""JetStream API error code: no message found (``STREAM.MSG.GET``)."""


@dataclass(frozen=True, slots=True)
class Trim:
    """What one trim did to one stream.

    Attributes:
        stream: the stream name.
        floor: highest stream sequence every consumer had settled (0: none).
        purged: messages removed: below ``upto``, and further settled ones of a
            consumer's own subjects (see :func:`trim_stream`).
        upto: first sequence of the stream kept by the prefix trim (0 when nothing
            was removed).
        reason: ``"age"`` (older than ``max_age_s``), ``"full"`` (past
            :data:`TRIM_AT`) or ``""`` (nothing removed).
    """

    stream: str
    floor: int
    purged: int
    upto: int
    reason: str


def work_streams(subjects: Subjects) -> tuple[str, ...]:
    """The streams whose history leaves only once processed: TASKS, WORK, EVENTS, DLQ."""
    return (
        subjects.tasks_stream,
        subjects.work_stream,
        subjects.events_stream,
        subjects.dlq_stream,
    )


def consumer_floor(info: ConsumerInfo, last_seq: int) -> int:
    """Highest stream sequence up to which ``info``'s consumer has settled every message
    it will ever be given: ``last_seq`` (the stream's last sequence, read *before*
    ``info``) when nothing is pending or awaiting an ack, else its ack floor (a
    message delivered and not acked, or not yet delivered, lies above the ack floor)."""
    pending = (info.num_pending or 0) + (info.num_ack_pending or 0)
    if pending == 0:
        return last_seq
    floor = info.ack_floor.stream_seq if info.ack_floor is not None else 0
    return min(floor or 0, last_seq)


async def _first_since(nc: Client, stream: str, since: datetime) -> int | None:
    """Sequence of ``stream``'s first message stored at or after ``since``; ``None``
    when every message is older (``STREAM.MSG.GET`` by ``start_time``, which nats-py's
    ``get_msg`` does not offer)."""
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    msg = await nc.request(
        f"$JS.API.STREAM.MSG.GET.{stream}", json.dumps({"start_time": stamp}).encode(), timeout=5
    )
    body = json.loads(msg.data)
    err = body.get("error")
    if err is not None:
        if err.get("err_code") == _NO_MESSAGE:
            return None
        raise RuntimeError(f"STREAM.MSG.GET {stream}: {err.get('description', err)}")
    return int(body["message"]["seq"])


async def trim_stream(
    nc: Client, stream: str, bus: BusSettings, *, now: float | None = None
) -> Trim:
    """Remove ``stream``'s processed history older than ``bus.max_age_s``, or all of it
    when the stream is past :data:`TRIM_AT`; never a message a consumer that reads it
    has yet to settle (see the module docs). A stream with no consumer is left alone
    (nobody settles its messages, so none is known processed).

    Two purges: the prefix below the stream's processed floor (every consumer settled
    it, including messages no consumer reads), then per consumer filter subject the
    messages below the lowest floor of the consumers whose filters overlap it (a role
    holding one old message pins only its own subject, not the whole stream).

    Args:
        nc: a connection whose identity may read stream and consumer info, get a
            message by time and purge (the site's ``operator``).
        stream: the stream name.
        bus: ``max_age_s``.
        now: the current time (Unix seconds); default the clock.

    Returns:
        What was removed.

    Raises:
        nats.js.errors.NotFoundError: no such stream.
        nats.errors.Error, RuntimeError: NATS failed or refused a request.
    """
    js = nc.jetstream()
    info = await js.stream_info(stream)
    state = info.state
    last = state.last_seq
    consumers = await js.consumers_info(stream)
    if not consumers or state.messages == 0:
        return Trim(stream, 0, 0, 0, "")
    floors = [(consumer_filters(c), consumer_floor(c, last)) for c in consumers]
    floor = min(f for _, f in floors)
    if fill_of(info).fraction >= TRIM_AT:
        limit, reason = last + 1, "full"
    else:
        cutoff = datetime.fromtimestamp((time.time() if now is None else now) - bus.max_age_s, UTC)
        newer = await _first_since(nc, stream, cutoff)
        limit, reason = (last + 1 if newer is None else newer), "age"
    upto = min(floor + 1, limit)
    before = state.messages
    purged_any = False
    if upto > state.first_seq:
        await js.purge_stream(stream, seq=upto)
        purged_any = True
    # Past the prefix every consumer settled: each consumer's own subjects, up to the
    # lowest floor of the consumers that read them, so one consumer holding an old
    # message (its output refused by a full stream) does not pin the others' settled
    # history (a full stream of settled messages would never make room).
    for filters, _ in floors:
        for subject in filters:
            bound = min(f for other, f in floors if any(_overlap(subject, o) for o in other))
            sub_upto = min(bound + 1, limit)
            if sub_upto > max(upto, state.first_seq):
                await js.purge_stream(stream, seq=sub_upto, subject=subject)
                purged_any = True
    if not purged_any:
        return Trim(stream, floor, 0, 0, "")
    after = (await js.stream_info(stream)).state.messages
    return Trim(stream, floor, max(0, before - after), upto, reason)


def consumer_filters(info: ConsumerInfo) -> tuple[str, ...]:
    """The subjects ``info``'s consumer reads (``(">",)``: the whole stream)."""
    cfg = info.config
    many = getattr(cfg, "filter_subjects", None)
    if many:
        return tuple(many)
    return (cfg.filter_subject,) if cfg.filter_subject else (">",)


def _overlap(a: str, b: str) -> bool:
    """Whether NATS subject filters ``a`` and ``b`` match a common subject."""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb, strict=False):
        if x == ">" or y == ">":
            return True
        if x != "*" and y != "*" and x != y:
            return False
    return len(ta) == len(tb)


async def trim_processed(
    nc: Client, subjects: Subjects, bus: BusSettings, *, now: float | None = None
) -> list[Trim]:
    """:func:`trim_stream` on each of the site's :func:`work_streams` that exists.

    Raises:
        nats.errors.Error, RuntimeError: NATS failed or refused a request.
    """
    out = []
    for stream in work_streams(subjects):
        try:
            out.append(await trim_stream(nc, stream, bus, now=now))
        except NotFoundError:
            continue
    return out


async def keep_streams(
    nc: Client,
    subjects: Subjects,
    bus: BusSettings,
    *,
    interval_s: float = TRIM_INTERVAL_S,
) -> None:
    """:func:`trim_processed` every ``interval_s`` seconds until cancelled; a failed
    round (NATS away) is logged and the next one tries again."""
    while True:
        try:
            for t in await trim_processed(nc, subjects, bus):
                if t.purged:
                    log.info(
                        "trimmed %d processed message(s) of %s below seq %d (%s)",
                        t.purged, t.stream, t.upto, t.reason,
                    )  # fmt: skip
        except Exception as exc:
            log.info("streams not trimmed this round: %s: %s", type(exc).__name__, exc)
        await asyncio.sleep(interval_s)


class AdmissionGate:
    """The router's admission control: no new task enters a work stream past
    :data:`ADMIT_BELOW` of its limit (pass it as the router's ``Worker(admit=...)``).

    Outputs on ``subject_prefix`` are refused with a :class:`StreamFull` naming the
    fill, so the worker runtime holds the task (unacked, no delivery spent) and offers
    it again with backoff; other outputs (events) pass. The fill is read from the
    stream info at most every :data:`ADMIT_REFRESH_S` seconds; a failed read admits
    (the server still refuses what does not fit).

    Args:
        js: a JetStream context whose identity may read ``stream``'s info.
        stream: the work stream (``WORK_<site>``).
        subject_prefix: the subjects it guards (``sm.v1.work.<site>.``).
        admit_below: the fill from which new work is held.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subject_prefix: str,
        *,
        admit_below: float = ADMIT_BELOW,
    ) -> None:
        self._js = js
        self.stream = stream
        self._prefix = subject_prefix
        self.admit_below = admit_below
        self._fill = 0.0
        self._read_at = float("-inf")
        self.held = 0
        """Publishes held so far (each retry counts)."""

    async def fill(self) -> float:
        """The stream's fill, 0.0 to 1.0 (cached for :data:`ADMIT_REFRESH_S`)."""
        now = time.monotonic()
        if now - self._read_at >= ADMIT_REFRESH_S:
            self._read_at = now
            try:
                info = await self._js.stream_info(self.stream)
            except Exception as exc:  # the server still refuses what does not fit
                log.debug("admission: %s info not read: %r", self.stream, exc)
                self._fill = 0.0
            else:
                self._fill = fill_of(info).fraction
        return self._fill

    async def __call__(self, outs: Sequence[Outbound]) -> StreamFull | None:
        guarded = next((o.subject for o in outs if o.subject.startswith(self._prefix)), None)
        if guarded is None:
            return None
        fill = await self.fill()
        if fill < self.admit_below:
            return None
        self.held += 1
        return StreamFull(
            guarded,
            f"{self.stream} is {fill:.0%} full; new tasks wait until the work in "
            f"progress drains (admission below {self.admit_below:.0%})",
        )
