"""Append-only audit tables, enforced by the database (triggers).

``pseudonym_vault``, ``task_events``, ``dead_letters`` and ``model_calls`` are
written with insert-or-ignore only; from this revision the database refuses any
``UPDATE`` or ``DELETE`` of their rows (and, on PostgreSQL, ``TRUNCATE``), so a
placeholder once handed out always means the same value and the audit trail
cannot be rewritten by a bug or by a compromised worker's SQL.

``approvals`` is a state machine, not a log: its request columns (what was parked,
by which rule and policy version, the work item) never change, a row is never
deleted, and ``status`` may only go ``pending`` -> ``approved``/``rejected`` or
back to ``pending`` (:func:`sitemesh.state.undo_decision`, when the follow-up
could not be published).

Not append-only on purpose: ``tasks`` (a projection), ``policy_decisions``
(upserted on redelivery), ``budget_counters``/``budget_holds`` (counters).

PostgreSQL raises SQLSTATE 23001 (``restrict_violation``, an
``IntegrityError`` in SQLAlchemy); SQLite ``RAISE(ABORT, ...)``
(``IntegrityError`` too). Caution for later revisions: SQLite batch mode
recreates a table and drops its triggers; re-create them after such a step.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY: tuple[str, ...] = ("pseudonym_vault", "task_events", "dead_letters", "model_calls")
"""Tables whose rows are never updated or deleted."""

APPROVAL_REQUEST_COLUMNS: tuple[str, ...] = (
    "approval_id",
    "task_id",
    "site",
    "rule_id",
    "policy_version",
    "data_class",
    "requested_at",
    "work_item",
)
"""Columns of ``approvals`` fixed at insert (what was parked and why)."""

_STATUS_MOVE = (
    "(OLD.status = 'pending' AND NEW.status IN ('approved', 'rejected'))"
    " OR (OLD.status IN ('approved', 'rejected') AND NEW.status = 'pending')"
)

_PG_FUNCTIONS = [
    """
    CREATE FUNCTION sitemesh_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'sitemesh: % is append-only (% refused)', TG_TABLE_NAME, TG_OP
            USING ERRCODE = 'restrict_violation';
    END $$
    """,
    f"""
    CREATE FUNCTION sitemesh_approvals_guard() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' THEN
            RAISE EXCEPTION 'sitemesh: approvals rows are never deleted'
                USING ERRCODE = 'restrict_violation';
        END IF;
        IF ({", ".join(f"NEW.{c}" for c in APPROVAL_REQUEST_COLUMNS)})
           IS DISTINCT FROM ({", ".join(f"OLD.{c}" for c in APPROVAL_REQUEST_COLUMNS)}) THEN
            RAISE EXCEPTION 'sitemesh: the request of an approval never changes'
                USING ERRCODE = 'restrict_violation';
        END IF;
        IF NOT ({_STATUS_MOVE}) THEN
            RAISE EXCEPTION 'sitemesh: approval status % -> % refused', OLD.status, NEW.status
                USING ERRCODE = 'restrict_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
]


def _upgrade_postgresql() -> None:
    for sql in _PG_FUNCTIONS:
        op.execute(sql)
    for table in APPEND_ONLY:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION sitemesh_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION sitemesh_append_only()"
        )
    op.execute(
        "CREATE TRIGGER approvals_guard BEFORE UPDATE OR DELETE ON approvals "
        "FOR EACH ROW EXECUTE FUNCTION sitemesh_approvals_guard()"
    )
    op.execute(
        "CREATE TRIGGER approvals_no_truncate BEFORE TRUNCATE ON approvals "
        "FOR EACH STATEMENT EXECUTE FUNCTION sitemesh_append_only()"
    )


def _upgrade_sqlite() -> None:
    for table in APPEND_ONLY:
        for verb in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} BEGIN "
                f"SELECT RAISE(ABORT, 'sitemesh: {table} is append-only ({verb} refused)'); END"
            )
    op.execute(
        "CREATE TRIGGER approvals_no_delete BEFORE DELETE ON approvals BEGIN "
        "SELECT RAISE(ABORT, 'sitemesh: approvals rows are never deleted'); END"
    )
    changed = " OR ".join(f"NEW.{c} IS NOT OLD.{c}" for c in APPROVAL_REQUEST_COLUMNS)
    op.execute(
        f"CREATE TRIGGER approvals_guard BEFORE UPDATE ON approvals "
        f"WHEN {changed} OR NOT ({_STATUS_MOVE}) BEGIN "
        "SELECT RAISE(ABORT, 'sitemesh: approval request changed or status move refused'); END"
    )


def upgrade() -> None:
    """Install the append-only triggers (PostgreSQL or SQLite)."""
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    """Remove the triggers (and, on PostgreSQL, their functions)."""
    if op.get_bind().dialect.name == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS approvals_guard ON approvals")
        op.execute("DROP TRIGGER IF EXISTS approvals_no_truncate ON approvals")
        op.execute("DROP FUNCTION IF EXISTS sitemesh_approvals_guard()")
        op.execute("DROP FUNCTION IF EXISTS sitemesh_append_only()")
        return
    for table in APPEND_ONLY:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_delete")
    op.execute("DROP TRIGGER IF EXISTS approvals_no_delete")
    op.execute("DROP TRIGGER IF EXISTS approvals_guard")
