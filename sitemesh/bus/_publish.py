"""Publishing :class:`Outbound` messages with dedupe ids, pipelined."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, NoStreamResponseError

from ..errors import StreamFull, TransientError
from ..schemas import ENCODER, schema_tag
from ._middleware import publish_middleware
from ._subjects import (
    HDR_CAUSATION,
    HDR_DATA_CLASS,
    HDR_EXPECTED_LAST_SUBJECT_SEQ,
    HDR_LOGICAL_ID,
    HDR_MSG_ID,
    HDR_SCHEMA,
    HDR_TASK_ID,
)
from ._types import Outbound

if TYPE_CHECKING:
    from opentelemetry.trace import Span


class PubAck(msgspec.Struct, frozen=True):
    """The server's acknowledgement of a stored message.

    Attributes:
        stream: the stream that stored it.
        seq: its sequence there (of the original, for a duplicate).
        duplicate: ``True`` when the server dropped it as a repeated ``Nats-Msg-Id``.
        domain: the JetStream domain, if any.
    """

    stream: str
    seq: int
    duplicate: bool = False
    domain: str | None = None


class _PubAckReply(msgspec.Struct, frozen=True):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    domain: str | None = None
    error: dict[str, Any] | None = None


_REPLY_DECODER: Final = msgspec.json.Decoder(_PubAckReply)

STORE_FAILED: Final = 10077
"""JetStream API error code of a failed store; with a description ``maximum ...
exceeded`` the stream is at its limit and discards new messages (a full stream)."""


def _is_full(error: dict[str, Any]) -> bool:
    description = str(error.get("description", ""))
    return error.get("err_code") == STORE_FAILED and description.startswith("maximum ")


def as_stream_full(exc: APIError, subject: str) -> StreamFull | None:
    """:class:`StreamFull` if ``exc`` (from ``JetStreamContext.publish``) is a full
    stream's refusal, else ``None``.

    Args:
        exc: the error the publish raised.
        subject: the subject it published on (named in the error).
    """
    error = {"err_code": exc.err_code, "description": exc.description or ""}
    return StreamFull(subject, str(exc.description)) if _is_full(error) else None


WRONG_LAST_SEQUENCE: Final = 10071
"""JetStream API error code "wrong last sequence": a create-only publish
(:attr:`Outbound.create_only`) found its subject already holding a message."""


def outbound_headers(out: Outbound, causation_id: str | None = None) -> dict[str, str]:
    """The NATS headers of ``out`` (DESIGN section 3).

    Args:
        out: the message.
        causation_id: used when ``out.causation_id`` is ``None``.
    """
    hdr = dict(out.headers) if out.headers else {}
    if out.create_only:  # no dedupe id: another publisher could pre-empt it
        hdr.pop(HDR_MSG_ID, None)
        hdr[HDR_EXPECTED_LAST_SUBJECT_SEQ] = "0"
        hdr[HDR_LOGICAL_ID] = out.msg_id
    else:
        hdr[HDR_MSG_ID] = out.msg_id
    if isinstance(out.payload, msgspec.Struct):
        hdr[HDR_SCHEMA] = schema_tag(out.payload)
    if out.task_id is not None:
        hdr[HDR_TASK_ID] = out.task_id
    causation = out.causation_id if out.causation_id is not None else causation_id
    if causation is not None:
        hdr[HDR_CAUSATION] = causation
    if out.data_class is not None:
        hdr[HDR_DATA_CLASS] = out.data_class
    return hdr


class Publisher:
    """Publishes :class:`Outbound` messages to JetStream and waits for their PubAcks.

    Structs are encoded once with the shared msgspec encoder. Every message is sent
    with a reply subject under one inbox owned by the publisher; PubAcks are matched
    to futures by that subject, so ``publish_many`` writes the whole lot before
    awaiting any PubAck (one round trip for the lot, not one per message) and no
    per-message task, semaphore or request subscription is involved. The server
    drops a repeated ``Nats-Msg-Id`` within the stream's duplicate window, so
    re-publishing after a crash is safe.

    Args:
        js: a JetStream context (its connection is used).
        timeout_s: seconds to wait for the PubAcks of one call.
    """

    __slots__ = (
        "_create_only",
        "_init_lock",
        "_nc",
        "_next",
        "_pending",
        "_prefix",
        "_traced",
        "timeout_s",
    )

    def __init__(self, js: JetStreamContext, *, timeout_s: float = 5.0) -> None:
        self._nc = js._nc  # the connection; nats-py exposes no public accessor
        self.timeout_s = timeout_s
        self._prefix = ""
        self._next = 0
        self._pending: dict[str, asyncio.Future[PubAck]] = {}
        self._create_only: set[str] = set()  # reply subjects of create-only publishes
        self._init_lock = asyncio.Lock()
        self._traced = publish_middleware()

    def handed_over(self, out: Outbound, headers: dict[str, str], stream: str) -> None:
        """Record ``out`` as sent although it is handed over in memory
        (:class:`~sitemesh.bus.LocalWorkers`): the send middleware adds its headers (a
        trace context) to ``headers`` and ends its send span at once, with stream
        sequence 0 (never stored)."""
        traced = self._traced
        if traced is None:
            return
        started = time.perf_counter()
        token = traced.start(out, headers)
        traced.finish([token], [PubAck(stream=stream, seq=0)], None, started)

    async def _start(self) -> str:
        async with self._init_lock:
            if not self._prefix:
                prefix = self._nc.new_inbox() + "."
                await self._nc.subscribe(prefix + "*", cb=self._on_reply)
                self._prefix = prefix
        return self._prefix

    async def _on_reply(self, msg: Msg) -> None:
        fut = self._pending.pop(msg.subject, None)
        create_only = msg.subject in self._create_only
        self._create_only.discard(msg.subject)
        if fut is None or fut.done():
            return
        if msg.headers and msg.headers.get("Status") == "503":
            fut.set_exception(NoStreamResponseError())
            return
        try:
            reply = _REPLY_DECODER.decode(msg.data)
            if reply.error is not None:
                if create_only and reply.error.get("err_code") == WRONG_LAST_SEQUENCE:
                    # already stored (a redelivery re-publishing it): not an error
                    fut.set_result(PubAck(reply.stream, 0, True, reply.domain))
                    return
                if _is_full(reply.error):  # the subject is filled in by _publish
                    fut.set_exception(StreamFull("", str(reply.error["description"])))
                    return
                APIError.from_error(reply.error)  # raises the fitting subclass
        except (APIError, msgspec.DecodeError) as exc:
            fut.set_exception(exc)
            return
        fut.set_result(PubAck(reply.stream, reply.seq, reply.duplicate, reply.domain))

    async def publish(self, out: Outbound, *, causation_id: str | None = None) -> PubAck:
        """Publish one message and wait for its PubAck.

        Args:
            out: the message.
            causation_id: ``sm-causation-id`` when ``out`` has none.

        Returns:
            The PubAck (``duplicate=True`` when the server dropped it as a repeat).

        Raises:
            StreamFull: its stream is at its limit and refused it.
            TransientError: no PubAck within ``timeout_s``.
            nats.js.errors.APIError: the server rejected it (no stream, too large...).
        """
        acks = await self.publish_many((out,), causation_id=causation_id)
        return acks[0]

    async def publish_many(
        self, outs: Iterable[Outbound], *, causation_id: str | None = None
    ) -> Sequence[PubAck]:
        """Publish messages pipelined: send all, then await all PubAcks.

        Args:
            outs: the messages, published in order.
            causation_id: ``sm-causation-id`` for those that have none.

        Returns:
            One PubAck per message, in order.

        Raises:
            StreamFull: a stream at its limit refused one of them (others may have
                been stored; :meth:`publish_each` tells which).
            TransientError: not every PubAck arrived within ``timeout_s``.
            nats.js.errors.APIError: the server rejected one of them.
        """
        results = await self._publish(outs, causation_id, each=False)
        return results  # type: ignore[return-value]  # each=False: PubAcks only

    async def publish_each(
        self, outs: Iterable[Outbound], *, causation_id: str | None = None
    ) -> Sequence[PubAck | Exception]:
        """Like :meth:`publish_many`, but one outcome per message rather than the first
        error: its PubAck, or what its answer raised (:class:`StreamFull`,
        ``nats.js.errors.APIError``; :class:`TransientError` when none came within
        ``timeout_s``). The worker runtime re-publishes only the refused ones.
        """
        return await self._publish(outs, causation_id, each=True)

    async def _publish(
        self, outs: Iterable[Outbound], causation_id: str | None, *, each: bool
    ) -> Sequence[PubAck | Exception]:
        prefix = self._prefix or await self._start()
        nc, pending = self._nc, self._pending
        new_future = asyncio.get_running_loop().create_future
        futures: list[asyncio.Future[PubAck]] = []
        subjects: list[str] = []
        traced = self._traced
        spans: list[Span] = []
        started = time.perf_counter() if traced is not None else 0.0
        try:
            for out in outs:
                payload = out.payload
                data = payload if isinstance(payload, bytes) else ENCODER.encode(payload)
                self._next += 1
                reply = prefix + str(self._next)
                fut: asyncio.Future[PubAck] = new_future()
                pending[reply] = fut
                futures.append(fut)
                subjects.append(out.subject)
                if out.create_only:
                    self._create_only.add(reply)
                headers = outbound_headers(out, causation_id)
                if traced is not None:
                    spans.append(traced.start(out, headers))
                await nc.publish(out.subject, data, reply=reply, headers=headers)
        except BaseException as exc:
            if spans:  # traced: end what was started
                traced.finish(spans, None, exc, started)  # type: ignore[union-attr]
            raise
        if not futures:
            return ()
        if each:
            results = await self._each(futures, subjects)
            if traced is not None:
                failed = next((r for r in results if isinstance(r, Exception)), None)
                stored = None if failed else [r for r in results if isinstance(r, PubAck)]
                traced.finish(spans, stored, failed, started)
            return results
        try:
            acks = await self._acks(futures)
        except StreamFull:
            outcomes = self._each_done(futures, subjects)
            named = next(r for r in outcomes if isinstance(r, StreamFull))
            if traced is not None:
                traced.finish(spans, None, named, started)
            raise named from None
        except BaseException as exc:
            if traced is not None:
                traced.finish(spans, None, exc, started)
            raise
        if traced is not None:
            traced.finish(spans, acks, None, started)
        return list(acks)

    async def _each(
        self, futures: list[asyncio.Future[PubAck]], subjects: list[str]
    ) -> list[PubAck | Exception]:
        """Each future's PubAck or exception, within ``timeout_s``."""
        try:
            await asyncio.wait(futures, timeout=self.timeout_s)
        finally:
            self._forget(futures)
        return self._each_done(futures, subjects)

    def _each_done(
        self, futures: list[asyncio.Future[PubAck]], subjects: list[str]
    ) -> list[PubAck | Exception]:
        out: list[PubAck | Exception] = []
        for fut, subject in zip(futures, subjects, strict=True):
            if not fut.done() or fut.cancelled():
                out.append(TransientError(f"no PubAck within {self.timeout_s}s", retry_after_s=1.0))
            elif isinstance(exc := fut.exception(), StreamFull):
                out.append(StreamFull(subject, exc.limit))
            elif exc is not None:
                out.append(exc if isinstance(exc, Exception) else TransientError(str(exc)))
            else:
                out.append(fut.result())
        return out

    async def _acks(self, futures: list[asyncio.Future[PubAck]]) -> Sequence[PubAck]:
        """Await the PubAcks of ``futures`` (in order) within ``timeout_s``."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if len(futures) == 1:
                    return (await futures[0],)
                return await asyncio.gather(*futures)
        except TimeoutError:
            raise TransientError(
                f"no PubAck within {self.timeout_s}s for {len(futures)} message(s)",
                retry_after_s=1.0,
            ) from None
        finally:
            self._forget(futures)

    def _forget(self, futures: list[asyncio.Future[PubAck]]) -> None:
        """Drop the pending entries of ``futures`` still unanswered, and cancel them."""
        pending = self._pending
        if len(pending) and not all(f.done() for f in futures):
            for key in [k for k, f in pending.items() if f in futures]:
                del pending[key]
                self._create_only.discard(key)
            for f in futures:
                f.cancel()
