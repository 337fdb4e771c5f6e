"""MCP server ``ticket_history``: a customer's past tickets, from the state database.

Run it over stdio (what the tool registry starts) or streamable HTTP::

    python -m sitemesh.tools.servers.ticket_history [--db-url URL] [--http HOST:PORT]

Where the history comes from: the ``tasks`` table names no customer (the router
records PII-free task rows), so a task is linked to a customer by the CRM note an
agent stored for it (``crm.add_note(customer_id, note, task_id=...)``). The history
is the customer's notes, newest first, each joined with its task's row when it has
one (kind, title, status, outcome, times, the final reply); notes without a task
(past interactions, ``source: "seed"``) are listed too, with ``task: null``.

Tool:

* ``history(customer_id, limit=10, exclude_task_id?)`` -> :class:`History`:
  ``customer_id`` ``^[A-Za-z0-9_]{1,64}$``; ``limit`` 1-50 entries;
  ``exclude_task_id`` leaves out the task being worked on. Only the customer's own
  notes and tasks are returned.

Errors (tool errors, the field first): ``customer_id: no customer with this id``;
schema violations name the field (``limit``: at most 50). The answer carries
personal data (notes, the final replies sent to the customer); the registry scans
every response before an agent sees it. Logs go to stderr only.
"""

from __future__ import annotations

import argparse
from typing import Annotated, Any, Final

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from sqlalchemy import RowMapping, select

from ...state import CustomerNoteRow, TaskRow
from . import _common as common
from ._crm_data import CUSTOMER_ID_PATTERN
from ._crm_db import get_customer

NAME: Final = "ticket_history"
MAX_ENTRIES: Final = 50
MAX_MESSAGE_CHARS: Final = 2000
"""The final reply of a task is cut to this many characters."""


class PastTask(BaseModel):
    """A task of the customer, as the state database recorded it."""

    task_id: str
    kind: str = Field(description="support_ticket, telemetry_alert...")
    tenant: str
    title: str = Field(description="a PII-free label")
    status: str = Field(description="accepted (in flight), answered or failed")
    outcome: str | None = Field(description="resolved, escalate or needs_human once answered")
    data_class: str | None
    submitted_at: str | None = Field(description="RFC 3339, UTC")
    finished_at: str | None = Field(description="RFC 3339, UTC")
    customer_message: str = Field(description="the reply sent, at most 2,000 characters")


class HistoryEntry(BaseModel):
    """One note on the customer and the task it is about (``None``: no task)."""

    at: str = Field(description="when the note was stored, RFC 3339, UTC")
    note: str
    source: str = Field(description="tool (an agent's add_note) or seed")
    task_id: str | None
    task: PastTask | None = Field(description="null: no task, or not recorded at this site")


class History(BaseModel):
    """A customer's history, newest first."""

    customer_id: str
    entries: list[HistoryEntry]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def ticket_history_server(db: common.Database) -> MCPServer[Any]:
    """The ``ticket_history`` MCP server over ``db`` (open it before serving)."""
    server: MCPServer[Any] = MCPServer(
        NAME,
        instructions="Past tickets of a customer (notes and the tasks they are about).",
    )

    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def history(
        customer_id: Annotated[
            str, Field(pattern=CUSTOMER_ID_PATTERN, description="the customer's handle")
        ],
        limit: Annotated[
            int, Field(ge=1, le=MAX_ENTRIES, description="most entries, newest first")
        ] = 10,
        exclude_task_id: Annotated[
            str | None,
            Field(pattern=common.TASK_ID_PATTERN, description="leave this task out"),
        ] = None,
    ) -> History:
        """The customer's past tickets and notes, newest first."""
        if await get_customer(db.engine, customer_id) is None:
            common.tool_error("customer_id", "no customer with this id")
        notes, tasks = CustomerNoteRow.__table__, TaskRow.__table__
        stmt = (
            select(notes, *(c.label(f"task__{c.key}") for c in tasks.c))
            .select_from(notes.outerjoin(tasks, tasks.c.task_id == notes.c.task_id))
            .where(notes.c.customer_id == customer_id)
            .order_by(notes.c.created_at.desc(), notes.c.id.desc())
            .limit(limit)
        )
        if exclude_task_id is not None:
            stmt = stmt.where(notes.c.task_id.is_(None) | (notes.c.task_id != exclude_task_id))
        async with db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).mappings().all()
        entries = [
            HistoryEntry(
                at=m["created_at"].isoformat(),
                note=m["note"],
                source=m["source"],
                task_id=m["task_id"],
                task=_task(m) if m["task__task_id"] is not None else None,
            )
            for m in rows
        ]
        return History(customer_id=customer_id, entries=entries)

    return server


def _task(m: RowMapping) -> PastTask:
    """The task columns (``task__<column>``) of a joined row."""
    return PastTask(
        task_id=m["task__task_id"],
        kind=m["task__kind"],
        tenant=m["task__tenant"],
        title=m["task__title"],
        status=m["task__status"],
        outcome=m["task__outcome"],
        data_class=m["task__data_class"],
        submitted_at=_iso(m["task__submitted_at"]),
        finished_at=_iso(m["task__finished_at"]),
        customer_message=(m["task__customer_message"] or "")[:MAX_MESSAGE_CHARS],
    )


async def _serve(args: argparse.Namespace) -> None:
    db = common.Database(args.db_url or common.settings().db_url)
    await db.open()
    await common.run_main(ticket_history_server(db), args.http, db)


def main(argv: list[str] | None = None) -> None:
    """``python -m sitemesh.tools.servers.ticket_history`` (see the module docstring)."""
    p = common.parser(
        "python -m sitemesh.tools.servers.ticket_history",
        "MCP server: a customer's past tickets",
        db=True,
    )
    args = p.parse_args(argv)
    common.configure_logging(args.log_level)
    common.run(_serve(args))


if __name__ == "__main__":
    main()
