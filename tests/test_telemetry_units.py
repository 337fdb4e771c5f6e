"""Telemetry pieces without a server: setup, propagation, the guard, model and tool calls."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

import sitemesh.telemetry as telemetry
from sitemesh.config import TelemetrySettings, load_settings
from sitemesh.errors import ModelRateLimited
from sitemesh.telemetry import (
    GENAI_OPT_IN,
    RedactingSpanExporter,
    destination_template,
    extract,
    inject,
    model_call,
    publish_middleware,
    refuses,
    setup_telemetry,
    shutdown_telemetry,
    tool_call,
    worker_middleware,
)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    shutdown_telemetry()
    exporter = InMemorySpanExporter()
    t = setup_telemetry(
        TelemetrySettings(semconv_stability_opt_in=GENAI_OPT_IN),
        span_exporter=exporter,
        metric_reader=InMemoryMetricReader(),
    )
    assert t is not None
    yield exporter
    shutdown_telemetry()


def test_public_api() -> None:
    assert sorted(telemetry.__all__) == sorted(
        [
            "ALLOWED_ATTRIBUTES", "GENAI_OPT_IN", "METRICS_PATH", "Instruments", "ModelCall",
            "PublishMiddleware", "metrics_response",
            "RedactingSpanExporter", "Telemetry", "WorkerMiddleware", "active", "allowed_key",
            "destination_template", "extract", "guard_attributes", "inject", "model_call",
            "publish_middleware", "refuses", "setup_telemetry", "shutdown_telemetry",
            "tool_call", "worker_middleware",
            "BREAKER_VALUES", "BreakerSource", "watch_breakers",
        ]
    )  # fmt: skip


def test_settings_group_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEMESH_TELEMETRY_EXPORTER", "otlp")
    monkeypatch.setenv("SITEMESH_TELEMETRY_OTLP_ENDPOINT", "http://collector:4318")
    monkeypatch.setenv("SITEMESH_TELEMETRY_SAMPLE_RATIO", "0.25")
    s = load_settings()
    assert s.telemetry.exporter == "otlp"
    assert s.telemetry.otlp_endpoint == "http://collector:4318"
    assert s.telemetry.sample_ratio == 0.25
    assert s.to_env()["SITEMESH_TELEMETRY_EXPORTER"] == "otlp"


def test_none_installs_nothing_and_the_runtime_stays_untraced() -> None:
    shutdown_telemetry()
    assert setup_telemetry(TelemetrySettings(exporter="none")) is None
    assert telemetry.active() is None
    kw = {"site": "eu1", "role": "planner", "stream": "WORK_eu1", "durable": "planner"}
    assert worker_middleware(**kw) is None
    assert publish_middleware() is None
    with model_call(provider="openai", model="m") as call:  # no-ops
        call.record(input_tokens=1, output_tokens=2)
    with tool_call("kb"):
        pass


def test_setup_is_idempotent(spans: InMemorySpanExporter) -> None:
    first = telemetry.active()
    assert setup_telemetry(TelemetrySettings(exporter="console")) is first
    shutdown_telemetry()
    shutdown_telemetry()  # twice is fine
    assert telemetry.active() is None


def test_console_and_otlp_exporters_build() -> None:
    for exporter in ("console", "otlp"):
        shutdown_telemetry()
        t = setup_telemetry(
            TelemetrySettings(exporter=exporter, otlp_endpoint="http://127.0.0.1:9"),  # type: ignore[arg-type]
            metric_reader=InMemoryMetricReader(),
        )
        assert t is not None
        assert type(t.redactor.inner).__name__ == (
            "ConsoleSpanExporter" if exporter == "console" else "OTLPSpanExporter"
        )
        t.tracer_provider.shutdown()  # nothing was exported; don't wait on the endpoint
        telemetry._setup._active = None


def test_propagation_round_trip(spans: InMemorySpanExporter) -> None:
    t = telemetry.active()
    assert t is not None
    with t.tracer.start_as_current_span("parent") as span:
        headers: dict[str, str] = {"Nats-Msg-Id": "x"}
        inject(headers)
    assert headers["traceparent"].split("-")[1] == f"{span.get_span_context().trace_id:032x}"
    ctx = extract(headers)
    with t.tracer.start_as_current_span("child", context=ctx) as child:
        pass
    assert child.parent is not None  # type: ignore[attr-defined]
    assert child.parent.span_id == span.get_span_context().span_id  # type: ignore[attr-defined]
    assert extract({}) == extract(None)
    with t.tracer.start_as_current_span("root", context=extract({"traceparent": "junk"})) as r:
        pass
    assert r.parent is None  # type: ignore[attr-defined]


def test_destination_template() -> None:
    assert destination_template("sm.v1.event.eu1.t-42.router") == "sm.v1.event.eu1.{task}.router"
    assert (
        destination_template("sm.v1.event.eu1.t-42.final.acme")
        == "sm.v1.event.eu1.{task}.final.acme"
    )
    assert destination_template("sm.v1.in.eu1.t-42") == "sm.v1.in.eu1.{task}"
    assert destination_template("sm.v1.work.eu1.planner") == "sm.v1.work.eu1.planner"


@pytest.mark.parametrize(
    "value",
    ["jane.doe@example.com", "+44 20 7946 0958", "4454794511390933", "460-89-9847",
     "DE89370400440532013000", "10.2.3.4", "x" * 300, ["ok", "a@b.example"]],
)  # fmt: skip
def test_guard_refuses_personal_shapes_and_long_text(value: Any) -> None:
    assert refuses(value)


@pytest.mark.parametrize(
    "value", ["pii-12", "sm.v1.event.eu1.{task}", "host-1:4242", "WORK_eu1", 123456789012, True]
)
def test_guard_accepts_ids_and_names(value: Any) -> None:
    assert not refuses(value)


def test_redacting_exporter_drops_and_counts() -> None:
    inner = InMemorySpanExporter()
    redactor = RedactingSpanExporter(inner, max_chars=64)
    span = ReadableSpan(
        name="s",
        attributes={
            "sitemesh.task_id": "pii-1",
            "sitemesh.note": "mail jane.doe@example.com",
            "url.full": "https://api.example/v1?token=x",  # not on the allow-list
        },
        status=Status(StatusCode.ERROR, "failed for Jane, +44 20 7946 0958"),
        kind=SpanKind.INTERNAL,
    )
    assert redactor.export([span]) is SpanExportResult.SUCCESS
    (out,) = inner.get_finished_spans()
    assert dict(out.attributes or {}) == {"sitemesh.task_id": "pii-1"}
    assert out.status.description == "[refused]"
    assert redactor.refused == 3


def test_model_call_genai_and_sitemesh_attributes(spans: InMemorySpanExporter) -> None:
    with model_call(
        provider="openai", model="gpt-x", policy_version="abc", data_class="internal", route="cloud"
    ) as call:
        call.record(input_tokens=10, output_tokens=5, cost_usd=0.002)
    (span,) = spans.get_finished_spans()
    a = dict(span.attributes or {})
    assert span.name == "chat gpt-x"
    assert span.kind is SpanKind.CLIENT
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.request.model"] == "gpt-x"
    assert a["gen_ai.usage.input_tokens"] == 10
    assert a["gen_ai.usage.output_tokens"] == 5
    assert a["sitemesh.cost_usd"] == 0.002
    assert a["sitemesh.policy_version"] == "abc"
    assert a["sitemesh.route"] == "cloud"


def test_model_call_without_opt_in_has_no_genai_attributes() -> None:
    shutdown_telemetry()
    exporter = InMemorySpanExporter()
    setup_telemetry(TelemetrySettings(), span_exporter=exporter)
    try:
        with model_call(provider="anthropic", model="m") as call:
            call.record(input_tokens=1, output_tokens=1)
    finally:
        shutdown_telemetry()
    (span,) = exporter.get_finished_spans()
    assert not [k for k in (span.attributes or {}) if k.startswith("gen_ai.")]
    assert (span.attributes or {})["sitemesh.tokens.input"] == 1


def test_tool_call_records_the_error_class_only(spans: InMemorySpanExporter) -> None:
    with pytest.raises(ModelRateLimited), tool_call("kb_search"):
        raise ModelRateLimited("rate limited while asking about jane.doe@example.com")
    (span,) = spans.get_finished_spans()
    assert span.status.description == "ModelRateLimited"
    assert (span.attributes or {})["error.type"] == "ModelRateLimited"
    assert not span.events  # no exception event: its message may quote data


async def test_trace_model_calls_table_is_optional(tmp_path: Any) -> None:
    import sqlite3

    from rich.console import Console

    from sitemesh.cli._trace_cmds import _model_calls, _model_table

    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    sqlite3.connect(path).close()
    assert await _model_calls(url, "t1") is None  # no table: degrade
    with sqlite3.connect(path) as db:
        db.execute(
            "create table model_calls (id integer primary key, task_id text, agent text,"
            " model text, tokens_in int, tokens_out int, cost_nanos int, latency_ms real,"
            " error text)"
        )
        db.execute(
            "insert into model_calls (task_id, agent, model, tokens_in, tokens_out,"
            " cost_nanos, latency_ms, error) values"
            " ('t1', 'planner', 'gpt-x', 100, 20, 1500000, 812.5, 'quota for jane@x.example')"
        )
    rows = await _model_calls(url, "t1")
    assert rows is not None
    assert len(rows) == 1
    console = Console(record=True, width=160)
    console.print(_model_table(rows))
    text = console.export_text()
    assert "gpt-x" in text
    assert "120 tokens, $0.0015" in text
    assert "jane" not in text  # the error text is never shown


def test_a_breaker_source_that_raises_is_skipped_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider

    from sitemesh.telemetry import BREAKER_VALUES, Instruments

    reader = InMemoryMetricReader()
    instruments = Instruments(MeterProvider(metric_readers=[reader]).get_meter("t"))

    def broken() -> list[tuple[str, str, str]]:
        raise RuntimeError("registry gone")

    instruments.watch_breakers("eu1", "planner", broken)
    instruments.watch_breakers("eu1", "triage", lambda: [("tool", "kb_search", "half_open")])
    with caplog.at_level("WARNING", logger="sitemesh.telemetry"):
        for _ in range(3):  # three scrapes
            data = reader.get_metrics_data()
    assert data is not None
    points = [
        (dict(p.attributes), p.value)
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == "sitemesh.breaker.state" for p in m.data.data_points
    ]  # fmt: skip
    assert points == [({"sitemesh.site": "eu1", "sitemesh.role": "triage",
                        "sitemesh.dependency.kind": "tool", "sitemesh.dependency": "kb_search"},
                       BREAKER_VALUES["half_open"])]  # fmt: skip
    assert caplog.text.count("cannot read the breaker states of planner") == 1
