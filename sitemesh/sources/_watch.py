"""``sitemesh watch``: tail a telemetry source, raise a ``TelemetryAlert`` per incident.

Each :meth:`Watcher.poll` reads the last :attr:`WatchConfig.lookback` of data up to
the source's newest time (its *watermark*, :meth:`TelemetryReader.latest`: data
time, not wall time, so a file that is appended to and a replayed capture behave
alike), runs the metric detectors and the log template mining of
:mod:`sitemesh.detect` on every series and device log, and groups findings into
incidents:

* an incident is keyed by (device, signal, kind): the series name with its labels,
  or the masked log template; and the finding family (deviation, level shift,
  flatline, new / rare template, burst);
* a finding of that key that starts at most :attr:`WatchConfig.close_after` after
  the incident's last one extends it; anything later opens a new incident;
* an incident raises exactly one alert, when it opens. Findings that end at or
  before what was already reported for their key are ignored, so the overlap of
  successive polls raises nothing twice;
* the alert's task id is derived from the incident's key and start time, so a
  watcher that restarts without its state file republishes under the same id and
  JetStream's duplicate window drops it; the state file (open incidents, reported
  ends, watermark) is saved by the caller after the alerts were published.

The alert names the source (``telemetry_source``), so the diagnostics agent reads the
same data and confirms the findings; its severity is the strongest finding's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, Literal

from ..detect import (
    DetectError,
    LogConfig,
    Series,
    config_for_times,
    detect_series,
    finding_severity,
    mine_logs,
)
from ..detect import LogLine as DetectLogLine
from ..schemas import LogLine, MetricSeries, TelemetryAlert
from ._protocol import TelemetryReader
from ._store import series_signal

__all__ = ["Incident", "WatchConfig", "Watcher"]

_FAMILY: Final[dict[str, str]] = {
    "high": "deviation",
    "low": "deviation",
    "level_up": "level_shift",
    "level_down": "level_shift",
    "flatline": "flatline",
    "new_template": "new_template",
    "rare_template": "rare_template",
    "burst": "burst",
}


@dataclass(frozen=True, slots=True)
class WatchConfig:
    """How a :class:`Watcher` reads and groups.

    Attributes:
        lookback: data read per poll, before the watermark (two days: more than the
            1.5 days the NAB-tuned detector settings need).
        close_after: an incident with no finding for this long (data time) is closed;
            a later finding of its key is a new incident. One hour: longer than the
            detectors' merge gap, shorter than a day's cycle.
        pad: the alert's window starts this long before the incident and ends this
            long after it, so the diagnosis sees its edges.
        max_alerts: at most this many alerts per poll (the rest wait for the next).
    """

    lookback: timedelta = timedelta(days=2)
    close_after: timedelta = timedelta(hours=1)
    pad: timedelta = timedelta(minutes=10)
    max_alerts: int = 100


@dataclass(slots=True)
class Incident:
    """One incident: a run of findings of one key.

    Attributes:
        device: the device ("" when the data names none).
        signal: the series (``name{labels}``) or ``log:<template>``.
        family: the finding family (``deviation``, ``level_shift``...).
        start: first finding's start (UTC).
        end: last finding's end (UTC).
        severity: ``minor`` or ``major``.
        peak: the largest ``|deviation|`` (robust z; 0 for logs).
        task_id: the alert's task id.
    """

    device: str
    signal: str
    family: str
    start: datetime
    end: datetime
    severity: Literal["minor", "major"]
    peak: float
    task_id: str

    @property
    def key(self) -> str:
        return f"{self.device}\x1f{self.signal}\x1f{self.family}"


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _iso(at: datetime) -> str:
    return _utc(at).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class _Hit:
    device: str
    signal: str
    family: str
    start: datetime
    end: datetime
    severity: Literal["minor", "major"]
    peak: float
    interface: str | None = None


@dataclass(slots=True)
class _State:
    watermark: datetime | None = None
    open: dict[str, Incident] = field(default_factory=dict)
    reported: dict[str, datetime] = field(default_factory=dict)
    log_marks: dict[str, datetime] = field(default_factory=dict)
    """Device -> its newest log line seen: later lines are new (logs may lag the metrics)."""


class Watcher:
    """Polls one source and turns its findings into alerts (see the module docstring).

    Not thread-safe; call :meth:`poll` from one thread (the CLI runs it in a worker
    thread).

    Args:
        reader: the opened source.
        devices: devices to watch (``None``: every device the source names, or the
            whole source when it names none).
        config: reading and grouping settings.
        state_path: a JSON file that keeps incidents and the watermark across
            restarts (``None``: memory only).
        tenant: the alerts' tenant.
        since: read from this time on the first poll instead of ``lookback`` before
            the watermark (a backfill).
        id_prefix: put before every task id (``sitemesh watch --task-id-prefix``), so
            that reruns over the same data (a demo) do not collide with earlier ones.
    """

    def __init__(
        self,
        reader: TelemetryReader,
        *,
        devices: Sequence[str] | None = None,
        config: WatchConfig | None = None,
        state_path: Path | None = None,
        tenant: str = "default",
        since: datetime | None = None,
        id_prefix: str = "",
    ) -> None:
        self.reader = reader
        self.id_prefix = id_prefix
        self.devices = list(devices) if devices else None
        self.config = config or WatchConfig()
        self.state_path = state_path
        self.tenant = tenant
        self.since = _utc(since) if since is not None else None
        self._state = self._load()
        self._pending: _State | None = None

    @property
    def watermark(self) -> datetime | None:
        """The newest data time seen by a committed poll."""
        return self._state.watermark

    @property
    def incidents(self) -> list[Incident]:
        """Open incidents, by start."""
        return sorted(self._state.open.values(), key=lambda i: (i.start, i.key))

    # -- state --------------------------------------------------------------------

    def _load(self) -> _State:
        if self.state_path is None or not self.state_path.exists():
            return _State()
        try:
            raw = json.loads(self.state_path.read_text("utf-8"))
            state = _State(
                watermark=datetime.fromisoformat(raw["watermark"]) if raw.get("watermark")
                else None,
                reported={k: datetime.fromisoformat(v) for k, v in raw["reported"].items()},
                log_marks={
                    k: datetime.fromisoformat(v) for k, v in raw.get("log_marks", {}).items()
                },
            )
            for item in raw["open"]:
                inc = Incident(
                    device=item["device"], signal=item["signal"], family=item["family"],
                    start=datetime.fromisoformat(item["start"]),
                    end=datetime.fromisoformat(item["end"]),
                    severity=item["severity"], peak=float(item["peak"]), task_id=item["task_id"],
                )
                state.open[inc.key] = inc
        except (OSError, ValueError, KeyError, TypeError) as exc:
            from ._errors import SourceError

            raise SourceError(
                f"{self.state_path}: watch state unreadable ({exc}); remove it to start over",
                field="state",
            ) from exc
        return state

    def commit(self) -> None:
        """Keep the last :meth:`poll`'s result (call after its alerts were published)
        and write the state file."""
        if self._pending is None:
            return
        self._state, self._pending = self._pending, None
        if self.state_path is None:
            return
        s = self._state
        data = {
            "source": self.reader.spec.name,
            "watermark": s.watermark.isoformat() if s.watermark else None,
            "reported": {k: v.isoformat() for k, v in s.reported.items()},
            "log_marks": {k: v.isoformat() for k, v in s.log_marks.items()},
            "open": [
                {"device": i.device, "signal": i.signal, "family": i.family,
                 "start": i.start.isoformat(), "end": i.end.isoformat(),
                 "severity": i.severity, "peak": i.peak, "task_id": i.task_id}
                for i in s.open.values()
            ],
        }
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1), "utf-8")
        tmp.replace(self.state_path)

    # -- polling ------------------------------------------------------------------

    def poll(self) -> list[TelemetryAlert]:
        """Read the source up to its watermark and return the alerts of new incidents.

        The result is held until :meth:`commit`; a poll that is not committed (the
        publish failed) is redone by the next one, with the same task ids.

        Returns:
            New alerts, oldest first (at most ``config.max_alerts``).

        Raises:
            SourceError: the source cannot be read.
        """
        latest = self.reader.latest()
        if latest is None:
            return []
        latest = _utc(latest)
        first_poll = self._state.watermark is None
        start = self.since if first_poll and self.since is not None else (
            latest - self.config.lookback)
        # one second past the watermark: the read is [start, end)
        state = _State(
            watermark=latest,
            open=dict(self._state.open),
            reported=dict(self._state.reported),
            log_marks=dict(self._state.log_marks),
        )
        hits = self._hits(start, latest + timedelta(seconds=1), state)
        alerts: list[TelemetryAlert] = []
        for hit in sorted(hits, key=lambda h: (h.start, h.signal)):
            key = f"{hit.device}\x1f{hit.signal}\x1f{hit.family}"
            if (done := state.reported.get(key)) is not None and hit.end <= done:
                continue
            inc = state.open.get(key)
            if inc is not None and hit.start <= inc.end + self.config.close_after:
                inc.end = max(inc.end, hit.end)
                inc.peak = max(inc.peak, hit.peak)
                if hit.severity == "major":
                    inc.severity = "major"
                state.reported[key] = inc.end
                continue
            if len(alerts) >= self.config.max_alerts:
                continue
            inc = Incident(
                device=hit.device, signal=hit.signal, family=hit.family, start=hit.start,
                end=hit.end, severity=hit.severity, peak=hit.peak,
                task_id=self._task_id(hit),
            )
            state.open[key] = inc
            state.reported[key] = inc.end
            alerts.append(self._alert(inc, hit.interface))
        horizon = latest - self.config.close_after
        state.open = {k: i for k, i in state.open.items() if i.end >= horizon}
        forget = latest - 2 * self.config.lookback
        state.reported = {k: t for k, t in state.reported.items() if t >= forget}
        self._pending = state
        return alerts

    def _task_id(self, hit: _Hit) -> str:
        digest = hashlib.sha256(
            f"{self.reader.spec.name}\x1f{hit.device}\x1f{hit.signal}\x1f{hit.family}\x1f"
            f"{_iso(hit.start)}".encode()
        ).hexdigest()[:20]
        return f"{self.id_prefix}watch-{self.reader.spec.name}-{digest}"[:128]

    def _alert(self, inc: Incident, interface: str | None) -> TelemetryAlert:
        name = self.reader.spec.name
        what = inc.signal
        detail = f", peak {inc.peak:.1f} robust z" if inc.peak else ""
        return TelemetryAlert(
            task_id=inc.task_id,
            tenant=self.tenant,
            device=(inc.device or name)[:128],
            interface=interface,
            window_start=inc.start - self.config.pad,
            window_end=inc.end + self.config.pad,
            metric=what[:256],
            summary=(
                f"sitemesh watch {name}: {inc.family.replace('_', ' ')} on {what} from "
                f"{_iso(inc.start)}{detail}"
            )[:4096],
            severity=inc.severity,
            submitted_at=datetime.now(UTC),
            source=f"sitemesh watch {name}"[:256],
            telemetry_source=name,
        )

    def _device_list(self) -> list[str | None]:
        if self.devices:
            return list(self.devices)
        named = self.reader.devices()
        return list(named) if named else [None]

    def _hits(self, start: datetime, end: datetime, state: _State) -> list[_Hit]:
        hits: list[_Hit] = []
        for device in self._device_list():
            dev = device or ""
            for s in self.reader.series(device, start, end):
                hits += self._series_hits(dev, s)
            lines = self.reader.logs(device, start, end)
            if lines:
                hits += self._log_hits(dev, lines, start, end, self._state.log_marks.get(dev))
                if (newest := max((_utc(x.at) for x in lines if x.at), default=None)):
                    state.log_marks[dev] = newest
        return hits

    def _series_hits(self, device: str, s: MetricSeries) -> list[_Hit]:
        if len(s.values) < 3:
            return []
        times = [_utc(t) for t in s.timestamps]
        config = config_for_times(times)
        if config is None:  # every sample at one time: no cadence
            return []
        label = getattr(self.reader.spec, "device_label", "device")
        signal = series_signal(s, device=device, device_label=label)
        try:
            found = detect_series(Series.from_points(signal, times, s.values), config)
        except DetectError:
            return []
        out = []
        for f in found:
            out.append(
                _Hit(
                    device=device,
                    signal=signal,
                    family=_FAMILY[f.kind],
                    start=_utc(f.start),
                    end=_utc(f.end),
                    severity=finding_severity(f, config),
                    peak=abs(f.deviation),
                    interface=s.labels.get("interface"),
                )
            )
        return out

    def _log_hits(
        self, device: str, lines: Sequence[LogLine], start: datetime, end: datetime,
        mark: datetime | None,
    ) -> list[_Hit]:
        """Templates mined from ``lines``; the lines up to ``mark`` (the newest line of
        the last poll) are the learning prefix, or the first half of the span on the
        first poll."""
        logs = list(lines)
        learn = mark + timedelta(microseconds=1) if mark else start + (end - start) / 2
        report = mine_logs(
            [DetectLogLine(text=x.line, at=_utc(x.at) if x.at else None) for x in logs],
            source=device,
            config=LogConfig(learning_lines=max(1, len(logs) // 2)),
            learn_until=learn,
        )
        out = []
        for f in report.findings:
            at = _utc(f.first_at) if f.first_at is not None else end
            last = _utc(f.last_at) if f.last_at is not None else at
            out.append(
                _Hit(
                    device=device,
                    signal=f"log:{f.template}"[:200],
                    family=_FAMILY[f.kind],
                    start=at,
                    end=last,
                    severity="minor",
                    peak=0.0,
                )
            )
        return out
