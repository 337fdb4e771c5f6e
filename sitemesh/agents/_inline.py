"""Diagnosis of the telemetry an alert carries inline (``TelemetryAlert.samples`` and
``.logs``) with :mod:`sitemesh.detect`.

:mod:`sitemesh.detect`'s defaults fit 5-minute data over days (a one-day baseline,
12 h of history before any finding); an alert carries minutes to hours of samples, so
each series shorter than 1.5 days gets a configuration scaled to its own cadence
(:func:`sitemesh.detect.config_for_times`, as ``sitemesh watch`` does).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Final

from ..detect import (
    DetectConfig,
    DetectError,
    LogConfig,
    LogFinding,
    MetricFinding,
    Series,
    config_for_times,
    detect_series,
    finding_severity,
    mine_logs,
    short_series_config,
)
from ..detect import LogLine as DetectLogLine
from ..schemas import Finding, FindingKind, MetricSeries, TelemetryAlert
from ..sources import series_signal

INLINE_METRICS: Final = "inline_metrics"
"""``Diagnosis.checks_run`` name of the metric detectors on inline samples."""
INLINE_LOGS: Final = "inline_logs"
"""``Diagnosis.checks_run`` name of the log template mining on inline lines."""

_METRIC_KINDS: Final[dict[str, FindingKind]] = {
    "high": "metric_anomaly",
    "low": "metric_anomaly",
    "level_up": "level_shift",
    "level_down": "level_shift",
    "flatline": "metric_flatline",
}
_LOG_KINDS: Final[dict[str, FindingKind]] = {
    "new_template": "log_new_template",
    "rare_template": "log_rare_template",
    "burst": "log_burst",
}

_NO_CADENCE: Final = timedelta(seconds=1)
"""The cadence a series whose samples all carry one time is judged at."""


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _ts(at: datetime | None) -> str:
    return "-" if at is None else _utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


def _overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
    return _utc(start) < hi and _utc(end) >= lo


def _metric_finding(
    alert: TelemetryAlert, s: MetricSeries, f: MetricFinding, config: DetectConfig
) -> Finding:
    return Finding(
        kind=_METRIC_KINDS[f.kind],
        severity=finding_severity(f, config),
        device=alert.device,
        interface=s.labels.get("interface") or alert.interface,
        at=_utc(f.peak_at),
        evidence=(
            f"series {series_signal(s)} {f.kind} [{_ts(f.start)}, {_ts(f.end)}] peak "
            f"{_ts(f.peak_at)}: observed {f.observed:.6g}, baseline {f.baseline:.6g}, "
            f"spread {f.spread:.3g}, deviation {f.deviation:+.1f} robust z ({f.detector}; "
            f"{f.evidence})"
        ),
    )


def diagnose_samples(alert: TelemetryAlert) -> tuple[list[Finding], list[str]]:
    """Run :func:`~sitemesh.detect.detect_series` on every inline series of ``alert``.

    Samples before ``window_start`` serve as the baseline; only findings that overlap
    ``[window_start, window_end)`` are kept.

    Args:
        alert: the alert; its ``samples`` are used.

    Returns:
        ``(findings, notes)``: findings with the severity of
        :func:`sitemesh.detect.finding_severity`,
        and one note per series that was too short or could not be read
        (PII-free: names and counts).
    """
    lo, hi = _utc(alert.window_start), _utc(alert.window_end)
    findings: list[Finding] = []
    notes: list[str] = []
    for s in alert.samples:
        name = series_signal(s)
        if len(s.values) < 3:
            notes.append(f"{name}: {len(s.values)} sample(s), too few")
            continue
        try:
            times = [_utc(t) for t in s.timestamps]
            series = Series.from_points(name, times, s.values)
            config = config_for_times(times)
            if config is None:  # every sample at one time: no cadence to scale by
                config = short_series_config(_NO_CADENCE)
            found = detect_series(series, config)
        except DetectError as exc:
            notes.append(f"{name}: not analysed ({exc})")
            continue
        findings += [
            _metric_finding(alert, s, f, config)
            for f in found
            if _overlaps(f.start, f.end, lo, hi)
        ]
    return findings, notes


def _log_finding(alert: TelemetryAlert, f: LogFinding) -> Finding:
    return Finding(
        kind=_LOG_KINDS[f.kind],
        device=alert.device,
        interface=alert.interface,
        at=_utc(f.first_at) if f.first_at is not None else None,
        evidence=(
            f"log template #{f.template_id} {f.template!r} {f.kind}: {f.count} line(s) "
            f"[{_ts(f.first_at)}, {_ts(f.last_at)}]"
            + (f", {f.expected:.2g} expected" if f.kind == "burst" else "")
            + (f" ({f.evidence})" if f.evidence else "")
        ),
    )


def diagnose_logs(alert: TelemetryAlert) -> list[Finding]:
    """Mine the inline log lines of ``alert`` with :func:`~sitemesh.detect.mine_logs`.

    The learning prefix is the lines before ``window_start`` when there are any,
    else the first half of the lines. Findings that start after ``window_end`` are
    dropped. Evidence holds the masked template and counts, never a raw line.

    Args:
        alert: the alert; its ``logs`` are used.

    Returns:
        Findings with ``severity="minor"``.
    """
    lines = [DetectLogLine(text=x.line, at=_utc(x.at) if x.at else None) for x in alert.logs]
    lo, hi = _utc(alert.window_start), _utc(alert.window_end)
    before = any(x.at is not None and x.at < lo for x in lines)
    report = mine_logs(
        lines,
        source=alert.device,
        config=LogConfig(learning_lines=max(1, len(lines) // 2)),
        learn_until=lo if before else None,
    )
    return [
        _log_finding(alert, f)
        for f in report.findings
        if f.first_at is None or _utc(f.first_at) < hi
    ]
