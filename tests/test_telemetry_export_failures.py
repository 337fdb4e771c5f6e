"""A collector that refuses exports is logged once per period, not as an ERROR per batch."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sitemesh.config import TelemetrySettings
from sitemesh.telemetry import setup_telemetry, shutdown_telemetry
from sitemesh.telemetry._setup import EXPORT_LOGGERS, ExportFailures


class _Refuses(BaseHTTPRequestHandler):
    """A collector without a metrics pipeline: 404 for every OTLP request."""

    hits = 0

    def do_POST(self) -> None:
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        del format, args


@pytest.fixture
def collector() -> Iterator[str]:
    _Refuses.hits = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_refusing_collector_is_one_warning_not_an_error_per_export(
    collector: str, caplog: pytest.LogCaptureFixture
) -> None:
    shutdown_telemetry()
    settings = TelemetrySettings(exporter="otlp", otlp_endpoint=collector, metric_interval_s=3600)
    t = setup_telemetry(settings, site="eu1", role="planner")
    assert t is not None
    try:
        with caplog.at_level(logging.WARNING):
            for n in range(4):
                t.instruments.sent.add(1, {"sitemesh.role": "planner", "n": str(n)})
                t.meter_provider.force_flush()
    finally:
        shutdown_telemetry()
    assert _Refuses.hits >= 4, "positive control: every export reached the collector"
    exporter_records = [r for r in caplog.records if r.name in EXPORT_LOGGERS]
    assert len(exporter_records) == 1, [r.getMessage() for r in exporter_records]
    assert exporter_records[0].levelno == logging.WARNING
    assert "404" in exporter_records[0].getMessage()
    assert "once per 600 s" in exporter_records[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_after_the_period_the_next_failure_says_how_many_were_dropped() -> None:
    now = [0.0]
    f = ExportFailures(every_s=10, clock=lambda: now[0])

    def record(level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord("x", level, __file__, 1, "Failed to export %s", ("metrics",), None)

    first = record()
    assert f.filter(first)
    assert first.levelno == logging.WARNING
    assert first.getMessage().startswith("Failed to export metrics; ")
    now[0] = 5
    assert not f.filter(record())
    assert not f.filter(record())
    assert f.filter(record(logging.INFO))  # below WARNING: untouched
    now[0] = 11
    later = record()
    assert f.filter(later)
    assert "(2 more since the last one)" in later.getMessage()
