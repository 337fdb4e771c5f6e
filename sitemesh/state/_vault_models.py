"""Table of the pseudonym vault (see :mod:`sitemesh.policy._vault`).

Kept in its own module so the privacy code owns its schema; :mod:`._models`
imports it at the end so ``Base.metadata`` (and Alembic autogenerate) sees it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from sitemesh.state._models import Base


class PseudonymVaultRow(Base):
    """One encrypted placeholder → original mapping of one task.

    Append-only in spirit: rows are inserted with insert-or-ignore and never
    updated, so a placeholder, once handed out, always means the same value.
    """

    __tablename__ = "pseudonym_vault"

    task_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    placeholder: Mapped[str] = mapped_column(String(96), primary_key=True)
    """Typed placeholder, e.g. ``<PERSON_1>``."""
    entity_type: Mapped[str] = mapped_column(String(64))
    """Presidio entity type of the original value (metadata only, not secret)."""
    key_id: Mapped[str] = mapped_column(String(16))
    """Fingerprint of the vault key that encrypted the row (HMAC-SHA256, 16 hex)."""
    nonce: Mapped[bytes] = mapped_column(LargeBinary)
    """96-bit AES-GCM nonce, random per row."""
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    """AES-GCM ciphertext + tag of the UTF-8 original; AAD binds task and placeholder."""
    created_at: Mapped[datetime]

    __table_args__ = (Index(None, "created_at"),)
