"""The metric detectors on synthetic series with known anomalies (sitemesh.detect)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest

from sitemesh.detect import (
    DEFAULT_CONFIG,
    DetectConfig,
    DetectError,
    MetricFinding,
    Series,
    change_points,
    config_for_times,
    detect_series,
    fixed_threshold,
    flatlines,
    merge_findings,
    read_series_csv,
    robust_deviation,
    rolling_zscore,
    short_series_config,
)
from sitemesh.errors import SitemeshError

DAY = 86_400
STEP = 300
T0 = datetime(2024, 3, 4, tzinfo=UTC).timestamp()


def seasonal(seed: int = 7, days: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """A week of 5-min samples: 50 + 10 sin(day) + N(0, 1)."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(days * DAY // STEP) * STEP
    x = 50 + 10 * np.sin(2 * np.pi * (t - T0) / DAY) + rng.normal(0, 1, t.size)
    return t, x


def at(i: int) -> datetime:
    return datetime.fromtimestamp(T0 + i * STEP, tz=UTC)


def overlaps(f: MetricFinding, i0: int, i1: int) -> bool:
    return f.start <= at(i1) and f.end >= at(i0)


SPIKE = 5 * DAY // STEP + 144  # day 5, 12:00
SHIFT = int(4.5 * DAY / STEP)  # day 4, 12:00
FLAT = 5 * DAY // STEP + 72  # day 5, 06:00


def test_a_spike_is_found_and_the_clean_series_gives_nothing() -> None:
    t, x = seasonal()
    spiked = x.copy()
    spiked[SPIKE : SPIKE + 6] += 20.0  # 20 sigma for 30 min

    found = detect_series(Series.from_points("cpu", t, spiked))
    hits = [f for f in found if overlaps(f, SPIKE, SPIKE + 5)]
    assert len(hits) == 1
    (hit,) = hits
    assert hit.kind == "high"
    assert "robust_deviation" in hit.detector
    assert hit.deviation >= 10
    phase = 2 * np.pi * (hit.peak_at.timestamp() - T0) / DAY
    assert abs(hit.baseline - (50 + 10 * np.sin(phase))) < 2  # the daily profile
    assert at(SPIKE) <= hit.detected_at <= at(SPIKE + 5)
    assert not [f for f in found if not overlaps(f, SPIKE, SPIKE + 5)]

    # Absence, after the positive control above: the same series without the spike.
    assert detect_series(Series.from_points("cpu", t, x)) == []


def test_an_outage_stays_flagged_while_it_lasts() -> None:
    t, x = seasonal()
    x[SPIKE : SPIKE + 12] = 0.0  # 1 h at 0: the trailing day's 1 % tail fills after 3
    found = robust_deviation(Series.from_points("rate", t, x))
    assert [(f.kind, f.start, f.end) for f in found] == [("low", at(SPIKE), at(SPIKE + 11))]
    assert found[0].detected_at == at(SPIKE + 3)  # 20 min = 4 samples


def test_a_dip_is_a_low_finding() -> None:
    t, x = seasonal()
    x[SPIKE : SPIKE + 6] -= 20.0
    found = robust_deviation(Series.from_points("cpu", t, x))
    assert [f.kind for f in found if overlaps(f, SPIKE, SPIKE + 5)] == ["low"]


def test_a_level_shift_is_found_with_its_size_in_robust_units() -> None:
    t, x = seasonal()
    x[SHIFT:] += 15.0
    found = change_points(Series.from_points("rate", t, x))
    assert len(found) == 1
    (shift,) = found
    assert shift.kind == "level_up"
    assert abs((shift.start - at(SHIFT)).total_seconds()) <= 3600
    assert 10 <= shift.deviation <= 20  # 15 sigma, measured against the noise
    assert abs(shift.observed - shift.baseline - 15.0) < 2.0
    assert shift.detected_at >= shift.start
    assert "daily profile" in shift.evidence
    combined = detect_series(Series.from_points("rate", t, x))
    assert any("change_points" in f.detector for f in combined)


def test_a_flatline_is_found() -> None:
    t, x = seasonal()
    x[FLAT : FLAT + 72] = x[FLAT]  # stuck for 6 h
    found = flatlines(Series.from_points("temp", t, x))
    assert len(found) == 1
    (flat,) = found
    assert flat.kind == "flatline"
    assert flat.start == at(FLAT)
    assert flat.end == at(FLAT + 71)
    assert flat.observed == pytest.approx(x[FLAT])
    assert flat.detected_at == at(FLAT) + DEFAULT_CONFIG.flat_min_duration - timedelta(seconds=STEP)


def test_constant_and_square_wave_series_give_no_flatline_or_finding() -> None:
    t = T0 + np.arange(7 * DAY // STEP) * STEP
    square = np.where(((t - T0) % (DAY / 4)) < DAY / 8, 20.0, 80.0)  # 3-h plateaus
    t_, x = seasonal()
    x[FLAT : FLAT + 72] = x[FLAT]
    assert flatlines(Series.from_points("x", t_, x))  # positive control
    assert detect_series(Series.from_points("const", t, np.full(t.size, 45.0))) == []
    assert detect_series(Series.from_points("square", t, square)) == []


def test_findings_are_utc_and_their_evidence_names_no_series() -> None:
    t, x = seasonal()
    x[SPIKE : SPIKE + 6] += 20.0
    (f,) = detect_series(Series.from_points("host-42.example.org", t, x))
    assert f.series == "host-42.example.org"
    assert f.start.tzinfo is not None
    assert f.start.utcoffset() == timedelta(0)
    assert "host-42" not in f.evidence
    assert msgspec.json.decode(msgspec.json.encode(f), type=MetricFinding) == f


def test_merge_findings_joins_overlaps_and_keeps_the_strongest() -> None:
    def finding(detector: str, start: int, end: int, z: float) -> MetricFinding:
        return MetricFinding(
            series="s", detector=detector, kind="high", start=at(start), end=at(end),
            peak_at=at(start), detected_at=at(end), observed=z, baseline=0.0, spread=1.0,
            deviation=z, evidence="",
        )  # fmt: skip

    merged = merge_findings(
        [finding("robust_deviation", 0, 10, 6), finding("change_points", 5, 20, 9),
         finding("flatline", 30, 40, 1)]
    )  # fmt: skip
    assert [(f.detector, f.start, f.end, f.deviation) for f in merged] == [
        ("change_points+robust_deviation", at(0), at(20), 9.0),
        ("flatline", at(30), at(40), 1.0),
    ]
    assert merged[0].detected_at == at(10)


def test_the_simple_rules_find_a_spike_too() -> None:
    t, x = seasonal()
    x[SPIKE : SPIKE + 6] += 40.0
    series = Series.from_points("cpu", t, x)
    for found in (fixed_threshold(series), rolling_zscore(series)):
        assert any(overlaps(f, SPIKE, SPIKE + 5) for f in found)
    assert all(f.detector == "fixed_threshold" for f in fixed_threshold(series))
    fixed = fixed_threshold(series, threshold=80.0)
    assert [(f.start, f.end) for f in fixed] == [(at(SPIKE), at(SPIKE + 5))]
    with pytest.raises(DetectError):
        fixed_threshold(series, quantile=120.0)


def test_series_input_is_checked() -> None:
    with pytest.raises(DetectError, match="2 timestamps but 3 values"):
        Series.from_points("s", [0.0, 1.0], [1.0, 2.0, 3.0])
    with pytest.raises(DetectError, match="empty"):
        Series.from_points("s", [], [])
    with pytest.raises(DetectError, match="sample 1 is not finite"):
        Series.from_points("s", [0.0, 1.0], [1.0, float("nan")])
    with pytest.raises(DetectError, match="sample 2 is earlier"):
        Series.from_points("s", [0.0, 5.0, 4.0], [1.0, 2.0, 3.0])
    assert issubclass(DetectError, SitemeshError)
    assert issubclass(DetectError, ValueError)
    naive = Series.from_points("s", [datetime(2024, 1, 1), datetime(2024, 1, 1, 0, 5)], [1, 2])
    assert naive.times.tolist() == [1704067200.0, 1704067500.0]
    assert naive.cadence_s == 300.0
    assert naive.at(1) == datetime(2024, 1, 1, 0, 5, tzinfo=UTC)
    assert len(Series.from_points("dup", [0.0, 0.0, 1.0], [1, 2, 3])) == 3


def test_a_bad_config_is_refused() -> None:
    with pytest.raises(DetectError, match="window must be positive"):
        DetectConfig(window=timedelta(0))
    with pytest.raises(DetectError, match="tail"):
        DetectConfig(tail=0.7)
    assert DetectConfig(z_threshold=4.0).z_threshold == 4.0


def test_the_config_for_sample_times_follows_their_cadence_and_span() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    ten_s = [t0 + timedelta(seconds=10 * i) for i in range(60)]
    assert config_for_times(ten_s) == short_series_config(timedelta(seconds=10))
    # repeated stamps are not steps; of an even count of steps, the upper middle one
    uneven = [t0, t0, t0 + timedelta(seconds=10), t0 + timedelta(seconds=40),
              t0 + timedelta(seconds=70), t0 + timedelta(seconds=80)]  # fmt: skip
    assert config_for_times(uneven) == short_series_config(timedelta(seconds=30))
    two_days = [t0 + timedelta(minutes=5 * i) for i in range(2 * DAY // STEP)]
    assert config_for_times(two_days) is DEFAULT_CONFIG
    assert config_for_times([t0, t0, t0]) is None
    assert config_for_times([t0]) is None


def test_read_series_csv(tmp_path: Path) -> None:
    path = tmp_path / "cpu.csv"
    path.write_text(
        "timestamp,value\n2014-02-14 14:30:00,0.132\n2014-02-14T14:35:00Z,0.5\n1392388800,1\n",
        encoding="utf-8",
    )
    series = read_series_csv(path)
    assert series.name == "cpu"
    assert series.values.tolist() == [0.132, 0.5, 1.0]
    assert np.diff(series.times).tolist() == [300.0, 300.0]

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2014-02-14 14:30:00,0.1\n2014-02-14 14:35:00,high\n")
    with pytest.raises(DetectError) as err:
        read_series_csv(bad)
    assert err.value.line == 3
    assert err.value.source == "bad.csv"
    (tmp_path / "cols.csv").write_text("time,v\n1,2\n")
    with pytest.raises(DetectError, match="no column 'timestamp'"):
        read_series_csv(tmp_path / "cols.csv")
