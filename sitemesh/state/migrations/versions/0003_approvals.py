"""Approvals: work items parked by ``require_approval`` and the human decision.

One row per task (unique ``task_id``); ``status`` moves from ``pending`` to
``approved`` or ``rejected`` once, see :mod:`sitemesh.state._approvals`.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create the ``approvals`` table."""
    op.create_table(
        "approvals",
        sa.Column("approval_id", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("site", sa.String(length=16), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("data_class", sa.String(length=16), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decided_at", _TS, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("work_item", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("approval_id", name=op.f("pk_approvals")),
        sa.UniqueConstraint("task_id", name=op.f("uq_approvals_task_id")),
    )
    op.create_index(
        op.f("ix_approvals_status_requested_at"), "approvals", ["status", "requested_at"]
    )


def downgrade() -> None:
    """Drop the ``approvals`` table."""
    op.drop_index(op.f("ix_approvals_status_requested_at"), table_name="approvals")
    op.drop_table("approvals")
