"""Approvals: work items parked by a ``require_approval`` decision, and who decided.

A task whose policy decision is ``require_approval`` does not go on to its first
agent: the router parks its :class:`~sitemesh.schemas.WorkItem` here
(:func:`request_approval`, idempotent per task) and a person decides with
``sitemesh approvals`` / ``sitemesh approve`` / ``sitemesh reject``
(:func:`decide_approval`). The parked work item contains the task content and
stays in the site's database (it never leaves the site).

Status moves ``pending -> approved`` or ``pending -> rejected`` exactly once: the
update is a compare-and-set on ``status = 'pending'``, so of two concurrent
deciders exactly one wins and the other gets :class:`ApprovalAlreadyDecided`.

The table model lives here so the approvals code owns its schema;
:mod:`._models` imports it at the end so ``Base.metadata`` sees it. Migration
``0003`` creates the table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Literal

from sqlalchemy import Index, LargeBinary, String, Text, UniqueConstraint, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column

from ..errors import SitemeshError
from ..schemas import ENCODER, WORK_DECODER, WorkItem, decode, utcnow
from ._models import Base

if TYPE_CHECKING:
    from ._store import Store

__all__ = [
    "APPROVAL_STATUSES",
    "ApprovalAlreadyDecided",
    "ApprovalRecord",
    "ApprovalRow",
    "ApprovalStatus",
    "UnknownApproval",
    "decide_approval",
    "get_approval",
    "list_approvals",
    "request_approval",
    "undo_decision",
]

ApprovalStatus = Literal["pending", "approved", "rejected"]

APPROVAL_STATUSES: Final[tuple[ApprovalStatus, ...]] = ("pending", "approved", "rejected")
"""Approval statuses; ``pending`` is the only one that can change."""


class UnknownApproval(SitemeshError, LookupError):
    """No approval has this id (or task id).

    Attributes:
        key: the id that was looked up.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"no approval request {key!r}")
        self.key = key


class ApprovalAlreadyDecided(SitemeshError, ValueError):
    """The approval was decided before; a decision is final.

    Attributes:
        approval_id: the approval.
        status: its status (``approved`` or ``rejected``).
        decided_by: who decided.
        decided_at: when (UTC).
    """

    def __init__(
        self, approval_id: str, status: str, decided_by: str | None, decided_at: datetime | None
    ) -> None:
        when = "" if decided_at is None else f" at {decided_at:%Y-%m-%d %H:%M:%S}Z"
        super().__init__(
            f"approval {approval_id} was already {status} by {decided_by or '?'}{when}; "
            "a decision is final"
        )
        self.approval_id = approval_id
        self.status = status
        self.decided_by = decided_by
        self.decided_at = decided_at


class ApprovalRow(Base):
    """One task waiting for (or decided by) a person."""

    __tablename__ = "approvals"

    approval_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """Random id shown by ``sitemesh approvals`` (12 hex digits)."""
    task_id: Mapped[str] = mapped_column(String(128))
    """The parked task; at most one approval per task."""
    site: Mapped[str] = mapped_column(String(16))
    rule_id: Mapped[str] = mapped_column(String(128))
    """The rule that asked for approval."""
    policy_version: Mapped[str] = mapped_column(String(64))
    data_class: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """``pending``, ``approved`` or ``rejected``."""
    decided_by: Mapped[str | None] = mapped_column(String(256))
    decided_at: Mapped[datetime | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    """The decider's reason (free text)."""
    work_item: Mapped[bytes] = mapped_column(LargeBinary)
    """The parked :class:`~sitemesh.schemas.WorkItem`, JSON-encoded (site-local)."""

    __table_args__ = (
        UniqueConstraint("task_id"),
        Index(None, "status", "requested_at"),
    )


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """An approval as read from the database.

    Attributes:
        approval_id: its id.
        task_id: the parked task.
        site: the task's site.
        rule_id: the rule that required approval.
        policy_version: version of the policy that made the decision.
        data_class: the task's data class.
        requested_at: when the task was parked (UTC).
        status: ``pending``, ``approved`` or ``rejected``.
        decided_by: who decided, or ``None`` while pending.
        decided_at: when (UTC), or ``None`` while pending.
        reason: the decider's reason (``""`` if none given).
        work_item: the parked work item, JSON-encoded.
    """

    approval_id: str
    task_id: str
    site: str
    rule_id: str
    policy_version: str
    data_class: str
    requested_at: datetime
    status: ApprovalStatus
    decided_by: str | None
    decided_at: datetime | None
    reason: str
    work_item: bytes

    def item(self) -> WorkItem:
        """The parked work item, decoded.

        Raises:
            SchemaError: the stored bytes are not a valid work item.
        """
        return decode(self.work_item, WORK_DECODER)


def _record(row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        approval_id=row.approval_id,
        task_id=row.task_id,
        site=row.site,
        rule_id=row.rule_id,
        policy_version=row.policy_version,
        data_class=row.data_class,
        requested_at=row.requested_at,
        status=row.status,
        decided_by=row.decided_by,
        decided_at=row.decided_at,
        reason=row.reason,
        work_item=row.work_item,
    )


_TABLE = ApprovalRow.__table__


async def request_approval(
    store: Store, item: WorkItem, *, now: datetime | None = None
) -> ApprovalRecord:
    """Park ``item`` until a person decides; idempotent per task.

    Args:
        store: the site's state store.
        item: the work item the router would have sent to the first agent; its
            decision's ``rule_id``, ``policy_version`` and ``data_class`` are recorded.
        now: the request time (UTC); ``None``: now.

    Returns:
        The approval: the new one, or the existing one of the same task (whatever
        its status), so a redelivered task is parked once.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database failed.
    """
    values = approval_values(item, now=now)
    async with store._write() as conn:
        await conn.execute(store._insert(ApprovalRow).values(**values).on_conflict_do_nothing())
        row = (
            await conn.execute(select(_TABLE).where(ApprovalRow.task_id == values["task_id"]))
        ).one()
    return _record(row)


def approval_values(item: WorkItem, *, now: datetime | None = None) -> dict[str, Any]:
    """The new ``approvals`` row parking ``item`` (status ``pending``, a random id).

    Args:
        item: the parked work item.
        now: the request time (UTC); ``None``: now.
    """
    return {
        "approval_id": uuid.uuid4().hex[:12],
        "task_id": item.envelope.task_id,
        "site": item.envelope.site,
        "rule_id": item.decision.rule_id,
        "policy_version": item.decision.policy_version,
        "data_class": item.decision.data_class,
        "requested_at": now or utcnow(),
        "status": "pending",
        "decided_by": None,
        "decided_at": None,
        "reason": "",
        "work_item": ENCODER.encode(item),
    }


async def get_approval(store: Store, key: str) -> ApprovalRecord | None:
    """The approval with approval id ``key``, or else with task id ``key``.

    Returns:
        The approval, or ``None``.
    """
    stmt = select(_TABLE).where(or_(ApprovalRow.approval_id == key, ApprovalRow.task_id == key))
    async with store._engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    if not rows:
        return None
    # an approval id wins over a task id that happens to be spelled the same
    return _record(min(rows, key=lambda r: r.approval_id != key))


async def list_approvals(
    store: Store, status: ApprovalStatus | None = "pending", *, limit: int = 100
) -> list[ApprovalRecord]:
    """Approvals with ``status`` (``None``: all), oldest request first.

    Args:
        store: the site's state store.
        status: ``pending`` (default), ``approved``, ``rejected`` or ``None``.
        limit: at most this many.

    Returns:
        The approvals.
    """
    stmt = select(_TABLE).order_by(ApprovalRow.requested_at, ApprovalRow.approval_id).limit(limit)
    if status is not None:
        stmt = stmt.where(ApprovalRow.status == status)
    async with store._engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [_record(r) for r in rows]


async def decide_approval(
    store: Store,
    approval_id: str,
    approve: bool,
    who: str,
    reason: str = "",
    *,
    now: datetime | None = None,
) -> ApprovalRecord:
    """Approve or reject a pending approval (once; a decision is final).

    Args:
        store: the site's state store.
        approval_id: the approval's id (or its task id).
        approve: ``True`` to approve, ``False`` to reject.
        who: the person deciding (non-empty).
        reason: why (free text, recorded).
        now: the decision time (UTC); ``None``: now.

    Returns:
        The decided approval.

    Raises:
        ValueError: ``who`` is empty.
        UnknownApproval: no approval has this id.
        ApprovalAlreadyDecided: it was approved or rejected before (by anyone,
            including a concurrent call that won the race).
    """
    if not who.strip():
        raise ValueError("who decides must not be empty")
    current = await get_approval(store, approval_id)
    if current is None:
        raise UnknownApproval(approval_id)
    stmt = (
        update(ApprovalRow)
        .where(ApprovalRow.approval_id == current.approval_id, ApprovalRow.status == "pending")
        .values(
            status="approved" if approve else "rejected",
            decided_by=who,
            decided_at=now or utcnow(),
            reason=reason,
        )
    )
    async with store._write() as conn:
        changed = (await conn.execute(stmt)).rowcount
    decided = await get_approval(store, current.approval_id)
    assert decided is not None  # rows are never deleted
    if changed != 1:
        raise ApprovalAlreadyDecided(
            decided.approval_id, decided.status, decided.decided_by, decided.decided_at
        )
    return decided


async def undo_decision(store: Store, decided: ApprovalRecord) -> bool:
    """Put a decided approval back to ``pending`` (its follow-up could not be published).

    Only undoes exactly that decision: a row decided again meanwhile is left alone.

    Args:
        store: the site's state store.
        decided: the record :func:`decide_approval` returned.

    Returns:
        ``True`` if the approval is pending again.
    """
    stmt = (
        update(ApprovalRow)
        .where(
            ApprovalRow.approval_id == decided.approval_id,
            ApprovalRow.status == decided.status,
            ApprovalRow.decided_by == decided.decided_by,
            ApprovalRow.decided_at == decided.decided_at,
        )
        .values(status="pending", decided_by=None, decided_at=None, reason="")
    )
    async with store._write() as conn:
        return bool((await conn.execute(stmt)).rowcount == 1)
