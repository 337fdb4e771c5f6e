"""Waiting for the worker processes a command started: ``edge``, ``up`` and ``demo``.

One implementation over :func:`sitemesh.runtime.wait_ready` (the bus registry,
``sitemesh_workers_<site>``): a spinner says what is still loading; on time-out the
error names the roles and where their logs are.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Sequence

from nats.js import JetStreamContext
from rich.console import Console

from ..edge_node import Supervisor
from ..errors import NotReadyError
from ..runtime import wait_ready


async def wait_workers(
    console: Console,
    groups: Sequence[tuple[JetStreamContext, Supervisor]],
    *,
    timeout_s: float,
    stop: asyncio.Event | None = None,
) -> float | None:
    """Wait until every process of every supervisor reports ready on the bus.

    Args:
        console: where the spinner and the time-out details go.
        groups: ``(js, supervisor)`` per site (``js`` reaches that site's registry).
        timeout_s: seconds to wait at most.
        stop: give up quietly when it is set (SIGINT/SIGTERM meanwhile).

    Returns:
        The seconds it took, or ``None`` when ``stop`` was set first.

    Raises:
        NotReadyError: not every process was ready within ``timeout_s``; the roles
            still loading and their log files are printed first.
    """
    t0 = time.monotonic()
    try:
        with console.status("starting workers...") as status:

            def progress(missing: list[str]) -> None:
                if missing:
                    took = time.monotonic() - t0
                    status.update(f"loading ({took:.0f} s): {', '.join(missing)}")

            return await _until_stopped(
                wait_ready(groups, timeout_s=timeout_s, on_progress=progress), stop
            )
    except NotReadyError as exc:
        _explain(console, groups, exc)
        raise


async def _until_stopped(wait: Awaitable[float], stop: asyncio.Event | None) -> float | None:
    """``await wait``, or ``None`` (``wait`` cancelled) once ``stop`` is set."""
    waiting = asyncio.ensure_future(wait)
    if stop is None:
        return await waiting
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiting, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not waiting.done():
            waiting.cancel()
    if waiting.done() and not waiting.cancelled():
        return waiting.result()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    return None


def _explain(
    console: Console, groups: Sequence[tuple[JetStreamContext, Supervisor]], exc: NotReadyError
) -> None:
    """Print which roles never got ready and where their logs are."""
    several = len(groups) > 1
    for _, sup in groups:
        for role in dict.fromkeys(sup.roles):
            label = f"{sup.site}/{role}" if several else role
            if any(m == label or m.startswith(label + " ") for m in exc.missing):
                console.print(
                    f"[red]{label} not ready after {exc.timeout_s:.0f} s[/red]; "
                    f"log: {sup.log_path(role)}",
                    highlight=False,
                )


def pids_line(sups: Sequence[Supervisor]) -> str:
    """``recorder=[123], router=[124], ...`` of the running children."""
    several = len(sups) > 1
    return ", ".join(
        f"{sup.site + '/' if several else ''}{role}={pids}"
        for sup in sups
        for role, pids in sup.pids.items()
    )
