"""Build ``examples/data/telemetry_alerts.jsonl`` from the leaf7 telemetry (output committed).

The alerts are what a plain monitoring system would raise on the capture shipped
in ``sitemesh/agents/telemetry/cisco-leaf7/`` (Cisco Innovation Edge lab,
CDLA-Permissive-1.0). They are built from the KPIs only - the injected-fault log
(``events.csv.gz``) is *not* read: an alert is a symptom, not ground truth.

Two kinds of alert:

* ``scheduled.health_check`` (``info``): fixed 20-minute windows aligned to the
  clock, covering the whole capture, quiet periods included.
* KPI monitor alerts, raised when a summary counter changes between two samples:
  the BFD summary down-count (``bfd.summary.down_count``) and the interface
  summary count of interfaces not up (``interface.summary.not_up_count``). A rise
  is ``major``, a fall (a clear) ``info``. Changes within :data:`MERGE` of each
  other are one alert. The window is ``[t - 10 min, t + 1 min)`` around the
  trigger sample ``t``: recent history plus a minute for the per-interface and
  per-session subscriptions, which report a few seconds later than the summaries.

Usage::

    python examples/make_alerts.py
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from sitemesh.agents._telemetry import Series, load_telemetry
from sitemesh.schemas import TelemetryAlert

DEVICE = "leaf7"
PERIOD = timedelta(minutes=20)
MERGE = timedelta(seconds=60)
BEFORE = timedelta(minutes=10)
AFTER = timedelta(minutes=1)
SOURCE = "cisco-ie/telemetry 11 (leaf7 MDT), examples/make_alerts.py"
OUT = Path(__file__).parent / "data" / "telemetry_alerts.jsonl"


@dataclass(frozen=True)
class Trigger:
    at: datetime
    metric: str
    before: float
    after: float


def _changes(series: Series, metric: str) -> list[Trigger]:
    values = [float(v) for v in series.values]
    return [
        Trigger(series.times[i], metric, values[i - 1], values[i])
        for i in range(1, len(values))
        if values[i] != values[i - 1]
    ]


def _not_up(up: Series, down: Series, admin: Series) -> Series:
    values = [float(d) + float(a) for d, a in zip(down.values, admin.values, strict=True)]
    assert up.times == down.times == admin.times
    return Series("interface-summary not up", list(down.times), values)


def _hhmm(at: datetime) -> str:
    return at.strftime("%H:%M:%S")


def build() -> list[TelemetryAlert]:
    """Every alert for the capture, numbered ``alert-leaf7-<n>`` in window order."""
    tel = load_telemetry(DEVICE)
    assert tel is not None
    drafts: list[dict[str, object]] = []
    t = tel.start.replace(minute=tel.start.minute // 20 * 20, second=0, microsecond=0)
    while t < tel.end:
        drafts.append(
            dict(
                window_start=t,
                window_end=t + PERIOD,
                metric="scheduled.health_check",
                severity="info",
                summary=f"Scheduled 20-minute health check of {DEVICE}, "
                f"{_hhmm(t)}-{_hhmm(t + PERIOD)} UTC",
            )
        )
        t += PERIOD
    counts = tel.interface_counts
    triggers = sorted(
        _changes(tel.bfd_summary["down"], "bfd.summary.down_count")
        + _changes(
            _not_up(counts["up"], counts["down"], counts["admin-down"]),
            "interface.summary.not_up_count",
        ),
        key=lambda g: (g.at, g.metric),
    )
    groups: list[list[Trigger]] = []
    for g in triggers:
        if groups and g.at - groups[-1][0].at <= MERGE:
            groups[-1].append(g)
        else:
            groups.append([g])
    for group in groups:
        first = group[0]
        text = "; ".join(
            f"{g.metric} {g.before:.0f} -> {g.after:.0f} at {_hhmm(g.at)}Z" for g in group
        )
        rose = any(g.after > g.before for g in group)
        drafts.append(
            dict(
                window_start=first.at - BEFORE,
                window_end=first.at + AFTER,
                metric=first.metric,
                severity="major" if rose else "info",
                summary=f"{DEVICE}: {'down count rose' if rose else 'cleared'}: {text}",
            )
        )
    drafts.sort(key=lambda d: (d["window_start"], d["metric"]))
    return [
        TelemetryAlert(
            task_id=f"alert-{DEVICE}-{n}",
            device=DEVICE,
            submitted_at=d["window_end"],  # type: ignore[arg-type]
            source=SOURCE,
            **d,  # type: ignore[arg-type]
        )
        for n, d in enumerate(drafts, start=1)
    ]


def main() -> None:
    alerts = build()
    encoder = msgspec.json.Encoder()
    OUT.write_bytes(b"".join(encoder.encode(a) + b"\n" for a in alerts))
    first, last = alerts[0].window_start, max(a.window_end for a in alerts)
    print(f"wrote {len(alerts)} alerts to {OUT} covering {first:%H:%M}-{last:%H:%M} UTC")


if __name__ == "__main__":
    main()
