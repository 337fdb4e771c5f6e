"""The demo's telemetry source: held-out NAB series registered with ``sitemesh
telemetry add``, alerts that name it, and ``sitemesh watch`` raising incidents on it.

The series are the *held-out* realAWSCloudwatch files of the NAB copy bundled in
``sitemesh/detect/data/nab`` (the half ``bench/detect.py`` does not tune on), written
as ``<state_dir>/demo-telemetry/nab-aws/aws-<file>/<file>.csv`` (one folder per
device). Alerts are made like ``examples/make_inline_alerts.py`` makes the inline
ones (the file's first labelled anomaly window, and a normal window of the same
length before it) but carry no samples: the diagnostics agent reads the source.
"""

from __future__ import annotations

import asyncio
import re
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec

from ..schemas import TelemetryAlert

if TYPE_CHECKING:
    from ..config import Settings

DEMO_SOURCE: Final = "nab-aws"
"""The source name the demo registers."""

HISTORY: Final = 2 * 86_400.0
"""Seconds between a normal window's end and the anomaly window's baseline, as in
``examples/make_inline_alerts.py``."""

WATCHED: Final = 2
"""Devices (files) whose whole span ``sitemesh watch --once --since`` backfills."""


_RAISED: Final = re.compile(
    r"^(?P<task>\S+) (?P<device>\S+) (?P<severity>\S+) .* from (?P<start>\S+Z)"
)
"""A line ``sitemesh watch`` prints per raised alert: task id, device, severity, summary."""


@dataclass(slots=True)
class SourceRun:
    """What the demo did with its source.

    Attributes:
        root: the source folder.
        labels: task id -> whether the alert's window is a labelled anomaly.
        watched: task ids ``sitemesh watch`` raised -> (device, incident start, epoch s).
        watch_devices: the devices it watched.
        windows: device -> its labelled anomaly windows (epoch seconds).
    """

    root: Path
    labels: dict[str, bool] = field(default_factory=dict)
    watched: dict[str, tuple[str, float]] = field(default_factory=dict)
    watch_devices: list[str] = field(default_factory=list)
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _alert(device: str, metric: str, start: float, end: float, kind: str) -> TelemetryAlert:
    return TelemetryAlert(
        task_id=f"src-{kind}-{metric}"[:120],
        device=device,
        window_start=_at(start),
        window_end=_at(end + 1),
        metric=metric,
        summary=f"{metric} outside its usual range (monitoring rule)",
        severity="minor",
        source=f"nab/{metric}",
        telemetry_source=DEMO_SOURCE,
    )


def export(root: Path) -> tuple[list[TelemetryAlert], dict[str, bool], SourceRun]:
    """Write the held-out series under ``root`` and build the alerts that name them.

    Returns:
        ``(alerts, labels, run)``: labels by the alerts' own task ids.
    """
    from ..detect import write_nab_source

    run = SourceRun(root=root)
    alerts: list[TelemetryAlert] = []
    labels: dict[str, bool] = {}
    for device, nab in write_nab_source(root).items():
        name = nab.series.name
        times = [float(t) for t in nab.series.times]
        run.windows[device] = list(nab.windows)
        start, end = nab.windows[0]
        a = _alert(device, name, start, end, "anomalous")
        alerts.append(a)
        labels[str(a.task_id)] = True
        n_end = start - HISTORY - 3600
        n_start = n_end - (end - start)
        if n_start - HISTORY >= times[0] and not any(
            lo <= n_end and n_start <= hi for lo, hi in nab.windows
        ):
            a = _alert(device, name, n_start, n_end, "normal")
            alerts.append(a)
            labels[str(a.task_id)] = False
    return alerts, labels, run


async def cli(settings: Settings, url: str, *args: str) -> list[str]:
    """Run ``sitemesh ARGS --site <site>`` as a subprocess; its stdout lines.

    Raises:
        RuntimeError: it exited non-zero (with the end of its stderr).
    """
    from ..edge_node import child_env, process_environ
    from ._run import on_url

    env = child_env(process_environ(), on_url(settings, url).to_env())
    env["COLUMNS"] = "400"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sitemesh", *args, "--site", settings.site,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(
            f"sitemesh {args[0]} failed ({proc.returncode}): {(err or out).decode()[-2000:]}"
        )
    return out.decode().splitlines()


async def prepare(settings: Settings, url: str) -> tuple[Path, SourceRun, list[str]]:
    """Export the series, register them (``sitemesh telemetry add``) and write the
    alerts that name the source to a JSONL file for ``sitemesh publish``.

    Returns:
        ``(alerts file, run, the add command's output lines)``.
    """
    base = settings.state_dir / "demo-telemetry"
    alerts, labels, run = await asyncio.to_thread(export, base / DEMO_SOURCE)
    run.labels = labels
    said = await cli(settings, url, "telemetry", "add", DEMO_SOURCE, str(run.root))
    path = base / "source_alerts.jsonl"
    enc = msgspec.json.Encoder()
    path.write_bytes(b"".join(enc.encode(a) + b"\n" for a in alerts))
    return path, run, said


async def watch(settings: Settings, url: str, run: SourceRun, prefix: str) -> list[str]:
    """``sitemesh watch nab-aws --once --since <start>`` on :data:`WATCHED` devices, with
    a fresh state file; records the raised task ids in ``run.watched``.

    Returns:
        The command's output lines.
    """
    from ._watch_cmds import state_path

    state_path(settings, DEMO_SOURCE).unlink(missing_ok=True)
    devices = sorted(run.windows)[:WATCHED]
    run.watch_devices = devices
    args = ["watch", DEMO_SOURCE, "--once", "--since", "2000-01-01", "--task-id-prefix", prefix]
    for d in devices:
        args += ["--device", d]
    lines = await cli(settings, url, *args)
    for ln in lines:
        if ln.startswith(prefix) and (m := _RAISED.match(ln)):
            at = datetime.strptime(m["start"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
            run.watched[m["task"]] = (m["device"], at.timestamp())
    return lines


def in_window(run: SourceRun, device: str, start: float) -> bool:
    """Whether an incident of ``device`` starting at ``start`` (epoch s) falls in one of
    its labelled anomaly windows (NAB's windows already include the lead-up)."""
    return any(lo <= start <= hi for lo, hi in run.windows.get(device, []))
