"""Tables of model calls and budgets (see :mod:`sitemesh.models._ledger` and ``_budget``).

Kept in their own module so the cost code owns its schema; :mod:`._models` imports
it at the end so ``Base.metadata`` (and Alembic autogenerate) sees it. Migration
``0004`` creates the tables.

Money is stored as integer nano-units of the price table's currency (``cost_nanos``,
1e-9 USD): exact, portable across SQLite and PostgreSQL (no ``NUMERIC`` emulation),
and summable in SQL. :func:`sitemesh.models._prices.from_nanos` turns it back into a
``Decimal``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from ._models import Base, row_id


class ModelCallRow(Base):
    """One model call (any outcome), recorded once per ``call_id``.

    The columns are what ``sitemesh cost`` groups and sums; ``record`` keeps the
    whole :class:`sitemesh.models.ModelCall` (prompt and response included — site
    database only) for replay.
    """

    __tablename__ = "model_calls"

    id: Mapped[int] = row_id()
    call_id: Mapped[str] = mapped_column(String(64))
    """Unique id of the record; recording it again (redelivery) is a no-op."""
    call_key: Mapped[str] = mapped_column(String(64), default="")
    """Deterministic key of (task, agent, prompt, model)."""
    task_id: Mapped[str] = mapped_column(String(128), default="")
    tenant: Mapped[str] = mapped_column(String(256), default="")
    agent: Mapped[str] = mapped_column(String(64), default="")
    """The agent role that made the call (``planner``, ``synthesiser``...)."""
    site: Mapped[str] = mapped_column(String(16), default="")
    kind: Mapped[str] = mapped_column(String(64), default="")
    provider: Mapped[str] = mapped_column(String(64), default="")
    model: Mapped[str] = mapped_column(String(256), default="")
    """``<provider>/<model>``, the price table key."""
    prompt_hash: Mapped[str] = mapped_column(String(128), default="")
    """SHA-256 hex of the canonical request (never the prompt itself)."""
    outcome: Mapped[str] = mapped_column(String(32), default="ok")
    """``ok``, ``timeout``, ``budget_denied``... (:data:`sitemesh.models.Outcome`)."""
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_nanos: Mapped[int | None] = mapped_column(BigInteger)
    """Cost in nano-units of the price table's currency (1e-9 USD), rounded up;
    ``None`` when the model has no price."""
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    """Wall time of the call across attempts, in milliseconds."""
    error: Mapped[str] = mapped_column(Text, default="")
    """Error class and message of a failed call."""
    started_at: Mapped[datetime]
    """When the call started (UTC)."""
    day: Mapped[str] = mapped_column(String(10))
    """``started_at``'s UTC date, ``YYYY-MM-DD`` (the ``sitemesh cost --by day`` key)."""
    record: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    """The :class:`~sitemesh.models.ModelCall`, msgspec JSON."""

    __table_args__ = (
        UniqueConstraint("call_id"),
        Index(None, "task_id"),
        Index(None, "tenant", "day"),
        Index(None, "agent", "day"),
        Index(None, "model"),
        Index(None, "day"),
        Index(None, "prompt_hash", "outcome"),
    )


class BudgetCounterRow(Base):
    """Spent and held amounts of one budget (one scope, name and period)."""

    __tablename__ = "budget_counters"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    """``<scope>|<name>|<period>``, e.g. ``tenant|acme|2026-11-22`` or ``task|t-1|``."""
    scope: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(256))
    period: Mapped[str] = mapped_column(String(16), default="")
    """UTC date of a daily budget, ``""`` for a budget without period."""
    spent_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    spent_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    held_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    """Tokens reserved by calls in flight (released or settled later)."""
    held_nanos: Mapped[int] = mapped_column(BigInteger, default=0)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    """Calls settled against this budget."""
    updated_at: Mapped[datetime]


class BudgetHoldRow(Base):
    """One reservation in flight; deleting it is what makes settle/release happen once.

    ``state`` is ``held`` (counted in the counters' ``held_*``) or ``expired``
    (given back by :meth:`SqlBudgetLedger.expire_holds`; a late settle still charges
    the spend, once). Settling or releasing deletes the row.
    """

    __tablename__ = "budget_holds"

    reservation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    keys: Mapped[list[Any]] = mapped_column(JSON)
    """The counter keys the hold was added to."""
    tokens: Mapped[int] = mapped_column(BigInteger)
    nanos: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(8), default="held")
    """``held`` or ``expired``."""
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    """After this, :meth:`SqlBudgetLedger.expire_holds` may release it (crashed caller)."""

    __table_args__ = (Index(None, "expires_at"),)
