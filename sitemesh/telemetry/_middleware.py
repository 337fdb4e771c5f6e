"""Tracing and metrics middleware around the worker runtime and the publisher.

The runtime asks for its middleware once, at construction
(:func:`worker_middleware`, :func:`publish_middleware`); when telemetry is not set
up both return ``None`` and the runtime runs its untraced path unchanged. Handlers
and agents never see OpenTelemetry.

Spans (OpenTelemetry semantic conventions for messaging, v1.37):

* ``process <destination>`` (``CONSUMER``) per consumed message, a child of the
  context extracted from its headers, around decode, handler, publishing and
  settling; its outcome (``ack``/``nak``/``dead_letter``) in ``sitemesh.outcome``;
* ``send <destination>`` (``PRODUCER``) per published message, a child of the
  current span, whose context is injected into the message's headers, so the next
  hop's process span is its child: one trace per task, across processes and the
  site/cloud boundary;
* model and tool calls: :mod:`sitemesh.telemetry._calls`.

Only ids, names and counts are set, each through the attribute guard; an
exception is recorded by its class name, never its message (which may quote data).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from ..bus import (
    HDR_DATA_CLASS,
    HDR_TASK_ID,
    LOCAL_REPLY_PREFIX,
    Action,
    Outbound,
    Settle,
    message_id,
)
from . import _setup
from ._propagation import extract, inject
from ._redact import guard_attributes

if TYPE_CHECKING:
    from nats.aio.msg import Msg

    from ..bus import PubAck

SYSTEM: Final = "nats"
"""``messaging.system`` of every messaging span."""

_TEMPLATED_KINDS: Final = frozenset({"event", "in"})
"""Subject kinds whose fifth token is a task id (``sm.v1.event.<site>.<task>.<role>``,
``sm.v1.in.<site>.<task>``)."""


def destination_template(subject: str) -> str:
    """``subject`` with its task-id token replaced by ``{task}``, for span names.

    Span names must have low cardinality (messaging conventions, "Span name");
    ``sm.v1.event.eu1.t-42.router`` becomes ``sm.v1.event.eu1.{task}.router``, and an
    answer ``sm.v1.event.eu1.t-42.final.acme`` ``sm.v1.event.eu1.{task}.final.acme``.
    """
    parts = subject.split(".")
    if len(parts) in (5, 6, 7) and parts[2] in _TEMPLATED_KINDS:
        return ".".join((*parts[:4], "{task}", *parts[5:]))
    return subject


def _ack_fields(reply: str) -> tuple[int, int, int, int]:
    """``(delivered, stream_seq, stored_ns, pending)`` from a JetStream ack subject; for
    a message handed over in memory (``$SM.LOCAL.<ns>``, :data:`LOCAL_REPLY_PREFIX`),
    ``(1, 0, <ns>, -1)``: never stored, no consumer pending count."""
    if reply.startswith(LOCAL_REPLY_PREFIX):
        return 1, 0, int(reply.removeprefix(LOCAL_REPLY_PREFIX)), -1
    t = reply.split(".")
    if len(t) == 9:
        return int(t[4]), int(t[5]), int(t[7]), int(t[8])
    return int(t[6]), int(t[7]), int(t[9]), int(t[10])


@dataclass(slots=True)
class _Process:
    """What send spans inherit from the message being processed."""

    site: str
    role: str
    span: Span
    has_task_id: bool


_PROCESS: ContextVar[_Process | None] = ContextVar("sitemesh_process", default=None)


class WorkerMiddleware:
    """Tracing and metrics around one worker's messages.

    Args:
        telemetry: the process's telemetry.
        site: the worker's site.
        role: its role.
        stream: its stream.
        durable: its durable consumer (``messaging.consumer.group.name``).
    """

    __slots__ = ("_attrs", "_max", "_metric_attrs", "_t", "role", "site", "stream")

    def __init__(
        self, telemetry: _setup.Telemetry, *, site: str, role: str, stream: str, durable: str
    ) -> None:
        self._t = telemetry
        self.site, self.role, self.stream = site, role, stream
        self._max = telemetry.settings.max_attribute_chars
        self._attrs: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.consumer.group.name": durable,
            "sitemesh.site": site,
            "sitemesh.role": role,
            "sitemesh.stream": stream,
        }
        self._metric_attrs = {"sitemesh.site": site, "sitemesh.role": role}
        # series that exist from the start at 0, so a scrape (rate(), alerts) sees
        # the role before its first redelivery or dead letter
        telemetry.instruments.redeliveries.add(0, self._metric_attrs)
        telemetry.instruments.dead_letters.add(0, self._metric_attrs)

    async def process(self, msg: Msg, settle: Settle) -> None:
        """Run ``settle(msg)`` inside the message's process span and record its metrics.

        Args:
            msg: the delivered JetStream message.
            settle: the runtime's handling of it (decode, handler, publish, settle).
        """
        t = self._t
        headers = msg.headers or {}
        delivered, seq, stored_ns, pending = _ack_fields(msg.reply)
        task_id = headers.get(HDR_TASK_ID)
        attrs = dict(self._attrs)
        attrs.update(
            {
                "messaging.destination.name": destination_template(msg.subject),
                "messaging.message.id": t.scrub(message_id(headers), task_id),
                "messaging.message.body.size": len(msg.data),
                "sitemesh.stream_seq": seq,
                "sitemesh.deliveries": delivered,
                "sitemesh.task_id": t.task_ref(task_id) if task_id else None,
                "sitemesh.data_class": headers.get(HDR_DATA_CLASS),
                "sitemesh.handed_over": True if pending < 0 else None,
            }
        )
        started = time.perf_counter()
        span = t.tracer.start_span(
            f"process {destination_template(msg.subject)}",
            context=extract(headers),
            kind=SpanKind.CONSUMER,
            attributes=guard_attributes(attrs, self._max),
        )
        token = _PROCESS.set(_Process(self.site, self.role, span, task_id is not None))
        ctx_token = otel_context.attach(trace.set_span_in_context(span))
        outcome = "error"
        error_type = ""
        try:
            decision, error = await settle(msg)
            outcome = decision.action.value
            span.set_attribute("sitemesh.outcome", outcome)
            if decision.action is not Action.ACK:
                error_type = decision.error_class or type(error).__name__
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, error_type))
                if decision.action is Action.NAK:
                    span.set_attribute("sitemesh.retry_in_s", round(decision.delay_s, 3))
        except BaseException as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            otel_context.detach(ctx_token)
            _PROCESS.reset(token)
            span.end()
            m = t.instruments
            labels = self._metric_attrs
            m.process_duration.record(time.perf_counter() - started, labels)
            m.hop_latency.record(max(0.0, (time.time_ns() - stored_ns) / 1e9), labels)
            m.consumed.add(1, {**labels, "sitemesh.outcome": outcome})
            if delivered > 1:
                m.redeliveries.add(1, labels)
            if outcome == Action.DEAD_LETTER.value:  # by reason: the error class
                m.dead_letters.add(1, {**labels, "error.type": error_type or "unknown"})
            if pending >= 0:  # a handed-over message knows no consumer's pending count
                m.set_depth(self.site, self.role, self.stream, pending)


class PublishMiddleware:
    """Send spans and trace-context injection for :class:`~sitemesh.bus.Publisher`.

    Args:
        telemetry: the process's telemetry.
    """

    __slots__ = ("_max", "_t")

    def __init__(self, telemetry: _setup.Telemetry) -> None:
        self._t = telemetry
        self._max = telemetry.settings.max_attribute_chars

    def start(self, out: Outbound, headers: dict[str, str]) -> Span:
        """Start the send span of ``out`` and inject its context into ``headers``.

        Args:
            out: the message about to be published.
            headers: its outgoing headers (modified in place).

        Returns:
            The span; pass it to :meth:`finish`.
        """
        proc = _PROCESS.get()
        attrs: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "publish",
            "messaging.destination.name": destination_template(out.subject),
            "messaging.message.id": self._t.scrub(out.msg_id, out.task_id),
            "sitemesh.task_id": self._t.task_ref(out.task_id) if out.task_id else None,
            "sitemesh.data_class": out.data_class,
        }
        if proc is not None:
            attrs["sitemesh.site"] = proc.site
            attrs["sitemesh.role"] = proc.role
            if not proc.has_task_id and out.task_id is not None:  # e.g. ingress derives it
                ref = self._t.task_ref(out.task_id)
                if ref is not None:
                    proc.span.set_attribute("sitemesh.task_id", ref)
                proc.has_task_id = True
        span = self._t.tracer.start_span(
            f"send {destination_template(out.subject)}",
            kind=SpanKind.PRODUCER,
            attributes=guard_attributes(attrs, self._max),
        )
        inject(headers, trace.set_span_in_context(span))
        return span

    def finish(
        self,
        spans: Sequence[Span],
        acks: Sequence[PubAck] | None,
        error: BaseException | None,
        started: float,
    ) -> None:
        """End the send spans of one ``publish_many`` call.

        Args:
            spans: from :meth:`start`, in publish order.
            acks: the PubAcks, in the same order; ``None`` when it failed.
            error: why it failed, if it did.
            started: ``time.perf_counter()`` when publishing began.
        """
        proc = _PROCESS.get()
        labels = {"sitemesh.site": proc.site, "sitemesh.role": proc.role} if proc else {}
        if acks is not None:
            for span, ack in zip(spans, acks, strict=True):
                span.set_attribute("sitemesh.stream", ack.stream)
                span.set_attribute("sitemesh.stream_seq", ack.seq)
                if ack.duplicate:
                    span.set_attribute("sitemesh.duplicate", True)
                span.end()
        else:
            error_type = type(error).__name__ if error is not None else "unknown"
            for span in spans:
                span.set_attribute("error.type", error_type)
                span.set_status(Status(StatusCode.ERROR, error_type))
                span.end()
            labels = {**labels, "error.type": error_type}
        m = self._t.instruments
        m.sent.add(len(spans), labels)
        m.send_duration.record(time.perf_counter() - started, labels)


def worker_middleware(
    *, site: str, role: str, stream: str, durable: str
) -> WorkerMiddleware | None:
    """The middleware of a new worker, or ``None`` when telemetry is not set up."""
    t = _setup.active()
    if t is None:
        return None
    return WorkerMiddleware(t, site=site, role=role, stream=stream, durable=durable)


def publish_middleware() -> PublishMiddleware | None:
    """The middleware of a new publisher, or ``None`` when telemetry is not set up."""
    t = _setup.active()
    return None if t is None else PublishMiddleware(t)
