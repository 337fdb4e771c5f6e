"""The CRM's reads and writes on the state database (``customers``, ``accounts``,
``customer_notes``), for SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ...state import AccountRow, CustomerNoteRow, CustomerRow, create_engine, migrate
from ._crm_data import SyntheticCustomer, synthetic_customers

_CHUNK = 500
"""Rows per ``INSERT`` of the seed (SQLite allows 32,766 bound parameters)."""


def _insert(conn: AsyncConnection, model: type[Any]) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


def _customer_row(c: SyntheticCustomer) -> dict[str, Any]:
    return {
        "customer_id": c.customer_id,
        "tenant": c.tenant,
        "given_name": c.given_name,
        "family_name": c.family_name,
        "email": c.email,
        "phone_e164": c.phone_e164,
        "phone_national": c.phone_national,
        "phone_nsn": c.phone_nsn,
        "street": c.street,
        "postal_code": c.postal_code,
        "city": c.city,
        "country": c.country,
        "birth_date": c.birth_date,
        "created_at": c.created_at,
    }


async def _insert_ignore(
    conn: AsyncConnection, model: type[Any], rows: list[dict[str, Any]]
) -> None:
    for i in range(0, len(rows), _CHUNK):
        await conn.execute(
            _insert(conn, model).values(rows[i : i + _CHUNK]).on_conflict_do_nothing()
        )


async def seed_crm(
    db_url: str,
    n: int = 200,
    *,
    handles: Mapping[str, str] | Iterable[str] = (),
    tenant: str = "default",
    seed: int = 0,
    auto_migrate: bool = True,
) -> list[SyntheticCustomer]:
    """Write deterministic synthetic customers, accounts and past notes to the CRM tables.

    Records that are there already (same customer id, e-mail, IBAN or note key) are
    left as they are, so seeding twice with the same arguments changes nothing.

    Args:
        db_url: SQLAlchemy async URL of the state database.
        n: customers with generated handles (besides ``handles``).
        handles: customer ids to create first: handle -> tenant
            (:func:`~sitemesh.tools.servers.ticket_customers`), or handles.
        tenant: the tenant of the generated customers (and of bare ``handles``).
        seed: the same seed gives the same records (see
            :func:`~sitemesh.tools.servers.synthetic_customers`).
        auto_migrate: upgrade the database to the Alembic head first.

    Returns:
        The customers of the seed (also those that were there already).

    Raises:
        ValueError: ``n < 0`` or a handle that is not a customer id.
        sqlalchemy.exc.SQLAlchemyError: the database failed; nothing was written.
    """
    customers = synthetic_customers(n, handles=handles, tenant=tenant, seed=seed)
    if auto_migrate:
        await migrate(db_url)
    accounts = [
        {"customer_id": c.customer_id, **dataclasses.asdict(a)}
        for c in customers
        for a in c.accounts
    ]
    notes = [
        {
            "idempotency_key": note.idempotency_key,
            "customer_id": c.customer_id,
            "task_id": None,
            "note": note.note,
            "source": "seed",
            "created_at": note.created_at,
        }
        for c in customers
        for note in c.notes
    ]
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await _insert_ignore(conn, CustomerRow, [_customer_row(c) for c in customers])
            await _insert_ignore(conn, AccountRow, accounts)
            await _insert_ignore(conn, CustomerNoteRow, notes)
    finally:
        await engine.dispose()
    return customers


# -- reads -------------------------------------------------------------------------------
def phone_query(phone: str) -> tuple[str, str]:
    """How to find a phone number: ``("e164", "+4930901820")`` for an international
    number (``+`` or ``00``), else ``("nsn", "30901820")``: the national significant
    number of a nationally written one (trunk ``0`` or NANP ``1`` dropped)."""
    digits = re.sub(r"\D", "", phone)
    if phone.lstrip().startswith("+"):
        return "e164", "+" + digits
    if digits.startswith("00"):
        return "e164", "+" + digits[2:]
    if len(digits) == 11 and digits.startswith("1"):
        return "nsn", digits[1:]
    return "nsn", digits.lstrip("0")


async def find_customers(
    engine: AsyncEngine,
    *,
    customer_id: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    tenant: str | None = None,
) -> Sequence[CustomerRow]:
    """The customers matching the one key given (at most 2 rows: 2 means ambiguous)."""
    stmt: Select[tuple[CustomerRow]] = select(CustomerRow)
    if customer_id is not None:
        stmt = stmt.where(CustomerRow.customer_id == customer_id)
    elif email is not None:
        stmt = stmt.where(CustomerRow.email == email.strip().lower())
    elif phone is not None:
        kind, value = phone_query(phone)
        column = CustomerRow.phone_e164 if kind == "e164" else CustomerRow.phone_nsn
        stmt = stmt.where(column == value)
    if tenant is not None:
        stmt = stmt.where(func.lower(CustomerRow.tenant) == tenant.lower())
    async with engine.connect() as conn:
        result = await conn.execute(stmt.order_by(CustomerRow.customer_id).limit(2))
        return [CustomerRow(**dict(m)) for m in result.mappings()]


async def get_customer(engine: AsyncEngine, customer_id: str) -> CustomerRow | None:
    """The customer ``customer_id``, or ``None``."""
    rows = await find_customers(engine, customer_id=customer_id)
    return rows[0] if rows else None


async def accounts_of(engine: AsyncEngine, customer_id: str) -> list[AccountRow]:
    """The accounts of ``customer_id``, oldest first."""
    stmt = (
        select(AccountRow)
        .where(AccountRow.customer_id == customer_id)
        .order_by(AccountRow.opened_at, AccountRow.account_id)
    )
    async with engine.connect() as conn:
        return [AccountRow(**dict(m)) for m in (await conn.execute(stmt)).mappings()]


async def count_accounts(engine: AsyncEngine, customer_id: str) -> int:
    """How many accounts ``customer_id`` has."""
    stmt = select(func.count()).select_from(AccountRow).where(AccountRow.customer_id == customer_id)
    async with engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def add_note(
    engine: AsyncEngine, *, key: str, customer_id: str, note: str, task_id: str | None
) -> tuple[CustomerNoteRow, bool]:
    """Store a note once per ``key``.

    Returns:
        ``(the stored note, same)``: ``same`` is ``False`` when ``key`` was used before
        for a different note (customer, text or task), which the caller must refuse.
    """
    values = {
        "idempotency_key": key,
        "customer_id": customer_id,
        "task_id": task_id,
        "note": note,
        "source": "tool",
        "created_at": datetime.now(UTC),
    }
    async with engine.begin() as conn:
        await conn.execute(_insert(conn, CustomerNoteRow).values(**values).on_conflict_do_nothing())
        stmt = select(CustomerNoteRow).where(CustomerNoteRow.idempotency_key == key)
        row = CustomerNoteRow(**dict((await conn.execute(stmt)).mappings().one()))
    same = (row.customer_id, row.note, row.task_id) == (customer_id, note, task_id)
    return row, same


async def notes_of(engine: AsyncEngine, customer_id: str, limit: int) -> list[CustomerNoteRow]:
    """The newest ``limit`` notes of ``customer_id``, newest first."""
    stmt = (
        select(CustomerNoteRow)
        .where(CustomerNoteRow.customer_id == customer_id)
        .order_by(CustomerNoteRow.created_at.desc(), CustomerNoteRow.id.desc())
        .limit(limit)
    )
    async with engine.connect() as conn:
        return [CustomerNoteRow(**dict(m)) for m in (await conn.execute(stmt)).mappings()]
