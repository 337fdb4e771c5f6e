"""Initial state schema: tasks, task events, policy decisions, dead letters.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TS = sa.DateTime(timezone=True)
_FINAL = sa.text("type = 'final_answer.v1'")


def upgrade() -> None:
    """Create the four state tables and their indices."""
    op.create_table(
        "tasks",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("site", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("data_class", sa.String(length=16), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("customer_message", sa.Text(), nullable=False),
        sa.Column("submitted_at", _TS, nullable=True),
        sa.Column("accepted_at", _TS, nullable=True),
        sa.Column("finished_at", _TS, nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_tasks")),
    )
    op.create_index(op.f("ix_tasks_status"), "tasks", ["status"])
    op.create_index(op.f("ix_tasks_outcome"), "tasks", ["outcome"])
    op.create_index(op.f("ix_tasks_data_class"), "tasks", ["data_class"])
    op.create_index(op.f("ix_tasks_submitted_at"), "tasks", ["submitted_at"])

    op.create_table(
        "task_events",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("stream_seq", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_events")),
        sa.UniqueConstraint(
            "stream", "stream_seq", name=op.f("uq_task_events_stream_stream_seq")
        ),
    )
    op.create_index(
        op.f("ix_task_events_task_id_stream_seq"), "task_events", ["task_id", "stream_seq"]
    )
    op.create_index(
        "uq_task_events_final_answer",
        "task_events",
        ["task_id"],
        unique=True,
        sqlite_where=_FINAL,
        postgresql_where=_FINAL,
    )

    op.create_table(
        "policy_decisions",
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("rule_id", sa.String(length=128), nullable=False),
        sa.Column("policy_version", sa.String(length=64), nullable=False),
        sa.Column("data_class", sa.String(length=16), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("analyzer_ms", sa.Float(), nullable=False),
        sa.Column("decided_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_policy_decisions")),
    )

    op.create_table(
        "dead_letters",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("stream_seq", sa.BigInteger(), nullable=False),
        sa.Column("site", sa.String(length=16), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("error_class", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=256), nullable=True),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("original", sa.LargeBinary(), nullable=False),
        sa.Column("original_headers", sa.JSON(), nullable=False),
        sa.Column("dead_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dead_letters")),
        sa.UniqueConstraint(
            "stream", "stream_seq", name=op.f("uq_dead_letters_stream_stream_seq")
        ),
    )
    op.create_index(op.f("ix_dead_letters_task_id"), "dead_letters", ["task_id"])
    op.create_index(op.f("ix_dead_letters_dead_at"), "dead_letters", ["dead_at"])


def downgrade() -> None:
    """Drop the state tables."""
    op.drop_table("dead_letters")
    op.drop_table("policy_decisions")
    op.drop_index("uq_task_events_final_answer", table_name="task_events")
    op.drop_index(op.f("ix_task_events_task_id_stream_seq"), table_name="task_events")
    op.drop_table("task_events")
    op.drop_index(op.f("ix_tasks_submitted_at"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_data_class"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_outcome"), table_name="tasks")
    op.drop_index(op.f("ix_tasks_status"), table_name="tasks")
    op.drop_table("tasks")
