"""The recorder: writes a site's events and dead letters to the state store, in batches.

Two pull loops read the durable ``recorder`` consumers of the site's ``EVENTS`` and
``DLQ`` streams (created by :func:`sitemesh.bus.provision`, ``max_deliver``
unlimited). Each fetched batch (up to ``bus.batch`` messages) is decoded and
recorded in one transaction (:meth:`Store.record_events`,
:meth:`Store.record_dead_letters`), keyed by stream sequence, so a redelivered
batch is recorded once; then every message of it is acked. A database error naks
the whole batch (redelivered later with backoff, never lost, never dead-lettered);
a message that does not decode is dead-lettered (``SchemaError``, with a
``task_failed`` event when its ``sm-task-id`` header names the task) without
failing the rest of its batch. Each message is settled inside the runtime's
middleware chain, like a :class:`sitemesh.bus.Worker`'s (with telemetry: a
``process`` span per message and the messaging metrics).

Batching is what lets the recorder keep up with the bus: one transaction and a
handful of statements per batch instead of per event (``bench/recorder.py``).

Every ``lag_interval_s`` the recorder reads its consumers' info (one request each)
and exports the lag, the messages after the ack floor, as ``sitemesh.consumer.lag``
(and the undelivered ones as ``sitemesh.queue.depth``) when telemetry is set up;
a lag that keeps growing past ``lag_warn`` messages is logged.

With SQLite run one recorder process per site (one writer); with PostgreSQL
several may share the consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, TypeVar

import msgspec
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import Error as JetStreamError
from sqlalchemy.exc import SQLAlchemyError, StatementError

from ..bus import (
    HDR_TASK_ID,
    RECORDER,
    Action,
    Decision,
    ProcessMiddleware,
    Publisher,
    Subjects,
    ack_metadata,
    backoff_s,
    dead_letter_outbounds,
    worker_middlewares,
)
from ..config import BusSettings
from ..errors import SchemaError, TransientError
from ..schemas import DLQ_DECODER, EVENT_DECODER, DeadLetter, Event, decode
from ..telemetry import Instruments, active
from ._store import Store

log = logging.getLogger("sitemesh.state.recorder")

T = TypeVar("T")

RECORDER_DURABLE: Final = RECORDER
"""Name of the recorder's durable consumers on ``EVENTS_<site>`` and ``DLQ_<site>``."""

RECORDER_BATCH: Final = 256
"""Least number of messages per batch (one transaction), unless ``max_inflight`` says
otherwise: writing 256 events costs little more than writing 64 (``bench/recorder.py``:
about 1.5x the tasks per second of ``bus.batch``'s default 64 on SQLite)."""

RECORDER_ROLE: Final = "recorder"
"""Role name of the recorder (in logs, metrics and its dead letters)."""

DB_RETRY_AFTER_S: Final = 1.0
"""Least redelivery delay of a batch after a database error, in seconds."""

IDLE_FETCH_S: Final = 5.0
"""How long one pull request waits for the first message of a batch, in seconds
(an idle recorder renews it this often; :meth:`Recorder.shutdown` cancels it)."""

TOP_UP_S: Final = 0.05
"""How long a batch waits for more messages once its first one arrived, in seconds:
a backlog fills the batch at once, a trickle is recorded within this delay."""

FETCH_RETRY_S: Final = 1.0
"""Pause after a failed pull request (reconnecting, consumer leader change), in seconds."""

LAG_INTERVAL_S: Final = 5.0
"""How often the recorder reads its consumers' lag, in seconds."""

LAG_WARN: Final = 1000
"""A lag of at least this many messages that grew since the last reading is logged."""

_ACK: Final = Decision(Action.ACK)

MAX_HEARTBEATS: Final = 30
"""A batch still being written gets ``+WPI`` (in progress) acks every ``ack_wait / 3``,
at most this many times (ten ack waits); then it is redelivered after ``ack_wait``."""


@dataclass(slots=True)
class _Feed(Generic[T]):
    """One consumer: its stream, how to decode its messages and record a batch."""

    stream: str
    decoder: msgspec.json.Decoder[T]
    record: Callable[[str, list[tuple[int, T]]], Awaitable[int]]
    wait: asyncio.Future[list[Msg]] | None = None
    """The pull request waiting for a batch's first message, while idle."""


class _Heartbeat:
    """``+WPI`` for every message of a batch every ``ack_wait / 3`` while it is written
    (a slow database), so it is not redelivered to another recorder meanwhile. One
    timer per batch; nothing is sent for a batch written within ``ack_wait / 3``."""

    __slots__ = ("_beats", "_handle", "_interval", "_loop", "_msgs", "_sends")

    def __init__(self, msgs: Sequence[Msg], ack_wait_s: float) -> None:
        self._msgs = msgs
        self._interval = ack_wait_s / 3
        self._beats = 0
        self._sends: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._interval, self._beat)

    def _beat(self) -> None:
        self._beats += 1
        task = self._loop.create_task(self._send())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)
        more = self._beats < MAX_HEARTBEATS
        self._handle = self._loop.call_later(self._interval, self._beat) if more else None

    async def _send(self) -> None:
        for msg in self._msgs:
            with contextlib.suppress(Exception):  # the connection is gone: redelivered
                await msg.in_progress()

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class Recorder:
    """Records a site's events and dead letters into a :class:`Store`, a batch at a time.

    Lifecycle like :class:`sitemesh.bus.Worker`: ``await run()`` until
    ``await shutdown()`` (safe to call twice), or ``async with Recorder(...)`` to
    run it in the background. The store is not closed by the recorder.

    Args:
        js: JetStream context of a connected client.
        store: an opened store (migrated).
        site: the site whose streams to read.
        bus_settings: ``ack_wait_s`` and the backoff of a batch after a database
            error; ``max_deliver`` is ignored (a database error is retried until the
            database is back).
        max_inflight: messages per batch (one transaction); ``None``: the larger of
            :data:`RECORDER_BATCH` and ``bus_settings.batch``. ``1`` records one
            message at a time. While a batch is written the next one is fetched, so
            up to twice this many messages are in flight per stream.
        lag_interval_s: seconds between two readings of the consumers' lag.
        lag_warn: a lag (in messages) from which a growing lag is logged.
        instruments: where the lag is exported; ``None``: those of
            :func:`sitemesh.telemetry.active` if telemetry is set up. (Spans and
            per-message metrics come from the runtime's middleware chain, as for a
            :class:`sitemesh.bus.Worker`: :func:`sitemesh.bus.worker_middlewares`.)
        db_retry_after_s: least redelivery delay of a batch after a database error,
            in seconds (then the bus backoff, doubling per delivery).
    """

    def __init__(
        self,
        js: JetStreamContext,
        store: Store,
        site: str,
        bus_settings: BusSettings,
        *,
        max_inflight: int | None = None,
        lag_interval_s: float = LAG_INTERVAL_S,
        lag_warn: int = LAG_WARN,
        instruments: Instruments | None = None,
        db_retry_after_s: float = DB_RETRY_AFTER_S,
    ) -> None:
        self.store = store
        self.site = site
        self.settings = bus_settings
        self.batch = max(1, max_inflight or max(RECORDER_BATCH, bus_settings.batch))
        self.lag_interval_s = lag_interval_s
        self.lag_warn = lag_warn
        self.db_retry_after_s = db_retry_after_s
        self._js = js
        self._subjects = subjects = Subjects(site)
        self._publisher = Publisher(js)
        if instruments is None and (telemetry := active()) is not None:
            instruments = telemetry.instruments
        self._instruments = instruments
        self._feeds: tuple[_Feed[Any], ...] = (
            _Feed[Event](subjects.events_stream, EVENT_DECODER, self._record_events),
            _Feed[DeadLetter](subjects.dlq_stream, DLQ_DECODER, self._record_dead_letters),
        )
        self._chains: dict[str, list[ProcessMiddleware]] = {
            feed.stream: worker_middlewares(
                site=site, role=RECORDER_ROLE, stream=feed.stream, durable=RECORDER_DURABLE
            )
            for feed in self._feeds
        }
        self.lag: dict[str, int] = {}
        """Latest lag per stream, in messages (see :data:`LAG_WARN`)."""
        self.recorded = 0
        """Messages recorded (acked) so far."""
        self._stopping = False
        self._stop = asyncio.Event()
        self._started = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._run_task: asyncio.Task[None] | None = None

    async def _record_events(self, stream: str, batch: list[tuple[int, Event]]) -> int:
        return await self.store.record_events(stream, batch)

    async def _record_dead_letters(self, stream: str, batch: list[tuple[int, DeadLetter]]) -> int:
        del stream  # a dead letter is keyed by its original's stream and sequence
        return await self.store.record_dead_letters([dl for _, dl in batch])

    # -- lifecycle ------------------------------------------------------------------
    async def run(self) -> None:
        """Record until :meth:`shutdown` is called.

        Raises:
            RuntimeError: ``run`` is already running.
            nats.js.errors.NotFoundError: a ``recorder`` consumer does not exist (run
                :func:`sitemesh.bus.provision` first).
        """
        if self._running:
            raise RuntimeError("Recorder.run() is already running")
        self._running = True
        try:
            for feed in self._feeds:
                await self._js.consumer_info(feed.stream, RECORDER_DURABLE)
            self._started.set()
            async with asyncio.TaskGroup() as tg:
                for feed in self._feeds:
                    tg.create_task(self._consume(feed), name=f"recorder:{feed.stream}")
                tg.create_task(self._watch_lag(), name="recorder:lag")
        finally:
            self._started.set()
            self._done.set()

    async def shutdown(self) -> None:
        """Stop fetching, finish the batches being recorded. Safe to call more than once."""
        self._stopping = True
        self._stop.set()
        for feed in self._feeds:
            if feed.wait is not None:
                feed.wait.cancel()  # idle: nothing delivered is dropped (ack_wait redelivers)
        if self._running:
            await self._done.wait()
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task

    async def __aenter__(self) -> Recorder:
        """Start recording in the background (raises if a consumer is missing)."""
        self._run_task = asyncio.create_task(self.run(), name="recorder")
        await self._started.wait()
        if self._run_task.done():
            await self._run_task  # re-raises why it could not start
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- the pull loop --------------------------------------------------------------
    async def _consume(self, feed: _Feed[T]) -> None:
        """Fetch the next batch while the current one is written (the database works in
        its own thread or server meanwhile); batches are recorded one after the other,
        in stream order. A batch fetched when the stop comes is still recorded."""
        psub = await self._js.pull_subscribe_bind(durable=RECORDER_DURABLE, stream=feed.stream)
        fetch: asyncio.Future[list[Msg]] | None = asyncio.ensure_future(self._fetch(feed, psub))
        try:
            while fetch is not None:
                msgs = await fetch
                fetch = None if self._stopping else asyncio.ensure_future(self._fetch(feed, psub))
                if msgs:
                    await self._settle(feed, msgs)
        finally:
            if fetch is not None:
                fetch.cancel()
            with contextlib.suppress(Exception):
                await psub.unsubscribe()

    async def _fetch(self, feed: _Feed[T], psub: JetStreamContext.PullSubscription) -> list[Msg]:
        """The next batch: wait for one message, then take what else is there."""
        if self._stopping:
            return []
        wait = feed.wait = asyncio.ensure_future(psub.fetch(1, timeout=IDLE_FETCH_S))
        try:
            await asyncio.wait({wait})
        finally:
            feed.wait = None
            if not wait.done():
                wait.cancel()
        if wait.cancelled():
            return []
        if (exc := wait.exception()) is not None:
            return await self._fetch_failed(exc)
        msgs = wait.result()
        if self.batch > 1:
            try:
                msgs += await psub.fetch(self.batch - 1, timeout=TOP_UP_S)
            except TimeoutError:
                pass
            except (NatsError, JetStreamError) as exc:
                log.debug("recorder: %s: topping up a batch failed: %r", feed.stream, exc)
        return msgs

    async def _fetch_failed(self, exc: BaseException) -> list[Msg]:
        if isinstance(exc, TimeoutError):
            return []
        if not isinstance(exc, NatsError | JetStreamError):
            raise exc
        log.warning("recorder: pull request failed (%s), retrying", type(exc).__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), FETCH_RETRY_S)
        return []

    async def _settle(self, feed: _Feed[T], msgs: Sequence[Msg]) -> None:
        """Decode ``msgs``, dead-letter those that do not decode, record the rest in one
        transaction and ack them, or nak them all if that failed.

        Each message is settled inside the runtime's middleware chain (a ``process``
        span per message, messaging metrics) when telemetry installed one; a message
        of the batch is settled once the batch's transaction has ended."""
        good: list[tuple[Msg, int, T]] = []
        delivered = 1
        for msg in msgs:
            stream, num_delivered, seq, _ = ack_metadata(msg.reply)
            try:
                value = decode(msg.data, feed.decoder)
            except SchemaError as exc:
                letter = functools.partial(
                    self._dead_letter, stream=stream, seq=seq, num_delivered=num_delivered, exc=exc
                )
                await self._chained(feed, letter)(msg)
                continue
            good.append((msg, seq, value))
            delivered = max(delivered, num_delivered)
        if not good:
            return
        if not self._chains[feed.stream]:
            decision, _ = await self._write(feed, good, delivered)
            for msg, _, _ in good:
                await _apply(msg, decision)
            return
        outcome: asyncio.Future[tuple[Decision, Exception | None]] = (
            asyncio.get_running_loop().create_future()
        )

        async def settle(msg: Msg) -> tuple[Decision, Exception | None]:
            decision, error = await asyncio.shield(outcome)
            await _apply(msg, decision)
            return decision, error

        handle = self._chained(feed, settle)
        tasks = [asyncio.create_task(handle(msg)) for msg, _, _ in good]
        try:
            outcome.set_result(await self._write(feed, good, delivered))
            await asyncio.gather(*tasks)
        finally:
            if not outcome.done():
                outcome.cancel()  # cancelled mid-write: not settled, redelivered later
            for task in tasks:
                task.cancel()

    async def _write(
        self, feed: _Feed[T], good: list[tuple[Msg, int, T]], delivered: int
    ) -> tuple[Decision, Exception | None]:
        """Record ``good`` in one transaction: ``ACK``, or ``NAK`` with the backoff and
        why (a :class:`TransientError` naming the database error)."""
        beat = _Heartbeat([m for m, _, _ in good], self.settings.ack_wait_s)
        try:
            await feed.record(feed.stream, [(seq, value) for _, seq, value in good])
        except Exception as exc:
            err = _transient(exc, self.db_retry_after_s)
            delay = backoff_s(delivered, self.settings, err.retry_after_s)
            log.warning(  # names the database error, never its parameters (ticket text)
                "recorder: %s: %d message(s) not recorded, retrying in %.1fs: %s",
                feed.stream, len(good), delay, err,
            )  # fmt: skip
            return Decision(Action.NAK, delay_s=delay), err
        finally:
            beat.stop()
        self.recorded += len(good)
        return _ACK, None

    def _chained(
        self, feed: _Feed[T], settle: Callable[[Msg], Coroutine[Any, Any, Any]]
    ) -> Callable[[Msg], Coroutine[Any, Any, Any]]:
        """``settle`` inside ``feed``'s middleware chain (the first is outermost)."""
        handle = settle
        for mw in reversed(self._chains[feed.stream]):
            handle = functools.partial(mw.process, settle=handle)
        return handle

    async def _dead_letter(
        self, msg: Msg, *, stream: str, seq: int, num_delivered: int, exc: SchemaError
    ) -> tuple[Decision, Exception | None]:
        headers: Mapping[str, str] = msg.headers or {}
        decision = Decision(
            Action.DEAD_LETTER, reason=str(exc), error_class=type(exc).__name__, field=exc.field
        )
        outs = dead_letter_outbounds(
            self._subjects,
            role=RECORDER_ROLE,
            subject=msg.subject,
            stream=stream,
            stream_seq=seq,
            data=msg.data,
            headers=headers,
            reason=decision.reason,
            error_class=decision.error_class,
            field=decision.field,
            deliveries=num_delivered,
            task_id=headers.get(HDR_TASK_ID),
        )
        log.warning(  # the reason goes to the DLQ, not the log: it may quote the message
            "recorder: dead-lettering %s#%d: %s at %s",
            stream, seq, decision.error_class, decision.field or "-",
        )  # fmt: skip
        try:
            await self._publisher.publish_many(outs)
        except Exception as pub_exc:  # the DLQ is unreachable: keep the message, retry later
            retry = Decision(Action.NAK, delay_s=backoff_s(num_delivered, self.settings))
            log.error(
                "recorder: dead letter of %s#%d failed: %s", stream, seq, type(pub_exc).__name__
            )
            await _apply(msg, retry)
            return retry, pub_exc
        await msg.term()
        return decision, exc

    # -- lag ------------------------------------------------------------------------
    async def _watch_lag(self) -> None:
        while not self._stopping:
            for feed in self._feeds:
                await self.read_lag(feed.stream)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.lag_interval_s)

    async def read_lag(self, stream: str) -> int | None:
        """Read the lag of the recorder's consumer on ``stream`` (one request), export
        and remember it (:attr:`lag`), and log it if it grew past :attr:`lag_warn`.

        Args:
            stream: ``EVENTS_<site>`` or ``DLQ_<site>``.

        Returns:
            Messages after the consumer's ack floor (``num_pending`` not delivered yet
            plus ``num_ack_pending`` delivered but not acked), or ``None`` if the
            consumer's info could not be read (logged at debug level).
        """
        try:
            info = await self._js.consumer_info(stream, RECORDER_DURABLE)
        except Exception as exc:  # reconnecting: the next reading will do
            log.debug("recorder: reading the lag of %s failed: %s", stream, type(exc).__name__)
            return None
        pending = int(info.num_pending or 0)
        lag = pending + int(info.num_ack_pending or 0)
        before = self.lag.get(stream, 0)
        self.lag[stream] = lag
        if self._instruments is not None:
            self._instruments.set_depth(self.site, RECORDER_ROLE, stream, pending)
            self._instruments.set_lag(self.site, RECORDER_ROLE, stream, lag)
        if lag >= self.lag_warn and lag > before:
            log.warning(
                "recorder: %s is %d message(s) behind (%+d in %.0fs); "
                "`sitemesh status` lags the bus",
                stream, lag, lag - before, self.lag_interval_s,
            )  # fmt: skip
        elif before >= self.lag_warn > lag:
            log.info("recorder: %s caught up (%d message(s) behind)", stream, lag)
        return lag


async def _apply(msg: Msg, decision: Decision) -> None:
    """Ack or nak ``msg`` as ``decision`` says."""
    if decision.action is Action.ACK:
        await msg.ack()
    else:
        await msg.nak(decision.delay_s)


def _transient(exc: Exception, retry_after_s: float) -> TransientError:
    """A :class:`TransientError` naming ``exc`` without the statement's parameters.

    SQLAlchemy's ``str()`` of a database error appends the SQL and its parameters,
    which may contain ticket text; the driver's own message (``exc.orig``) does not.
    """
    if isinstance(exc, StatementError) and exc.orig is not None:
        orig = exc.orig
        text = f"state database error: {type(exc).__name__} ({type(orig).__name__}): "
        text += _first_line(str(orig))  # the driver's message; a DETAIL line may quote values
    elif isinstance(exc, SQLAlchemyError):
        text = f"state database error: {type(exc).__name__}: {_first_line(str(exc))}"
    else:  # not the database: a bug; the class only (its text may quote the message)
        text = f"recording failed: {type(exc).__name__}"
    return TransientError(text, retry_after_s=retry_after_s)


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""
