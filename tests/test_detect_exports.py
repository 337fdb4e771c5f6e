"""Pin the public API of ``sitemesh.detect`` (a change here is an API change: update
``docs/detect.md``), and check that the bundled NAB copy ships with its attribution."""

from __future__ import annotations

import importlib.resources

import sitemesh.detect

PUBLIC = [
    "DEFAULT_CONFIG", "DEFAULT_LOG_CONFIG", "DEFAULT_MASKS", "MAD_TO_SIGMA",
    "MEAN_AD_TO_SIGMA", "NAB_CATEGORIES", "NAB_DIR", "STANDARD_PROFILE", "Baseline",
    "DetectConfig", "DetectError", "LogConfig", "LogFinding", "LogKind", "LogLine",
    "LogReport", "Mask", "MetricFinding", "MetricKind", "NabProfile", "NabScore",
    "NabSeries", "Series", "TemplateCount", "TimeParser", "WindowCounts", "baseline",
    "change_points", "detect_series", "fixed_threshold", "flatlines", "load_nab",
    "log_lines", "merge_findings", "mine_logs", "nab_score", "noise_sigma",
    "parse_timestamp", "read_log_lines", "read_series_csv", "robust_deviation",
    "robust_spread", "rolling_zscore", "scaled_sigmoid", "template_miner",
    "timestamp_parser", "window_counts", "MAJOR_FACTOR", "config_for_span", "config_for_times",
    "finding_severity", "short_series_config", "write_nab_source",
]  # fmt: skip


def test_public_api() -> None:
    assert sorted(sitemesh.detect.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert hasattr(sitemesh.detect, name), name


def test_the_error_is_a_sitemesh_error() -> None:
    from sitemesh.errors import SitemeshError

    assert issubclass(sitemesh.detect.DetectError, SitemeshError)
    assert issubclass(sitemesh.detect.DetectError, ValueError)


def test_the_nab_copy_ships_with_its_licence_and_source() -> None:
    nab = importlib.resources.files(sitemesh.detect) / "data" / "nab"
    for rel in ("LICENSE.txt", "SOURCE.md", "labels/combined_windows.json"):
        assert (nab / rel).is_file(), rel
    assert "Numenta" in (nab / "LICENSE.txt").read_text(encoding="utf-8")
    for category in sitemesh.detect.NAB_CATEGORIES:
        assert (nab / "data" / category).is_dir(), category
