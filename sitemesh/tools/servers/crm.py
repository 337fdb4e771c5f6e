"""MCP server ``crm``: the site's customers and accounts, from the state database.

Run it over stdio (what the tool registry starts) or streamable HTTP::

    python -m sitemesh.tools.servers.crm [--db-url URL] [--http HOST:PORT]
    python -m sitemesh.tools.servers.crm seed [--db-url URL] [-n 200]
        [--tickets examples/data/tickets.jsonl] [--seed 0]

The database is the site's state database (``--db-url``, else the settings'
``db_url``: ``SITEMESH_DB_URL``, else SQLite under ``SITEMESH_STATE_DIR``), SQLite or
PostgreSQL, migrated to head at start. ``seed`` writes deterministic synthetic
customers (:func:`~sitemesh.tools.servers.seed_crm`); with ``--tickets`` there is one
for each ticket's ``customer`` handle, so the bundled tickets find their customer.

Tools (arguments are validated against the input schema; a bad one is a tool error
``isError`` whose text names the field):

* ``lookup_customer(customer_id | email | phone, tenant?)`` -> :class:`Customer`:
  exactly one key. ``customer_id`` ``^[A-Za-z0-9_]{1,64}$``; ``email`` compared
  case-insensitively; ``phone`` in E.164 (``+4930901820``, ``0049...``) or written
  nationally (``030 901820``, ``(202) 555-0143``): a national number that fits
  customers of several countries is refused (``phone: ... several customers``).
* ``get_account(customer_id, account_id?)`` -> :class:`Account`: that account, or the
  customer's oldest active checking account (else its oldest account).
* ``list_accounts(customer_id)`` -> :class:`AccountList`: every account, oldest first.
* ``add_note(customer_id, note, idempotency_key?, task_id?)`` -> :class:`Note`: the
  one side effect. The note is stored once per idempotency key (a unique
  constraint); a repeated key returns the first call's note unchanged, and a key
  reused for a different note is refused. The key is the ``idempotency_key``
  argument, else the request's ``_meta["sitemesh/idempotency-key"]`` (the tool
  registry passes both); one of them is required. ``task_id`` links the note to a
  task, which is how ``ticket_history`` finds a customer's past tickets.

Errors (tool errors, the field first): ``customer_id: no customer with this id``,
``email: no customer with this e-mail address``, ``account_id: ... not an account of
this customer``, ``idempotency_key: already used for a different note``. The answers
carry personal data by design (names, e-mail addresses, phone numbers, postal
addresses, IBANs): the registry scans every response before an agent sees it.
Logs go to stderr and never carry argument values.
"""

from __future__ import annotations

import argparse
from typing import Annotated, Any, Final

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from ...state import AccountRow, CustomerNoteRow, CustomerRow
from .._types import IDEMPOTENCY_META_KEY
from . import _common as common
from ._crm_data import CUSTOMER_ID_PATTERN, ticket_customers
from ._crm_db import (
    accounts_of,
    count_accounts,
    find_customers,
    get_customer,
    seed_crm,
)
from ._crm_db import add_note as store_note

NAME: Final = "crm"
"""The server's name (its tools are ``crm.<tool>`` in the registry)."""

EMAIL_PATTERN: Final = r"^[^@\s]{1,64}@[^@\s]{1,253}$"
PHONE_PATTERN: Final = r"^\+?[0-9][0-9 ()./-]{4,23}$"
IDEMPOTENCY_KEY_PATTERN: Final = r"^[!-~]{1,256}$"
"""Printable ASCII without spaces, 1-256 characters (the registry's are 64 hex digits)."""
MAX_NOTE_CHARS: Final = 4000

CustomerId = Annotated[
    str, Field(pattern=CUSTOMER_ID_PATTERN, description="the customer's handle, e.g. MakanBihun")
]


# -- answers -----------------------------------------------------------------------------
class Address(BaseModel):
    """A postal address, written the country's way."""

    street: str
    postal_code: str
    city: str
    country: str = Field(description="ISO 3166-1 alpha-2")


class Customer(BaseModel):
    """A customer record (personal data)."""

    customer_id: str
    tenant: str
    name: str = Field(description="given and family name")
    given_name: str
    family_name: str
    email: str
    phone: str = Field(description="E.164")
    phone_national: str
    address: Address
    birth_date: str = Field(description="YYYY-MM-DD, '' when unknown")
    customer_since: str = Field(description="RFC 3339, UTC")
    accounts: int = Field(description="how many accounts (list_accounts lists them)")


class Account(BaseModel):
    """An account of a customer (personal data: IBAN and account number)."""

    account_id: str
    customer_id: str
    kind: str = Field(description="checking, savings or billing")
    iban: str | None = Field(description="ISO 13616, no spaces; null for a US account")
    bic: str
    account_number: str
    routing_number: str = Field(description="BLZ, sort code, ABA routing number...")
    currency: str = Field(description="ISO 4217")
    balance_minor: int = Field(description="balance in minor units (cents)")
    balance: str = Field(description="balance as a decimal, e.g. -12.50")
    status: str = Field(description="active, frozen or closed")
    opened_at: str = Field(description="RFC 3339, UTC")


class AccountList(BaseModel):
    """Every account of a customer, oldest first."""

    customer_id: str
    accounts: list[Account]


class Note(BaseModel):
    """A stored note: the same for every call with its idempotency key."""

    note_id: int
    customer_id: str
    task_id: str | None
    note: str
    idempotency_key: str
    created_at: str = Field(description="RFC 3339, UTC: when it was first stored")


def customer_of(row: CustomerRow, accounts: int) -> Customer:
    """The answer for one ``customers`` row."""
    return Customer(
        customer_id=row.customer_id,
        tenant=row.tenant,
        name=f"{row.given_name} {row.family_name}",
        given_name=row.given_name,
        family_name=row.family_name,
        email=row.email,
        phone=row.phone_e164,
        phone_national=row.phone_national,
        address=Address(
            street=row.street, postal_code=row.postal_code, city=row.city, country=row.country
        ),
        birth_date=row.birth_date,
        customer_since=row.created_at.isoformat(),
        accounts=accounts,
    )


def account_of(row: AccountRow) -> Account:
    """The answer for one ``accounts`` row."""
    sign = "-" if row.balance_minor < 0 else ""
    units, cents = divmod(abs(row.balance_minor), 100)
    return Account(
        account_id=row.account_id,
        customer_id=row.customer_id,
        kind=row.kind,
        iban=row.iban,
        bic=row.bic,
        account_number=row.account_number,
        routing_number=row.routing_number,
        currency=row.currency,
        balance_minor=row.balance_minor,
        balance=f"{sign}{units}.{cents:02d}",
        status=row.status,
        opened_at=row.opened_at.isoformat(),
    )


def note_of(row: CustomerNoteRow) -> Note:
    """The answer for one ``customer_notes`` row."""
    return Note(
        note_id=row.id,
        customer_id=row.customer_id,
        task_id=row.task_id,
        note=row.note,
        idempotency_key=row.idempotency_key,
        created_at=row.created_at.isoformat(),
    )


# -- the server --------------------------------------------------------------------------
def crm_server(db: common.Database) -> MCPServer[Any]:
    """The ``crm`` MCP server over ``db`` (open it before serving).

    Args:
        db: the state database.

    Returns:
        The server; run it with :func:`sitemesh.tools.servers.serve`.
    """
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    async def _customer(customer_id: str) -> CustomerRow:
        row = await get_customer(db.engine, customer_id)
        if row is None:
            common.tool_error("customer_id", "no customer with this id")
        return row

    async def lookup_customer(
        customer_id: Annotated[
            CustomerId | None, Field(description="the customer's handle (or email, or phone)")
        ] = None,
        email: Annotated[
            str | None, Field(pattern=EMAIL_PATTERN, max_length=254, description="e-mail address")
        ] = None,
        phone: Annotated[
            str | None,
            Field(
                pattern=PHONE_PATTERN,
                description="E.164 (+4930901820) or as written nationally (030 901820)",
            ),
        ] = None,
        tenant: Annotated[
            str | None,
            Field(min_length=1, max_length=256, description="only a customer of this tenant"),
        ] = None,
    ) -> Customer:
        """Find one customer by exactly one of customer_id, email or phone."""
        key = common.one_of(customer_id=customer_id, email=email, phone=phone)
        rows = await find_customers(
            db.engine, customer_id=customer_id, email=email, phone=phone, tenant=tenant
        )
        if not rows:
            what = {"customer_id": "id", "email": "e-mail address", "phone": "phone number"}[key]
            common.tool_error(key, f"no customer with this {what}")
        if len(rows) > 1:
            common.tool_error(
                key, "matches several customers; give the number in E.164 (+<country><number>)"
            )
        return customer_of(rows[0], await count_accounts(db.engine, rows[0].customer_id))

    lookup = Tool.from_function(lookup_customer, annotations=read_only)
    # at least one key, for a model's function calling (the tool checks exactly one)
    lookup.parameters["anyOf"] = [{"required": [k]} for k in ("customer_id", "email", "phone")]
    server: MCPServer[Any] = MCPServer(
        NAME,
        instructions="Customer and account records of the site (personal data). Look a "
        "customer up by id, e-mail or phone; add_note stores a note once per idempotency key.",
        tools=[lookup],
    )

    @server.tool(annotations=read_only)
    async def get_account(
        customer_id: CustomerId,
        account_id: Annotated[
            str | None,
            Field(
                pattern=r"^ACC-[0-9]{10}$",
                description="one account (default: the oldest active checking account)",
            ),
        ] = None,
    ) -> Account:
        """One account of a customer: account_id's, else the oldest active checking one."""
        await _customer(customer_id)
        accounts = await accounts_of(db.engine, customer_id)
        if account_id is not None:
            for a in accounts:
                if a.account_id == account_id:
                    return account_of(a)
            common.tool_error("account_id", "not an account of this customer")
        if not accounts:
            common.tool_error("customer_id", "the customer has no account")
        primary = [a for a in accounts if a.kind == "checking" and a.status == "active"]
        return account_of((primary or accounts)[0])

    @server.tool(annotations=read_only)
    async def list_accounts(customer_id: CustomerId) -> AccountList:
        """Every account of a customer, oldest first."""
        await _customer(customer_id)
        rows = await accounts_of(db.engine, customer_id)
        return AccountList(customer_id=customer_id, accounts=[account_of(a) for a in rows])

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False,
            destructive_hint=False,
            idempotent_hint=True,
            open_world_hint=False,
        )
    )
    async def add_note(
        customer_id: CustomerId,
        note: Annotated[
            str, Field(min_length=1, max_length=MAX_NOTE_CHARS, description="the note's text")
        ],
        ctx: Context,
        idempotency_key: Annotated[
            str | None,
            Field(
                pattern=IDEMPOTENCY_KEY_PATTERN,
                description="stored once per key; a repeated key returns the first note "
                f"(default: the request's _meta {IDEMPOTENCY_META_KEY!r})",
            ),
        ] = None,
        task_id: Annotated[
            str | None,
            Field(pattern=common.TASK_ID_PATTERN, description="the task the note is about"),
        ] = None,
    ) -> Note:
        """Store a note on a customer, once per idempotency key."""
        key = idempotency_key or _meta_key(ctx)
        if key is None:
            common.tool_error(
                "idempotency_key", f"required (the argument or _meta {IDEMPOTENCY_META_KEY!r})"
            )
        await _customer(customer_id)
        row, same = await store_note(
            db.engine, key=key, customer_id=customer_id, note=note, task_id=task_id
        )
        if not same:
            common.tool_error("idempotency_key", "already used for a different note")
        return note_of(row)

    return server


def _meta_key(ctx: Context) -> str | None:
    """The idempotency key of the request's ``_meta``, if it carries a usable one."""
    try:
        meta = ctx.request_context.meta
    except (AttributeError, ValueError, RuntimeError):
        return None
    value = (meta or {}).get(IDEMPOTENCY_META_KEY)
    if isinstance(value, str) and 0 < len(value) <= 256 and value.isprintable():
        return value
    return None


# -- command line ------------------------------------------------------------------------
async def _serve(args: argparse.Namespace) -> None:
    db = common.Database(args.db_url or common.settings().db_url)
    await db.open()
    await common.run_main(crm_server(db), args.http, db)


async def _seed(args: argparse.Namespace) -> None:
    url = args.db_url or common.settings().db_url
    handles = ticket_customers(args.tickets) if args.tickets else {}
    customers = await seed_crm(url, args.n, handles=handles, tenant=args.tenant, seed=args.seed)
    accounts = sum(len(c.accounts) for c in customers)
    notes = sum(len(c.notes) for c in customers)
    common.log.info(
        "seeded %d customers (%d from tickets), %d accounts, %d notes into %s",
        len(customers), len(handles), accounts, notes, common.safe_db_url(url),
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """``python -m sitemesh.tools.servers.crm [seed] ...`` (see the module docstring)."""
    p = common.parser("python -m sitemesh.tools.servers.crm", "MCP server: the site's CRM", db=True)
    sub = p.add_subparsers(dest="command")
    seed = sub.add_parser("seed", help="write deterministic synthetic customers")
    seed.add_argument("--db-url", default=argparse.SUPPRESS, help="as above")
    seed.add_argument("-n", type=int, default=200, help="customers with generated handles")
    seed.add_argument("--tickets", help="a SupportTicket JSONL: one customer per handle")
    seed.add_argument("--tenant", default="default", help="tenant of generated customers")
    seed.add_argument("--seed", type=int, default=0, help="the random seed")
    args = p.parse_args(argv)
    common.configure_logging(args.log_level)
    if args.command == "seed":
        if args.n < 0:
            p.error(f"-n: {args.n}: expected 0 or more")
        common.run(_seed(args))
    else:
        common.run(_serve(args))


if __name__ == "__main__":
    main()
