"""Prometheus ``/metrics`` of a process: the runtime's OpenTelemetry instruments, pulled.

A process that serves its HTTP probes (``SITEMESH_HEALTH_PORT``) also serves
``/metrics`` in the Prometheus text format: :func:`setup_telemetry` adds
OpenTelemetry's ``PrometheusMetricReader`` (``opentelemetry-exporter-prometheus``),
which translates each instrument on every scrape (``sitemesh.hop.latency`` in
seconds becomes ``sitemesh_hop_latency_seconds_bucket``...), and :func:`metrics_response`
renders ``prometheus_client``'s registry. No collector is needed for it, and it
works with any ``telemetry.exporter``, ``none`` included.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request
from starlette.responses import Response

METRICS_PATH: Final = "/metrics"
"""Where a process's HTTP endpoint serves its metrics."""


def prometheus_reader() -> object:
    """A new ``PrometheusMetricReader`` (registered in ``prometheus_client.REGISTRY``
    until its meter provider shuts down)."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    return PrometheusMetricReader()


async def metrics_response(request: Request) -> Response:
    """Starlette endpoint: ``prometheus_client``'s default registry in the text format
    (the process's own ``process_*``/``python_*`` series and, once telemetry is set up,
    every sitemesh instrument)."""
    del request
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
