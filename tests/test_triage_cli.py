"""``sitemesh triage train|models|classify``: clear one-line errors, figures, publishing."""

from __future__ import annotations

import asyncio
import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from typer.testing import CliRunner

from sitemesh.bus import NatsServer, SiteArtifacts
from sitemesh.cli import app
from sitemesh.triage import bundled_label_sets, parse_examples_jsonl

runner = CliRunner()
INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed")


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """150 banking77 examples of 4 intents (``utterance``, ``intent``, ``prio`` columns)."""
    path = tmp_path_factory.mktemp("csv") / "Bank Tickets.csv"
    taken: dict[str, int] = defaultdict(int)
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["utterance", "intent", "prio"])
        for e in bundled_label_sets()[0].examples:
            if e.label in INTENTS and taken[e.label] < 40:
                taken[e.label] += 1
                out.writerow([e.text, e.label, "1" if e.label == "lost_or_stolen_card" else "3"])
    return path


def one_error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "Traceback" not in output
    assert lines[0].startswith("error: ")
    return lines[0]


def test_a_missing_column_is_one_line_naming_it_and_the_columns_found(small_csv: Path) -> None:
    result = runner.invoke(app, ["triage", "train", str(small_csv), "--text-column", "utterance"])
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "no column 'category'" in line
    assert "columns found: utterance, intent, prio" in line


def test_an_empty_file_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    result = runner.invoke(app, ["triage", "train", str(empty)])
    assert result.exit_code == 2
    assert "empty.csv: empty file" in one_error_line(result.output)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--test-share", "1.5"], "--test-share must be within 0..1"),
        (["--urgency-column", "utterance"], "prio"),  # placeholder, replaced below
        (["--name", "Not Valid"], "a label set name is"),
    ],
)
def test_other_bad_input_is_one_line(small_csv: Path, args: list[str], message: str) -> None:
    if args[0] == "--urgency-column":
        message = "utterance must be 0..3 or empty"
    result = runner.invoke(
        app, ["triage", "train", str(small_csv), "--text-column", "utterance",
              "--label-column", "intent", *args],
    )  # fmt: skip
    assert result.exit_code == 2
    assert message in one_error_line(result.output)


def test_a_single_label_is_refused(tmp_path: Path) -> None:
    one = tmp_path / "one.csv"
    one.write_text("text,category\nhello there,a\nhi there,a\nhey you,a\n")
    result = runner.invoke(app, ["triage", "train", str(one), "--test-share", "0"])
    assert result.exit_code == 2
    assert "at least 2 distinct labels" in one_error_line(result.output)


def test_train_prints_held_out_figures(small_csv: Path) -> None:
    result = runner.invoke(
        app, ["triage", "train", str(small_csv), "--text-column", "utterance",
              "--label-column", "intent"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "trained bank_tickets on" in result.output
    assert "held-out accuracy" in result.output
    assert "macro-F1" in result.output
    assert "support per label (training): min" in result.output


def test_train_json_carries_the_figures(small_csv: Path) -> None:
    result = runner.invoke(
        app, ["triage", "train", str(small_csv), "--text-column", "utterance",
              "--label-column", "intent", "--urgency-column", "prio", "--name", "mini",
              "--test-share", "0.3", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["name"] == "mini"
    assert report["tenants"] == ["mini*"]
    assert report["train_examples"] + report["held_out_examples"] == 160
    assert 0.5 < report["accuracy"] <= 1.0
    assert 0.0 < report["macro_f1"] <= 1.0
    assert report["support"]["labels"] == 4
    assert report["urgency_model"] is True
    for c in report["confusions"]:
        assert c["true"] != c["predicted"]
        assert c["count"] >= 1


def test_publish_to_an_unreachable_server_is_one_line(small_csv: Path) -> None:
    result = runner.invoke(
        app, ["triage", "train", str(small_csv), "--text-column", "utterance",
              "--label-column", "intent", "--publish", "--json"],
        env={"SITEMESH_NATS_URL": "nats://127.0.0.1:1", "SITEMESH_NATS_CONNECT_TIMEOUT_S": "1"},
    )  # fmt: skip
    assert result.exit_code == 2
    line = one_error_line(result.stderr)
    assert "publish failed" in line
    assert "127.0.0.1:1" in line


async def test_publish_stores_every_example_and_models_lists_it(
    small_csv: Path, nats_server: NatsServer, js: JetStreamContext, site: str
) -> None:
    env = {"SITEMESH_NATS_URL": nats_server.client_url, "SITEMESH_SITE": site}
    result = await asyncio.to_thread(
        runner.invoke, app,
        ["triage", "train", str(small_csv), "--text-column", "utterance", "--label-column",
         "intent", "--urgency-column", "prio", "--tenant", "bank-eu*", "--tenant", "acme",
         "--publish"],
        env=env,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    published = (
        f"published triage/bank_tickets (160 examples, tenants bank-eu*, acme) at site {site}"
    )
    assert published in result.output
    data, info = await (await SiteArtifacts.open(js, site)).get("triage/bank_tickets")
    assert info.meta == {"tenants": "bank-eu*,acme", "examples": "160", "labels": "4",
                         "urgency": "yes"}  # fmt: skip
    examples = parse_examples_jsonl(data)
    assert len(examples) == 160
    assert {e.urgency for e in examples} == {1, 3}

    listed = await asyncio.to_thread(runner.invoke, app, ["triage", "models", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)["label_sets"]
    assert [r["name"] for r in rows] == ["bank_tickets", "banking77", "endava"]
    assert rows[0]["tenants"] == ["bank-eu*", "acme"]
    assert rows[0]["source"] == "published"
    assert rows[1]["examples"] == 7959
    assert rows[1]["held_out"] == 2044


def test_models_without_a_server_lists_the_bundled_sets(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:  # fmt: skip
    monkeypatch.delenv("SITEMESH_NATS_URL", raising=False)
    result = runner.invoke(
        app, ["triage", "models"],
        env={"SITEMESH_STATE_DIR": str(tmp_path), "SITEMESH_CACHE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "banking77" in result.output
    assert "endava" in result.output
    assert "published sets not shown" in result.output


def test_classify_refuses_a_tenant_no_bundled_set_serves() -> None:
    result = runner.invoke(app, ["triage", "classify", "hello", "--tenant", "acme"])
    assert result.exit_code == 2
    assert "no bundled label set serves tenant 'acme'" in one_error_line(result.output)
