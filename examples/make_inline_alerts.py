"""Build ``examples/data/telemetry_inline_alerts.jsonl``: alerts that carry their own
metric samples (run once, output committed).

Source: the Numenta Anomaly Benchmark copy bundled in ``sitemesh/detect/data/nab``
(MIT-style licence, Numenta; see its SOURCE.md). From each *held-out* realAWSCloudwatch
file (the half ``bench/detect.py`` does not tune on) two alerts are made:

* ``anomalous``: the window is the file's first labelled anomaly window;
* ``normal``: a window of the same length that ends where the anomaly window's
  baseline starts and overlaps no labelled window.

Each alert carries the samples from :data:`HISTORY` before its window to its end (at
most :data:`MAX_POINTS`), so the diagnostics agent has a baseline. The labels go to
``telemetry_inline_alerts.labels.jsonl`` (``source`` -> ``anomalous``), read only by
``sitemesh demo`` to say which windows it flagged.

Usage::

    python examples/make_inline_alerts.py
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from sitemesh.detect import load_nab
from sitemesh.schemas import MetricSeries, TelemetryAlert

HISTORY = 2 * 86_400.0
"""Seconds of samples before the window (two days of 5-minute data)."""

MAX_POINTS = 1_200
"""Samples per alert at most, so the task stays well under the 64 KiB message limit."""


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _alert(name: str, times: list[float], values: list[float], start: float, end: float,
           kind: str) -> TelemetryAlert:
    keep = [(t, v) for t, v in zip(times, values, strict=True) if start - HISTORY <= t <= end]
    keep = keep[-MAX_POINTS:]
    series = MetricSeries(
        name=name, timestamps=[_at(t) for t, _ in keep], values=[round(v, 4) for _, v in keep]
    )
    return TelemetryAlert(
        task_id=f"nab-{kind}-{name}"[:120],
        device=f"aws-{name}"[:120],
        window_start=_at(start),
        window_end=_at(end + 1),
        metric=name,
        summary=f"{name} outside its usual range (monitoring rule)",
        severity="minor",
        samples=[series],
        source=f"nab/{name}",
    )


def main() -> None:
    out = Path(__file__).parent / "data"
    alerts: list[TelemetryAlert] = []
    labels: list[dict[str, object]] = []
    for nab in load_nab():
        if nab.tune or nab.category != "realAWSCloudwatch" or not nab.windows:
            continue
        times = [float(t) for t in nab.series.times]
        values = [float(v) for v in nab.series.values]
        start, end = nab.windows[0]
        length = end - start
        alerts.append(_alert(nab.series.name, times, values, start, end, "anomalous"))
        labels.append({"source": f"nab/{nab.series.name}", "task": alerts[-1].task_id,
                       "anomalous": True})
        n_end = start - HISTORY - 3600
        n_start = n_end - length
        if n_start - HISTORY >= times[0] and not any(
            a <= n_end and n_start <= b for a, b in nab.windows
        ):
            alerts.append(_alert(nab.series.name, times, values, n_start, n_end, "normal"))
            labels.append({"source": f"nab/{nab.series.name}", "task": alerts[-1].task_id,
                           "anomalous": False})
    enc = msgspec.json.Encoder()
    (out / "telemetry_inline_alerts.jsonl").write_bytes(
        b"".join(enc.encode(a) + b"\n" for a in alerts)
    )
    (out / "telemetry_inline_alerts.labels.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in labels), "utf-8"
    )
    sizes = [len(enc.encode(a)) for a in alerts]
    print(f"wrote {len(alerts)} alerts ({sum(bool(r['anomalous']) for r in labels)} anomalous), "
          f"largest {max(sizes)} bytes, to {out}")


if __name__ == "__main__":
    main()
