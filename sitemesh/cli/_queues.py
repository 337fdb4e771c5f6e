"""The bus half of ``sitemesh status``: per role, its ready workers and its queued work.

Queued work is read from each role's durable consumer (``num_pending``: not yet
delivered; ``num_ack_pending``: delivered, not yet acknowledged) — the router's on
``TASKS_<site>``, the agents' on ``WORK_<site>``, the recorder's on ``EVENTS_<site>`` —
and, for a work subject no consumer reads, the messages stored on it. Ready workers
come from the site's registry (``sitemesh_workers_<site>``, see
:mod:`sitemesh.runtime`). A role with work waiting and no ready worker is flagged.
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..bus import FILL_WARNING, RECORDER, StreamFill, Subjects, redact_url, stream_fill
from ..config import Settings
from ..errors import BusConnectionError
from ..runtime import connect, read_workers
from ._nats import running_nats_url

STATUS_CONNECT_TIMEOUT_S = 2.0
"""Seconds ``sitemesh status`` waits for NATS before printing the database part only."""


@dataclass(frozen=True, slots=True)
class RoleQueue:
    """One role's workers and work, as ``sitemesh status`` shows them."""

    role: str
    stream: str
    ready: int = 0
    """Processes registered ``ready``."""
    stopping: int = 0
    """Processes finishing their in-flight work (SIGTERM)."""
    pending: int = 0
    """Messages not yet delivered to any worker."""
    ack_pending: int = 0
    """Messages delivered and not yet acknowledged (in flight, or held by a dead worker
    until ``ack_wait`` runs out)."""
    redelivered: int = 0
    """Messages delivered more than once and still unacknowledged."""
    consumer: bool = True
    """Whether the role has a durable consumer (``False``: the work is stored on its
    subject, nobody has bound it yet)."""

    @property
    def waiting(self) -> int:
        """Everything that still needs a worker of this role."""
        return self.pending + self.ack_pending

    @property
    def stranded(self) -> bool:
        """Work is waiting and no worker is ready to take it."""
        return self.waiting > 0 and self.ready == 0


async def role_queues(js: JetStreamContext, site: str) -> list[RoleQueue]:
    """Every role of ``site`` with a consumer, queued work or a registered worker.

    Raises:
        nats.errors.Error: NATS failed (timeout, no permission).
    """
    s = Subjects(site)
    records = await read_workers(js, site)
    ready: dict[str, int] = {}
    stopping: dict[str, int] = {}
    for r in records:
        into = ready if r.state == "ready" else stopping
        into[r.role] = into.get(r.role, 0) + 1
    out: dict[str, RoleQueue] = {}

    def add(role: str, stream: str, info: ConsumerInfo | None, stored: int = 0) -> None:
        out[role] = RoleQueue(
            role,
            stream,
            ready=ready.get(role, 0),
            stopping=stopping.get(role, 0),
            pending=(info.num_pending or 0) if info is not None else stored,
            ack_pending=(info.num_ack_pending or 0) if info is not None else 0,
            redelivered=(info.num_redelivered or 0) if info is not None else 0,
            consumer=info is not None or stream == "-",
        )

    for stream, durable in ((s.tasks_stream, "router"), (s.events_stream, RECORDER)):
        try:
            add(durable, stream, await js.consumer_info(stream, durable))
        except NotFoundError:
            continue
    try:
        consumers = await js.consumers_info(s.work_stream)
        by_subject = await js.stream_info(s.work_stream, subjects_filter=s.all_work)
    except NotFoundError:
        consumers, by_subject = [], None
    for info in consumers:
        if info.config.durable_name:  # not an ephemeral reader (replay, a watcher)
            add(info.config.durable_name, s.work_stream, info)
    prefix = s.work("")
    subjects = (by_subject.state.subjects or {}) if by_subject is not None else {}
    for subject, n in subjects.items():
        role = subject.removeprefix(prefix)
        if role not in out and n:  # stored, and no consumer reads it yet
            add(role, s.work_stream, None, n)
    for role in ready.keys() | stopping.keys():
        if role not in out:
            add(role, "-", None)
    order = {"router": 0, RECORDER: 2}
    return sorted(out.values(), key=lambda q: (order.get(q.role, 1), q.role))


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
