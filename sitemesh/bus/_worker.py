"""The worker runtime: pull, decode, handle, publish outputs, ack."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from contextvars import ContextVar
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DEFAULT_PREFIX

from ..config import BusSettings
from ..errors import HandlerTimeout, MessageTooLarge, SchemaError, StreamFull
from ..schemas import ENCODER, check_nesting, hostile_json_error, utcnow
from ._acking import ACK, Action, Decision, backoff_s, decide
from ._deadletter import dead_letter_outbounds, raw_task_id
from ._middleware import ProcessMiddleware, worker_middlewares
from ._publish import PubAck, Publisher, outbound_headers
from ._subjects import Subjects, message_id
from ._types import Admit, Handler, MsgContext, Outbound, TaskIdOf

T = TypeVar("T")

log = logging.getLogger("sitemesh.bus")

PULL_EXPIRES_S: Final = 2.0
"""Lifetime of one pull request in seconds; an idle worker renews its request this often."""

_PULL_ENCODER: Final = msgspec.json.Encoder()
_STATUS: Final = "Status"
_PENDING_MSGS: Final = "Nats-Pending-Messages"

_NO_HEADERS: Final[Mapping[str, str]] = {}


def _schema_error(
    exc: msgspec.MsgspecError | RecursionError | UnicodeDecodeError, data: bytes
) -> SchemaError:
    if isinstance(exc, RecursionError | UnicodeDecodeError):
        return hostile_json_error(exc, data)
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        field = text.rsplit("- at `", 1)[1].rstrip("`") if "- at `" in text else "$"
        return SchemaError(text, field=field)
    return SchemaError(f"invalid JSON: {text}", field="$")


def ack_metadata(reply: str) -> tuple[str, int, int, int]:
    """``(stream, num_delivered, stream_seq, stored_ns)`` from a JetStream ack subject
    (``stored_ns``: when the server stored the message, Unix epoch nanoseconds).

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (v1) or
    ``$JS.ACK.<domain>.<hash>.<stream>.<consumer>.<delivered>.<sseq>...`` (v2), parsed
    without building nats-py's ``Metadata`` (no datetime per message).
    """
    t = reply.split(".")
    if len(t) == 9:
        return t[2], int(t[4]), int(t[5]), int(t[7])
    return t[4], int(t[6]), int(t[7]), int(t[9])


HEARTBEATS_PER_ACK_WAIT: Final = 3
"""A message still being handled gets a ``+WPI`` (in progress) every ``ack_wait / 3``."""

MAX_HEARTBEATS: Final = 30
"""After this many (ten ack waits) a handler counts as stuck: the heartbeats stop and
the server redelivers the message after one more ``ack_wait``."""


class _Heartbeat:
    """Keeps a slow message's delivery alive while its handler runs (a local model's
    plan takes longer than ``ack_wait``): JetStream ``in_progress`` acks on a timer,
    so it is not redelivered to a second worker meanwhile. Costs one timer per
    message; nothing is sent for a handler that finishes within ``ack_wait / 3``."""

    __slots__ = ("_beats", "_handle", "_interval", "_loop", "_msg")

    def __init__(self, msg: Msg, ack_wait_s: float) -> None:
        self._msg = msg
        self._interval = ack_wait_s / HEARTBEATS_PER_ACK_WAIT
        self._beats = 0
        self._loop = asyncio.get_running_loop()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(self._interval, self._beat)

    def _beat(self) -> None:
        self._beats += 1
        self._loop.create_task(self._send())
        self._handle = (
            self._loop.call_later(self._interval, self._beat)
            if self._beats < MAX_HEARTBEATS
            else None
        )

    async def _send(self) -> None:
        try:
            await self._msg.in_progress()
        except Exception as exc:  # the connection is gone: redelivery will follow
            log.debug("in-progress ack failed: %s", type(exc).__name__)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def renew(self) -> None:
        """Keep beating: the handler is done and the worker itself is waiting (for
        room in a full stream), which is no sign of a stuck handler."""
        self._beats = 0
        if self._handle is None:
            self._handle = self._loop.call_later(self._interval, self._beat)


MAX_HANDOVER_DEPTH: Final = 32
"""Steps one input may run in memory, one after the other; further items of the chain
go over the bus (a workflow's steps only move forward, so only a handler that keeps
addressing itself gets near it)."""

LOCAL_REPLY_PREFIX: Final = "$SM.LOCAL."
"""Reply subject prefix of a message handed over in memory (:class:`LocalWorkers`):
``$SM.LOCAL.<unix ns>``, when it was handed over. It never reached the server, so it
has no ``$JS.ACK`` reply: middleware tells it apart by this prefix (a telemetry
middleware records its process span and metrics, with no stream sequence or
consumer pending count)."""


def local_reply() -> str:
    """The reply subject of a message handed over now (:data:`LOCAL_REPLY_PREFIX`)."""
    return f"{LOCAL_REPLY_PREFIX}{time.time_ns()}"


_DEPTH: ContextVar[int] = ContextVar("sitemesh_handover_depth", default=0)


class LocalWorkers:
    """The workers of one process, by the subject each consumes: a message one of them
    publishes for another is handed over in memory instead of over the bus.

    A site's consecutive steps (triage -> retriever -> planner -> validator ->
    escalation) run one after another, each on the work subject of the next role.
    When those roles run in one process (``sitemesh worker triage --with retriever``),
    publishing each work item only for the same process to fetch, decode and ack it
    costs a JetStream store, a delivery and an ack per step. A worker given a
    ``LocalWorkers`` hands such an item straight to the sibling's handler:

    - the sibling decodes the item's encoded bytes with its own decoder (the same
      schema check as off the bus), runs its handler within its own time budget, and
      publishes what that returns with its *own* connection (its role's identity and
      permissions, e.g. only ``escalation`` may publish a final answer);
    - the handing worker publishes its other outputs first, so the events of a task
      reach ``EVENTS_<site>`` in step order, and acks its input only after the whole
      chain published: a crash in between redelivers the input, and the chain's
      re-publishes are dropped as duplicates (``Nats-Msg-Id`` from task and step);
    - anything but success (a handler error, a time budget, a refused publish, the
      sibling shutting down) publishes the item on the bus instead, where the
      sibling's consumer retries or dead-letters it as always.

    Only exact subjects are handed over, at most :data:`MAX_HANDOVER_DEPTH` steps per
    input; ``handed_over`` counts them per role.
    """

    __slots__ = ("_by_subject", "handed_over")

    def __init__(self) -> None:
        self._by_subject: dict[str, Worker[Any]] = {}
        self.handed_over: dict[str, int] = {}
        """Messages handed over in memory, by the role that took them."""

    def add(self, subject: str, worker: Worker[Any]) -> None:
        """Hand messages published on ``subject`` (exact, no wildcards) to ``worker``.

        Raises:
            ValueError: ``subject`` has a wildcard, or another worker has it.
        """
        if "*" in subject.split(".") or subject.endswith(">"):
            raise ValueError(f"a local subject must be exact, not {subject!r}")
        if self._by_subject.get(subject, worker) is not worker:
            raise ValueError(f"{subject!r} already has a local worker")
        self._by_subject[subject] = worker

    def taker(self, subject: str) -> Worker[Any] | None:
        """The worker that takes ``subject`` here, or ``None`` (publish it)."""
        return self._by_subject.get(subject)


class Worker(Generic[T]):
    """Runs a handler over a durable pull consumer, owning acks, retries and dead letters.

    Per message: decode (a decoder error is a :class:`~sitemesh.errors.SchemaError`,
    dead-lettered at once) → ``handler(msg, ctx)`` → publish what it returns
    (pipelined, awaiting the PubAcks) → ack. Failures are mapped to ``nak(delay)`` or
    ``term`` + dead letter by :func:`sitemesh.bus._acking.decide`. Pull requests of
    up to ``settings.batch`` messages are kept outstanding so that at most
    ``max_inflight`` messages are handled at once; each message is handled as soon
    as it arrives and a new pull is issued as soon as half a batch of room frees up,
    so neither a partial batch nor one slow message holds up the rest.

    Each handler call has a time budget (``settings.handler_timeout_s``, or the role's
    entry in ``settings.handler_timeouts``): one that runs past it is cancelled and its
    message dead-lettered at once with reason ``handler_timeout``; the other messages
    in flight go on (a budget cannot interrupt a handler that blocks the event loop
    without awaiting: such work must be bounded by the handler itself).

    When a stream refuses an output because it is full
    (:class:`~sitemesh.errors.StreamFull`), the input is neither acked nor
    dead-lettered: the worker keeps it in progress and publishes the refused outputs
    again with backoff until they fit, so the backlog waits upstream (the worker pulls
    nothing new while its slots are held). On shutdown such an input is nak'ed.

    Acks and naks are fire-and-forget publishes that the client coalesces into one
    socket write per event-loop turn. An output is always PubAck'ed before its input
    is acked; a crash in between causes a redelivery whose re-publishes the server
    drops as duplicates (derived ``Nats-Msg-Id``).

    Lifecycle: ``await run()`` until ``await shutdown()`` (idempotent: stops
    pulling, gives back messages delivered after the stop, finishes in-flight
    messages within ``settings.graceful_timeout_s``, then cancels the rest, which
    are redelivered after ``ack_wait``); or
    ``async with Worker(...)`` to run it in the background.

    Args:
        js: a JetStream context.
        site: the worker's site.
        role: its role (in :class:`MsgContext` and the dead-letter subject).
        stream: the stream of the durable consumer.
        durable: the durable consumer created by :func:`sitemesh.bus.provision`.
        decoder: bytes -> message; raise ``SchemaError`` (or a msgspec error) on bad input.
        handler: ``async (msg, ctx) -> [Outbound, ...]``.
        settings: batch size, retries, backoff, graceful timeout.
        task_id_of: best-effort task id of a raw message for error events;
            default: the ``sm-task-id`` header.
        max_inflight: messages handled at once; default ``settings.batch``.
        dead_letter_role: role in the dead-letter subject; default ``role``.
        subjects: the subject map dead letters and the task-size check use;
            default ``Subjects(site)`` (a replay sandbox passes its own).
        middleware: the chain around each message (first = outermost); default:
            from the installed factories (:func:`sitemesh.bus.install_middleware`).
        admit: asked before each publish of a message's outputs; a
            :class:`~sitemesh.errors.StreamFull` it returns holds them as a refusal
            by the server would (e.g. :class:`~sitemesh.bus.AdmissionGate`: the
            router admits no new task into a work stream past 80 %, so the work in
            progress keeps room to move on).
        local: the other workers of this process: outputs for one of them are
            handed over in memory (:class:`LocalWorkers`); this worker is added to
            it under ``local_subject``.
        local_subject: the subject this worker takes from ``local`` (the filter
            subject of its consumer, e.g. :meth:`Subjects.work`).
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        site: str,
        role: str,
        stream: str,
        durable: str,
        decoder: Callable[[bytes], T],
        handler: Handler[T],
        settings: BusSettings,
        task_id_of: TaskIdOf | None = None,
        max_inflight: int | None = None,
        dead_letter_role: str | None = None,
        subjects: Subjects | None = None,
        middleware: Sequence[ProcessMiddleware] | None = None,
        admit: Admit | None = None,
        local: LocalWorkers | None = None,
        local_subject: str | None = None,
    ) -> None:
        self._js = js
        self._admit = admit
        self._local = local
        if local is not None and local_subject is not None:
            local.add(local_subject, self)
        self.site = site
        self.role = role
        self.stream = stream
        self.durable = durable
        self._decoder = decoder
        self._handler = handler
        self.settings = settings
        self._task_id_of = task_id_of
        self.max_inflight = max_inflight or settings.batch
        self._dead_letter_role = dead_letter_role or role
        self._subjects = subjects if subjects is not None else Subjects(site)
        self._publisher = Publisher(js)
        chain = (
            list(middleware)
            if middleware is not None
            else worker_middlewares(site=site, role=role, stream=stream, durable=durable)
        )
        self._chain = chain
        handle: Callable[[Msg], Coroutine[Any, Any, Any]] = self._settle
        for mw in reversed(chain):  # the first is outermost
            handle = functools.partial(mw.process, settle=handle)
        self._handle: Callable[[Msg], Coroutine[Any, Any, object]] = handle
        """Per message: :meth:`_settle` inside the middleware chain (tracing when telemetry
        is on; see :func:`sitemesh.bus.install_middleware`)."""
        self._check_size = stream == self._subjects.tasks_stream
        """Input from outside (``TASKS``): size and nesting are checked before decoding."""
        self.handler_timeout_s: float | None = settings.handler_timeouts.get(
            role, settings.handler_timeout_s
        )
        """Seconds one handler call may take (``None`` or 0: no budget)."""
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._min_fetch = max(1, min(settings.batch, self.max_inflight) // 2)
        self._nc = js._nc  # the connection; nats-py exposes no public accessor
        prefix = getattr(js, "_prefix", DEFAULT_PREFIX)
        self._next_subject = f"{prefix}.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._pull_pending = 0
        self._pull_deadline = 0.0
        self._inflight: set[asyncio.Task[object]] = set()
        self._stopping = False
        self._wake = asyncio.Event()
        self._started = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._run_task: asyncio.Task[None] | None = None
        self.handled = 0
        """Messages settled (acked, nak'ed or dead-lettered) so far."""

    # -- lifecycle ------------------------------------------------------------------
    async def run(self) -> None:
        """Pull and handle messages until :meth:`shutdown`.

        Raises:
            RuntimeError: ``run`` is already running.
            nats.js.errors.NotFoundError: the durable consumer does not exist (run
                :func:`sitemesh.bus.provision` first).
        """
        if self._running:
            raise RuntimeError("Worker.run() is already running")
        self._running = True
        try:
            await self._js.consumer_info(self.stream, self.durable)
            nc = self._nc
            inbox = nc.new_inbox()
            sub = await nc.subscribe(
                inbox, cb=self._on_delivery, pending_msgs_limit=0, pending_bytes_limit=0
            )
            self._started.set()
            try:
                await self._pull_loop(inbox)
            finally:
                # UNSUB, then a PING round trip: the server drops our waiting pull
                # requests (no interest left) and whatever it sent before is naked
                # by _on_delivery, so nothing stays delivered-but-unseen.
                with contextlib.suppress(Exception):
                    await sub.drain()  # type: ignore[no-untyped-call]
                await self._finish_inflight()
                with contextlib.suppress(Exception):  # the last acks reach the server
                    await nc.flush(timeout=2)
        finally:
            self._started.set()
            self._done.set()

    async def _pull_loop(self, inbox: str) -> None:
        """Keep enough pull requests outstanding to fill ``max_inflight``.

        Messages are handled as they arrive (not per fetched batch), so a partial
        batch is never held back and a slow message does not block the others:
        nats.go's ``Consume`` model. The server answers an expired request with a
        408 status carrying how many of its messages were not delivered.
        """
        loop = asyncio.get_running_loop()
        nc, next_subject = self._nc, self._next_subject
        batch, min_fetch = self.settings.batch, self._min_fetch
        expires_ns = int(PULL_EXPIRES_S * 1e9)
        while not self._stopping:
            now = loop.time()
            if self._pull_pending and now > self._pull_deadline + 1.0:
                self._pull_pending = 0  # the 408s were lost (reconnect): start afresh
            want = self.max_inflight - len(self._inflight) - self._pull_pending
            if want >= min_fetch and nc.is_connected:
                n = min(batch, want)
                request = _PULL_ENCODER.encode({"batch": n, "expires": expires_ns})
                await nc.publish(next_subject, request, reply=inbox)
                self._pull_pending += n
                self._pull_deadline = now + PULL_EXPIRES_S
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PULL_EXPIRES_S / 2):
                    await self._wake.wait()

    async def _on_delivery(self, msg: Msg) -> None:
        headers = msg.headers
        if headers and (status := headers.get(_STATUS)):
            if status == "100":  # idle heartbeat
                return
            # 404/408: a request ended with messages undelivered; 409: it was
            # cancelled (max waiting, consumer deleted, leadership change...).
            undelivered = headers.get(_PENDING_MSGS)
            if undelivered is not None:
                self._pull_pending = max(0, self._pull_pending - int(undelivered))
            else:
                self._pull_pending = 0
            if status == "409":
                log.warning("%s: pull request ended: %s", self.role, headers.get("Description"))
            self._wake.set()
            return
        self._pull_pending = max(0, self._pull_pending - 1)
        if self._stopping:  # a request made before the stop: give it back at once
            with contextlib.suppress(Exception):
                await msg.nak()
            return
        task = asyncio.create_task(self._handle(msg))
        self._inflight.add(task)
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[object]) -> None:
        self._inflight.discard(task)
        self.handled += 1
        if len(self._inflight) <= self.max_inflight - self._min_fetch:
            self._wake.set()
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("%s: unexpected error settling a message", self.role, exc_info=exc)

    async def _finish_inflight(self) -> None:
        if not self._inflight:
            return
        _, pending = await asyncio.wait(
            set(self._inflight), timeout=self.settings.graceful_timeout_s
        )
        if pending:
            log.warning(
                "%s: %d message(s) still in flight after %.1fs; cancelling (redelivered)",
                self.role,
                len(pending),
                self.settings.graceful_timeout_s,
            )
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    async def shutdown(self) -> None:
        """Stop fetching, finish in-flight messages, return when :meth:`run` has. Idempotent."""
        self._stopping = True
        self._wake.set()
        if self._running:
            await self._done.wait()
        if self._run_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._run_task

    async def __aenter__(self) -> Self:
        self._run_task = asyncio.create_task(self.run(), name=f"worker:{self.role}")
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

    # -- one message ----------------------------------------------------------------
    async def _settle(self, msg: Msg) -> tuple[Decision, Exception | None]:
        """Decode, handle, publish, settle ``msg``; how it was settled and why."""
        stream, num_delivered, stream_seq, stored_ns = ack_metadata(msg.reply)
        headers = msg.headers or _NO_HEADERS
        data = msg.data
        error: Exception | None = None
        try:
            if self._check_size:
                if len(data) > self.settings.max_task_bytes:
                    raise MessageTooLarge(len(data), self.settings.max_task_bytes)
                check_nesting(data)
            try:
                value = self._decoder(data)
            except (msgspec.MsgspecError, RecursionError, UnicodeDecodeError) as exc:
                raise _schema_error(exc, data) from exc
            ctx = MsgContext(
                subject=msg.subject,
                headers=headers,
                stream=stream,
                stream_seq=stream_seq,
                num_delivered=num_delivered,
                site=self.site,
                role=self.role,
                worker=self.worker_id,
                data=data,
                published_at=datetime.fromtimestamp(stored_ns / 1e9, UTC),
            )
            beat = _Heartbeat(msg, self.settings.ack_wait_s)
            try:
                outs = await self._run_handler(value, ctx)
                if outs:
                    await self._publish_outputs(outs, message_id(headers), beat)
            finally:
                beat.stop()
        except Exception as exc:
            error = exc
        decision = decide(error, num_delivered, self.settings)
        if decision.action is Action.ACK:
            await msg.ack()
        elif decision.action is Action.NAK:
            log.info(  # the class only: an error's text may quote the message (PII)
                "%s: nak %s#%d (delivery %d) in %.2fs: %s",
                self.role, stream, stream_seq, num_delivered, decision.delay_s,
                type(error).__name__,
            )  # fmt: skip
            await msg.nak(decision.delay_s)
        else:
            await self._dead_letter(msg, stream, stream_seq, num_delivered, headers, decision)
        return decision, error

    async def _run_handler(self, value: T, ctx: MsgContext) -> Sequence[Outbound]:
        """The handler's outputs, within its time budget.

        Raises:
            HandlerTimeout: it ran past ``handler_timeout_s`` (it was cancelled).
        """
        budget = self.handler_timeout_s
        if not budget:
            return await self._handler(value, ctx)
        try:
            async with asyncio.timeout(budget) as scope:
                return await self._handler(value, ctx)
        except TimeoutError:
            if scope.expired():  # ours, not a timeout of the handler's own
                raise HandlerTimeout(budget) from None
            raise

    async def _publish_outputs(
        self, outs: Sequence[Outbound], causation_id: str | None, beat: _Heartbeat
    ) -> None:
        """Publish ``outs`` (those a local worker takes are handed over to it, see
        :class:`LocalWorkers`); while a full stream refuses some of them, keep the input in
        progress and publish those again with backoff (the stored ones are not sent
        twice, whatever the duplicate window).

        Raises:
            StreamFull: still refused when the worker is shutting down (the input is
                nak'ed and redelivered later).
            TransientError, nats.js.errors.APIError: another failure (nak'ed).
        """
        handed: list[tuple[Outbound, Worker[Any]]] = []
        local = self._local
        if local is not None and _DEPTH.get() < MAX_HANDOVER_DEPTH:
            pending = []
            for out in outs:
                taker = local.taker(out.subject)
                if taker is None or taker._stopping:
                    pending.append(out)
                else:
                    handed.append((out, taker))
        else:
            pending = list(outs)
        if pending:
            await self._publish_on_bus(pending, causation_id, beat)
        for out, taker in handed:  # after the others: the task's events stay in step order
            if not await taker._take_over(out, causation_id, beat):
                await self._publish_on_bus([out], causation_id, beat)

    async def _take_over(self, out: Outbound, causation_id: str | None, beat: _Heartbeat) -> bool:
        """Handle ``out`` here, as if it had been published and delivered to this
        worker (see :class:`LocalWorkers`); ``False``: it was not, publish it."""
        if self._stopping:
            return False
        payload = out.payload
        data = payload if isinstance(payload, bytes) else ENCODER.encode(payload)
        headers = outbound_headers(out, causation_id)
        self._publisher.handed_over(out, headers, self.stream)  # its send span, trace context
        depth = _DEPTH.set(_DEPTH.get() + 1)

        async def settle(msg: Msg) -> tuple[Decision, Exception | None]:
            value = self._decoder(data)
            ctx = MsgContext(
                subject=out.subject,
                headers=headers,
                stream=self.stream,
                stream_seq=0,  # never stored
                num_delivered=1,
                site=self.site,
                role=self.role,
                worker=self.worker_id,
                data=data,
                published_at=utcnow(),
            )
            outs = await self._run_handler(value, ctx)
            if outs:
                await self._publish_outputs(outs, message_id(headers), beat)
            return ACK, None

        # the same middleware chain as a delivered message (its process span, metrics),
        # on a message that never reached the server: its reply is not an ack subject
        handle: Callable[[Msg], Coroutine[Any, Any, Any]] = settle
        for mw in reversed(self._chain):
            handle = functools.partial(mw.process, settle=handle)
        local = Msg(self._nc, subject=out.subject, reply=local_reply(), data=data, headers=headers)
        try:
            await handle(local)
        except Exception as exc:  # the bus path retries or dead-letters it
            log.info(  # the class only: an error's text may quote the message (PII)
                "%s: handing over %s failed (%s); publishing it",
                self.role, out.subject, type(exc).__name__,
            )  # fmt: skip
            return False
        finally:
            _DEPTH.reset(depth)
        assert self._local is not None
        counts = self._local.handed_over
        counts[self.role] = counts.get(self.role, 0) + 1
        return True

    async def _publish_on_bus(
        self, outs: Sequence[Outbound], causation_id: str | None, beat: _Heartbeat
    ) -> None:
        """Publish ``outs`` with this worker's connection, holding the input while a
        full stream refuses them (:meth:`_publish_outputs`)."""
        pending = list(outs)
        attempt = 0
        while True:
            gate = await self._admit(pending) if self._admit is not None else None
            results: Sequence[PubAck | Exception] = (
                [gate] * len(pending)
                if gate is not None
                else await self._publisher.publish_each(pending, causation_id=causation_id)
            )
            refused: list[Outbound] = []
            full: StreamFull | None = None
            for out, result in zip(pending, results, strict=True):
                if isinstance(result, StreamFull):
                    refused.append(out)
                    full = result
                elif isinstance(result, Exception):
                    raise result
            if full is None:
                return
            if self._stopping:
                raise full
            attempt += 1
            if attempt == 1 or attempt % 10 == 0:
                log.warning(  # the class and subject only: no message content
                    "%s: %s; holding the input, publish attempt %d",
                    self.role, full, attempt,
                )  # fmt: skip
            beat.renew()
            await asyncio.sleep(backoff_s(attempt, self.settings))
            pending = refused

    async def _dead_letter(
        self,
        msg: Msg,
        stream: str,
        stream_seq: int,
        num_delivered: int,
        headers: Mapping[str, str],
        decision: Decision,
    ) -> None:
        task_id = None
        if self._task_id_of is not None:
            try:
                task_id = self._task_id_of(msg.data, headers)
            except Exception:  # hostile bytes (too deep...): fall back to the raw scan
                task_id = None
        task_id = task_id or raw_task_id(msg.data, headers)
        outs = dead_letter_outbounds(
            self._subjects,
            role=self._dead_letter_role,
            subject=msg.subject,
            stream=stream,
            stream_seq=stream_seq,
            data=msg.data,
            headers=headers,
            reason=decision.reason,
            error_class=decision.error_class,
            field=decision.field,
            deliveries=num_delivered,
            task_id=task_id,
        )
        log.warning(  # the reason goes to the DLQ, not the log: it may quote the message
            "%s: dead-lettering %s#%d: %s at %s",
            self.role, stream, stream_seq, decision.error_class, decision.field or "-",
        )  # fmt: skip
        try:
            await self._publisher.publish_many(outs)
        except Exception as exc:  # the DLQ is unreachable: keep the message, retry later
            retry = decide(exc, 1, self.settings)
            log.error("%s: dead letter of %s#%d failed: %s", self.role, stream, stream_seq, exc)
            await msg.nak(retry.delay_s)
            return
        await msg.term()


async def run_worker_until_signalled(worker: Worker[T], nc: Client) -> None:
    """Run ``worker`` until SIGTERM or SIGINT, then shut it down and drain ``nc``.

    On the signal the worker stops fetching and finishes in-flight messages
    (bounded by ``graceful_timeout_s``); then the connection is drained (pending
    acks and publishes are flushed) and closed.

    Args:
        worker: the worker to run.
        nc: its connection, drained at the end.
    """
    loop = asyncio.get_running_loop()
    stops: set[asyncio.Task[None]] = set()

    def on_signal() -> None:
        stops.add(loop.create_task(worker.shutdown()))

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    try:
        await worker.run()
        if stops:
            await asyncio.wait(stops)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if not nc.is_closed:
            await nc.drain()
