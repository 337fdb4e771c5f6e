"""The bundled NAB copy loads, and the NAB scorer behaves as Lavin & Ahmad (2015)
define it (sitemesh.detect)."""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import pytest

from sitemesh.detect import (
    NAB_DIR,
    STANDARD_PROFILE,
    MetricFinding,
    NabSeries,
    Series,
    load_nab,
    nab_score,
    scaled_sigmoid,
    window_counts,
)


@cache
def corpus() -> tuple[NabSeries, ...]:
    return tuple(load_nab())


def test_the_bundled_copy_loads_with_its_licence_and_source() -> None:
    items = corpus()
    assert len(items) == 28
    assert sum(len(s.windows) for s in items) == 36
    by_category = {c: [s for s in items if s.category == c] for c in {s.category for s in items}}
    assert {c: len(v) for c, v in by_category.items()} == {
        "artificialNoAnomaly": 5,
        "artificialWithAnomaly": 6,
        "realAWSCloudwatch": 17,
    }
    assert sum(s.tune for s in items) == 15
    assert all(not s.windows for s in by_category["artificialNoAnomaly"])
    for item in items:
        assert item.series.cadence_s == 300.0
        assert item.series.name == item.key.split("/")[1].removesuffix(".csv")
        for a, b in item.windows:
            assert item.series.times[0] <= a < b <= item.series.times[-1]
    cpu = next(s for s in items if s.key.endswith("ec2_cpu_utilization_24ae8d.csv"))
    assert len(cpu.series) == 4032
    assert cpu.series.values[0] == pytest.approx(0.132)
    assert cpu.probation == 604
    assert (NAB_DIR / "LICENSE.txt").read_text(encoding="utf-8").startswith("Copyright")
    assert "## In sitemesh" in (NAB_DIR / "SOURCE.md").read_text(encoding="utf-8")


def test_the_null_detector_scores_0_and_the_perfect_one_100() -> None:
    items = corpus()
    null = nab_score((item, []) for item in items)
    assert null.score == 0.0
    assert (null.tp, null.fp, null.fn) == (0, 0, 36)
    perfect = nab_score((item, [a for a, _ in item.windows]) for item in items)
    assert perfect.score == pytest.approx(100.0)
    assert (perfect.tp, perfect.fp, perfect.fn) == (36, 0, 0)
    assert perfect.raw == perfect.perfect == 36.0
    assert null.raw == null.null == -36.0
    # No windows, nothing to normalise by.
    assert math.isnan(nab_score((i, []) for i in items if not i.windows).score)


def toy(windows: tuple[tuple[int, int], ...] = ((600, 699),)) -> NabSeries:
    """1,000 records at 5 min; windows given in record indices."""
    t = np.arange(1000, dtype=np.float64) * 300.0
    series = Series.from_points("toy", t, np.zeros(1000))
    spans = tuple((float(t[a]), float(t[b])) for a, b in windows)
    return NabSeries(key="x/toy.csv", category="x", series=series, windows=spans, tune=True)


def test_scores_follow_the_scaled_sigmoid() -> None:
    item = toy()
    t = item.series.times
    assert scaled_sigmoid(-1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(3.5) == -1.0

    def raw(*records: int) -> float:
        return nab_score([(item, [float(t[r]) for r in records])]).raw

    assert raw(600) == pytest.approx(STANDARD_PROFILE.tp)  # earliest: exactly A_TP
    assert 0 < raw(699) < 0.05  # the window's last record: close to 0
    assert raw(650) == pytest.approx(scaled_sigmoid(-50 / 100) / scaled_sigmoid(-1.0))
    assert raw(600, 610, 699) == raw(600)  # later detections in a window do not count
    assert raw(300) == pytest.approx(-STANDARD_PROFILE.fp - STANDARD_PROFILE.fn)  # before it
    just_after = raw(600, 700) - raw(600)
    far_after = raw(600, 990) - raw(600)
    assert -0.01 < just_after < 0  # little just after a window
    assert far_after == pytest.approx(STANDARD_PROFILE.fp * scaled_sigmoid(290 / 99))
    assert raw(10) == -STANDARD_PROFILE.fn  # in the probationary period: ignored
    assert item.probation == 150


def test_window_counts() -> None:
    item = toy(((600, 699), (800, 849)))

    def finding(a: int, b: int) -> MetricFinding:
        s = item.series
        return MetricFinding(
            series="toy", detector="x", kind="high", start=s.at(a), end=s.at(b),
            peak_at=s.at(a), detected_at=s.at(a), observed=1.0, baseline=0.0, spread=1.0,
            deviation=1.0, evidence="",
        )  # fmt: skip

    counts = window_counts([(item, [finding(590, 605), finding(700, 710), finding(5, 9)])])
    assert (counts.windows, counts.detected, counts.false_positives) == (2, 1, 1)
    assert counts.recall == 0.5
    assert counts.days == pytest.approx(850 * 300 / 86_400)
