"""All metric detectors on one series, with overlapping findings merged."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, Literal

import msgspec

from ._baseline import baseline
from ._changes import change_points
from ._config import DEFAULT_CONFIG, DetectConfig
from ._deviation import flatlines, robust_deviation
from ._findings import MetricFinding
from ._series import Series

MAJOR_FACTOR: Final = 2.0
"""A metric finding is ``major`` when its deviation is at least this many times the
detection threshold (``|z| >= 10`` robust z with the default 5), else ``minor``: a
reading twice as far out as the rule needs to fire is not noise at the threshold's
edge. Flatlines are always ``minor`` (a stuck exporter more often than a fault).
Chosen by this argument, not tuned on data."""


def finding_severity(
    f: MetricFinding, config: DetectConfig = DEFAULT_CONFIG
) -> Literal["minor", "major"]:
    """``major`` when ``|f.deviation| >= MAJOR_FACTOR x config.z_threshold`` (never for
    a flatline), else ``minor``; see :data:`MAJOR_FACTOR`."""
    if f.kind == "flatline":
        return "minor"
    return "major" if abs(f.deviation) >= MAJOR_FACTOR * config.z_threshold else "minor"


def merge_findings(findings: Iterable[MetricFinding]) -> list[MetricFinding]:
    """Merge findings of one series whose ``[start, end]`` overlap.

    A merged finding spans the union of the overlapping ones, takes the earliest
    ``detected_at``, and keeps every other field (kind, peak, values, evidence) from
    the one with the largest ``|deviation|``; its ``detector`` joins the detectors'
    names, sorted, with ``+`` (``change_points+robust_deviation``).

    Args:
        findings: findings of one series, in any order.

    Returns:
        Non-overlapping findings in time order.
    """
    ordered = sorted(findings, key=lambda f: (f.start, f.end))
    out: list[MetricFinding] = []
    group: list[MetricFinding] = []

    def close() -> None:
        if not group:
            return
        best = max(group, key=lambda f: abs(f.deviation))
        names = sorted({part for f in group for part in f.detector.split("+")})
        out.append(
            msgspec.structs.replace(
                best,
                detector="+".join(names),
                start=min(f.start for f in group),
                end=max(f.end for f in group),
                detected_at=min(f.detected_at for f in group),
            )
        )
        group.clear()

    for f in ordered:
        if group and f.start > max(g.end for g in group):
            close()
        group.append(f)
    close()
    return out


def detect_series(series: Series, config: DetectConfig = DEFAULT_CONFIG) -> list[MetricFinding]:
    """Run :func:`robust_deviation`, :func:`change_points` and :func:`flatlines` on
    ``series`` (sharing one baseline) and merge overlapping findings
    (:func:`merge_findings`).

    Args:
        series: the metric, shape ``(n,)``; any cadence (durations in ``config`` are
            turned into samples with its median cadence).
        config: the settings; :data:`DEFAULT_CONFIG` holds the tuned defaults.

    Returns:
        Findings in time order, none overlapping another.
    """
    base = baseline(series, config)
    found = [
        *robust_deviation(series, config, base=base),
        *change_points(series, config, base=base),
        *flatlines(series, config, base=base),
    ]
    return merge_findings(found)
