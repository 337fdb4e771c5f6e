"""sitemesh.sources: specs, kind inference and the four readers (series files,
Prometheus text, logs, the Prometheus HTTP API against tests/fake_prometheus.py).

Every file is written by the test into ``tmp_path``; nothing is read from outside.
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import sitemesh.sources
from sitemesh.errors import SitemeshError
from sitemesh.schemas import (
    MAX_INLINE_SERIES,
    MAX_LOG_LINE_CHARS,
    MAX_LOG_LINES,
    MAX_SERIES_POINTS,
    LogLine,
    MetricSeries,
)
from sitemesh.sources import (
    SourceError,
    SourceSpec,
    TelemetryReader,
    infer_kind,
    open_source,
    parse_spec,
    series_signal,
)
from tests.fake_prometheus import FakePrometheus

T0 = datetime(2024, 3, 1, tzinfo=UTC)
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


def _iso(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _csv(path: Path, rows: list[tuple[datetime, float]], header: str = "timestamp,value") -> Path:
    body = "".join(f"{_iso(t)},{v}\n" for t, v in rows)
    return _write(path, f"{header}\n{body}")


def _minutes(n: int, start: datetime = T0, value: float = 1.0) -> list[tuple[datetime, float]]:
    return [(start + timedelta(minutes=i), value + i) for i in range(n)]


def _open(kind: str, location: Path | str, **kw: object) -> TelemetryReader:
    raw = {"name": "lab", "kind": kind, "location": str(location), **kw}
    return open_source(parse_spec(json.dumps(raw)))


def _touch(path: Path, at: datetime) -> None:
    os.utime(path, (at.timestamp(), at.timestamp()))


# -- the package front ------------------------------------------------------------

PUBLIC = [
    "ARTIFACT_KIND", "BUNDLED_SOURCES", "CISCO_SOURCE", "SOURCE_KINDS", "Incident",
    "LogReader", "PrometheusApiReader", "PrometheusTextReader", "SeriesReader",
    "SourceError", "SourceKind", "SourceNotFound", "SourceSpec", "SourceSummary",
    "TelemetryReader", "WatchConfig", "Watcher", "artifact_name", "check_spec",
    "fetch_source", "infer_kind", "list_sources", "open_source", "parse_spec",
    "publish_source", "remove_source", "SPEC_SCHEMA_FILE", "spec_json_schema",
    "series_signal",
]  # fmt: skip


def test_the_checked_in_spec_schema_is_current() -> None:
    import json

    text = sitemesh.sources.SPEC_SCHEMA_FILE.read_text("utf-8")
    assert text == sitemesh.sources.spec_json_schema(), "run `sitemesh schemas`"
    schema = json.loads(text)
    assert "kind" in json.dumps(schema)


def test_public_api() -> None:
    assert sorted(sitemesh.sources.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(sitemesh.sources, name), name
    assert issubclass(SourceError, SitemeshError)
    assert issubclass(SourceError, ValueError)


def test_a_series_is_named_with_its_labels_but_not_the_one_repeating_its_device() -> None:
    def series(**labels: str) -> MetricSeries:
        return MetricSeries(name="if_in", labels=labels, timestamps=[T0], values=[1.0])

    assert series_signal(series()) == "if_in"
    both = series(interface="eth0", device="leaf7")
    assert series_signal(both) == "if_in{device=leaf7,interface=eth0}"
    assert series_signal(both, device="leaf7") == "if_in{interface=eth0}"
    assert series_signal(both, device="leaf8") == "if_in{device=leaf7,interface=eth0}"
    host = series(host="leaf7")
    assert series_signal(host, device="leaf7", device_label="host") == "if_in"


# -- specs ------------------------------------------------------------------------


def test_a_spec_round_trips_with_its_defaults() -> None:
    spec = parse_spec(b'{"name": "lab-1.a_b", "kind": "logs", "location": "/var/log/x"}')
    assert spec == SourceSpec(name="lab-1.a_b", kind="logs", location="/var/log/x")
    assert (spec.device_label, spec.queries, spec.step_seconds) == ("device", [], 60.0)
    assert (spec.time_pattern, spec.time_format, spec.timeout_seconds) == (None, None, 10.0)
    assert parse_spec(msgspec.json.encode(spec)) == spec


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"name": "Bad Name"}, "name", "not a source name"),
        ({"name": "x" * 65}, "name", "not a source name"),
        ({"name": 7}, "name", "Expected `str`"),
        ({"kind": "influx"}, "kind", "expected one of series, prometheus_text, logs"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"step_seconds": "fast"}, "step_seconds", "Expected `float`"),
        ({"step_seconds": 0}, "step_seconds", "positive"),
        ({"queries": ["up"]}, "queries", "only for kind prometheus_api"),
        ({"time_pattern": "(?P<time>[0-9"}, "time_pattern", "not a valid regex"),
        ({"time_pattern": r"^\d+"}, "time_pattern", "(?P<time>...)"),
        ({"time_format": "no directive"}, "time_format", "no strptime directive"),
        ({"time_format": "%Y-%Q"}, "time_format", "not a strptime format"),
        ({"location": ""}, "location", "empty"),
        ({"location": "http://prom:9090"}, "location", "only read by kind prometheus_api"),
        ({"device_label": ""}, "device_label", "1-64 characters"),
    ],
)
def test_a_bad_spec_field_is_named(change: dict[str, object], field: str, words: str) -> None:
    raw = {"name": "lab", "kind": "logs", "location": "/x", **change}
    with pytest.raises(SourceError) as info:
        parse_spec(json.dumps(raw))
    assert info.value.field == field
    assert words in str(info.value)


def test_a_missing_field_and_not_json_are_errors() -> None:
    with pytest.raises(SourceError) as info:
        parse_spec(b'{"name": "lab", "kind": "logs"}')
    assert info.value.field == "location"
    with pytest.raises(SourceError, match="not JSON"):
        parse_spec(b"{name: lab")


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("prom:9090", "expected an http(s)"),
        ("ftp://prom:9090", "expected an http(s)"),
        ("http://prom:99999", "not a URL"),
        ("http://prom:9090/?x=1", "without query"),
    ],
)
def test_a_bad_prometheus_url_is_named(location: str, words: str) -> None:
    with pytest.raises(SourceError) as info:
        parse_spec(json.dumps({"name": "p", "kind": "prometheus_api", "location": location}))
    assert info.value.field == "location"
    assert words in str(info.value)


def test_open_source_checks_the_spec_and_the_location(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        open_source(SourceSpec(name="UPPER", kind="series", location=str(tmp_path)))
    assert info.value.field == "name"
    missing = tmp_path / "nowhere"
    with pytest.raises(SourceError) as info:
        open_source(SourceSpec(name="lab", kind="series", location=str(missing)))
    assert info.value.field == "location"
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


def test_a_location_removed_after_opening_is_an_error_on_read(tmp_path: Path) -> None:
    folder = tmp_path / "gone"
    _csv(folder / "cpu.csv", _minutes(3))
    reader = _open("series", folder)
    assert reader.latest() is not None
    (folder / "cpu.csv").unlink()
    folder.rmdir()
    with pytest.raises(SourceError, match="does not exist"):
        reader.series(None, *EVER)


# -- infer_kind -------------------------------------------------------------------

PROM = '# TYPE up gauge\nup{instance="r1:9100"} 1\n'


@pytest.mark.parametrize(
    ("name", "content", "kind"),
    [
        ("cpu.csv", "timestamp,value\n", "series"),
        ("cpu.parquet", None, "series"),
        ("m.prom", PROM, "prometheus_text"),
        ("m.om", "# TYPE up gauge\nup 1\n# EOF\n", "prometheus_text"),
        ("m.txt", 'node_load1{cpu="0"} 0.5 1709251200000\n', "prometheus_text"),
        ("notes.txt", "2024-03-01 10:00:00 hello\n", "logs"),
        ("syslog.log", "Mar  1 10:00:00 r1 sshd[1]: hi\n", "logs"),
        ("app.jsonl", '{"ts": 1, "msg": "x"}\n', "logs"),
        ("app.json", '[{"ts": 1, "msg": "x"}]\n', "logs"),
        ("syslog.log.1", "x\n", "logs"),
    ],
)
def test_infer_kind_of_a_file(tmp_path: Path, name: str, content: str | None, kind: str) -> None:
    path = tmp_path / name
    if content is None:
        pq.write_table(pa.table({"timestamp": [T0], "value": [1.0]}), path)
    else:
        _write(path, content)
    assert infer_kind(str(path)) == kind


def test_infer_kind_of_urls_and_gzip_and_directories(tmp_path: Path) -> None:
    assert infer_kind("http://prom:9090") == "prometheus_api"
    assert infer_kind("https://user:pw@prom.example/prometheus") == "prometheus_api"
    with gzip.open(tmp_path / "a.csv.gz", "wt") as fh:
        fh.write("timestamp,value\n")
    with gzip.open(tmp_path / "b.log.gz", "wt") as fh:
        fh.write("hello\n")
    assert infer_kind(str(tmp_path / "a.csv.gz")) == "series"
    assert infer_kind(str(tmp_path / "b.log.gz")) == "logs"
    series = tmp_path / "series"
    _csv(series / "r1" / "cpu.csv", _minutes(2))
    _write(series / "README.md", "not telemetry\n")
    _write(series / ".hidden.log", "ignored\n")
    assert infer_kind(str(series)) == "series"
    logs = tmp_path / "logs"
    _write(logs / "r1" / "messages.log", "x\n")
    _write(logs / "r2" / "app.jsonl", "{}\n")
    assert infer_kind(str(logs)) == "logs"


@pytest.mark.parametrize(
    ("setup", "words"),
    [
        ("missing", "does not exist"),
        ("empty", "holds no telemetry files"),
        ("mixed", "several kinds (1 logs, 1 series)"),
        ("unknown", "no kind reads this file"),
        ("fake_prom", "does not look like Prometheus"),
        ("scheme", "ftp:// is not read"),
    ],
)
def test_infer_kind_errors_name_the_location(tmp_path: Path, setup: str, words: str) -> None:
    location = tmp_path / setup
    match setup:
        case "empty":
            location.mkdir()
        case "mixed":
            _csv(location / "cpu.csv", _minutes(2))
            _write(location / "sys.log", "x\n")
        case "unknown":
            location = _write(tmp_path / "data.xlsx", "x")
        case "fake_prom":
            location = _write(tmp_path / "m.prom", "hello world, not metrics\n")
    text = "ftp://host/x" if setup == "scheme" else str(location)
    with pytest.raises(SourceError) as info:
        infer_kind(text)
    assert info.value.field == "location"
    assert words in str(info.value)


# -- series -----------------------------------------------------------------------


def test_a_nab_style_file_is_one_series_that_matches_every_device(tmp_path: Path) -> None:
    path = _csv(tmp_path / "ec2_cpu.csv", _minutes(5))
    reader = _open("series", path)
    assert isinstance(reader, TelemetryReader)
    assert reader.devices() == []
    for device in (None, "leaf1", "anything"):
        (s,) = reader.series(device, *EVER)
        assert s.name == "ec2_cpu"
        assert s.labels == {}
        assert s.values == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert s.timestamps[0] == T0
        assert s.timestamps[0].tzinfo is not None
    summary = reader.describe()
    assert (summary.kind, summary.devices, summary.series, summary.log_lines) == (
        "series", [], 1, 0)  # fmt: skip
    assert (summary.first, summary.last) == (T0, T0 + timedelta(minutes=4))
    assert reader.latest() == T0 + timedelta(minutes=4)
    assert reader.logs(None, *EVER) == []


def test_per_device_subdirectories_name_the_device(tmp_path: Path) -> None:
    _csv(tmp_path / "r1" / "cpu.csv", _minutes(3, value=10))
    _csv(tmp_path / "r2" / "cpu.csv", _minutes(3, value=20))
    _csv(tmp_path / "device=r3" / "sub" / "cpu.csv", _minutes(3, value=30))
    _csv(tmp_path / "shared.csv", _minutes(3, value=0))  # names no device
    reader = _open("series", tmp_path)
    assert reader.devices() == ["r1", "r2", "r3"]
    got = reader.series("r1", *EVER)
    assert [(s.name, s.labels) for s in got] == [("cpu", {"device": "r1"}), ("shared", {})]
    assert got[0].values[0] == 10.0
    assert [s.labels.get("device") for s in reader.series("r3", *EVER)] == ["r3", None]
    everything = reader.series(None, *EVER)
    assert [(s.name, s.labels.get("device")) for s in everything] == [
        ("cpu", "r1"), ("cpu", "r2"), ("cpu", "r3"), ("shared", None)]  # fmt: skip


def test_a_long_table_gives_a_series_per_column_and_labels(tmp_path: Path) -> None:
    rows = [
        "time,router,interface,in_octets,errors,up",
        "2024-03-01T00:00:00+01:00,01,eth0,100,0,true",
        "2024-03-01T00:00:00+01:00,01,eth1,200,,true",
        "2024-03-01T00:01:00+01:00,01,eth0,150,2,false",
        "2024-03-01T00:00:00+01:00,02,eth0,7,1,true",
    ]
    path = _write(tmp_path / "ifaces.csv", "\n".join(rows) + "\n")
    reader = _open("series", path, device_label="router")
    assert reader.devices() == ["01", "02"]  # read as text, not the number 1
    got = reader.series("01", *EVER)
    assert [(s.name, s.labels) for s in got] == [
        ("ifaces.errors", {"interface": "eth0", "router": "01"}),
        ("ifaces.in_octets", {"interface": "eth0", "router": "01"}),
        ("ifaces.in_octets", {"interface": "eth1", "router": "01"}),
        ("ifaces.up", {"interface": "eth0", "router": "01"}),
        ("ifaces.up", {"interface": "eth1", "router": "01"}),
    ]
    assert got[0].values == [0.0, 2.0]  # the empty cell is skipped
    assert got[1].timestamps == [T0 - timedelta(hours=1), T0 - timedelta(minutes=59)]
    assert got[3].values == [1.0, 0.0]  # booleans are 0/1


@pytest.mark.parametrize(
    ("header", "cells", "offset"),
    [
        ("ts,value", [str(int(T0.timestamp()) + 60 * i) for i in range(3)], 0.0),
        ("ts,value", [str(int(T0.timestamp() * 1000) + 60_000 * i) for i in range(3)], 0.0),
        ("when,value", [f"2024-03-01 00:0{i}:00" for i in range(3)], 0.0),
        ("Time,value", [f'"2024-03-01 00:0{i}:00,250"' for i in range(3)], 0.25),
        ("timestamp,value", [f"2024-03-01T01:0{i}:00.5+01:00" for i in range(3)], 0.5),
    ],
)
def test_times_in_epoch_seconds_milliseconds_and_iso(
    tmp_path: Path, header: str, cells: list[str], offset: float
) -> None:
    body = "".join(f"{c},{i}\n" for i, c in enumerate(cells))
    reader = _open("series", _write(tmp_path / "t.csv", f"{header}\n{body}"))
    (s,) = reader.series(None, *EVER)
    assert s.timestamps == [T0 + timedelta(minutes=i, seconds=offset) for i in range(3)]


def test_parquet_and_gzipped_csv_read_like_csv(tmp_path: Path) -> None:
    times = [T0 + timedelta(minutes=i) for i in range(4)]
    table = pa.table({
        "timestamp": pa.array(times, pa.timestamp("ms", tz="UTC")),
        "device": ["r1", "r1", "r2", "r2"],
        "cpu": [1.0, 2.0, 3.0, 4.0],
        "mem": pa.array([10, 20, 30, 40], pa.int32()),
    })  # fmt: skip
    pq.write_table(table, tmp_path / "host.parquet")
    with gzip.open(tmp_path / "temp.csv.gz", "wt") as fh:
        fh.write("timestamp,value\n" + "".join(f"{_iso(t)},{i}\n" for i, t in enumerate(times)))
    reader = _open("series", tmp_path)
    got = reader.series("r2", *EVER)
    assert [(s.name, s.labels, s.values) for s in got] == [
        ("host.cpu", {"device": "r2"}, [3.0, 4.0]),
        ("host.mem", {"device": "r2"}, [30.0, 40.0]),
        ("temp", {}, [0.0, 1.0, 2.0, 3.0]),
    ]
    assert got[0].timestamps == times[2:]


def test_the_window_is_start_inclusive_end_exclusive_and_naive_is_utc(tmp_path: Path) -> None:
    reader = _open("series", _csv(tmp_path / "cpu.csv", _minutes(10)))
    (s,) = reader.series(None, T0 + timedelta(minutes=2), T0 + timedelta(minutes=5))
    assert s.timestamps == [T0 + timedelta(minutes=m) for m in (2, 3, 4)]
    naive = (T0 + timedelta(minutes=2)).replace(tzinfo=None)
    (s2,) = reader.series(None, naive, naive + timedelta(minutes=3))
    assert s2 == s
    assert reader.series(None, T0 - timedelta(hours=1), T0) == []


def test_limits_keep_the_newest_points_and_the_first_series(tmp_path: Path) -> None:
    n = MAX_SERIES_POINTS + 50
    reader = _open("series", _csv(tmp_path / "big.csv", _minutes(n)))
    (s,) = reader.series(None, *EVER)
    assert len(s.values) == MAX_SERIES_POINTS
    assert s.timestamps[-1] == T0 + timedelta(minutes=n - 1)
    assert s.timestamps[0] == T0 + timedelta(minutes=50)
    wide = tmp_path / "wide"
    cols = [f"c{i:02d}" for i in range(MAX_INLINE_SERIES + 8)]
    _write(wide / "w.csv", "timestamp," + ",".join(cols) + "\n" + f"{_iso(T0)},"
           + ",".join("1" for _ in cols) + "\n")  # fmt: skip
    got = _open("series", wide).series(None, *EVER)
    assert len(got) == MAX_INLINE_SERIES
    assert [s.name for s in got] == [f"w.{c}" for c in cols[:MAX_INLINE_SERIES]]


def test_a_growing_file_and_a_new_file_are_read_again_and_nothing_else_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _csv(tmp_path / "r1" / "cpu.csv", _minutes(3))
    reader = _open("series", tmp_path)
    parsed: list[str] = []
    original = type(reader).parse

    def counting(self: object, p: Path, mtime: float) -> object:
        parsed.append(p.name)
        return original(self, p, mtime)  # type: ignore[arg-type]

    monkeypatch.setattr(type(reader), "parse", counting)
    assert reader.latest() == T0 + timedelta(minutes=2)
    assert reader.latest() == T0 + timedelta(minutes=2)
    assert parsed == ["cpu.csv"]  # the second call used the cache
    with path.open("a") as fh:
        fh.write(f"{_iso(T0 + timedelta(minutes=3))},99\n")
        fh.write(f"{_iso(T0 + timedelta(minutes=4))[:10]}")  # a half-written row
    (s,) = reader.series("r1", *EVER)
    assert s.values[-1] == 99.0
    assert len(s.values) == 4
    _csv(tmp_path / "r2" / "mem.csv", _minutes(2))
    assert reader.devices() == ["r1", "r2"]
    assert parsed == ["cpu.csv", "cpu.csv", "mem.csv"]


def test_a_csv_without_a_numeric_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "names.csv", "timestamp,host,state\n2024-03-01,r1,up\n")
    with pytest.raises(SourceError) as info:
        _open("series", path).series(None, *EVER)
    assert info.value.path == str(path)
    assert "names.csv" in str(info.value)
    assert "no numeric column" in str(info.value)
    assert "host (text)" in str(info.value)


def test_a_bad_time_and_a_short_row_name_the_line(tmp_path: Path) -> None:
    bad = _write(tmp_path / "a" / "t.csv", "timestamp,value\n2024-03-01,1\nlater,2\n")
    with pytest.raises(SourceError) as info:
        _open("series", bad).latest()
    assert info.value.line == 3
    assert f"{bad}:3: bad time 'later' in column 'timestamp'" in str(info.value)
    short = _write(tmp_path / "b" / "t.csv", "timestamp,value\n2024-03-01,1\n2024-03-02\n"
                   "2024-03-03,3\n")  # fmt: skip
    with pytest.raises(SourceError) as info:
        _open("series", short).latest()
    assert info.value.line == 3
    assert "not a readable CSV" in str(info.value)
    first = _write(tmp_path / "c" / "t.csv", "host,value\nr1,1\n")
    with pytest.raises(SourceError, match="first column is taken as the time"):
        _open("series", first).latest()


# -- prometheus_text ----------------------------------------------------------------


def test_text_exposition_samples_labels_and_devices(tmp_path: Path) -> None:
    ms = int(T0.timestamp() * 1000)
    text = (
        "# HELP if_in_octets_total Octets in.\n"
        "# TYPE if_in_octets_total counter\n"
        f'if_in_octets_total{{device="leaf1",interface="eth0"}} 1000 {ms}\n'
        f'if_in_octets_total{{device="leaf1",interface="eth0"}} 1500 {ms + 60_000}\n'
        f'if_in_octets_total{{instance="leaf2:9100",interface="eth0"}} 7 {ms}\n'
        f'if_in_octets_created{{device="leaf1",interface="eth0"}} 1.7e9 {ms}\n'
        f'temp{{device="leaf1"}} NaN {ms}\n'
        f'temp{{device="leaf1"}} 41.5 {ms + 60_000}\n'
    )
    reader = _open("prometheus_text", _write(tmp_path / "m.prom", text))
    assert reader.devices() == ["leaf1", "leaf2"]
    got = reader.series("leaf1", *EVER)
    assert [(s.name, s.labels, s.values) for s in got] == [
        ("if_in_octets_total", {"device": "leaf1", "interface": "eth0"}, [1000.0, 1500.0]),
        ("temp", {"device": "leaf1"}, [41.5]),
    ]  # raw counter values, no _created sample, NaN dropped
    assert got[0].timestamps == [T0, T0 + timedelta(minutes=1)]
    (other,) = reader.series("leaf2", *EVER)
    assert other.labels == {"instance": "leaf2:9100", "interface": "eth0"}


def test_snapshots_without_timestamps_take_the_file_time_and_accumulate(tmp_path: Path) -> None:
    folder = tmp_path / "textfile"
    path = _write(folder / "r1" / "node.prom", "node_load1 0.5\n")
    _touch(path, T0)
    reader = _open("prometheus_text", folder)
    (s,) = reader.series("r1", *EVER)
    assert (s.name, s.labels, s.timestamps, s.values) == (
        "node_load1", {"device": "r1"}, [T0], [0.5])  # fmt: skip
    _write(path, "node_load1 0.75\n")  # the collector rewrites it a minute later
    _touch(path, T0 + timedelta(minutes=1))
    (s,) = reader.series("r1", *EVER)
    assert s.values == [0.5, 0.75]
    assert reader.latest() == T0 + timedelta(minutes=1)


def test_openmetrics_timestamps_are_seconds(tmp_path: Path) -> None:
    t = T0.timestamp()
    text = (
        "# TYPE jobs counter\n"
        f'jobs_total{{device="r1"}} 3 {t}\n'
        f'jobs_created{{device="r1"}} {t - 100} {t}\n'
        f'jobs_total{{device="r1"}} 4 {t + 30.5}\n'
        "# EOF\n"
    )
    reader = _open("prometheus_text", _write(tmp_path / "m.om", text))
    (s,) = reader.series(None, *EVER)
    assert s.name == "jobs_total"
    assert s.timestamps == [T0, T0 + timedelta(seconds=30.5)]


def test_a_bad_exposition_line_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.prom", 'up 1\nup{job="x" 2\nother 3\n')
    with pytest.raises(SourceError) as info:
        _open("prometheus_text", path).latest()
    assert info.value.line == 2
    assert f"{path}:2: not Prometheus text" in str(info.value)


# -- logs -------------------------------------------------------------------------


def test_continuation_lines_go_with_the_line_before_them(tmp_path: Path) -> None:
    text = (
        "banner without a time\n"
        "2024-03-01 00:00:00,123 ERROR boom\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1\n'
        "2024-03-01T00:05:00Z INFO fine\n"
        "2024-03-01 00:10:00.5 INFO later\n"
    )
    reader = _open("logs", _write(tmp_path / "app.log", text))
    got = reader.logs("r9", *EVER)  # names no device: matches any
    assert [(x.at, x.line) for x in got] == [
        (None, "banner without a time"),
        (T0 + timedelta(milliseconds=123), "ERROR boom"),
        (None, "Traceback (most recent call last):"),
        (None, 'File "x.py", line 1'),
        (T0 + timedelta(minutes=5), "INFO fine"),
        (T0 + timedelta(minutes=10, milliseconds=500), "INFO later"),
    ]
    window = reader.logs(None, T0 + timedelta(minutes=1), T0 + timedelta(minutes=10))
    assert [x.line for x in window] == ["INFO fine"]
    assert reader.describe().log_lines == 6
    assert reader.series(None, *EVER) == []


def test_syslog_hosts_are_devices_and_the_year_comes_from_the_file(tmp_path: Path) -> None:
    text = (
        "Dec 31 23:59:00 leaf1 sshd[1]: last of the year\n"
        "Jan  1 00:00:05 leaf2 kernel: link down\n"
        "Jan  1 00:00:09 leaf1 sshd[1]: first of the year\n"
    )
    path = _write(tmp_path / "messages.log", text)
    _touch(path, datetime(2025, 1, 1, 0, 1, tzinfo=UTC))
    reader = _open("logs", path)
    assert reader.devices() == ["leaf1", "leaf2"]
    got = reader.logs("leaf1", *EVER)
    assert [(x.at, x.line) for x in got] == [
        (datetime(2024, 12, 31, 23, 59, tzinfo=UTC), "sshd[1]: last of the year"),
        (datetime(2025, 1, 1, 0, 0, 9, tzinfo=UTC), "sshd[1]: first of the year"),
    ]


def test_json_lines_fields_and_devices(tmp_path: Path) -> None:
    ms = int(T0.timestamp() * 1000)
    lines = [
        {"ts": ms, "msg": "one", "router": "r1"},
        {"@timestamp": _iso(T0 + timedelta(seconds=1)), "message": "two", "host": "r2"},
        {"time": T0.timestamp() + 2, "log": "three", "host": {"name": "r1"}},
        {"timestamp": "soon", "line": "four"},
    ]
    body = "".join(json.dumps(x) + "\n" for x in lines) + "not json at all\n"
    reader = _open("logs", _write(tmp_path / "app.jsonl", body), device_label="router")
    assert reader.devices() == ["r1", "r2"]
    got = reader.logs("r1", *EVER)
    assert [(x.at, x.line) for x in got] == [
        (T0, "one"), (T0 + timedelta(seconds=2), "three"), (None, "four"),
        (None, "not json at all")]  # fmt: skip


def test_gzip_subdirectory_devices_and_loghub_style_formats(tmp_path: Path) -> None:
    (tmp_path / "r1").mkdir()
    with gzip.open(tmp_path / "r1" / "hdfs.log.gz", "wt") as fh:
        fh.write("240301 000000 148 INFO dfs.DataNode: served block\n")
        fh.write("240301 000100 148 WARN dfs.DataNode: slow\n")
    _write(tmp_path / "r2" / "spark.log", "24/03/01 00:02:00 INFO Executor: done\n")
    reader = _open("logs", tmp_path)
    assert reader.devices() == ["r1", "r2"]
    assert [(x.at, x.line) for x in reader.logs("r1", *EVER)] == [
        (T0, "148 INFO dfs.DataNode: served block"),
        (T0 + timedelta(minutes=1), "148 WARN dfs.DataNode: slow"),
    ]
    assert [x.at for x in reader.logs(None, *EVER)] == [
        T0, T0 + timedelta(minutes=1), T0 + timedelta(minutes=2)]  # fmt: skip


@pytest.mark.parametrize(
    ("line", "at", "device", "message"),
    [
        ("<165>1 2024-03-01T00:00:00Z leaf7 app - - hi", T0, "leaf7", "app - - hi"),
        ("2024-03-01T00:00:00+00:00 leaf7 sshd[42]: hi", T0, "leaf7", "sshd[42]: hi"),
        ("[2024-03-01 01:00:00.5+01:00] hi", T0 + timedelta(seconds=0.5), None, "hi"),
        ("Mar  1 00:00:00 leaf7 kernel: hi", T0, "leaf7", "kernel: hi"),
        ("- 1709251200 2024.03.01 node-7 RAS hi", T0, "node-7", "RAS hi"),
        ("[Fri Mar 01 00:00:00 2024] [error] hi", T0, None, "[error] hi"),
        ('10.0.0.1 - - [01/Mar/2024:01:00:00 +0100] "GET / HTTP/1.1" 200', T0, None,
         '10.0.0.1 - - [01/Mar/2024:01:00:00 +0100] "GET / HTTP/1.1" 200'),
        ("24/03/01 00:00:00 INFO hi", T0, None, "INFO hi"),
        ("03-01 00:00:00.250  10  20 D Tag: hi", T0 + timedelta(seconds=0.25), None,
         "10  20 D Tag: hi"),
        ("20240301-0:0:0:5|Step|hi", T0 + timedelta(seconds=0.5), None, "Step|hi"),
        ("[03.01 00:00:00] app.exe - hi", T0, None, "app.exe - hi"),
        ("1709251200123 hi", T0 + timedelta(seconds=0.123), None, "hi"),
        ("api.log.1 2024-03-01 00:00:00.008 7 INFO hi", T0 + timedelta(seconds=0.008), None,
         "7 INFO hi"),
    ],
)  # fmt: skip
def test_detected_line_formats(
    tmp_path: Path, line: str, at: datetime, device: str | None, message: str
) -> None:
    path = _write(tmp_path / "x.log", line + "\n")
    _touch(path, T0 + timedelta(days=30))
    reader = _open("logs", path)
    assert reader.logs(None, *EVER) == [LogLine(at=at, line=message)]
    assert reader.devices() == ([device] if device else [])


def test_a_json_array_file(tmp_path: Path) -> None:
    items = [{"ts": T0.timestamp(), "msg": "a", "host": "r1"}, {"msg": "b"}]
    reader = _open("logs", _write(tmp_path / "events.json", json.dumps(items)))
    assert reader.logs("r1", *EVER) == [LogLine(at=T0, line="a"), LogLine(line="b")]


def test_a_spec_pattern_and_format(tmp_path: Path) -> None:
    text = "<r7> 01.03.2024 00:00:30 | link up\n<r8> 01.03.2024 00:01:00 | link down\n"
    path = _write(tmp_path / "dev.log", text)
    reader = _open(
        "logs", path,
        time_pattern=r"^<(?P<device>[^>]+)> (?P<time>\S+ \S+) \| (?P<message>.*)$",
        time_format="%d.%m.%Y %H:%M:%S",
    )  # fmt: skip
    assert reader.devices() == ["r7", "r8"]
    assert reader.logs("r7", *EVER) == [LogLine(at=T0 + timedelta(seconds=30), line="link up")]
    only_format = _open("logs", path, time_pattern=r"^<[^>]+> (?P<time>\S+ \S+) \|",
                        time_format=None)  # fmt: skip
    assert only_format.logs(None, *EVER)[0].at == T0 + timedelta(seconds=30)
    words = _write(tmp_path / "w" / "dev.log", "01.03.2024 00:00:30 link up\n")
    reader = _open("logs", words, time_format="%d.%m.%Y %H:%M:%S")
    assert reader.logs(None, *EVER) == [LogLine(at=T0 + timedelta(seconds=30), line="link up")]


def test_a_file_without_times_is_dated_by_its_mtime(tmp_path: Path) -> None:
    path = _write(tmp_path / "notes.log", "first\nsecond\n")
    _touch(path, T0)
    reader = _open("logs", path)
    assert reader.latest() == T0
    assert [(x.at, x.line) for x in reader.logs(None, T0, T0 + timedelta(seconds=1))] == [
        (None, "first"), (None, "second")]  # fmt: skip
    assert reader.logs(None, T0 + timedelta(seconds=1), T0 + timedelta(hours=1)) == []


def test_log_limits_keep_the_newest_lines_and_cut_long_ones(tmp_path: Path) -> None:
    n = MAX_LOG_LINES + 10
    body = "".join(f"{_iso(T0 + timedelta(seconds=i))} line {i}\n" for i in range(n))
    body += f"{_iso(T0 + timedelta(seconds=n))} " + "x" * (MAX_LOG_LINE_CHARS + 5) + "\n"
    got = _open("logs", _write(tmp_path / "big.log", body)).logs(None, *EVER)
    assert len(got) == MAX_LOG_LINES
    assert got[0].line == "line 11"
    assert got[-2].line == f"line {n - 1}"
    assert len(got[-1].line) == MAX_LOG_LINE_CHARS


def test_appended_log_lines_are_read(tmp_path: Path) -> None:
    path = _write(tmp_path / "r1" / "app.log", f"{_iso(T0)} start\n")
    reader = _open("logs", tmp_path)
    assert reader.latest() == T0
    with path.open("a") as fh:
        fh.write(f"{_iso(T0 + timedelta(minutes=1))} more\n")
    assert reader.latest() == T0 + timedelta(minutes=1)
    assert [x.line for x in reader.logs("r1", *EVER)] == ["start", "more"]
    assert reader.logs("r2", *EVER) == []


# -- prometheus_api -----------------------------------------------------------------


@pytest.fixture
def prom() -> Iterator[FakePrometheus]:
    t = T0.timestamp()
    with FakePrometheus() as server:
        server.add({"__name__": "cpu", "device": "leaf1", "core": "0"},
                   [(t + 60 * i, float(i)) for i in range(10)])  # fmt: skip
        server.add({"__name__": "cpu", "device": 'we"ird', "core": "0"}, [(t, 5.0)])
        server.add(
            {"__name__": "temp", "device": "leaf1"},
            [(t, 40.0), (t + 60, float("nan")), (t + 120, float("inf")), (t + 180, 41.0)],
        )
        server.add({"__name__": "up", "instance": "leaf9:9100"}, [(t, 1.0)])
        yield server


def _api(server: FakePrometheus, **kw: object) -> TelemetryReader:
    raw = {"name": "prom", "kind": "prometheus_api", "location": server.url, **kw}
    return open_source(parse_spec(json.dumps(raw)))


def test_api_series_of_a_device(prom: FakePrometheus) -> None:
    reader = _api(prom, queries=['cpu{device="{device}"}', 'temp{device="{device}"}'])
    assert isinstance(reader, TelemetryReader)
    got = reader.series("leaf1", T0, T0 + timedelta(minutes=5))
    assert [(s.name, s.labels) for s in got] == [
        ("cpu", {"core": "0", "device": "leaf1"}), ("temp", {"device": "leaf1"})]  # fmt: skip
    assert got[0].timestamps == [T0 + timedelta(minutes=i) for i in range(5)]  # end exclusive
    assert got[0].values == [0.0, 1.0, 2.0, 3.0, 4.0]
    # NaN and +Inf dropped; the fake's 5-minute lookback repeats the last finite value
    assert got[1].values == [40.0, 41.0, 41.0]
    ranges = [r for r in prom.requests if r.path == "/api/v1/query_range"]
    assert [r.params["query"] for r in ranges] == ['cpu{device="leaf1"}', 'temp{device="leaf1"}']
    assert ranges[0].params["step"] == "60"
    weird = reader.series('we"ird', T0, T0 + timedelta(minutes=1))
    assert [s.values for s in weird] == [[5.0]]
    assert prom.requests[-2].params["query"] == 'cpu{device="we\\"ird"}'


def test_api_devices_none_and_the_default_query(prom: FakePrometheus) -> None:
    reader = _api(prom)
    assert reader.devices() == ["leaf1", 'we"ird']
    before = prom.count
    got = reader.series(None, T0, T0 + timedelta(minutes=1))
    assert prom.count == before + 1
    assert prom.requests[-1].params["query"] == '{device=~".+"}'
    assert [(s.name, s.labels.get("device")) for s in got] == [
        ("cpu", "leaf1"), ("cpu", 'we"ird'), ("temp", "leaf1")]  # fmt: skip
    assert reader.logs("leaf1", T0, T0 + timedelta(minutes=1)) == []
    latest = reader.latest()
    assert latest is not None
    assert latest.tzinfo is not None


def test_api_results_without_a_device_match_every_device(prom: FakePrometheus) -> None:
    reader = _api(prom, queries=["up", "cpu"], device_label="instance")
    assert reader.devices() == ["leaf9:9100"]
    got = reader.series("leaf9:9100", T0, T0 + timedelta(minutes=1))
    assert [(s.name, s.labels) for s in got] == [
        ("cpu", {"core": "0", "device": "leaf1"}), ("cpu", {"core": "0", "device": 'we"ird'}),
        ("up", {"instance": "leaf9:9100"})]  # fmt: skip
    assert [s.name for s in reader.series("leaf1", T0, T0 + timedelta(minutes=1))] == [
        "cpu", "cpu"]  # fmt: skip
    with FakePrometheus() as bare:
        bare.add({"__name__": "up", "instance": "r5:9100"}, [(T0.timestamp(), 1.0)])
        assert _api(bare).devices() == ["r5"]  # no `device` label: instance hosts


def test_api_a_placeholder_outside_a_matcher_runs_once_per_device(prom: FakePrometheus) -> None:
    reader = _api(prom, queries=['cpu{device=~"{device}|none"}'])
    got = reader.series(None, T0, T0 + timedelta(minutes=1))
    assert [s.labels["device"] for s in got] == ["leaf1", 'we"ird']
    queries = [r.params["query"] for r in prom.requests if r.path.endswith("query_range")]
    assert queries == ['cpu{device=~"leaf1|none"}', 'cpu{device=~"we\\"ird|none"}']


def test_api_long_windows_raise_the_step(prom: FakePrometheus) -> None:
    reader = _api(prom, queries=["cpu"], step_seconds=1)
    reader.series(None, T0, T0 + timedelta(days=1))
    step = float(prom.requests[-1].params["step"])
    assert step >= 86_400 / MAX_SERIES_POINTS
    assert step > 1


def test_api_basic_auth_from_the_url_never_in_messages(prom: FakePrometheus) -> None:
    with FakePrometheus(auth=("ops", "s3cret")) as locked:
        locked.add({"__name__": "up", "device": "r1"}, [(T0.timestamp(), 1.0)])
        base = locked.url.replace("http://", "http://ops:s3cret@")
        assert _api(locked, location=base).devices() == ["r1"]
        wrong = locked.url.replace("http://", "http://ops:nope@")
        with pytest.raises(SourceError) as info:
            _api(locked, location=wrong).devices()
        assert info.value.status == 401
        assert "nope" not in str(info.value)
        assert "ops" not in str(info.value)
        assert locked.url in str(info.value)


@pytest.mark.parametrize(
    ("mode", "words", "status"),
    [
        ("bad_data", ["HTTP 400", "bad_data", "fake bad data"], 400),
        ("unavailable", ["HTTP 503", "unavailable", "TSDB not ready"], 503),
        ("malformed", ["malformed answer"], None),
    ],
)
def test_api_error_answers_become_one_line_errors(
    prom: FakePrometheus, mode: str, words: list[str], status: int | None
) -> None:
    reader = _api(prom)
    prom.mode = mode  # type: ignore[assignment]
    with pytest.raises(SourceError) as info:
        reader.series("leaf1", T0, T0 + timedelta(minutes=1))
    text = str(info.value)
    assert "\n" not in text
    assert f"prometheus {prom.url}/api/v1/query_range" in text
    for w in words:
        assert w in text
    assert info.value.status == status


def test_api_a_query_prometheus_rejects_is_named(prom: FakePrometheus) -> None:
    reader = _api(prom, queries=['rate(cpu{device="{device}"}[5m])'])
    with pytest.raises(SourceError, match="HTTP 400 Bad Request, bad_data: 1:1: parse error"):
        reader.series("leaf1", T0, T0 + timedelta(minutes=1))


def test_api_a_hang_past_the_timeout(prom: FakePrometheus) -> None:
    reader = _api(prom, timeout_seconds=0.3)
    prom.mode = "hang"
    with pytest.raises(SourceError, match=r"no answer within 0.3 s \(timeout_seconds\)"):
        reader.devices()
    assert prom.count == 1  # a read timeout is not retried


def test_api_connection_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    reader = open_source(SourceSpec(name="p", kind="prometheus_api",
                                    location=f"http://127.0.0.1:{port}"))  # fmt: skip
    with pytest.raises(SourceError, match="cannot connect"):
        reader.series("r1", T0, T0 + timedelta(minutes=1))


def test_api_describe(prom: FakePrometheus) -> None:
    now = datetime.now(UTC).timestamp()
    prom.add({"__name__": "live", "device": "leaf1"}, [(now - 120, 1.0), (now - 60, 2.0)])
    summary = _api(prom, queries=["live"]).describe()
    assert summary.kind == "prometheus_api"
    assert summary.devices == ["leaf1", 'we"ird']
    assert summary.series == 1
    assert summary.first is not None
    assert summary.last is not None


def test_every_reader_returns_schema_types(tmp_path: Path, prom: FakePrometheus) -> None:
    _csv(tmp_path / "s" / "cpu.csv", _minutes(2))
    _write(tmp_path / "l" / "a.log", f"{_iso(T0)} hi\n")
    for reader in (_open("series", tmp_path / "s"), _api(prom)):
        got = reader.series(None, T0, T0 + timedelta(minutes=2))
        assert got
        assert all(isinstance(s, MetricSeries) for s in got)
        assert msgspec.json.decode(msgspec.json.encode(got), type=list[MetricSeries]) == got
    lines = _open("logs", tmp_path / "l").logs(None, *EVER)
    assert msgspec.json.decode(msgspec.json.encode(lines), type=list[LogLine]) == lines
