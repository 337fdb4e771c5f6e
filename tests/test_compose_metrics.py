"""The compose deployment's metrics stack (``compose/generate.py``) scrapes what the
workers serve and charts only series they emit.

* ``compose/prometheus.yml`` and ``compose/grafana/`` are what the generator gives
  for ``compose/docker-compose.yml`` (``generate.py --check`` passes).
* ``prometheus.yml``: one job per ``sitemesh worker`` service, on that service's
  ``SITEMESH_HEALTH_PORT``, reachable over a network the two share.
* The dashboard parses, its panel ids are unique, and every metric name in its
  PromQL is one a real ``/metrics`` endpoint serves: a process with the runtime's
  telemetry (``setup_telemetry(prometheus=True)``) and its HTTP endpoint
  (``Readiness`` plus ``metrics_response``, as ``run_role`` builds them), after a
  message was handled and a model and tool were called through the runtime's hooks.
* Grafana's provisioning points at the prometheus service and the mounted dashboards.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from sitemesh.bus import Action, Decision, free_port
from sitemesh.config import HealthSettings, Settings, TelemetrySettings
from sitemesh.runtime import Readiness
from sitemesh.telemetry import (
    METRICS_PATH,
    WorkerMiddleware,
    metrics_response,
    model_call,
    setup_telemetry,
    shutdown_telemetry,
    tool_call,
)
from sitemesh.topology._compose import stale_files

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"


def _generator() -> ModuleType:
    """``compose/generate.py`` as a module (it is a script, not in a package)."""
    spec = importlib.util.spec_from_file_location("compose_generate", COMPOSE / "generate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


gen = _generator()


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((COMPOSE / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), path
    return data


def _dashboard() -> dict[str, Any]:
    data = json.loads((COMPOSE / "grafana" / "dashboards" / "sitemesh.json").read_text())
    assert isinstance(data, dict)
    return data


# -- PromQL metric names --------------------------------------------------------------------
_STRIP = (
    r'"(?:[^"\\]|\\.)*"',  # strings (label values, $site)
    r"\{[^}]*\}",  # label matchers
    r"\[[^\]]*\]",  # ranges ($__rate_interval)
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)",  # label lists
    r"(?<![\w:])\d[\w.]*",  # numbers (0.95, 3600)
)
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset",
             "bool", "and", "or", "unless", "inf", "nan"}  # fmt: skip


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana ``label_values(metric, label)``
    variable query) selects: identifiers that are neither a function (followed by
    ``(``), a keyword, nor inside a label list, matcher, range or string."""
    expr = re.sub(r"label_values\(\s*([\w:]+)\s*,[^)]*\)", r"\1", expr)
    for pattern in _STRIP:
        expr = re.sub(pattern, " ", expr)
    return {
        m.group(1)
        for m in re.finditer(r"([A-Za-z_:][\w:]*)(\s*\()?", expr)
        if not m.group(2) and m.group(1).lower() not in _KEYWORDS
    }


def test_metric_names_finds_selectors_only() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, sitemesh_role) (rate(a_bucket{x=~"$site", '
        'y="b c"}[$__rate_interval]))) / on (le) b_total offset 5m + 3600 * c'
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}
    assert metric_names("label_values(target_info, sitemesh_site)") == {"target_info"}


def _queries(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in board["templating"]["list"] if v["type"] == "query"]
    return exprs


# -- a real /metrics endpoint ------------------------------------------------------------------


class RateLimitError(Exception):
    """What a tool adapter raises when its API refuses a call for its rate."""


async def _served_page() -> str:
    """The ``/metrics`` page of a worker-like process once it handled a message
    (redelivered, then dead-lettered), made two model calls and two tool calls (one
    rate-limited), its recorder-side lag was set and it watches two breakers."""
    shutdown_telemetry()  # whatever an earlier test installed
    t = setup_telemetry(TelemetrySettings(), site="eu1", role="planner", prometheus=True)
    assert t is not None
    settings = Settings(site="eu1", health=HealthSettings(port=free_port()))
    readiness = Readiness(settings, "planner")
    assert readiness.http is not None
    readiness.http.add_route(METRICS_PATH, metrics_response)
    try:
        await readiness.start()
        await readiness.ready(None)
        middleware = WorkerMiddleware(
            t, site="eu1", role="planner", stream="WORK_eu1", durable="planner"
        )
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<ns>.<pending>
        reply = f"$JS.ACK.WORK_eu1.planner.2.7.3.{time.time_ns()}.4"
        msg = SimpleNamespace(subject="sm.v1.work.eu1.planner", reply=reply, headers={}, data=b"{}")

        async def settle(msg: Any) -> tuple[Decision, Exception]:
            with model_call(provider="vllm", model="qwen2.5-7b-instruct") as call:
                call.record(input_tokens=12, output_tokens=5, cost_usd=0.002)
            with tool_call("kubectl"):
                pass
            with pytest.raises(RateLimitError), tool_call("jira"):
                raise RateLimitError
            error = ValueError("bad plan")
            return Decision(Action.DEAD_LETTER, reason="x", error_class="ValueError"), error

        await middleware.process(msg, settle)  # type: ignore[arg-type]
        t.instruments.set_lag("eu1", "recorder", "EVENTS_eu1", 3)
        t.instruments.watch_breakers(
            "eu1", "planner", lambda: [("model", "vllm", "open"), ("tool", "jira", "closed")]
        )
        async with httpx.AsyncClient(timeout=5) as http:
            page = await http.get(f"http://127.0.0.1:{readiness.http.port}{METRICS_PATH}")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/plain; version=")
        return page.text
    finally:
        await readiness.shutdown()
        shutdown_telemetry()


def _sample_names(text: str) -> set[str]:
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


# -- the generated files ----------------------------------------------------------------------
def test_generated_files_are_fresh() -> None:
    expected = gen.generated_files(COMPOSE)
    assert set(gen.observability_files(COMPOSE)) <= set(expected)
    stale = stale_files(expected)
    assert not stale, f"stale: {[str(p.relative_to(ROOT)) for p in stale]}; run: " + (
        ".venv/bin/python compose/generate.py"
    )
    assert gen.main(["--check"]) == 0


def test_check_notices_a_stale_dashboard(tmp_path: Path) -> None:
    files = gen.observability_files(COMPOSE)
    board = COMPOSE / "grafana" / "dashboards" / "sitemesh.json"
    assert stale_files({board: files[board]}) == []
    copy = tmp_path / "sitemesh.json"
    copy.write_text(files[board].replace('"sitemesh"', '"edited"', 1))
    assert stale_files({copy: files[board]}) == [copy]


# -- Prometheus ------------------------------------------------------------------------------
def test_prometheus_scrapes_each_worker_service_on_its_health_port(
    compose: dict[str, Any],
) -> None:
    conf = _load_yaml(COMPOSE / "prometheus.yml")
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert len(jobs) == len(conf["scrape_configs"]), "duplicate job names"
    svcs = compose["services"]
    workers = {n: s for n, s in svcs.items() if "build" in s and s["command"][0] == "worker"}
    assert {"synthesiser", "eu1-recorder", "us1-planner", "eu1-relay"} <= set(workers)
    assert set(jobs) == set(workers)  # no nats exporter in this compose file, so no nats job
    prometheus = svcs["prometheus"]
    for name, svc in workers.items():
        env = svc["environment"]
        port = int(env["SITEMESH_HEALTH_PORT"])
        assert env["SITEMESH_HEALTH_HOST"] == "0.0.0.0", name
        assert "ports" not in svc, f"{name}: publishes a port to the host"
        (sd,) = jobs[name]["dns_sd_configs"]
        assert (sd["names"], sd["type"], sd["port"]) == ([name], "A", port)
        assert jobs[name].get("metrics_path", "/metrics") == METRICS_PATH
        assert set(svc["networks"]) & set(prometheus["networks"]), f"{name}: unreachable"
    trims = [n for n, s in svcs.items() if "build" in s and s["command"][0] == "trim"]
    assert trims
    assert not set(trims) & set(jobs)  # `sitemesh trim` serves no endpoint
    assert "./prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]
    assert "ports" not in prometheus
    assert prometheus["image"].startswith("prom/prometheus:v")


def test_scrape_targets_add_a_nats_exporter_and_refuse_an_unscrapable_worker() -> None:
    env = {"SITEMESH_HEALTH_PORT": "9464", "SITEMESH_HEALTH_HOST": "0.0.0.0"}
    worker = {"build": {}, "command": ["worker", "router"], "environment": env}
    exporter = {"image": "natsio/prometheus-nats-exporter:0.17.3",
                "command": ["-varz", "-port", "7778", "http://nats-eu1:8222"]}  # fmt: skip
    compose = {"services": {"eu1-router": worker, "nats-eu1-exporter": exporter,
                            "nats-eu1": {"image": "nats:2.15.1-alpine"}}}  # fmt: skip
    assert gen.scrape_targets(compose) == {"eu1-router": 9464, "nats-eu1-exporter": 7778}
    rendered = yaml.safe_load(gen.render_prometheus(gen.scrape_targets(compose)))
    jobs = [j["job_name"] for j in rendered["scrape_configs"]]
    assert jobs == ["eu1-router", "nats-eu1-exporter"]
    for bad, says in (({}, "set SITEMESH_HEALTH_PORT"),
                      ({"SITEMESH_HEALTH_PORT": "9464"}, "SITEMESH_HEALTH_HOST")):  # fmt: skip
        with pytest.raises(ValueError, match=says):
            gen.scrape_targets({"services": {"x": {**worker, "environment": bad}}})


# -- Grafana ---------------------------------------------------------------------------------
def test_dashboard_parses_with_unique_panel_ids() -> None:
    board = _dashboard()
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    assert all(isinstance(i, int) for i in ids)
    charts = [p for p in board["panels"] if p["type"] != "row"]
    assert len(charts) >= 12
    for panel in charts:
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == gen.DATASOURCE_UID
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
    quantiles = [e for e in _queries(board) if "histogram_quantile" in e]
    assert quantiles
    assert all(n.endswith("_bucket") for e in quantiles for n in metric_names(e))


async def test_dashboard_queries_only_series_a_worker_serves() -> None:
    served = _sample_names(await _served_page())
    # positive controls: the page holds the runtime's series, histograms with buckets
    assert {"sitemesh_hop_latency_seconds_bucket", "sitemesh_dead_letters_total"} <= served
    used: set[str] = set()
    for expr in _queries(_dashboard()):
        names = metric_names(expr)
        assert names, f"no metric in {expr!r}"
        assert names <= served, f"{expr!r} uses {sorted(names - served)}, not on /metrics"
        used |= names
    # the panels of issue 14: throughput, hop latency, redeliveries, dead letters,
    # queue depth and lag, model tokens and cost, tool health
    wanted = {
        "messaging_client_consumed_messages_total", "sitemesh_hop_latency_seconds_bucket",
        "sitemesh_redeliveries_total", "sitemesh_dead_letters_total", "sitemesh_queue_depth",
        "sitemesh_consumer_lag", "gen_ai_client_token_usage_sum", "sitemesh_model_cost_USD_total",
        "sitemesh_tool_errors_total", "sitemesh_tool_duration_seconds_bucket",
        "sitemesh_breaker_state",
    }  # fmt: skip
    assert wanted <= used, sorted(wanted - used)


async def test_dead_letters_are_counted_by_reason() -> None:
    page = await _served_page()
    by_reason = {
        s.labels.get("error_type", ""): s.value
        for f in text_string_to_metric_families(page) for s in f.samples
        if s.name == "sitemesh_dead_letters_total" and s.labels.get("sitemesh_role") == "planner"
    }  # fmt: skip
    assert by_reason == {"": 0.0, "ValueError": 1.0}  # the zero series from the start, then one


def test_grafana_provisioning_points_at_prometheus_and_the_dashboards(
    compose: dict[str, Any],
) -> None:
    prov = COMPOSE / "grafana" / "provisioning"
    (ds,) = _load_yaml(prov / "datasources" / "prometheus.yml")["datasources"]
    assert (ds["type"], ds["uid"], ds["url"]) == ("prometheus", gen.DATASOURCE_UID,
                                                  "http://prometheus:9090")  # fmt: skip
    (provider,) = _load_yaml(prov / "dashboards" / "sitemesh.yml")["providers"]
    grafana = compose["services"]["grafana"]
    assert grafana["image"].startswith("grafana/grafana-oss:")
    assert f"./grafana/dashboards:{provider['options']['path']}:ro" in grafana["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    assert set(grafana["networks"]) & set(compose["services"]["prometheus"]["networks"])
    assert all(p.startswith("127.0.0.1:") for p in grafana.get("ports", []))
