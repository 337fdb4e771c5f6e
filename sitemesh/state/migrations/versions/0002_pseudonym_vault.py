"""Pseudonym vault: encrypted placeholder → original mappings per task.

One row per ``(task_id, placeholder)``; the original value is stored only as
AES-GCM ciphertext with its nonce, never in plain text. Rows are never updated
(insert-or-ignore), see :mod:`sitemesh.policy._vault`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the ``pseudonym_vault`` table."""
    op.create_table(
        "pseudonym_vault",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("placeholder", sa.String(length=96), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=16), nullable=False),
        sa.Column("nonce", sa.LargeBinary(), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("task_id", "placeholder", name=op.f("pk_pseudonym_vault")),
    )
    op.create_index(op.f("ix_pseudonym_vault_created_at"), "pseudonym_vault", ["created_at"])


def downgrade() -> None:
    """Drop the ``pseudonym_vault`` table."""
    op.drop_index(op.f("ix_pseudonym_vault_created_at"), table_name="pseudonym_vault")
    op.drop_table("pseudonym_vault")
