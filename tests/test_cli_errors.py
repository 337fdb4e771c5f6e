"""A failing command says why in one line, never with a traceback: a bad setting, an
unreachable database or NATS, Ctrl-C; and ``SITEMESH_LOG_FORMAT=json`` logs.

The settings and database cases run in-process (typer's ``CliRunner``); Ctrl-C and the
JSON log lines run ``python -m sitemesh`` as a subprocess, as an operator would.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sitemesh.bus import free_port
from sitemesh.cli import app
from sitemesh.config import TelemetrySettings, load_settings
from sitemesh.logs import JsonFormatter, log_formatter

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TICKETS = ROOT / "examples" / "data" / "tickets.jsonl"




def _one_line_error(stderr: str, *words: str) -> str:
    """The ``error:`` line of ``stderr``, checked to hold ``words`` and no traceback."""
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], (word, stderr)
    return lines[0]


# -- bad settings ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"SITEMESH_BUS_ACK_WAIT_S": "abc"},
         ["SITEMESH_BUS_ACK_WAIT_S", "bus.ack_wait_s", "expected a valid number", "'abc'"]),
        ({"SITEMESH_BUS__ACK_WAIT_S": "abc"},
         ["SITEMESH_BUS__ACK_WAIT_S", "no such setting", "did you mean SITEMESH_BUS_ACK_WAIT_S"]),
        ({"SITEMESH_TELEMETRY_EXPORTER": "jaeger"},
         ["SITEMESH_TELEMETRY_EXPORTER", "expected 'console', 'otlp' or 'none'"]),
        ({"SITEMESH_LOG_FORMAT": "xml"}, ["SITEMESH_LOG_FORMAT", "expected 'text' or 'json'"]),
        ({"SITEMESH_NATS_TENANTS": "acme"}, ["SITEMESH_NATS_*", "JSON"]),
    ],
)  # fmt: skip
@pytest.mark.parametrize("args", [["status"], ["show", "tk-1"], ["trace", "tk-1"], ["approvals"]])
def test_a_bad_setting_is_named_in_one_line(
    env: dict[str, str], words: list[str], args: list[str]
) -> None:
    done = runner.invoke(app, args, env=env)
    assert done.exit_code == 2, done.output
    _one_line_error(done.stderr, "invalid setting", *words)
    assert isinstance(done.exception, SystemExit)  # an exit, not an exception


def test_a_bad_site_option_names_the_setting() -> None:
    done = runner.invoke(app, ["status", "--site", "EU-1"])
    assert done.exit_code == 2
    _one_line_error(done.stderr, "SITEMESH_SITE (site)", "'EU-1'")


def test_a_secret_setting_is_never_repeated() -> None:
    from pydantic import ValidationError

    from sitemesh.config import describe_settings_error

    with pytest.raises(ValidationError) as raised:
        load_settings(db={"url": ["postgresql://u:hunter2@h/db"]})
    text = describe_settings_error(raised.value)
    assert "SITEMESH_DB_URL" in text
    assert "hunter2" not in text


# -- unreachable database and NATS -------------------------------------------------------


@pytest.mark.parametrize(
    "args", [["status"], ["status", "--json"], ["show", "tk-1"], ["trace", "tk-1"], ["approvals"]]
)
def test_an_unreachable_database_is_one_line_without_its_password(args: list[str]) -> None:
    port = free_port()
    env = {
        "SITEMESH_DB_URL": f"postgresql+asyncpg://sm:hunter2@127.0.0.1:{port}/sitemesh",
        "SITEMESH_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "SITEMESH_NATS_CONNECT_TIMEOUT_S": "1",
    }
    done = runner.invoke(app, args, env=env)
    assert done.exit_code == 2, done.output
    line = _one_line_error(done.stderr, "cannot reach the database", f"127.0.0.1:{port}",
                           "SITEMESH_DB_URL", "ConnectionRefusedError")  # fmt: skip
    assert "hunter2" not in done.output + line


def test_an_unreachable_nats_is_one_line() -> None:
    port = free_port()
    env = {"SITEMESH_NATS_URL": f"nats://sm:hunter2@127.0.0.1:{port}",
           "SITEMESH_NATS_CONNECT_TIMEOUT_S": "1"}  # fmt: skip
    done = runner.invoke(app, ["publish", str(TICKETS), "--allow-unserved"], env=env)
    assert done.exit_code == 2, done.output
    _one_line_error(done.stderr, "cannot connect to NATS", f"127.0.0.1:{port}", "(after 1.0s)")
    assert "hunter2" not in done.output


# -- Ctrl-C ------------------------------------------------------------------------------


def test_ctrl_c_in_a_command_is_one_line_and_130(monkeypatch: pytest.MonkeyPatch) -> None:
    import sitemesh.cli._state_cmds as state_cmds

    async def interrupted(*args: Any, **kwargs: Any) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(state_cmds, "show_status", interrupted)
    done = runner.invoke(app, ["status"])
    assert done.exit_code == 130
    assert done.stderr.strip() == "interrupted"


def test_ctrl_c_while_loading_settings_is_one_line_and_130(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sitemesh.cli._app as cli_app

    def interrupted(**kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_app, "load_settings", interrupted)
    done = runner.invoke(app, ["approvals"])
    assert done.exit_code == 130
    assert done.stderr.strip() == "interrupted"


def _sitemesh(args: list[str], env: Mapping[str, str], tmp_path: Path) -> subprocess.Popen[str]:
    """``python -m sitemesh ARGS`` with SIGINT at its default (a background shell's
    child may inherit it ignored), stderr piped."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SITEMESH_")}
    return subprocess.Popen(
        [sys.executable, "-m", "sitemesh", *args],
        cwd=tmp_path,
        env={**clean, "SITEMESH_STATE_DIR": str(tmp_path / ".sitemesh"), **env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _lines_until(proc: subprocess.Popen[str], word: str) -> Iterator[str]:
    assert proc.stderr is not None
    for line in proc.stderr:
        yield line
        if word in line:
            return
    raise AssertionError(f"exited ({proc.wait()}) before logging {word!r}")


@pytest.mark.timeout(120)
def test_ctrl_c_stops_a_waiting_command_with_one_line(tmp_path: Path) -> None:
    env = {"SITEMESH_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "SITEMESH_NATS_CONNECT_TIMEOUT_S": "60"}  # fmt: skip
    proc = _sitemesh(["publish", str(TICKETS), "--allow-unserved"], env, tmp_path)
    try:
        list(_lines_until(proc, "Connect call failed"))  # it is waiting for NATS now
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == "interrupted"


# -- JSON logs and service.name ----------------------------------------------------------


def _record(**extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("sitemesh.worker", logging.ERROR, __file__, 1, "a %s b", ("x",),
                               None)  # fmt: skip
    record.__dict__.update(extra)
    return record


def test_json_formatter_writes_one_object_per_line() -> None:
    fmt = JsonFormatter("sitemesh-router", "eu1", "router")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        record = _record(task_id="tk-1", exc_info=sys.exc_info())
    line = fmt.format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["level"] == "ERROR"
    assert doc["logger"] == "sitemesh.worker"
    assert doc["message"] == "a x b"
    assert (doc["service.name"], doc["site"], doc["role"]) == ("sitemesh-router", "eu1", "router")
    assert doc["task_id"] == "tk-1"
    assert doc["exc_info"].startswith("Traceback")
    assert "ValueError: bad" in doc["exc_info"]
    assert doc["time"].endswith("Z")
    at = datetime.fromisoformat(doc["time"])
    assert at.utcoffset() == timedelta(0)
    assert abs(at.timestamp() - record.created) < 1e-3

    plain = json.loads(JsonFormatter("sitemesh", "us1").format(_record()))
    assert not {"role", "task_id", "exc_info"} & set(plain)
    assert plain["site"] == "us1"


def test_log_format_setting_picks_the_formatter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEMESH_LOG_FORMAT", "json")
    settings = load_settings(site="us1")
    assert settings.to_env()["SITEMESH_LOG_FORMAT"] == "json"  # what child processes get
    fmt = log_formatter(settings, "planner")
    assert isinstance(fmt, JsonFormatter)
    assert json.loads(fmt.format(_record()))["service.name"] == "sitemesh-planner"
    monkeypatch.delenv("SITEMESH_LOG_FORMAT")
    assert not isinstance(log_formatter(load_settings()), JsonFormatter)


def test_configure_logging_leaves_others_handlers_alone() -> None:
    from sitemesh.logs import configure_logging

    root = logging.getLogger()
    if not root.handlers:  # pytest's capture handlers are someone else's
        pytest.skip("no foreign handler installed")
    before = list(root.handlers)
    assert configure_logging(load_settings(), stream=io.StringIO()) is None
    assert root.handlers == before


def test_asyncios_ssl_eof_warning_is_dropped() -> None:
    """asyncio's "eof_received() has no effect when using ssl" (each TLS close under
    nats-py) never reaches the log; other asyncio warnings do."""
    from sitemesh.logs import SSL_EOF_NOISE, DropSslEofNoise

    f = DropSslEofNoise()

    def record(name: str, msg: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.WARNING, __file__, 1, msg, (), None)

    assert not f.filter(record("asyncio", SSL_EOF_NOISE))
    assert f.filter(record("asyncio", "Task was destroyed but it is pending!"))
    assert f.filter(record("sitemesh.bus", SSL_EOF_NOISE))


def test_each_process_is_its_own_service() -> None:
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from sitemesh.telemetry import setup_telemetry, shutdown_telemetry

    settings = TelemetrySettings()
    assert settings.service_for("router") == "sitemesh-router"
    assert settings.service_for(None) == "sitemesh"
    assert TelemetrySettings(service_name="acme").service_for("recorder") == "acme-recorder"
    shutdown_telemetry()
    t = setup_telemetry(settings, site="eu1", role="recorder", span_exporter=InMemorySpanExporter())
    try:
        assert t is not None
        attrs = t.tracer_provider.resource.attributes
        assert attrs["service.name"] == "sitemesh-recorder"
        assert (attrs["sitemesh.site"], attrs["sitemesh.role"]) == ("eu1", "recorder")
    finally:
        shutdown_telemetry()


@pytest.mark.timeout(120)
def test_a_worker_logs_json_lines_on_stderr(tmp_path: Path) -> None:
    env = {"SITEMESH_LOG_FORMAT": "json", "SITEMESH_NATS_URL": f"nats://127.0.0.1:{free_port()}",
           "SITEMESH_NATS_CONNECT_TIMEOUT_S": "60", "SITEMESH_SITE": "us1"}  # fmt: skip
    proc = _sitemesh(["worker", "router"], env, tmp_path)
    try:
        lines = list(_lines_until(proc, "Connect call failed"))
    finally:
        proc.kill()
        proc.communicate()  # and close the pipe
    docs = [json.loads(line) for line in lines]  # every line is one JSON object
    assert docs
    last = docs[-1]
    assert last["level"] == "WARNING"
    assert last["logger"].startswith("sitemesh.")
    assert last["service.name"] == "sitemesh-router"
    assert (last["site"], last["role"]) == ("us1", "router")
    datetime.fromisoformat(last["time"])
