"""Tables of the state database (SQLAlchemy 2.0 typed declarative).

Portable across SQLite and PostgreSQL: only ``String``, ``Integer``, ``Float``,
``JSON``, ``LargeBinary`` and timezone-aware ``DateTime`` columns, no
dialect-specific types. Timestamps are stored in UTC; SQLite keeps no offset, so
:class:`UTCDateTime` re-attaches UTC on read.

Tables have no foreign keys on purpose: events of one task can be recorded out of
order (several recorder processes, redeliveries), so a dead letter or a step may
arrive before the ``task_accepted`` event that creates the task row.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, MappedColumn, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
"""Deterministic constraint names, so migrations are the same on every dialect."""

FINAL_ANSWER_TYPE = "final_answer.v1"
"""Schema tag of :class:`sitemesh.schemas.FinalAnswer`; at most one event row per task."""


class UTCDateTime(TypeDecorator[datetime]):
    """A ``DateTime(timezone=True)`` that always round-trips as aware UTC.

    Naive values written are taken to be UTC; values read back from SQLite (which
    stores no offset) get ``tzinfo=UTC``; PostgreSQL ``timestamptz`` values are
    converted to UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the state tables."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: dict[Any, Any] = {  # noqa: RUF012 - SQLAlchemy reads it at class creation
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        dict[str, str]: JSON(),
        bytes: LargeBinary(),
    }


def row_id() -> MappedColumn[int]:
    """A table's surrogate primary key: an auto-incremented ``BIGINT`` on PostgreSQL,
    ``INTEGER`` on SQLite (where only an ``INTEGER PRIMARY KEY`` is filled in by the
    database). Use as ``id: Mapped[int] = row_id()``."""
    return mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )


class TaskRow(Base):
    """One task: created by ``task_accepted`` (or any earlier-arriving event)."""

    __tablename__ = "tasks"

    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    site: Mapped[str] = mapped_column(String(16), default="")
    kind: Mapped[str] = mapped_column(String(64), default="")
    tenant: Mapped[str] = mapped_column(String(256), default="default")
    title: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="accepted")
    """``accepted`` (in flight), ``answered`` or ``failed``."""
    data_class: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str | None] = mapped_column(String(16))
    """``resolved`` / ``escalate`` / ``needs_human`` once answered."""
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    customer_message: Mapped[str] = mapped_column(Text, default="")
    submitted_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    latency_ms: Mapped[float | None] = mapped_column(Float)
    """``answered_at - submitted_at`` of the final answer, in milliseconds."""

    __table_args__ = (
        Index(None, "status"),
        Index(None, "outcome"),
        Index(None, "data_class"),
        Index(None, "submitted_at"),
    )


class TaskEventRow(Base):
    """One event read from the site's events stream (recorded once per stream seq)."""

    __tablename__ = "task_events"

    id: Mapped[int] = row_id()
    task_id: Mapped[str] = mapped_column(String(128))
    stream: Mapped[str] = mapped_column(String(64))
    stream_seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[str] = mapped_column(String(64))
    """Schema tag of the event, e.g. ``step_completed.v1``."""
    role: Mapped[str | None] = mapped_column(String(32))
    summary: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime]
    """When the event happened (accepted, decided, step finished, answered, failed)."""
    started_at: Mapped[datetime | None]
    """When the step started (``step_completed`` only)."""
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)

    __table_args__ = (
        UniqueConstraint("stream", "stream_seq"),
        Index(None, "task_id", "stream_seq"),
        # At most one final answer per task, even with several concurrent recorders.
        Index(
            "uq_task_events_final_answer",
            "task_id",
            unique=True,
            sqlite_where=text(f"type = '{FINAL_ANSWER_TYPE}'"),
            postgresql_where=text(f"type = '{FINAL_ANSWER_TYPE}'"),
        ),
    )


class PolicyDecisionRow(Base):
    """The router's decision for a task (the latest one recorded wins)."""

    __tablename__ = "policy_decisions"

    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    rule_id: Mapped[str] = mapped_column(String(128))
    policy_version: Mapped[str] = mapped_column(String(64))
    data_class: Mapped[str] = mapped_column(String(16))
    entities: Mapped[list[Any]] = mapped_column(default=list)
    """``[{"entity_type": "PERSON", "count": 2}, ...]``: types and counts only."""
    reasons: Mapped[list[Any]] = mapped_column(default=list)
    analyzer_ms: Mapped[float] = mapped_column(Float, default=0.0)
    decided_at: Mapped[datetime]


class DeadLetterRow(Base):
    """A dead letter, recorded once per original message (stream, seq)."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = row_id()
    stream: Mapped[str] = mapped_column(String(64))
    """Stream of the original (rejected) message."""
    stream_seq: Mapped[int] = mapped_column(BigInteger)
    """Sequence of the original message in ``stream``."""
    site: Mapped[str] = mapped_column(String(16))
    role: Mapped[str] = mapped_column(String(32))
    subject: Mapped[str] = mapped_column(String(256))
    task_id: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    error_class: Mapped[str] = mapped_column(String(64))
    field: Mapped[str | None] = mapped_column(String(256))
    deliveries: Mapped[int] = mapped_column(Integer, default=1)
    original: Mapped[bytes] = mapped_column(default=b"")
    original_headers: Mapped[dict[str, str]] = mapped_column(default=dict)
    dead_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("stream", "stream_seq"),
        Index(None, "task_id"),
        Index(None, "dead_at"),
    )


from sitemesh.state._approvals import ApprovalRow as ApprovalRow  # noqa: E402
from sitemesh.state._audit import AuditRow as AuditRow  # noqa: E402
from sitemesh.state._crm_models import AccountRow, CustomerNoteRow, CustomerRow  # noqa: E402, F401
from sitemesh.state._model_calls import BudgetCounterRow, BudgetHoldRow, ModelCallRow  # noqa: E402, F401
from sitemesh.state._tool_calls import ToolCallRow as ToolCallRow  # noqa: E402
from sitemesh.state._vault_models import PseudonymVaultRow as PseudonymVaultRow  # noqa: E402
