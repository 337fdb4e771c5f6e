"""``sitemesh kb add|list|show|remove`` against a real ``nats-server`` (and without one)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from sitemesh.bus import NatsServer
from sitemesh.cli import app

runner = CliRunner()


async def kb(env: dict[str, str], *args: str) -> Result:
    """``sitemesh kb ARGS`` in a worker thread (the CLI runs its own event loop)."""
    return await asyncio.to_thread(runner.invoke, app, ["kb", *args], env=env)


@pytest.fixture
def env(nats_server: NatsServer, site: str, tmp_path: Path) -> dict[str, str]:
    return {
        "SITEMESH_NATS_URL": nats_server.client_url,
        "SITEMESH_SITE": site,
        "SITEMESH_STATE_DIR": str(tmp_path / "state"),
        "COLUMNS": "250",
        "NO_COLOR": "1",
    }


def faq_csv(tmp_path: Path) -> Path:
    path = tmp_path / "faq.csv"
    path.write_text(
        "intent,answer,questions\n"
        "vpn_reset,Quit the VPN client and start it again.,vpn keeps dropping|vpn down\n"
        "printer_jam,Open tray 2 and remove the paper.,printer jammed\n"
    )
    return path


async def test_add_list_show_remove(env: dict[str, str], site: str, tmp_path: Path) -> None:
    res = await kb(env, "add", "acme-faq", str(faq_csv(tmp_path)), "--tenant", "acme*",
                   "--url-base", "https://help.acme.test/faq")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert f"stored kb/acme-faq at site {site}: 2 document(s), faq" in res.output
    assert "tenants acme*" in res.output

    res = await kb(env, "list", "--json")
    assert res.exit_code == 0, res.output
    listed = json.loads(res.output)
    rows = {r["name"]: r for r in listed["knowledge_bases"]}
    assert set(rows) == {"runbooks", "support-cases", "banking-faq", "acme-faq"}
    assert rows["acme-faq"]["origin"] == "site"
    assert rows["acme-faq"]["docs"] == 2
    assert rows["acme-faq"]["tenants"] == ["acme*"]
    assert rows["banking-faq"]["calibration"].startswith("platt(loo, n=")
    assert rows["support-cases"]["docs"] == 423
    assert rows["runbooks"]["docs"] > 350
    res = await kb(env, "list")
    assert res.exit_code == 0
    assert "acme-faq" in res.output
    assert "bank*" in res.output

    res = await kb(env, "show", "acme-faq", "--json")
    assert res.exit_code == 0, res.output
    shown = json.loads(res.output)
    assert [d["id"] for d in shown["documents"]] == ["vpn_reset#faq", "printer_jam#faq"]
    assert shown["documents"][0]["url"] == "https://help.acme.test/faq/vpn_reset"
    res = await kb(env, "show", "acme-faq", "vpn_reset")
    assert res.exit_code == 0, res.output
    assert "vpn keeps dropping" in res.output
    res = await kb(env, "show", "acme-faq", "nope")
    assert res.exit_code == 1
    assert "no document 'nope'" in res.output
    res = await kb(env, "show", "banking-faq", "card_arrival", "--json")
    assert res.exit_code == 0, res.output
    (doc,) = json.loads(res.output)["documents"]
    assert doc["url"] == "https://help.example.com/banking/card_arrival"

    res = await kb(env, "remove", "acme-faq")
    assert res.exit_code == 0
    assert "removed kb/acme-faq" in res.output
    res = await kb(env, "remove", "acme-faq")
    assert res.exit_code == 1
    assert "no site knowledge base 'acme-faq'" in res.output
    res = await kb(env, "show", "acme-faq")
    assert res.exit_code == 1


async def test_bundled_cannot_be_removed_but_can_be_overridden(
    env: dict[str, str], tmp_path: Path
) -> None:
    res = await kb(env, "remove", "banking-faq")
    assert res.exit_code == 2
    assert "banking-faq is a bundled knowledge base and cannot be removed" in res.output
    res = await kb(env, "add", "banking-faq", "bundled:banking-faq",
                   "--tenant", "mybank", "--url-base", "https://help.mybank.test/faq")  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "(overrides the bundled one)" in res.output
    res = await kb(env, "list", "--json")
    rows = [r for r in json.loads(res.output)["knowledge_bases"] if r["name"] == "banking-faq"]
    assert [r["origin"] for r in rows] == ["bundled (overridden by the site's)", "site"]
    res = await kb(env, "show", "banking-faq", "card_arrival", "--json")
    (doc,) = json.loads(res.output)["documents"]
    assert doc["url"] == "https://help.mybank.test/faq/card_arrival"
    res = await kb(env, "remove", "banking-faq")
    assert res.exit_code == 0
    assert "the bundled banking-faq applies again" in " ".join(res.output.split())


async def test_invalid_input_is_one_line_and_nothing_is_stored(
    env: dict[str, str], tmp_path: Path
) -> None:
    bad = tmp_path / "cases.jsonl"
    bad.write_text('{"text": "ok", "reply": "fine"}\n{"text": "no reply"}\n')
    res = await kb(env, "add", "acme-cases", str(bad))
    assert res.exit_code == 2
    assert "cases.jsonl:2: field 'resolution': expected a non-empty string" in res.output
    assert "Traceback" not in res.output
    res = await kb(env, "add", "Bad Name", str(bad))
    assert res.exit_code == 2
    assert "knowledge-base name 'Bad Name'" in res.output
    res = await kb(env, "add", "acme", str(faq_csv(tmp_path)), "--kind", "Support")
    assert res.exit_code == 2
    assert "--kind 'Support'" in res.output
    res = await kb(env, "add", "acme", str(tmp_path / "missing.md"))
    assert res.exit_code == 2
    assert "expected an existing file or folder" in res.output
    res = await kb(env, "list", "--json")
    names = {r["name"] for r in json.loads(res.output)["knowledge_bases"]}
    assert not names & {"acme-cases", "acme"}


def test_unreachable_server_is_reported(tmp_path: Path) -> None:
    env = {
        "SITEMESH_NATS_URL": "nats://127.0.0.1:1",
        "SITEMESH_NATS_CONNECT_TIMEOUT_S": "1",
        "SITEMESH_STATE_DIR": str(tmp_path),
        "COLUMNS": "250",
    }
    res = runner.invoke(app, ["kb", "add", "acme", str(faq_csv(tmp_path))], env=env)
    assert res.exit_code == 2
    assert "cannot connect to NATS at nats://127.0.0.1:1" in res.output
    res = runner.invoke(app, ["kb", "list"], env=env)
    assert res.exit_code == 2
    assert "banking-faq" in res.output  # the bundled ones are listed anyway
    assert "site knowledge bases not read: cannot connect to NATS" in res.output
    res = runner.invoke(app, ["kb", "show", "banking-faq", "card_arrival"], env=env)
    assert res.exit_code == 0
    assert "showing the bundled banking-faq" in res.output
