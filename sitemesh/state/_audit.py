"""The console's audit log: who viewed raw content, decided an approval or redrove a
dead letter, when, from where and why.

Kept in its own module so the console owns its schema; :mod:`._models` imports it at
the end so ``Base.metadata`` (and Alembic autogenerate) sees it. Migration
``0008_console_audit`` creates the table and makes it append-only like ``model_calls``
(an audit log that can be edited is not one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from sqlalchemy import Index, String, Text, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Mapped, mapped_column

from sitemesh.schemas import utcnow
from sitemesh.state._models import Base, row_id

AUDIT_ACTIONS: Final = (
    "login",
    "login_failed",
    "view_raw",
    "approve",
    "reject",
    "redrive",
)
"""What an audit entry records: a login (or a refused one), a view of raw (unmasked)
content, an approval decision, a dead-letter redrive."""


class AuditRow(Base):
    """One audited console action (append-only)."""

    __tablename__ = "console_audit"

    id: Mapped[int] = row_id()
    at: Mapped[datetime]
    """When (UTC)."""
    username: Mapped[str] = mapped_column(String(128))
    """The authenticated user (or the name tried, for ``login_failed``); not ``user``,
    a reserved word of PostgreSQL's SQL."""
    role: Mapped[str] = mapped_column(String(16), default="")
    """Their console role (``viewer``, ``approver``, ``admin``)."""
    action: Mapped[str] = mapped_column(String(32))
    """One of :data:`AUDIT_ACTIONS`."""
    site: Mapped[str] = mapped_column(String(16), default="")
    target: Mapped[str] = mapped_column(String(256), default="")
    """What was acted on: ``task:<id>``, ``dead_letter:<seq>``, ``approval:<id>``."""
    detail: Mapped[str] = mapped_column(Text, default="")
    """What was shown or why (the approval reason); never the raw content itself."""
    client: Mapped[str] = mapped_column(String(64), default="")
    """The client's address as the console saw it."""

    __table_args__ = (Index(None, "at"), Index(None, "target"))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit log entry, as :func:`read_audit` returns it (fields as :class:`AuditRow`)."""

    at: datetime
    user: str
    role: str
    action: str
    site: str
    target: str
    detail: str
    client: str


async def audit(
    engine: AsyncEngine,
    *,
    user: str,
    role: str,
    action: str,
    site: str = "",
    target: str = "",
    detail: str = "",
    client: str = "",
) -> None:
    """Append one entry to the audit log (its own transaction, committed on return).

    Raises:
        ValueError: ``action`` is not one of :data:`AUDIT_ACTIONS`.
        sqlalchemy.exc.SQLAlchemyError: the database refused the write.
    """
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"audit action must be one of {', '.join(AUDIT_ACTIONS)}, got {action!r}")
    async with engine.begin() as conn:
        await conn.execute(
            insert(AuditRow).values(
                at=utcnow(), username=user[:128], role=role, action=action, site=site,
                target=target[:256], detail=detail, client=client[:64],
            )
        )  # fmt: skip


async def read_audit(
    engine: AsyncEngine, *, limit: int = 100, target: str | None = None, action: str | None = None
) -> list[AuditEntry]:
    """The newest audit entries first, optionally only those about ``target`` or of
    ``action``."""
    stmt = select(AuditRow.__table__).order_by(AuditRow.at.desc(), AuditRow.id.desc()).limit(limit)
    if target is not None:
        stmt = stmt.where(AuditRow.target == target)
    if action is not None:
        stmt = stmt.where(AuditRow.action == action)
    async with engine.connect() as conn:
        rows = (await conn.execute(stmt)).all()
    return [
        AuditEntry(
            at=r.at, user=r.username, role=r.role, action=r.action, site=r.site,
            target=r.target, detail=r.detail, client=r.client,
        )
        for r in rows
    ]  # fmt: skip
