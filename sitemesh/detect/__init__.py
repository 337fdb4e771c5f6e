"""Diagnostics on a site's own telemetry and logs: metric anomaly detectors and log
template mining, offline and deterministic.

Metrics (a :class:`Series`: sorted UTC times, float values):

* :func:`robust_deviation`: distance from a trailing median/MAD baseline or a
  time-of-day profile, in robust z units, merged into stretches;
* :func:`change_points`: level shifts (ruptures' PELT), sized in robust units;
* :func:`flatlines`: a moving series that stops changing;
* :func:`detect_series`: all three, overlapping findings merged;
* :func:`fixed_threshold` and :func:`rolling_zscore`: the simple rules they are
  benchmarked against.

Logs: :func:`mine_logs` groups lines into templates with drain3 (masking set in
code, :data:`DEFAULT_MASKS`) and reports template counts and new, rare and bursting
templates after a learning prefix.

Benchmarks: :func:`load_nab` (the bundled NAB copy), :func:`nab_score` and
:func:`window_counts`. See ``docs/detect.md`` and ``bench/detect.py``.
"""

from __future__ import annotations

from ._baseline import MAD_TO_SIGMA, MEAN_AD_TO_SIGMA, Baseline, baseline, robust_spread
from ._changes import change_points, noise_sigma
from ._combine import MAJOR_FACTOR, detect_series, finding_severity, merge_findings
from ._config import (
    DEFAULT_CONFIG,
    DetectConfig,
    config_for_span,
    config_for_times,
    short_series_config,
)
from ._deviation import flatlines, robust_deviation
from ._errors import DetectError
from ._findings import LogFinding, LogKind, MetricFinding, MetricKind, TemplateCount
from ._logs import (
    DEFAULT_LOG_CONFIG,
    DEFAULT_MASKS,
    LogConfig,
    LogReport,
    Mask,
    mine_logs,
    template_miner,
)
from ._nab import (
    NAB_CATEGORIES,
    NAB_DIR,
    STANDARD_PROFILE,
    NabProfile,
    NabScore,
    NabSeries,
    WindowCounts,
    load_nab,
    nab_score,
    scaled_sigmoid,
    window_counts,
    write_nab_source,
)
from ._readers import (
    LogLine,
    TimeParser,
    log_lines,
    parse_timestamp,
    read_log_lines,
    read_series_csv,
    timestamp_parser,
)
from ._series import Series
from ._simple import fixed_threshold, rolling_zscore

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_LOG_CONFIG",
    "DEFAULT_MASKS",
    "MAD_TO_SIGMA",
    "MAJOR_FACTOR",
    "MEAN_AD_TO_SIGMA",
    "NAB_CATEGORIES",
    "NAB_DIR",
    "STANDARD_PROFILE",
    "Baseline",
    "DetectConfig",
    "DetectError",
    "LogConfig",
    "LogFinding",
    "LogKind",
    "LogLine",
    "LogReport",
    "Mask",
    "MetricFinding",
    "MetricKind",
    "NabProfile",
    "NabScore",
    "NabSeries",
    "Series",
    "TemplateCount",
    "TimeParser",
    "WindowCounts",
    "baseline",
    "change_points",
    "config_for_span",
    "config_for_times",
    "detect_series",
    "finding_severity",
    "fixed_threshold",
    "flatlines",
    "load_nab",
    "log_lines",
    "merge_findings",
    "mine_logs",
    "nab_score",
    "noise_sigma",
    "parse_timestamp",
    "read_log_lines",
    "read_series_csv",
    "robust_deviation",
    "robust_spread",
    "rolling_zscore",
    "scaled_sigmoid",
    "short_series_config",
    "template_miner",
    "timestamp_parser",
    "window_counts",
    "write_nab_source",
]
