"""Tables of the site's CRM (served by the bundled ``crm`` tool, ``sitemesh.tools.servers``).

Kept in their own module so the CRM owns its schema; :mod:`._models` imports it at
the end so ``Base.metadata`` (and Alembic autogenerate) sees it. Migration
``0006_crm`` creates the tables.

These rows hold personal data on purpose (names, e-mail addresses, phone numbers,
postal addresses, IBANs): they are the site's customer records, which never leave
the site. What a tool returns from them is scanned before an agent sees it.

Like the other state tables, no foreign keys: ``accounts.customer_id`` and
``customer_notes.customer_id`` name a customer by id, and the tools check it.
Money is integer minor units of the account's currency (``balance_minor``: cents),
exact and portable across SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ._models import Base, row_id


class CustomerRow(Base):
    """One customer of the site (synthetic ones come from ``seed_crm``)."""

    __tablename__ = "customers"

    customer_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    """The customer's handle as the channel gives it (``SupportTicket.customer``):
    ``^[A-Za-z0-9_]{1,64}$``, e.g. ``MakanBihun``."""
    tenant: Mapped[str] = mapped_column(String(256), default="default")
    """The support account the customer belongs to (``SupportTicket.tenant``)."""
    given_name: Mapped[str] = mapped_column(String(128))
    family_name: Mapped[str] = mapped_column(String(128))
    email: Mapped[str] = mapped_column(String(254))
    """Lower-case e-mail address (RFC 5321 caps a path at 254 characters)."""
    phone_e164: Mapped[str] = mapped_column(String(16))
    """The phone number in E.164 (ITU-T E.164: ``+`` and at most 15 digits)."""
    phone_national: Mapped[str] = mapped_column(String(32))
    """The same number as the country writes it (``030 901820``, ``(202) 555-0143``)."""
    phone_nsn: Mapped[str] = mapped_column(String(15))
    """The national significant number (E.164 without the country code), for lookups
    by a nationally written number."""
    street: Mapped[str] = mapped_column(String(256))
    """Street and house number, written as the country does."""
    postal_code: Mapped[str] = mapped_column(String(16))
    city: Mapped[str] = mapped_column(String(128))
    country: Mapped[str] = mapped_column(String(2))
    """ISO 3166-1 alpha-2 country code."""
    birth_date: Mapped[str] = mapped_column(String(10), default="")
    """``YYYY-MM-DD`` (ISO 8601), ``""`` when unknown."""
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("email"),
        Index(None, "phone_e164"),
        Index(None, "phone_nsn"),
        Index(None, "tenant"),
    )


class AccountRow(Base):
    """One account of a customer: a bank account (IBAN, or a US routing and account
    number) or a billing account paid from one."""

    __tablename__ = "accounts"

    account_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    """``ACC-`` and 10 digits, unique on the site."""
    customer_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    """``checking``, ``savings`` or ``billing``."""
    iban: Mapped[str | None] = mapped_column(String(34))
    """ISO 13616 IBAN, electronic format (no spaces), mod-97 check digits; ``None`` for
    a US account."""
    bic: Mapped[str] = mapped_column(String(11), default="")
    """ISO 9362 BIC of the bank, ``""`` when unknown."""
    account_number: Mapped[str] = mapped_column(String(34))
    """The national account number (BBAN's account part; US: the account number)."""
    routing_number: Mapped[str] = mapped_column(String(16), default="")
    """National bank code: German BLZ, UK sort code, US ABA routing number (with its
    3-7-1 check digit)..."""
    currency: Mapped[str] = mapped_column(String(3))
    """ISO 4217 code."""
    balance_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    """Balance in minor units of :attr:`currency` (cents)."""
    status: Mapped[str] = mapped_column(String(16), default="active")
    """``active``, ``frozen`` or ``closed``."""
    opened_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("iban"),
        Index(None, "customer_id"),
    )


class CustomerNoteRow(Base):
    """A note on a customer, stored once per idempotency key.

    Written by the ``crm`` tool's ``add_note`` (an agent logging what it did for a
    task) and by ``seed_crm`` (past interactions). ``task_id`` links the note to a
    task in ``tasks``: ``ticket_history`` finds a customer's past tickets through it.
    """

    __tablename__ = "customer_notes"

    id: Mapped[int] = row_id()
    idempotency_key: Mapped[str] = mapped_column(String(256))
    """The caller's key (the tool registry derives it from task, step and call index):
    a second call with the same key stores nothing and returns the first note."""
    customer_id: Mapped[str] = mapped_column(String(64))
    task_id: Mapped[str | None] = mapped_column(String(128))
    """The task the note is about, ``None`` for a note without one."""
    note: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(32), default="tool")
    """Who wrote it: ``tool`` (``add_note``) or ``seed``."""
    created_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        Index(None, "customer_id", "created_at"),
        Index(None, "task_id"),
    )
