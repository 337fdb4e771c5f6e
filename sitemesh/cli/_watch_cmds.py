"""``sitemesh watch SOURCE``: tail a registered telemetry source and raise alerts.

The source's spec is read from the site (``sitemesh telemetry add``); a
:class:`~sitemesh.sources.Watcher` polls it, and every new incident is published as
a ``TelemetryAlert`` that names the source, with an id derived from the incident,
onto ``sm.v1.task.<site>.telemetry_alert``. The watch state (open incidents, the
watermark) is kept in ``<state_dir>/watch/<site>-<source>.json`` and saved only
after the poll's alerts were stored by JetStream, so a crash between the two
republishes under the same ids (dropped as duplicates) and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final

from rich.console import Console
from rich.text import Text

from ._kb_cmds import EXIT_NOT_FOUND, EXIT_OK, _bucket, _err

if TYPE_CHECKING:
    from ..config import Settings
    from ..sources import SourceSpec

MIN_INTERVAL: Final = 0.2
"""Shortest accepted poll interval, seconds."""


def state_path(settings: Settings, source: str) -> Path:
    """``<state_dir>/watch/<site>-<source>.json``: where a watcher keeps its state."""
    return settings.state_dir / "watch" / f"{settings.site}-{source}.json"


async def _spec(settings: Settings, console: Console, name: str) -> SourceSpec | None:
    from ..sources import SourceNotFound, fetch_source

    try:
        async with _bucket(settings, console, create=False) as bucket:
            if bucket is None:
                raise SourceNotFound(name)
            return await fetch_source(bucket, name)
    except SourceNotFound:
        return None


async def run_watch(
    settings: Settings,
    console: Console,
    name: str,
    *,
    devices: list[str],
    interval: float,
    once: bool,
    since: datetime | None,
    tenant: str,
    dry_run: bool = False,
    id_prefix: str = "",
    stop: asyncio.Event | None = None,
) -> int:
    """Poll source ``name`` every ``interval`` seconds and publish its incidents.

    Args:
        settings: the site and how to reach its NATS.
        console: where each raised alert is printed (one line: task id, device,
            severity, what).
        name: a registered source.
        devices: devices to watch (empty: all the source names).
        interval: seconds between polls (at least :data:`MIN_INTERVAL`).
        once: one poll, then exit.
        since: the first poll reads from here (a backfill) instead of the lookback.
        tenant: the alerts' tenant.
        dry_run: print the alerts, publish nothing, save no state.
        id_prefix: put before every task id.
        stop: set to end the loop (Ctrl-C does the same).

    Returns:
        0, 1 no such source, 2 bad arguments or (with ``once``) the source cannot be
        read.
    """
    from ..client import Client
    from ..runtime import connect
    from ..sources import BUNDLED_SOURCES, SourceError, Watcher, open_source
    from ._nats import ensure_streams, nats_url

    if interval < MIN_INTERVAL:
        return _err(console, f"--interval {interval}: expected at least {MIN_INTERVAL} s")
    if name in BUNDLED_SOURCES:
        return _err(
            console,
            f"{name} is the bundled capture, not a live source; watch a "
            "source added with `sitemesh telemetry add`",
        )
    spec = await _spec(settings, console, name)
    if spec is None:
        console.print(
            Text(
                f"no telemetry source {name!r} at site {settings.site} "
                "(sitemesh telemetry add NAME SOURCE)",
                "red",
            )
        )
        return EXIT_NOT_FOUND
    reader = await asyncio.to_thread(open_source, spec)
    watcher = Watcher(
        reader,
        devices=devices or None,
        state_path=None if dry_run else state_path(settings, name),
        tenant=tenant,
        since=since,
        id_prefix=id_prefix,
    )
    stop = stop or asyncio.Event()
    raised = 0
    async with nats_url(settings, console) as url:
        if not settings.nats.has_identity:  # the client identity may not create streams
            await ensure_streams(settings, url)
        nc = await connect(settings, "client", url=url, name=f"sitemesh-watch-{name}")
        try:
            client = Client(nc.jetstream(), settings.site)
            while True:
                try:
                    alerts = await asyncio.to_thread(watcher.poll)
                except SourceError as exc:
                    if once:
                        return _err(console, f"watch {name}: {exc}")
                    console.print(Text(f"watch {name}: {exc}; retrying", "yellow"), soft_wrap=True)
                    alerts = []
                for alert in alerts:
                    dup = False
                    if not dry_run:
                        done = await client.submit(alert, task_id=alert.task_id)
                        dup = done.duplicate
                    raised += not dup
                    console.print(
                        f"{alert.task_id} {alert.device} {alert.severity} {alert.summary}"
                        + (" (already stored)" if dup else ""),
                        highlight=False,
                        soft_wrap=True,
                    )
                if not dry_run:
                    watcher.commit()
                if once or stop.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
                if stop.is_set():
                    break
        finally:
            await nc.drain()
    console.print(
        f"[dim]watch {name}: {raised} alert(s) raised; watermark "
        f"{watcher.watermark.isoformat() if watcher.watermark else '-'}; "
        f"{len(watcher.incidents)} incident(s) open[/dim]",
        highlight=False,
    )
    return EXIT_OK
