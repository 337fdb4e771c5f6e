"""The ``sitemesh`` command line: clear errors, schema freshness, publish checks."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js.errors import NotFoundError
from typer.testing import CliRunner

from sitemesh.bus import NatsServer, Subjects
from sitemesh.bus import connect as bus_connect
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


async def test_publish_refuses_a_site_without_a_ready_router_unless_allowed(
    nats_server: NatsServer, site: str, tmp_path: Path
) -> None:
    """Nothing would accept the tasks: say so, publish nothing, exit 3; with
    ``--allow-unserved`` they are queued; with a router registered ready, published."""
    from rich.console import Console

    from sitemesh.cli._run import EXIT_UNSERVED, run_publish
    from sitemesh.config import NatsSettings, Settings
    from sitemesh.runtime import WorkerPresence, WorkerRecord

    settings = Settings(
        site=site, state_dir=tmp_path, nats=NatsSettings(url=nats_server.client_url)
    )
    ticket = tmp_path / "t.jsonl"
    ticket.write_text('{"type": "support_ticket.v1", "task_id": "u-1", "body": "VPN drops."}\n')
    subjects = Subjects(site)
    nc = await bus_connect(nats_server.client_url, name="pytest-unserved", timeout_s=5)
    js = nc.jetstream()
    try:

        async def stored() -> int:
            try:
                return (await js.stream_info(subjects.tasks_stream)).state.messages
            except NotFoundError:
                return 0

        out = Console(record=True, width=200)
        assert await run_publish(settings, out, [ticket], "", None) == EXIT_UNSERVED
        text = out.export_text()
        assert f"no router is ready at site {site}" in text
        assert "--allow-unserved" in text
        assert await stored() == 0
        out = Console(record=True, width=200)
        assert await run_publish(settings, out, [ticket], "", None, allow_unserved=True) == 0
        assert "u-1" in out.export_text()
        assert await stored() == 1
        router = WorkerPresence(js, WorkerRecord.now(site=site, role="router"))
        await router.start()
        try:
            ticket.write_text(
                '{"type": "support_ticket.v1", "task_id": "u-2", "body": "VPN drops."}\n'
            )
            out = Console(record=True, width=200)
            assert await run_publish(settings, out, [ticket], "", None) == 0
            assert "no router" not in out.export_text()
            assert await stored() == 2
        finally:
            await router.shutdown()
    finally:
        await nc.drain()
