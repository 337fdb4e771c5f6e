"""sitemesh.sources.Watcher: one alert per incident, none twice, nothing lost on restart."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

from sitemesh.schemas import LogLine, MetricSeries, TelemetryAlert
from sitemesh.sources import WatchConfig, Watcher

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def _values(n: int, seed: int = 7) -> list[float]:
    rnd = random.Random(seed)
    return [
        50 + 10 * math.sin(2 * math.pi * i / 288) + rnd.gauss(0, 1.0) for i in range(n)
    ]


@dataclass
class _Reader:
    """A source in memory: one device's series and log lines; the test appends."""

    times: list[datetime] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    lines: list[LogLine] = field(default_factory=list)
    spec: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(name="lab"))
    reads: int = 0

    def devices(self) -> list[str]:
        return ["r1"]

    def latest(self) -> datetime | None:
        ends = [t for t in (self.times[-1:] + [x.at for x in self.lines[-1:] if x.at]) if t]
        return max(ends) if ends else None

    def series(self, device: str | None, start: datetime, end: datetime) -> list[MetricSeries]:
        self.reads += 1
        keep = [(t, v) for t, v in zip(self.times, self.values, strict=True) if start <= t < end]
        if not keep or device not in (None, "r1"):
            return []
        return [MetricSeries(name="cpu", labels={"interface": "eth0"},
                             timestamps=[t for t, _ in keep], values=[v for _, v in keep])]

    def logs(self, device: str | None, start: datetime, end: datetime) -> list[LogLine]:
        return [x for x in self.lines if x.at is not None and start <= x.at < end]

    def add(self, values: list[float]) -> None:
        start = self.times[-1] + STEP if self.times else T0
        self.times += [start + i * STEP for i in range(len(values))]
        self.values += values


def _spiked(n: int, at: int, width: int = 6, seed: int = 7) -> list[float]:
    v = _values(n, seed)
    for i in range(at, at + width):
        v[i] += 60.0
    return v


def test_a_spike_raises_one_major_alert_naming_the_source() -> None:
    reader = _Reader()
    reader.add(_spiked(3 * 288, at=int(2.5 * 288)))
    w = Watcher(reader, since=T0)  # type: ignore[arg-type]
    alerts = w.poll()
    w.commit()
    assert len(alerts) == 1, [a.summary for a in alerts]
    a = alerts[0]
    assert isinstance(a, TelemetryAlert)
    spike = T0 + int(2.5 * 288) * STEP
    assert a.window_start <= spike < a.window_end
    assert a.telemetry_source == "lab"
    assert a.device == "r1"
    assert a.interface == "eth0"
    assert a.severity == "major"
    assert a.task_id is not None
    assert a.task_id.startswith("watch-lab-")
    assert "cpu{interface=eth0}" in a.summary


def test_the_same_data_again_raises_nothing_and_a_new_spike_raises_one() -> None:
    reader = _Reader()
    reader.add(_spiked(3 * 288, at=int(2.5 * 288)))
    w = Watcher(reader, since=T0)  # type: ignore[arg-type]
    first = w.poll()
    w.commit()
    assert len(first) == 1
    assert w.poll() == []
    w.commit()
    reader.add(_values(72, seed=8))  # 6 h more, normal
    assert w.poll() == []
    w.commit()
    reader.add(_spiked(72, at=30, seed=9))  # another spike, hours after the first
    second = w.poll()
    w.commit()
    assert len(second) == 1
    assert second[0].task_id != first[0].task_id
    assert second[0].window_start > first[0].window_end


def test_an_uncommitted_poll_is_redone_with_the_same_ids(tmp_path: Path) -> None:
    reader = _Reader()
    reader.add(_spiked(3 * 288, at=int(2.5 * 288)))
    state = tmp_path / "watch.json"
    w = Watcher(reader, since=T0, state_path=state)  # type: ignore[arg-type]
    lost = w.poll()  # publishing failed: no commit
    assert len(lost) == 1
    assert not state.exists()
    again = Watcher(reader, since=T0, state_path=state)  # type: ignore[arg-type]
    redone = again.poll()
    again.commit()
    assert [a.task_id for a in redone] == [a.task_id for a in lost]
    assert state.exists()
    # a restart from the state file raises nothing that was reported
    restarted = Watcher(reader, state_path=state)  # type: ignore[arg-type]
    assert restarted.watermark == reader.times[-1]
    assert restarted.poll() == []


def test_normal_data_raises_nothing() -> None:
    reader = _Reader()
    reader.add(_values(3 * 288))
    w = Watcher(reader, since=T0)  # type: ignore[arg-type]
    assert w.poll() == []


def test_a_new_log_template_after_the_watermark_is_an_incident() -> None:
    reader = _Reader()
    reader.add(_values(2 * 288))
    start = T0
    reader.lines = [
        LogLine(at=start + i * timedelta(minutes=3), line=f"session {i} opened for job {i % 7}")
        for i in range(600)
    ]
    w = Watcher(reader, since=T0, config=WatchConfig())  # type: ignore[arg-type]
    w.poll()
    w.commit()
    end = reader.lines[-1].at
    assert end is not None
    reader.lines += [
        LogLine(at=end + timedelta(seconds=5 * (i + 1)),
                line=f"%LINK-3-UPDOWN: Interface eth{i % 2}, changed state to down")
        for i in range(20)
    ]
    alerts = w.poll()
    w.commit()
    logs = [a for a in alerts if a.metric.startswith("log:")]
    assert logs, [a.summary for a in alerts]
    assert all("new template" in a.summary or "burst" in a.summary for a in logs)
    assert w.poll() == []


def test_id_prefix_and_device_filter() -> None:
    reader = _Reader()
    reader.add(_spiked(3 * 288, at=int(2.5 * 288)))
    w = Watcher(reader, since=T0, id_prefix="demo-1-", devices=["r1"])  # type: ignore[arg-type]
    (a,) = w.poll()
    assert a.task_id is not None
    assert a.task_id.startswith("demo-1-watch-lab-")
    other = Watcher(reader, since=T0, devices=["r2"])  # type: ignore[arg-type]
    assert other.poll() == []
