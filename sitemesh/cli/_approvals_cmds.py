"""``sitemesh approvals``, ``sitemesh approve ID`` and ``sitemesh reject ID``.

A task whose policy decision is ``require_approval`` waits in the site's
database (:mod:`sitemesh.state._approvals`) until a person decides:

* approve: the parked work item continues to the first agent
  (``sm.v1.work.<site>.retriever``, ``Nats-Msg-Id`` ``<task_id>:work:retriever``)
  with ``decision.approved_by`` / ``approved_at`` set and a reason appended; the
  updated decision is also published on the task's event subject, so
  ``sitemesh show`` records who approved;
* reject: a ``TaskFailed`` event (reason ``rejected by <who>: <reason>``) ends
  the task.

The decision is recorded first (compare-and-set: a second decision is refused),
then published; if publishing fails, the decision is undone so it can be retried.

The functions are plain async functions returning the exit code; the typer app
only wires them up (``raise typer.Exit(asyncio.run(approve(...)))``). Recording and
publishing a decision is :func:`sitemesh.edge_node.decide_and_publish` (the console
calls it too).
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..config import Settings
from ..edge_node import (
    decide_and_publish,
)
from ..runtime import connect
from ..state import (
    ApprovalAlreadyDecided,
    ApprovalRecord,
    ApprovalStatus,
    Store,
    get_approval,
    is_sqlite,
    list_approvals,
    sqlite_path,
)
from ._nats import nats_url
from ._report import builtins_without, print_json

EXIT_OK: Final = 0
EXIT_UNKNOWN_APPROVAL: Final = 1
"""Exit code when no approval has the given id (or task id)."""
EXIT_ALREADY_DECIDED: Final = 2
"""Exit code when the approval was decided before (a decision is final)."""


_STATUS_STYLE: Final = {"pending": "yellow", "approved": "green", "rejected": "red"}


def default_who() -> str:
    """The OS user running the command (the default of ``--by``)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry / no login name in containers
        return "unknown"


def _t(value: object, style: str = "") -> Text:
    """Plain text (never parsed as rich markup: ids and reasons are data)."""
    return Text("-" if value is None or value == "" else str(value), style=style)


def _ts(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S") + "Z"


def _no_db(settings: Settings) -> bool:
    path = sqlite_path(settings.db_url) if is_sqlite(settings.db_url) else None
    return path is not None and not path.exists()


# -- commands -----------------------------------------------------------------------------
def _approvals_table(records: Sequence[ApprovalRecord], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    # ids are never cut or folded (they are what `approve ID` takes)
    widest = max((len(r.approval_id) for r in records), default=8)
    table.add_column("approval", no_wrap=True, min_width=widest)
    tasks = max((len(r.task_id) for r in records), default=4)
    table.add_column("task", no_wrap=True, min_width=tasks)
    for col in ("kind", "tenant", "rule", "data class", "requested"):
        table.add_column(col, overflow="fold")
    table.add_column("status")
    table.add_column("decided by")
    for r in records:
        try:
            env = r.item().envelope
            kind, tenant = env.kind, env.tenant
        except ValueError:  # SchemaError: an unreadable parked item is still listed
            kind, tenant = "?", "?"
        table.add_row(
            _t(r.approval_id, "bold"),
            _t(r.task_id),
            _t(kind),
            _t(tenant),
            _t(r.rule_id),
            _t(r.data_class),
            _t(_ts(r.requested_at)),
            _t(r.status, _STATUS_STYLE.get(r.status, "")),
            _t(r.decided_by),
        )
    return table


async def approvals_list(
    settings: Settings,
    console: Console,
    *,
    status: ApprovalStatus | None = "pending",
    limit: int = 50,
    as_json: bool = False,
) -> int:
    """Print approvals with ``status`` (default: those waiting), oldest first.

    Args:
        settings: the database is ``settings.db_url``.
        console: where to render.
        status: ``pending``, ``approved``, ``rejected``, or ``None`` for all.
        limit: at most this many.
        as_json: one JSON document ``{"site", "status", "approvals": [...]}`` instead
            (each record's fields but the parked work item, ids whole).

    Returns:
        :data:`EXIT_OK`.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable.
    """
    label = status or "all"
    records: list[ApprovalRecord] = []
    if not _no_db(settings):
        async with Store(settings.db_url) as store:
            records = await list_approvals(store, status, limit=limit)
    if as_json:  # the parked work item (the ticket itself) stays out: `show` has it
        listed = [builtins_without(r, "work_item") for r in records]
        print_json(console, {"site": settings.site, "status": label, "approvals": listed})
        return EXIT_OK
    if _no_db(settings):
        console.print(f"no {label} approvals (no state database yet)", highlight=False)
        return EXIT_OK
    if not records:
        console.print(f"no {label} approvals at site {settings.site}", highlight=False)
        return EXIT_OK
    console.print(_approvals_table(records, f"{len(records)} {label} approval(s)"))
    if status == "pending":
        console.print(
            "decide with: sitemesh approve ID --reason TEXT | sitemesh reject ID --reason TEXT",
            highlight=False,
        )
    return EXIT_OK


async def _decide(
    settings: Settings, approval_id: str, approve: bool, who: str, reason: str, console: Console
) -> int:
    verb = "approve" if approve else "reject"
    if _no_db(settings):
        console.print(Text(f"cannot {verb} {approval_id!r}: no state database yet", "red"))
        return EXIT_UNKNOWN_APPROVAL
    async with Store(settings.db_url) as store:
        record = await get_approval(store, approval_id)
        if record is None:
            console.print(Text(f"no approval request {approval_id!r}", "red"))
            return EXIT_UNKNOWN_APPROVAL
        if record.status != "pending":
            console.print(Text(f"cannot {verb}: {_already(record)}", "red"))
            return EXIT_ALREADY_DECIDED
        async with nats_url(settings, console) as url:
            nc = await connect(settings, "operator", url=url, name="sitemesh-approvals")
            try:
                record = await decide_and_publish(
                    store, nc.jetstream(), record.approval_id, approve, who, reason
                )
            except ApprovalAlreadyDecided as exc:
                console.print(Text(f"cannot {verb}: {exc}", "red"))
                return EXIT_ALREADY_DECIDED
            finally:
                await nc.drain()
    if approve:
        console.print(
            Text(
                f"approved {record.approval_id} (task {record.task_id}) as {who}; "
                "the task continues with its workflow",
                "green",
            )
        )
    else:
        console.print(
            Text(f"rejected {record.approval_id} (task {record.task_id}) as {who}", "yellow")
        )
    return EXIT_OK


def _already(record: ApprovalRecord) -> str:
    return str(
        ApprovalAlreadyDecided(
            record.approval_id, record.status, record.decided_by, record.decided_at
        )
    )


async def approve(
    settings: Settings, approval_id: str, who: str, reason: str, console: Console
) -> int:
    """Approve a parked task: record the decision, then send the work item on.

    Args:
        settings: database (``db_url``) and NATS (``nats.url`` or the embedded server).
        approval_id: the approval id from ``sitemesh approvals`` (or the task id).
        who: the person approving (``--by``, default :func:`default_who`).
        reason: why (``--reason``), recorded and appended to the decision's reasons.
        console: where to report.

    Returns:
        :data:`EXIT_OK`, :data:`EXIT_UNKNOWN_APPROVAL` or :data:`EXIT_ALREADY_DECIDED`.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable.
        BusConnectionError, TransientError: NATS failed (the approval stays pending).
    """
    return await _decide(settings, approval_id, True, who, reason, console)


async def reject(
    settings: Settings, approval_id: str, who: str, reason: str, console: Console
) -> int:
    """Reject a parked task: record the decision, then end the task with ``TaskFailed``.

    Args:
        settings: database (``db_url``) and NATS (``nats.url`` or the embedded server).
        approval_id: the approval id from ``sitemesh approvals`` (or the task id).
        who: the person rejecting (``--by``, default :func:`default_who`).
        reason: why (``--reason``); the task fails with ``rejected by <who>: <reason>``.
        console: where to report.

    Returns:
        :data:`EXIT_OK`, :data:`EXIT_UNKNOWN_APPROVAL` or :data:`EXIT_ALREADY_DECIDED`.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable.
        BusConnectionError, TransientError: NATS failed (the approval stays pending).
    """
    return await _decide(settings, approval_id, False, who, reason, console)
