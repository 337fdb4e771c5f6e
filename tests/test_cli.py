"""The ``sitemesh`` command line: clear errors, schema freshness, publish checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sitemesh.cli import app

runner = CliRunner()
DATA = Path(__file__).resolve().parents[1] / "examples" / "data"


def test_schemas_check_passes_on_the_checked_in_files() -> None:
    result = runner.invoke(app, ["schemas", "--check"])
    assert result.exit_code == 0, result.output
    assert "up to date" in result.output


def test_publish_refuses_an_invalid_task_naming_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"type": "support_ticket.v1", "body": "ok"}\n{"type": "support_ticket.v1", "body": 3}\n'
    )
    result = runner.invoke(
        app, ["publish", str(bad)], env={"SITEMESH_NATS_URL": "nats://127.0.0.1:1"}
    )
    assert result.exit_code == 2
    assert "bad-2" in result.output
    assert "$.body" in result.output


def test_worker_without_nats_url_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SITEMESH_NATS_URL", raising=False)
    result = runner.invoke(app, ["worker", "planner"])
    assert result.exit_code == 2
    assert "SITEMESH_NATS_URL" in result.output


def test_worker_rejects_an_unknown_role() -> None:
    result = runner.invoke(app, ["worker", "chef"], env={"SITEMESH_NATS_URL": "nats://127.0.0.1:1"})
    assert result.exit_code == 2
    assert "unknown role 'chef'" in result.output


def test_publish_to_an_unreachable_server_fails_clearly(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["publish", str(DATA / "malformed" / "wrong_type.json"), "--raw", "support_ticket"],
        env={"SITEMESH_NATS_URL": "nats://127.0.0.1:1", "SITEMESH_NATS_CONNECT_TIMEOUT_S": "1"},
    )
    assert result.exit_code == 2
    assert "127.0.0.1:1" in result.output


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"sitemesh {version('sitemesh')}"
