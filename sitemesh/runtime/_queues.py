"""Each role's workers and queued work on a site, as ``sitemesh status`` and the
console's health page show them.

Queued work is read from each role's durable consumer (``num_pending``: not yet
delivered; ``num_ack_pending``: delivered, not yet acknowledged) — the router's on
``TASKS_<site>``, the agents' on ``WORK_<site>``, the recorder's on ``EVENTS_<site>`` —
and, for a work subject no consumer reads, the messages stored on it. Ready workers
come from the site's registry (``sitemesh_workers_<site>``, :mod:`._presence`).
"""

from __future__ import annotations

from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import ConsumerInfo
from nats.js.errors import NotFoundError

from ..bus import RECORDER, Subjects
from ._presence import read_workers


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
