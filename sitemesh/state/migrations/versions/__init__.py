"""Alembic revisions of the state database, one module per revision."""
