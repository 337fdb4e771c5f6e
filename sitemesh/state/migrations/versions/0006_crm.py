"""The site's CRM: customers, their accounts, and notes stored once per idempotency key.

See :mod:`sitemesh.state._crm_models`; served by the bundled ``crm`` and
``ticket_history`` tools (``sitemesh.tools.servers``). Money is integer minor units.

Revision ID: 0006_crm
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006_crm"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create ``customers``, ``accounts`` and ``customer_notes``."""
    op.create_table(
        "customers",
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("tenant", sa.String(length=256), nullable=False),
        sa.Column("given_name", sa.String(length=128), nullable=False),
        sa.Column("family_name", sa.String(length=128), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("phone_e164", sa.String(length=16), nullable=False),
        sa.Column("phone_national", sa.String(length=32), nullable=False),
        sa.Column("phone_nsn", sa.String(length=15), nullable=False),
        sa.Column("street", sa.String(length=256), nullable=False),
        sa.Column("postal_code", sa.String(length=16), nullable=False),
        sa.Column("city", sa.String(length=128), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("birth_date", sa.String(length=10), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customers")),
        sa.UniqueConstraint("email", name=op.f("uq_customers_email")),
    )
    op.create_index(op.f("ix_customers_phone_e164"), "customers", ["phone_e164"])
    op.create_index(op.f("ix_customers_phone_nsn"), "customers", ["phone_nsn"])
    op.create_index(op.f("ix_customers_tenant"), "customers", ["tenant"])
    op.create_table(
        "accounts",
        sa.Column("account_id", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("iban", sa.String(length=34), nullable=True),
        sa.Column("bic", sa.String(length=11), nullable=False),
        sa.Column("account_number", sa.String(length=34), nullable=False),
        sa.Column("routing_number", sa.String(length=16), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("opened_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("iban", name=op.f("uq_accounts_iban")),
    )
    op.create_index(op.f("ix_accounts_customer_id"), "accounts", ["customer_id"])
    op.create_table(
        "customer_notes",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("idempotency_key", sa.String(length=256), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=True),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_notes")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_customer_notes_idempotency_key")),
    )
    op.create_index(
        op.f("ix_customer_notes_customer_id_created_at"),
        "customer_notes",
        ["customer_id", "created_at"],
    )
    op.create_index(op.f("ix_customer_notes_task_id"), "customer_notes", ["task_id"])


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index(op.f("ix_customer_notes_task_id"), table_name="customer_notes")
    op.drop_index(op.f("ix_customer_notes_customer_id_created_at"), table_name="customer_notes")
    op.drop_table("customer_notes")
    op.drop_index(op.f("ix_accounts_customer_id"), table_name="accounts")
    op.drop_table("accounts")
    for name in ("tenant", "phone_nsn", "phone_e164"):
        op.drop_index(op.f(f"ix_customers_{name}"), table_name="customers")
    op.drop_table("customers")
