"""Model calls and budgets: every call's tokens, cost, latency and outcome, and the
spent/held counters of token and cost budgets with their in-flight holds.

See :mod:`sitemesh.state._model_calls`. Money is integer nano-units (1e-9 USD).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``model_calls``, ``budget_counters`` and ``budget_holds``."""
    op.create_table(
        "model_calls",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("call_key", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=256), nullable=False),
        sa.Column("prompt_hash", sa.String(length=128), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("tokens_in", sa.BigInteger(), nullable=False),
        sa.Column("tokens_out", sa.BigInteger(), nullable=False),
        sa.Column("cost_nanos", sa.BigInteger(), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_calls")),
        sa.UniqueConstraint("call_id", name=op.f("uq_model_calls_call_id")),
    )
    op.create_index(op.f("ix_model_calls_task_id"), "model_calls", ["task_id"])
    op.create_index(op.f("ix_model_calls_tenant_day"), "model_calls", ["tenant", "day"])
    op.create_index(op.f("ix_model_calls_agent_day"), "model_calls", ["agent", "day"])
    op.create_index(op.f("ix_model_calls_model"), "model_calls", ["model"])
    op.create_index(op.f("ix_model_calls_day"), "model_calls", ["day"])
    op.create_index(
        op.f("ix_model_calls_prompt_hash_outcome"), "model_calls", ["prompt_hash", "outcome"]
    )
    op.create_table(
        "budget_counters",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("period", sa.String(length=16), nullable=False),
        sa.Column("spent_tokens", sa.BigInteger(), nullable=False),
        sa.Column("spent_nanos", sa.BigInteger(), nullable=False),
        sa.Column("held_tokens", sa.BigInteger(), nullable=False),
        sa.Column("held_nanos", sa.BigInteger(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_budget_counters")),
    )
    op.create_table(
        "budget_holds",
        sa.Column("reservation_id", sa.String(length=32), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("tokens", sa.BigInteger(), nullable=False),
        sa.Column("nanos", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("reservation_id", name=op.f("pk_budget_holds")),
    )
    op.create_index(op.f("ix_budget_holds_expires_at"), "budget_holds", ["expires_at"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index(op.f("ix_budget_holds_expires_at"), table_name="budget_holds")
    op.drop_table("budget_holds")
    op.drop_table("budget_counters")
    for name in ("prompt_hash_outcome", "day", "model", "agent_day", "tenant_day", "task_id"):
        op.drop_index(op.f(f"ix_model_calls_{name}"), table_name="model_calls")
    op.drop_table("model_calls")
