"""Table of tool calls (see :mod:`sitemesh.tools`; recorder ``StoreToolRecorder``).

Kept in its own module so the tool code owns its schema; :mod:`._models` imports it
at the end so ``Base.metadata`` (and Alembic autogenerate) sees it. Migration
``0007_tool_calls`` creates the table and makes it append-only like ``model_calls``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sitemesh.state._models import Base, row_id


class ToolCallRow(Base):
    """One tool call (any outcome), recorded once per ``record_id``.

    The columns are what ``sitemesh tools`` and replay need; ``record`` keeps the whole
    ``sitemesh.tools.ToolCall`` (the raw response included — site database only; the
    arguments only as their hash).
    """

    __tablename__ = "tool_calls"

    id: Mapped[int] = row_id()
    record_id: Mapped[str] = mapped_column(String(64))
    """Unique id of the record; recording it again is a no-op."""
    call_id: Mapped[str] = mapped_column(String(64))
    """Deterministic id of (idempotency key, tool): what replay and redelivery look up."""
    idempotency_key: Mapped[str] = mapped_column(String(64), default="")
    """SHA-256 hex of (task id, step, call index), as passed to the tool."""
    task_id: Mapped[str] = mapped_column(String(128), default="")
    step: Mapped[str] = mapped_column(String(64), default="")
    call_index: Mapped[int] = mapped_column(Integer, default=0)
    agent: Mapped[str] = mapped_column(String(64), default="")
    """The role that made the call."""
    site: Mapped[str] = mapped_column(String(16), default="")
    tool: Mapped[str] = mapped_column(String(128), default="")
    """The tool as called, ``<server>.<tool>``."""
    server: Mapped[str] = mapped_column(String(64), default="")
    arguments_hash: Mapped[str] = mapped_column(String(64), default="")
    """SHA-256 hex of the canonical JSON arguments (never the arguments)."""
    outcome: Mapped[str] = mapped_column(String(32), default="ok")
    """``ok``, ``tool_error``, ``replayed``, ``timeout``... (``sitemesh.tools.ToolCallOutcome``)."""
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    """Wall time of the call across attempts, in milliseconds."""
    error: Mapped[str] = mapped_column(Text, default="")
    """Error class and PII-free reason of a failed call."""
    started_at: Mapped[datetime]
    """When the call started (UTC)."""
    record: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    """The ``sitemesh.tools.ToolCall``, msgspec JSON."""

    __table_args__ = (
        UniqueConstraint("record_id"),
        Index(None, "call_id", "outcome"),
        Index(None, "task_id"),
        Index(None, "tool", "started_at"),
    )
