"""Process setup: tracer and meter providers from :class:`~sitemesh.config.TelemetrySettings`.

Call :func:`setup_telemetry` once when a process starts (before building its
workers: the runtime asks for its middleware at construction) and
:func:`shutdown_telemetry` on exit, which flushes what is buffered. With
``exporter="none"`` nothing is installed and the runtime stays untraced.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    ConsoleMetricExporter,
    MetricExporter,
    MetricReader,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased, TraceIdRatioBased
from opentelemetry.trace import Tracer

from ..config import TelemetrySettings
from ._metrics import Instruments
from ._prometheus import prometheus_reader
from ._redact import RedactingSpanExporter

log = logging.getLogger("sitemesh.telemetry")

INSTRUMENTATION: Final = "sitemesh"
"""Instrumentation scope name of every span and metric."""


@dataclass(frozen=True, slots=True)
class Telemetry:
    """The telemetry of this process (see :func:`setup_telemetry`).

    Attributes:
        settings: what it was built from.
        tracer: the runtime's tracer.
        instruments: the runtime's metric instruments.
        tracer_provider: owns the span processors and exporters.
        meter_provider: owns the metric readers.
        redactor: the attribute guard in front of the span exporter.
    """

    settings: TelemetrySettings
    tracer: Tracer
    instruments: Instruments
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    redactor: RedactingSpanExporter
    task_ref: Callable[[str], str | None] = lambda task_id: None
    """What a task id becomes in span attributes (``telemetry.task_ids``); ``None``: omit."""

    def scrub(self, value: str | None, task_id: str | None) -> str | None:
        """``value`` (a subject or message id) with ``task_id`` replaced by its span form;
        ``None`` when the task id must be omitted and ``value`` contains it."""
        if value is None or not task_id or task_id not in value:
            return value
        ref = self.task_ref(task_id)
        if ref == task_id:
            return value
        return None if ref is None else value.replace(task_id, ref)


_active: Telemetry | None = None
_global_installed = False


def _task_ref(
    settings: TelemetrySettings, task_ref: Callable[[str], str] | None
) -> Callable[[str], str | None]:
    from ..policy import BoundaryRefs  # the reference format; policy does not import telemetry

    if settings.task_ids == "raw":
        return lambda task_id: task_id
    if settings.task_ids == "omit":
        return lambda task_id: None
    if task_ref is None:
        return lambda task_id: task_id if BoundaryRefs.is_ref(task_id) else None
    mapper = task_ref
    return lambda task_id: task_id if BoundaryRefs.is_ref(task_id) else mapper(task_id)


def active() -> Telemetry | None:
    """This process's telemetry, or ``None`` when it is not set up (exporter ``none``)."""
    return _active


EXPORT_LOGGERS: Final = (
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)
"""Where the OTLP/HTTP exporters log a failed export (an ERROR per batch)."""

EXPORT_FAILURE_EVERY_S: Final = 600.0
"""A collector that refuses exports is logged once, then once per this many seconds."""


class ExportFailures(logging.Filter):
    """Turn the OTLP exporters' error per failed batch into one warning per period.

    A collector that is down or does not accept metrics would otherwise make every
    process log an ERROR each ``metric_interval_s`` (30 s) and per span batch. The
    first failure passes as a WARNING; the next ones within ``every_s`` are counted
    and dropped, and the first after it says how many there were.

    Args:
        every_s: seconds between two logged failures.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self, every_s: float = EXPORT_FAILURE_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self._every_s = every_s
        self._clock = clock
        self._next = 0.0
        self._dropped = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = self._clock()
        if now < self._next:
            self._dropped += 1
            return False
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        note = f" ({self._dropped} more since the last one)" if self._dropped else ""
        record.msg = f"{record.getMessage()}{note}; telemetry export failures are logged "
        record.msg += f"once per {self._every_s:.0f} s"
        record.args = None
        self._next, self._dropped = now + self._every_s, 0
        return True


def _quiet_export_failures() -> None:
    """One :class:`ExportFailures` on each exporter logger (idempotent)."""
    shared = ExportFailures()
    for name in EXPORT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExportFailures) for f in logger.filters):
            logger.addFilter(shared)


class _NoSpans(SpanExporter):
    """Exports nothing: metrics without tracing (``exporter="none"`` with Prometheus)."""

    def export(self, spans: object) -> SpanExportResult:
        del spans
        return SpanExportResult.SUCCESS


def _span_exporter(settings: TelemetrySettings, service_name: str) -> SpanExporter:
    if settings.exporter == "console":
        return ConsoleSpanExporter(service_name=service_name)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    base = settings.otlp_endpoint
    return OTLPSpanExporter(endpoint=f"{base.rstrip('/')}/v1/traces" if base else None)


def _metric_exporter(settings: TelemetrySettings) -> MetricExporter:
    if settings.exporter == "console":
        return ConsoleMetricExporter()
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    base = settings.otlp_endpoint
    return OTLPMetricExporter(endpoint=f"{base.rstrip('/')}/v1/metrics" if base else None)


def setup_telemetry(
    settings: TelemetrySettings,
    *,
    site: str | None = None,
    role: str | None = None,
    span_exporter: SpanExporter | None = None,
    metric_reader: MetricReader | None = None,
    task_ref: Callable[[str], str] | None = None,
    prometheus: bool = False,
) -> Telemetry | None:
    """Install tracing and metrics for this process. Idempotent.

    Args:
        settings: exporter, endpoint, service name, sampling.
        site: the process's site (resource attribute ``sitemesh.site``).
        role: its role (resource attribute ``sitemesh.role``); the process's
            ``service.name`` is ``<settings.service_name>-<role>``
            (:meth:`~sitemesh.config.TelemetrySettings.service_for`: ``sitemesh-router``),
            so each process is a service of its own in a trace viewer.
        span_exporter: export spans here instead (tests: an in-memory exporter;
            spans are exported synchronously as they end). Installs tracing even
            with ``exporter="none"``.
        metric_reader: read metrics with this reader instead (tests).
        task_ref: the site's task id -> opaque reference function
            (``BoundaryRefs(key).ref`` bound to the site), used when
            ``settings.task_ids`` is ``reference``; without it only values that
            already are references (on the hub) are kept.
        prometheus: also read the metrics for a Prometheus scrape of ``/metrics``
            (:func:`sitemesh.telemetry.metrics_response`); installs the metrics even
            with ``exporter="none"`` (spans are then not sampled, nothing is pushed).

    Returns:
        The process's telemetry; the one already set up when called again (the
        arguments are then ignored), ``None`` when the exporter is ``none`` and
        neither ``span_exporter`` nor ``prometheus`` is given.
    """
    global _active, _global_installed
    if _active is not None:
        return _active
    if settings.exporter == "none" and span_exporter is None and not prometheus:
        return None
    _quiet_export_failures()
    tracing = settings.exporter != "none" or span_exporter is not None
    service_name = settings.service_for(role)
    resource = Resource.create(
        {
            "service.name": service_name,
            "service.namespace": "sitemesh",
            "service.instance.id": f"{socket.gethostname()}:{os.getpid()}",
            **({"sitemesh.site": site} if site else {}),
            **({"sitemesh.role": role} if role else {}),
        }
    )
    sampler = ParentBased(TraceIdRatioBased(settings.sample_ratio)) if tracing else ALWAYS_OFF
    tracer_provider = TracerProvider(resource=resource, sampler=sampler)
    if span_exporter is not None:
        redactor = RedactingSpanExporter(
            span_exporter, settings.max_attribute_chars, trusted_scope=INSTRUMENTATION
        )
        tracer_provider.add_span_processor(SimpleSpanProcessor(redactor))
    else:
        redactor = RedactingSpanExporter(
            _span_exporter(settings, service_name) if tracing else _NoSpans(),
            settings.max_attribute_chars,
            trusted_scope=INSTRUMENTATION,
        )
        if tracing:
            tracer_provider.add_span_processor(BatchSpanProcessor(redactor))
    readers: list[MetricReader] = []
    if metric_reader is not None:
        readers.append(metric_reader)
    elif settings.exporter != "none":
        readers.append(
            PeriodicExportingMetricReader(
                _metric_exporter(settings),
                export_interval_millis=settings.metric_interval_s * 1000,
            )
        )
    if prometheus:
        readers.append(cast(MetricReader, prometheus_reader()))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    if not _global_installed:  # OpenTelemetry allows setting the globals once per process
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(meter_provider)
        _global_installed = True
    _active = Telemetry(
        task_ref=_task_ref(settings, task_ref),
        settings=settings,
        tracer=tracer_provider.get_tracer(INSTRUMENTATION),
        instruments=Instruments(meter_provider.get_meter(INSTRUMENTATION)),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        redactor=redactor,
    )
    from ..bus import install_middleware
    from ._middleware import publish_middleware, worker_middleware

    # injected into the bus runtime: workers and publishers built from now on are traced
    install_middleware(worker=worker_middleware, publish=publish_middleware)
    log.info("telemetry: exporter %s, sampling %.2f", settings.exporter, settings.sample_ratio)
    return _active


def shutdown_telemetry() -> None:
    """Flush and shut down what :func:`setup_telemetry` installed. Safe to call twice.

    Workers built afterwards are untraced until :func:`setup_telemetry` is called
    again.
    """
    global _active
    t, _active = _active, None
    if t is None:
        return
    for shutdown in (t.tracer_provider.shutdown, t.meter_provider.shutdown):
        try:
            shutdown()
        except Exception as exc:  # an unreachable collector must not fail the exit
            log.warning("telemetry shutdown: %s", exc)
