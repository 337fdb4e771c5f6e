"""The console's audit log: raw-content views, approval decisions, redrives, logins.

See :mod:`sitemesh.state._audit`. Append-only like ``model_calls`` (revision 0005):
the database refuses ``UPDATE`` and ``DELETE`` of its rows (and, on PostgreSQL,
``TRUNCATE``), with the function ``sitemesh_append_only()`` of 0005.

Revision ID: 0008_console_audit
Revises: 0007_tool_calls
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0008_console_audit"
down_revision: str | Sequence[str] | None = "0007_tool_calls"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_TABLE = "console_audit"


def upgrade() -> None:
    """Create ``console_audit`` and its append-only triggers."""
    op.create_table(
        _TABLE,
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("username", sa.String(length=128), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("site", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=256), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_console_audit")),
    )
    op.create_index(op.f("ix_console_audit_at"), _TABLE, ["at"])
    op.create_index(op.f("ix_console_audit_target"), _TABLE, ["target"])
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
    op.drop_index(op.f("ix_console_audit_target"), table_name=_TABLE)
    op.drop_index(op.f("ix_console_audit_at"), table_name=_TABLE)
    op.drop_table(_TABLE)
