"""What the console reads and does: one site's database and NATS, through the same
public calls the CLI uses (``sitemesh.state``, ``sitemesh.replay``,
``sitemesh.edge_node.decide_and_publish``, ``sitemesh.runtime.role_queues``...).

NATS is optional: without it (not running, unreachable) the database pages work and
the live-bus parts say why they are empty; the connection is retried at most every
:data:`RECONNECT_S` seconds.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

import msgspec
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy import func, select

from ..bus import StreamFill, Subjects, redact_url, stream_fill
from ..config import Settings
from ..edge_node import decide_and_publish
from ..errors import BusConnectionError
from ..models import COST_KEYS, CostRow, cost_rollup
from ..policy import PolicyStore, task_text
from ..replay import DeadLetterRecord, RedriveResult, find_dead_letter, list_dead_letters, redrive
from ..runtime import RoleQueue, ToolHealthReport, connect, read_tool_health, role_queues
from ..schemas import TASK_DECODER, decode
from ..state import (
    ApprovalRecord,
    ApprovalRow,
    ApprovalStatus,
    DeadLetterRow,
    ModelCallRow,
    StatusCounts,
    Store,
    TaskEventRow,
    TaskSummary,
    TaskView,
    ToolCallRow,
    list_approvals,
)
from ..workflows import WorkflowStore

log = logging.getLogger("sitemesh.console")

RECONNECT_S: Final = 5.0
"""Seconds between attempts to reach NATS when it was not reachable."""
PAGE_SIZE: Final = 100
"""Tasks per page of the task list."""

DocKind = Literal["policy", "workflows"]


@dataclass(frozen=True, slots=True)
class TaskFilters:
    """The task list's filters (each ``None``: any)."""

    site: str | None = None
    kind: str | None = None
    status: str | None = None
    outcome: str | None = None
    data_class: str | None = None
    since: datetime | None = None
    before: datetime | None = None
    q: str | None = None
    """A task id, or the start of one."""


@dataclass(frozen=True, slots=True)
class TaskPage:
    """Everything the task page shows."""

    view: TaskView
    report: Mapping[str, Any]
    model_calls: Sequence[Mapping[str, Any]]
    tool_calls: Sequence[Mapping[str, Any]]
    approval: ApprovalRecord | None


@dataclass(frozen=True, slots=True)
class Health:
    """The health page: per role, streams, tools; ``bus_error`` when NATS is away."""

    queues: Sequence[RoleQueue] = ()
    fills: Sequence[StreamFill] = ()
    tools: Sequence[ToolHealthReport] = ()
    bus_error: str = ""
    leafnodes: Sequence[Mapping[str, Any]] = field(default_factory=list)
    """The server's leaf node connections (``/leafz`` of its monitoring port): the hub
    link of a site in a hybrid topology."""
    monitor_error: str = ""
    """Why the monitoring port could not be read (empty: read, or none configured)."""


@dataclass(frozen=True, slots=True)
class LastError:
    """A role's newest dead letter: its class, field and time (never its reason, which
    may quote the customer)."""

    error_class: str
    field: str | None
    dead_at: datetime


@dataclass(frozen=True, slots=True)
class DocRevision:
    """One revision of the policy or workflows document."""

    key: str
    revision: int
    version: str
    label: str
    created: datetime | None


class ConsoleData:
    """One site's state for the console.

    Args:
        settings: the site (database URL, site name, NATS settings).
        nats_url: the NATS server to use, or ``None`` (database only).
        monitor_url: that server's HTTP monitoring endpoint (``http://host:8222``), for
            the hub link on the health page; ``None``: not shown.
    """

    def __init__(
        self, settings: Settings, nats_url: str | None, *, monitor_url: str | None = None
    ) -> None:
        self.monitor_url = monitor_url.rstrip("/") if monitor_url else None
        self.settings = settings
        self.site = settings.site
        self.subjects = Subjects(settings.site)
        self.store = Store(settings.db_url)
        self._url = nats_url
        self._nc: Client | None = None
        self._next_try = 0.0
        self._lock = asyncio.Lock()
        self.bus_error = "" if nats_url else "no NATS server configured or running"

    async def open(self) -> None:
        await self.store.open()
        await self.js()

    async def close(self) -> None:
        if self._nc is not None:
            await self._nc.drain()
        await self.store.close()

    async def js(self) -> JetStreamContext | None:
        """The JetStream context, connecting first if needed; ``None`` when NATS is not
        reachable (:attr:`bus_error` says why)."""
        if self._nc is not None and self._nc.is_connected:
            return self._nc.jetstream()
        if self._url is None or time.monotonic() < self._next_try:
            return None
        async with self._lock:
            if self._nc is not None and self._nc.is_connected:
                return self._nc.jetstream()
            try:
                self._nc = await connect(
                    self.settings, "operator", url=self._url, name="sitemesh-console"
                )
                self.bus_error = ""
                return self._nc.jetstream()
            except BusConnectionError as exc:
                self._next_try = time.monotonic() + RECONNECT_S
                self.bus_error = redact_url(str(exc))
                return None

    # -- tasks ------------------------------------------------------------------------
    async def tasks(self, f: TaskFilters, limit: int = PAGE_SIZE) -> list[TaskSummary]:
        return await self.store.list_tasks(
            limit, f.status, f.q or None, site=f.site, kind=f.kind, outcome=f.outcome,
            data_class=f.data_class, since=f.since, before=f.before,
        )  # fmt: skip

    async def counts(self, site: str | None) -> StatusCounts:
        return await self.store.counts(site=site)

    async def task(self, task_id: str) -> TaskPage | None:
        from ..state import get_approval, task_report

        view = await self.store.get_task(task_id)
        if view is None:
            return None
        engine = self.store.engine
        async with engine.connect() as conn:
            mc = await conn.execute(
                select(ModelCallRow.__table__)
                .where(ModelCallRow.task_id == task_id)
                .order_by(ModelCallRow.started_at, ModelCallRow.id)
            )
            model_calls = [{k: v for k, v in r._mapping.items() if k != "record"} for r in mc]
            tc = await conn.execute(
                select(ToolCallRow.__table__)
                .where(ToolCallRow.task_id == task_id)
                .order_by(ToolCallRow.started_at, ToolCallRow.id)
            )
            tool_calls = [{k: v for k, v in r._mapping.items() if k != "record"} for r in tc]
        approval = await get_approval(self.store, task_id)
        if approval is not None and approval.task_id != task_id:
            approval = None  # an approval whose id is spelled like this task's id
        return TaskPage(view, task_report(view), model_calls, tool_calls, approval)

    async def raw_task_text(self, page: TaskPage) -> str | None:
        """The task's free text as submitted (ticket title and body, alert summary):
        from its parked work item, else from ``TASKS_<site>`` by the sequence
        ``task_accepted`` recorded; ``None`` when neither has it any more."""
        if page.approval is not None:
            try:
                return task_text(page.approval.item().task)
            except ValueError:
                pass
        seq = next(
            (int(ev.payload.get("stream_seq") or 0) for ev in page.view.events
             if ev.type == "task_accepted.v1"), 0,
        )  # fmt: skip
        js = await self.js()
        if not seq or js is None:
            return None
        try:
            msg = await js.get_msg(self.subjects.tasks_stream, seq)
            return task_text(decode(msg.data or b"", TASK_DECODER))
        except (NotFoundError, ValueError):
            return None

    # -- approvals --------------------------------------------------------------------
    async def approvals(self, status: ApprovalStatus | None) -> list[ApprovalRecord]:
        return await list_approvals(self.store, status=status, limit=200)

    async def decide(
        self, approval_id: str, approve: bool, who: str, reason: str
    ) -> ApprovalRecord:
        """Record and publish a decision (:func:`sitemesh.edge_node.decide_and_publish`).

        Raises:
            BusConnectionError: NATS is not reachable (nothing was decided).
            UnknownApproval, ApprovalAlreadyDecided: as ``decide_and_publish``.
        """
        js = await self.js()
        if js is None:
            raise BusConnectionError(redact_url(self._url or "-"), "not reachable now")
        return await decide_and_publish(self.store, js, approval_id, approve, who, reason)

    # -- dead letters -----------------------------------------------------------------
    async def dead_letters(self, limit: int = 200) -> list[DeadLetterRecord] | None:
        """The newest dead letters (newest first), or ``None`` when NATS is away."""
        js = await self.js()
        if js is None:
            return None
        return list(reversed(await list_dead_letters(js, self.subjects, limit=limit)))

    async def dead_letter(self, seq: str) -> DeadLetterRecord | None:
        js = await self.js()
        if js is None:
            return None
        return await find_dead_letter(js, self.subjects, seq)

    async def redrive(self, seq: str) -> RedriveResult:
        js = await self.js()
        if js is None:
            raise BusConnectionError(redact_url(self._url or "-"), "not reachable now")
        return await redrive(js, self.subjects, seq)

    # -- policy and workflows ---------------------------------------------------------
    def _doc_store(self, js: JetStreamContext, kind: DocKind) -> PolicyStore | WorkflowStore:
        return PolicyStore(js) if kind == "policy" else WorkflowStore(js)

    async def revisions(self, kind: DocKind) -> list[DocRevision] | None:
        """The document's stored revisions for this site (its override and the shared
        key), newest first; ``None`` when NATS is away."""
        js = await self.js()
        if js is None:
            return None
        store = self._doc_store(js, kind)
        revs = [*await store.history(None), *await store.history(self.site)]
        out = [DocRevision(r.key, r.revision, r.version, r.label, r.created) for r in revs]
        return sorted(out, key=lambda r: r.revision, reverse=True)

    async def revision_text(self, kind: DocKind, rev: DocRevision) -> str:
        js = await self.js()
        if js is None:
            return ""
        store = self._doc_store(js, kind)
        site = rev.key.partition(".")[2] or None
        return await store.text(site, rev.revision) or ""

    async def diff(self, kind: DocKind, a: DocRevision, b: DocRevision) -> list[str]:
        """A unified diff from revision ``a`` to ``b``."""
        ta, tb = await self.revision_text(kind, a), await self.revision_text(kind, b)
        return list(
            difflib.unified_diff(
                ta.splitlines(), tb.splitlines(), f"{a.key}@{a.revision}",
                f"{b.key}@{b.revision}", lineterm="",
            )
        )  # fmt: skip

    # -- health and cost --------------------------------------------------------------
    async def health(self) -> Health:
        js = await self.js()
        if js is None:
            return Health(bus_error=self.bus_error)
        try:
            queues = await role_queues(js, self.site)
            fills = await stream_fill(js, self.subjects)
            tools = await read_tool_health(js, self.site)
        except Exception as exc:  # a probe: say why on the page
            return Health(bus_error=redact_url(f"cannot read NATS: {exc!r}"))
        leafs, monitor_error = await self._leafz()
        return Health(queues=queues, fills=fills, tools=tools, leafnodes=leafs,
                      monitor_error=monitor_error)  # fmt: skip

    async def _leafz(self) -> tuple[list[Mapping[str, Any]], str]:
        if self.monitor_url is None:
            return [], ""
        import httpx

        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                resp = await http.get(f"{self.monitor_url}/leafz")
                resp.raise_for_status()
                leafs = resp.json().get("leafs") or []
        except (httpx.HTTPError, ValueError) as exc:
            return [], f"cannot read {self.monitor_url}/leafz: {type(exc).__name__}"
        if not leafs:
            return [], "no leaf node connection: the hub link is down"
        return [dict(x) for x in leafs], ""

    async def last_errors(self) -> dict[str, LastError]:
        """Per role, its newest recorded dead letter."""
        newest = (
            select(DeadLetterRow.role, func.max(DeadLetterRow.id).label("id"))
            .where(DeadLetterRow.site == self.site)
            .group_by(DeadLetterRow.role)
            .subquery()
        )
        stmt = select(
            DeadLetterRow.role, DeadLetterRow.error_class, DeadLetterRow.field,
            DeadLetterRow.dead_at,
        ).join(newest, DeadLetterRow.id == newest.c.id)  # fmt: skip
        async with self.store.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return {r.role: LastError(r.error_class, r.field, r.dead_at) for r in rows}

    async def cost(self, by: str, since: datetime | None = None) -> list[CostRow]:
        """Model cost grouped ``by`` one of :data:`sitemesh.models.COST_KEYS`.

        Raises:
            ValueError: an unknown ``by``.
        """
        key = next((k for k in COST_KEYS if k == by), None)
        if key is None:
            raise ValueError(f"by: expected one of {', '.join(COST_KEYS)}, got {by!r}")
        return await cost_rollup(self.store, key, since=since)

    # -- live updates -----------------------------------------------------------------
    async def fingerprint(self) -> str:
        """Changes whenever an event, a dead letter or an approval is recorded."""
        async with self.store.engine.connect() as conn:
            ev = (await conn.execute(select(func.max(TaskEventRow.id)))).scalar()
            dl = (await conn.execute(select(func.max(DeadLetterRow.id)))).scalar()
            ap = (
                await conn.execute(
                    select(func.count())
                    .select_from(ApprovalRow)
                    .where(ApprovalRow.status == "pending")
                )
            ).scalar()
        return f"{ev or 0}.{dl or 0}.{ap or 0}"


def to_builtins(value: object) -> Any:
    """A struct or dataclass as JSON-ready builtins (for the JSON views)."""
    return msgspec.to_builtins(value)
