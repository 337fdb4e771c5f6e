"""Log template mining with drain3 and its findings (sitemesh.detect)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from sitemesh.detect import (
    DEFAULT_LOG_CONFIG,
    DEFAULT_MASKS,
    LogConfig,
    LogFinding,
    LogLine,
    log_lines,
    mine_logs,
    read_log_lines,
    template_miner,
    timestamp_parser,
)

T0 = datetime(2024, 3, 4, 8, 0, tzinfo=UTC)


def test_lines_differing_in_numbers_ips_and_hex_share_one_template() -> None:
    lines = [
        LogLine(text=f"conn from {ip} port {port} closed after {ms} ms id 0x{i:04x}")
        for i, (ip, port, ms) in enumerate(
            [("10.0.0.1", 5555, 12), ("192.168.7.20", 443, 3), ("172.31.12.16", 22, 1250)]
        )
    ]
    lines.append(LogLine(text="neighbor 2001:420:289:2000:0:1ab:fab0:1217 Down at 08:54:59.131"))
    lines.append(LogLine(text="neighbor fe80::1:2 Down at 2024-03-04T08:55:00Z"))
    report = mine_logs(lines)
    assert len(report.templates) == 2
    conn, neighbor = sorted(report.templates, key=lambda t: t.template)
    assert conn.template == "conn from <IP> port <NUM> closed after <NUM> ms id <HEX>"
    assert conn.count == 3
    assert neighbor.template == "neighbor <IP> Down at <TIME>"
    assert report.assignments[:3] == (conn.template_id,) * 3


def test_the_masks_are_explicit_and_in_order() -> None:
    names = [m.name for m in DEFAULT_MASKS]
    assert names.index("TIME") < names.index("MAC") < names.index("IP") < names.index("NUM")
    miner = template_miner()
    masked = miner.masker.mask("ifmgr[393]: 00:1b:44:11:3a:b7 at 10:14:56.051 blk_0 Hu0/0/0/8")
    assert masked == "ifmgr[<NUM>]: <MAC> at <TIME> blk_0 Hu0/<NUM>/<NUM>/<NUM>"


def test_the_miner_is_configured_in_code_not_from_drain3_ini(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "drain3.ini").write_text(
        "[DRAIN]\nsim_th = 0.99\ndepth = 9\n[MASKING]\nmasking = []\n"
    )
    monkeypatch.chdir(tmp_path)
    miner = template_miner(LogConfig(sim_th=0.5))
    assert miner.config.drain_sim_th == 0.5
    assert miner.config.drain_depth == DEFAULT_LOG_CONFIG.depth
    assert len(miner.config.masking_instructions) == len(DEFAULT_MASKS)
    assert miner.persistence_handler is None


def stream() -> list[LogLine]:
    """3 h of a heartbeat every 30 s and a link flap twice an hour (the learning
    part, 2 h), then a link-flap storm and a new kind of line in the last hour."""
    out = []
    for k in range(360):
        at = T0 + timedelta(seconds=30 * k)
        out.append(LogLine(text=f"heartbeat seq {k} from 10.1.1.{k % 7} ok", at=at))
        if k % 60 == 0:
            out.append(LogLine(text=f"Interface Hu0/0/0/{k % 9} changed state to Down", at=at))
        if k == 300:
            out.extend(
                LogLine(
                    text=f"Interface Hu0/0/0/{j % 4} changed state to Down",
                    at=at + timedelta(seconds=2 * j),
                )
                for j in range(20)
            )
            out.append(LogLine(text="optics module 0/0/0/8 removed", at=at))
            out.append(LogLine(text="optics module 0/0/0/9 removed", at=at + timedelta(seconds=5)))
    out.sort(key=lambda line: line.at or T0)
    return out


def test_a_new_template_and_a_burst_are_found_after_the_learning_prefix() -> None:
    lines = stream()
    report = mine_logs(lines, source="leaf3", learn_until=T0 + timedelta(hours=2))
    assert report.learned == sum(
        1 for line in lines if line.at and line.at < T0 + timedelta(hours=2)
    )
    by_text = {t.template: t for t in report.templates}
    link = by_text["Interface Hu0/<NUM>/<NUM>/<NUM> changed state to Down"]
    optics = by_text["optics module <NUM>/<NUM>/<NUM>/<NUM> removed"]
    heartbeat = by_text["heartbeat seq <NUM> from <IP> ok"]
    assert (heartbeat.count, link.count, optics.count) == (360, 26, 2)
    assert link.learned == 4

    kinds = {(f.kind, f.template_id) for f in report.findings}
    assert ("new_template", optics.template_id) in kinds
    bursts = [f for f in report.findings if f.kind == "burst"]
    assert [b.template_id for b in bursts] == [link.template_id]
    (burst,) = bursts
    assert burst.source == "leaf3"
    assert burst.count >= DEFAULT_LOG_CONFIG.burst_min_count
    assert burst.first_at is not None
    assert burst.last_at is not None
    assert T0 + timedelta(minutes=150) <= burst.first_at <= burst.last_at
    assert burst.expected < burst.count / DEFAULT_LOG_CONFIG.burst_ratio
    assert "Interface" not in burst.evidence
    # Absence after the positive controls: the steady heartbeat is neither new nor a burst.
    assert not [f for f in report.findings if f.template_id == heartbeat.template_id]
    assert msgspec.json.decode(msgspec.json.encode(burst), type=LogFinding) == burst


def test_a_rare_template_coming_back_is_reported() -> None:
    lines = [LogLine(text=f"job {k} done", at=T0 + timedelta(minutes=k)) for k in range(50)]
    lines.insert(10, LogLine(text="disk sda almost full", at=T0 + timedelta(minutes=10)))
    lines.append(LogLine(text="disk sdb almost full", at=T0 + timedelta(minutes=60)))
    report = mine_logs(lines, config=LogConfig(learning_lines=40))
    assert [(f.kind, f.template, f.count) for f in report.findings] == [
        ("rare_template", "disk <*> almost full", 1)
    ]


def test_without_times_there_are_no_bursts_but_new_templates_are_found() -> None:
    lines = [LogLine(text=f"GET /item/{k} 200") for k in range(30)]
    lines += [LogLine(text="POST /login 500")] * 10
    report = mine_logs(lines, config=LogConfig(learning_lines=30))
    assert [(f.kind, f.count, f.first_at) for f in report.findings] == [("new_template", 10, None)]


def test_timestamp_parser_reads_a_syslog_prefix() -> None:
    pdt = timezone(timedelta(hours=-7), "PDT")
    parse = timestamp_parser(
        r"^\S*?:(?P<time>[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}\.\d{3}) : ",
        "%b %d %H:%M:%S.%f",
        year=2017,
        tz=pdt,
    )
    at, message = parse(
        "RP/0/RP0/CPU0:Sep  1 10:14:56.051 : ifmgr[393]: %PKT_INFRA-LINK-3-UPDOWN : Down"
    )
    assert at == datetime(2017, 9, 1, 17, 14, 56, 51000, tzinfo=UTC)
    assert message == "ifmgr[393]: %PKT_INFRA-LINK-3-UPDOWN : Down"
    assert parse("Fri Sep  1 12:51:23.775 PDT") == (None, "Fri Sep  1 12:51:23.775 PDT")
    raw = ["Fri Sep  1 12:51:23.775 PDT\n", "\n", "RP/0/RP0/CPU0:Sep  1 10:14:57.000 : x 1\n"]
    kept = log_lines(raw, parser=parse)
    assert [(line.at is None, line.text) for line in kept] == [
        (True, "Fri Sep  1 12:51:23.775 PDT"),
        (False, "x 1"),
    ]
    assert [line.text for line in log_lines(raw, parser=parse, skip_unparsed=True)] == ["x 1"]
    with pytest.raises(ValueError, match="group 'time'"):
        timestamp_parser(r"^(\d+)", "%s")


def test_read_log_lines(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    path.write_bytes(b"2024-03-04 08:00:00 start\n2024-03-04 08:00:01 caf\xe9 open\n")
    parse = timestamp_parser(r"(?P<time>\S+ \S+) ", "%Y-%m-%d %H:%M:%S")
    lines = read_log_lines(path, parser=parse)
    assert [line.text for line in lines] == ["start", "caf\ufffd open"]
    assert lines[1].at == datetime(2024, 3, 4, 8, 0, 1, tzinfo=UTC)
