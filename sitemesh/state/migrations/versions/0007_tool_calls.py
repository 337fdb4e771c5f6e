"""Tool calls: every call's tool, arguments hash, outcome, latency and raw response,
keyed by a call id derived from its idempotency key, for replay and redelivery.

See :mod:`sitemesh.state._tool_calls`. Append-only like ``model_calls`` (revision
0005): the database refuses ``UPDATE`` and ``DELETE`` of its rows (and, on
PostgreSQL, ``TRUNCATE``), with the function ``sitemesh_append_only()`` of 0005.

Revision ID: 0007_tool_calls
Revises: 0006_crm
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007_tool_calls"
down_revision: str | Sequence[str] | None = "0006_crm"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TABLE = "tool_calls"


def upgrade() -> None:
    """Create ``tool_calls`` and its append-only triggers."""
    op.create_table(
        _TABLE,
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("record_id", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("call_index", sa.Integer(), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("site", sa.String(length=16), nullable=False),
        sa.Column("tool", sa.String(length=128), nullable=False),
        sa.Column("server", sa.String(length=64), nullable=False),
        sa.Column("arguments_hash", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("record", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_calls")),
        sa.UniqueConstraint("record_id", name=op.f("uq_tool_calls_record_id")),
    )
    op.create_index(op.f("ix_tool_calls_call_id_outcome"), _TABLE, ["call_id", "outcome"])
    op.create_index(op.f("ix_tool_calls_task_id"), _TABLE, ["task_id"])
    op.create_index(op.f("ix_tool_calls_tool_started_at"), _TABLE, ["tool", "started_at"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {_TABLE}_append_only BEFORE UPDATE OR DELETE ON {_TABLE} "
            "FOR EACH ROW EXECUTE FUNCTION sitemesh_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_truncate BEFORE TRUNCATE ON {_TABLE} "
            "FOR EACH STATEMENT EXECUTE FUNCTION sitemesh_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {_TABLE}_no_{verb.lower()} BEFORE {verb} ON {_TABLE} BEGIN "
            f"SELECT RAISE(ABORT, 'sitemesh: {_TABLE} is append-only ({verb} refused)'); END"
        )


def downgrade() -> None:
    """Drop the triggers and the table."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {_TABLE}_append_only ON {_TABLE}")
        op.execute(f"DROP TRIGGER IF EXISTS {_TABLE}_no_truncate ON {_TABLE}")
    else:
        op.execute(f"DROP TRIGGER IF EXISTS {_TABLE}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {_TABLE}_no_delete")
    for name in ("tool_started_at", "task_id", "call_id_outcome"):
        op.drop_index(op.f(f"ix_tool_calls_{name}"), table_name=_TABLE)
    op.drop_table(_TABLE)
