"""The bus half of ``sitemesh status``: per role, its ready workers and its queued work.

Queued work is read from each role's durable consumer (``num_pending``: not yet
delivered; ``num_ack_pending``: delivered, not yet acknowledged) — the router's on
``TASKS_<site>``, the agents' on ``WORK_<site>``, the recorder's on ``EVENTS_<site>`` —
and, for a work subject no consumer reads, the messages stored on it. Ready workers
come from the site's registry (``sitemesh_workers_<site>``, see
:mod:`sitemesh.runtime`). A role with work waiting and no ready worker is flagged.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..bus import FILL_WARNING, RECORDER, StreamFill, Subjects, redact_url, stream_fill
from ..config import Settings
from ..errors import BusConnectionError
from ..runtime import RoleQueue, connect, role_queues
from ._nats import running_nats_url

STATUS_CONNECT_TIMEOUT_S = 2.0
"""Seconds ``sitemesh status`` waits for NATS before printing the database part only."""


def queues_table(queues: list[RoleQueue]) -> Table:
    """Role, ready workers, queued, in flight, redelivered (a stranded role in red)."""
    table = Table(title="workers and queued work (from NATS)", title_justify="left")
    for col in ("role", "stream", "ready", "queued", "in flight", "redelivered"):
        table.add_column(col, justify="left" if col in ("role", "stream") else "right")
    for q in queues:
        style = "red" if q.stranded else ""
        ready = str(q.ready) + (f" (+{q.stopping} stopping)" if q.stopping else "")
        table.add_row(
            Text(q.role, style=style),
            Text(q.stream if q.consumer else f"{q.stream} (no consumer)"),
            Text(ready, style=style or ("green" if q.ready else "")),
            str(q.pending),
            str(q.ack_pending),
            str(q.redelivered),
        )
    return table


def stranded_lines(queues: list[RoleQueue]) -> list[Text]:
    """One red line per role that has work waiting and no ready worker."""
    out = []
    for q in queues:
        if not q.stranded:
            continue
        what = "message" if q.role == RECORDER else "task"
        what += "s" if q.waiting != 1 else ""
        out.append(
            Text(
                f"{q.waiting} {what} waiting for role {q.role}: no worker is running; start "
                f"one with `sitemesh worker {q.role}` or `--agent module:Class`",
                style="red",
            )
        )
    return out


async def read_queues(settings: Settings) -> tuple[list[RoleQueue], list[StreamFill]] | str:
    """Each role's workers and work, and how full the streams are; or, when NATS is
    not there or not readable, one line saying why (never raises)."""
    url = running_nats_url(settings)
    if url is None:
        return "no NATS server running here (set SITEMESH_NATS_URL to look at one)"
    quick = settings.model_copy(
        update={"nats": settings.nats.model_copy(update={"connect_timeout_s": min(
            settings.nats.connect_timeout_s, STATUS_CONNECT_TIMEOUT_S)})}
    )  # fmt: skip
    try:
        nc = await connect(quick, "operator", url=url, name="sitemesh-status")
    except BusConnectionError:
        return f"NATS unreachable at {redact_url(url)}"
    try:
        queues = await role_queues(nc.jetstream(), settings.site)
        fills = await stream_fill(nc.jetstream(), Subjects(settings.site))
    except Exception as exc:  # a probe: say why, never a traceback
        return redact_url(f"cannot read NATS at {url}: {exc!r}")
    finally:
        await nc.drain()
    return queues, fills


async def show_queues(settings: Settings, console: Console) -> None:
    """Print the table and the stranded roles; one dim line instead when NATS is away."""
    state = await read_queues(settings)
    if isinstance(state, str):
        console.print(Text(f"workers: {state}", style="dim"))
        return
    queues, fills = state
    if not queues:
        console.print(Text(f"workers: none registered and no queues at site {settings.site}"))
        return
    console.print(queues_table(queues))
    for line in stranded_lines(queues):
        console.print(line)
    console.print(fill_line(fills))


def fill_line(fills: list[StreamFill]) -> Text:
    """One line: how full each stream is; those past :data:`FILL_WARNING` in red (a full
    stream refuses new messages, docs/architecture.md "Stream limits")."""
    line = Text("streams: ")
    for i, f in enumerate(fills):
        if i:
            line.append(", ")
        style = "bold red" if f.fraction >= FILL_WARNING else ""
        line.append(f"{f.stream} {f.fraction:.0%} ({f.bytes / 1048576:,.1f} MiB)", style=style)
    return line
