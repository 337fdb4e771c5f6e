"""The bundled tool servers (``sitemesh.tools.servers``), each started for real.

Every server runs as its own OS process (``python -m sitemesh.tools.servers.<name>``)
and is driven by the official SDK's client (``mcp.ClientSession`` over
``mcp.client.stdio.stdio_client``; one test over streamable HTTP): the tools are
listed and called as the registry would call them. The CRM is seeded with
:func:`seed_crm` into the test's state database (SQLite, or PostgreSQL under
``SITEMESH_TEST_DB``; one test runs on both explicitly).

* fast: check digits (IBAN mod-97, RIB key, 11-test, ABA), the synthetic records are
  deterministic and valid, the tickets' handles, phone queries, ``--http`` parsing;
* crm: lookups by id, e-mail and phone (E.164 and national) return the seeded
  personal data; ``add_note`` stores one row per idempotency key (argument or
  ``_meta``; also under concurrent calls); bad arguments are tool errors naming the
  field; the server's log carries no argument value;
* ticket_history: a customer's tasks only (the other customer's as positive control);
* kb_search: passages from the bundled knowledge bases, routed by kind and tenant;
* telemetry_query: a CSV series source and a log source written in ``tmp_path``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult
from nats.js import JetStreamContext
from sqlalchemy import func, select

import sitemesh.tools.servers
from sitemesh.agents import AgentContext, AgentResources, import_agent
from sitemesh.bus import NatsServer, SiteArtifacts
from sitemesh.knowledge import Document, publish_kb
from sitemesh.policy import DetectedEntity
from sitemesh.schemas import (
    Envelope,
    PolicyDecision,
    TaskAccepted,
    TelemetryAlert,
    WorkItem,
)
from sitemesh.sources import SourceSpec, publish_source
from sitemesh.state import CustomerNoteRow, Store, create_engine
from sitemesh.tools import ToolRegistry, load_tool_specs
from sitemesh.tools.servers import (
    CUSTOMER_ID_PATTERN,
    SyntheticCustomer,
    aba_check_digit,
    elfproef,
    iban_is_valid,
    make_iban,
    parse_http,
    rib_key,
    seed_crm,
    synthetic_customers,
    ticket_customers,
)
from tests._dbs import DB_KINDS, fresh_db
from tests._items import work_item
from tests.conftest import assert_eventually

ROOT = Path(__file__).resolve().parents[1]
TICKETS = ROOT / "examples" / "data" / "tickets.jsonl"
EXAMPLE = ROOT / "examples" / "mcp_server"
HANDLES = {"MakanBihun": "zoom_us", "shakyr_XCIM": "AppleSupport"}
"""Two customers of the bundled tickets (``customer``, ``tenant``)."""


# -- helpers -----------------------------------------------------------------------------
@contextlib.asynccontextmanager
async def session(
    server: str, *args: str, log: Path, env: dict[str, str] | None = None
) -> AsyncIterator[ClientSession]:
    """An initialised client session with ``python -m sitemesh.tools.servers.<server>``
    (``env`` over the SDK's safe default environment); its stderr goes to ``log``."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", f"sitemesh.tools.servers.{server}", *args],
        cwd=ROOT,
        env=env,
    )
    with log.open("a", encoding="utf-8") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            yield s


def data(result: CallToolResult) -> dict[str, Any]:
    """The structured answer of a successful call."""
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    """The message of a tool error."""
    assert result.is_error, result.structured_content
    return " ".join(getattr(c, "text", "") for c in result.content)


async def seeded(url: str, n: int = 12) -> list[SyntheticCustomer]:
    return await seed_crm(url, n, handles=HANDLES, seed=7)


def by_id(customers: list[SyntheticCustomer], customer_id: str) -> SyntheticCustomer:
    return next(c for c in customers if c.customer_id == customer_id)


async def note_rows(url: str, **where: Any) -> int:
    engine = create_engine(url)
    try:
        stmt = select(func.count()).select_from(CustomerNoteRow)
        for column, value in where.items():
            stmt = stmt.where(getattr(CustomerNoteRow, column) == value)
        async with engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())
    finally:
        await engine.dispose()


# -- the package front and pure functions ------------------------------------------------
def test_public_api() -> None:
    assert sorted(sitemesh.tools.servers.__all__) == sorted(
        [
            "BUNDLED_SERVERS", "COUNTRIES", "CUSTOMER_ID_PATTERN", "MCP_PATH", "Database",
            "HttpAddress", "Sources", "SyntheticAccount", "SyntheticCustomer", "SyntheticNote",
            "aba_check_digit", "crm_server", "elfproef", "iban_check_digits", "iban_is_valid",
            "kb_search_server", "make_iban", "parse_http", "rib_key", "search_library",
            "seed_crm", "serve", "synthetic_customers", "telemetry_query_server",
            "ticket_customers", "ticket_history_server",
        ]
    )  # fmt: skip
    for name in sitemesh.tools.servers.__all__:
        assert hasattr(sitemesh.tools.servers, name), name


def test_check_digits_match_published_examples() -> None:
    # ISO 13616 / ECBS examples; the French RIB of the ECBS FR example; ABN AMRO's
    # NL example passes the 11-test; 021000021 is a published ABA routing number.
    assert make_iban("DE", "370400440532013000") == "DE89370400440532013000"
    assert make_iban("GB", "NWBK60161331926819") == "GB29NWBK60161331926819"
    assert iban_is_valid("FR76 3000 6000 0112 3456 7890 189")
    assert not iban_is_valid("DE89370400440532013001")
    assert rib_key("30006", "00001", "12345678901") == "89"
    assert elfproef("0417164300")
    assert not elfproef("0417164301")
    assert aba_check_digit("02100002") == "1"


def test_synthetic_customers_are_deterministic_and_valid() -> None:
    a = synthetic_customers(40, handles=HANDLES, seed=3)
    assert a == synthetic_customers(40, handles=HANDLES, seed=3)
    assert synthetic_customers(60, handles=HANDLES, seed=3)[:42] == a  # more keeps the first
    assert a != synthetic_customers(40, handles=HANDLES, seed=4)
    assert [c.customer_id for c in a[:2]] == sorted(HANDLES)
    assert {c.tenant for c in a[:2]} == set(HANDLES.values())
    assert len({c.customer_id for c in a}) == len({c.email for c in a}) == 42
    for c in a:
        assert re.fullmatch(CUSTOMER_ID_PATTERN, c.customer_id)
        number = phonenumbers.parse(c.phone_e164, None)
        assert phonenumbers.is_valid_number(number), c.phone_e164
        assert phonenumbers.region_code_for_number(number) == c.country
        assert c.email.endswith(("@example.com", "@example.net", "@example.org"))
        assert c.accounts
        assert c.accounts[0].kind == "checking"
        for acc in c.accounts:
            if c.country == "US":
                assert acc.iban is None
                assert len(acc.routing_number) == 9
                assert aba_check_digit(acc.routing_number[:8]) == acc.routing_number[8]
            else:
                assert acc.iban is not None
                assert iban_is_valid(acc.iban), acc.iban
                assert acc.iban.startswith(c.country)
    assert {c.country for c in a} == {"DE", "FR", "GB", "NL", "US"}
    with pytest.raises(ValueError, match="handles"):
        synthetic_customers(1, handles=["not a handle"])


def test_ticket_customers_are_the_tickets_handles() -> None:
    found = ticket_customers(TICKETS)
    assert found["MakanBihun"] == "zoom_us"
    tickets = [json.loads(line) for line in TICKETS.read_text("utf-8").splitlines()]
    assert set(found) == {t["customer"] for t in tickets if t.get("customer")}


def test_phone_query_and_http_address() -> None:
    from sitemesh.tools.servers._crm_db import phone_query

    assert phone_query("+49 30 901820") == ("e164", "+4930901820")
    assert phone_query("0049 30 901820") == ("e164", "+4930901820")
    assert phone_query("030 901820") == ("nsn", "30901820")
    assert phone_query("(202) 555-0143") == ("nsn", "2025550143")
    assert phone_query("1 202 555 0143") == ("nsn", "2025550143")
    assert parse_http("127.0.0.1:8931").url == "http://127.0.0.1:8931/mcp"
    assert parse_http("[::1]:80").url == "http://[::1]:80/mcp"
    with pytest.raises(Exception, match="HOST:PORT"):
        parse_http("localhost")


# -- crm -----------------------------------------------------------------------------------
async def test_crm_lists_its_tools_with_precise_schemas(state_db_url: str, tmp_path: Path) -> None:
    await seeded(state_db_url)
    async with session("crm", "--db-url", state_db_url, log=tmp_path / "crm.log") as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
    assert set(tools) == {"lookup_customer", "get_account", "list_accounts", "add_note"}
    note = tools["add_note"].input_schema
    assert sorted(note["required"]) == ["customer_id", "note"]
    assert note["properties"]["customer_id"]["pattern"] == CUSTOMER_ID_PATTERN
    assert note["properties"]["note"]["maxLength"] == 4000
    assert "idempotency_key" in note["properties"]
    assert tools["add_note"].annotations is not None
    assert tools["add_note"].annotations.idempotent_hint is True
    assert tools["lookup_customer"].annotations is not None
    assert tools["lookup_customer"].annotations.read_only_hint is True
    lookup = tools["lookup_customer"].input_schema
    assert "required" not in lookup  # one of three keys:
    assert lookup["anyOf"] == [{"required": [k]} for k in ("customer_id", "email", "phone")]
    assert tools["get_account"].output_schema is not None
    assert "iban" in tools["get_account"].output_schema["properties"]


async def test_crm_lookups_return_the_seeded_personal_data(
    state_db_url: str, tmp_path: Path
) -> None:
    customers = await seeded(state_db_url)
    c = by_id(customers, "MakanBihun")
    log = tmp_path / "crm.log"
    async with session("crm", "--db-url", state_db_url, log=log) as s:
        found = [
            data(await s.call_tool("lookup_customer", {"customer_id": c.customer_id})),
            data(await s.call_tool("lookup_customer", {"email": c.email.upper()})),
            data(await s.call_tool("lookup_customer", {"phone": c.phone_e164})),
            data(await s.call_tool("lookup_customer", {"phone": c.phone_national})),
            data(
                await s.call_tool(
                    "lookup_customer", {"customer_id": c.customer_id, "tenant": "ZOOM_US"}
                )
            ),
        ]
        other_tenant = await s.call_tool(
            "lookup_customer", {"customer_id": c.customer_id, "tenant": "AppleSupport"}
        )
        account = data(await s.call_tool("get_account", {"customer_id": c.customer_id}))
        listed = data(await s.call_tool("list_accounts", {"customer_id": c.customer_id}))
        last = c.accounts[-1].account_id
        chosen = data(
            await s.call_tool("get_account", {"customer_id": c.customer_id, "account_id": last})
        )
    assert all(f == found[0] for f in found)
    got = found[0]
    assert got["name"] == f"{c.given_name} {c.family_name}"
    assert got["tenant"] == "zoom_us"
    assert (got["email"], got["phone"], got["phone_national"]) == (
        c.email, c.phone_e164, c.phone_national,
    )  # fmt: skip
    assert got["address"] == {
        "street": c.street, "postal_code": c.postal_code, "city": c.city, "country": c.country,
    }  # fmt: skip
    assert got["accounts"] == len(c.accounts)
    assert "customer_id: no customer" in error_text(other_tenant)
    first = c.accounts[0]
    assert (account["account_id"], account["iban"], account["account_number"]) == (
        first.account_id, first.iban, first.account_number,
    )  # fmt: skip
    if first.iban is not None:
        assert iban_is_valid(account["iban"])
    minor = account["balance_minor"]
    assert (
        account["balance"]
        == f"{'-' if minor < 0 else ''}{abs(minor) // 100}.{abs(minor) % 100:02d}"
    )
    assert [a["iban"] for a in listed["accounts"]] == [a.iban for a in c.accounts]
    assert chosen["account_id"] == last
    text = log.read_text("utf-8")
    assert "serving MCP over stdio" in text  # positive control: the log is this server's
    for value in (c.email, c.phone_e164, c.family_name, str(first.iban)):
        assert value not in text, value


async def test_add_note_stores_one_row_per_idempotency_key(
    state_db_url: str, tmp_path: Path
) -> None:
    await seeded(state_db_url)
    args = {"customer_id": "MakanBihun", "note": "refund sent", "idempotency_key": "k-1"}
    async with session("crm", "--db-url", state_db_url, log=tmp_path / "crm.log") as s:
        first = data(await s.call_tool("add_note", {**args, "task_id": "t-1"}))
        again = data(await s.call_tool("add_note", {**args, "task_id": "t-1"}))
        reused = await s.call_tool("add_note", {**args, "note": "something else"})
        other = data(await s.call_tool("add_note", {**args, "idempotency_key": "k-2"}))
        via_meta = data(
            await s.call_tool(
                "add_note",
                {"customer_id": "MakanBihun", "note": "from meta"},
                meta={"sitemesh/idempotency-key": "meta-key-1"},
            )
        )
        missing = await s.call_tool("add_note", {"customer_id": "MakanBihun", "note": "x"})
        racing = await asyncio.gather(
            *(
                s.call_tool(
                    "add_note",
                    {"customer_id": "shakyr_XCIM", "note": "raced", "idempotency_key": "k-race"},
                )
                for _ in range(5)
            )
        )
    assert again == first
    assert first["task_id"] == "t-1"
    assert first["idempotency_key"] == "k-1"
    assert await note_rows(state_db_url, idempotency_key="k-1") == 1
    assert "idempotency_key: already used for a different note" in error_text(reused)
    assert other["note_id"] != first["note_id"]
    assert await note_rows(state_db_url, idempotency_key="k-2") == 1
    assert via_meta["idempotency_key"] == "meta-key-1"
    assert await note_rows(state_db_url, idempotency_key="meta-key-1") == 1
    assert "idempotency_key: required" in error_text(missing)
    assert len({json.dumps(data(r), sort_keys=True) for r in racing}) == 1
    assert await note_rows(state_db_url, idempotency_key="k-race") == 1


async def test_bad_arguments_are_tool_errors_naming_the_field(
    state_db_url: str, tmp_path: Path
) -> None:
    await seeded(state_db_url)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("lookup_customer", {"customer_id": "has space"}, "customer_id"),
        ("lookup_customer", {"email": "not-an-address"}, "email"),
        ("lookup_customer", {"phone": "call me"}, "phone"),
        ("lookup_customer", {}, "customer_id, email, phone: give exactly one of them (got none)"),
        (
            "lookup_customer",
            {"customer_id": "MakanBihun", "email": "a@example.com"},
            "give exactly one of them (got customer_id and email)",
        ),
        ("lookup_customer", {"customer_id": "nobody_here"}, "customer_id: no customer"),
        ("lookup_customer", {"email": "nobody@example.com"}, "email: no customer"),
        ("get_account", {"customer_id": "MakanBihun", "account_id": "123"}, "account_id"),
        (
            "get_account",
            {"customer_id": "MakanBihun", "account_id": "ACC-9999999999"},
            "account_id: not an account of this customer",
        ),
        ("get_account", {}, "customer_id"),
        ("list_accounts", {"customer_id": "nobody_here"}, "customer_id: no customer"),
        ("add_note", {"customer_id": "MakanBihun", "note": ""}, "note"),
        ("add_note", {"customer_id": "MakanBihun", "note": "x" * 4001}, "note"),
        (
            "add_note",
            {"customer_id": "MakanBihun", "note": "x", "idempotency_key": "has space"},
            "idempotency_key",
        ),
        (
            "add_note",
            {"customer_id": "MakanBihun", "note": "x", "idempotency_key": "k", "task_id": "t/1"},
            "task_id",
        ),
    ]
    async with session("crm", "--db-url", state_db_url, log=tmp_path / "crm.log") as s:
        results = [(tool, args, want, await s.call_tool(tool, args)) for tool, args, want in cases]
        ok = await s.call_tool("lookup_customer", {"customer_id": "MakanBihun"})
    assert not ok.is_error  # positive control: the same session answers a good call
    for tool, args, want, result in results:
        assert result.is_error, (tool, args)
        assert want in error_text(result), (tool, args, error_text(result))
    assert await note_rows(state_db_url) == sum(
        len(c.notes) for c in synthetic_customers(12, handles=HANDLES, seed=7)
    )  # nothing stored by the refused calls


@pytest.mark.parametrize("kind", DB_KINDS)
async def test_crm_on_sqlite_and_postgresql(kind: str, tmp_path: Path) -> None:
    async with fresh_db(kind, tmp_path, tag="crm") as url:
        customers = await seeded(url)
        assert await seeded(url) == customers  # seeding again changes nothing
        c = by_id(customers, "shakyr_XCIM")
        async with session("crm", "--db-url", url, log=tmp_path / "crm.log") as s:
            got = data(await s.call_tool("lookup_customer", {"email": c.email}))
            notes = await asyncio.gather(
                *(
                    s.call_tool(
                        "add_note",
                        {"customer_id": c.customer_id, "note": "n", "idempotency_key": "pg-1"},
                    )
                    for _ in range(4)
                )
            )
        assert got["customer_id"] == c.customer_id
        assert len({json.dumps(data(n), sort_keys=True) for n in notes}) == 1
        assert await note_rows(url, idempotency_key="pg-1") == 1
        assert await note_rows(url, source="seed") == sum(len(x.notes) for x in customers)


async def test_crm_over_streamable_http(state_db_url: str, tmp_path: Path) -> None:
    customers = await seeded(state_db_url)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sitemesh.tools.servers.crm", "--db-url", state_db_url,
        "--http", f"127.0.0.1:{port}", cwd=ROOT, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    seen: list[str] = []
    try:
        assert proc.stderr is not None
        async with asyncio.timeout(60):
            while not any("Uvicorn running on" in line for line in seen):
                line = (await proc.stderr.readline()).decode()
                assert line, f"the server exited: {''.join(seen)}"
                seen.append(line)
        async with (
            streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            names = {t.name for t in (await s.list_tools()).tools}
            got = data(await s.call_tool("lookup_customer", {"customer_id": "MakanBihun"}))
            bad = await s.call_tool("lookup_customer", {"phone": "x"})
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    assert "add_note" in names
    assert got["email"] == by_id(customers, "MakanBihun").email
    assert "phone" in error_text(bad)


# -- ticket_history ------------------------------------------------------------------------
async def test_ticket_history_returns_the_customers_tasks_only(
    state_db_url: str, tmp_path: Path
) -> None:
    customers = await seeded(state_db_url)
    t0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
    async with Store(state_db_url) as store:
        for i, task_id in enumerate(("t-a1", "t-a2", "t-b1")):
            accepted = TaskAccepted(
                task_id=task_id, site="eu1", kind="support_ticket", tenant="zoom_us",
                title=f"support_ticket {task_id}", submitted_at=t0 + timedelta(minutes=i),
            )  # fmt: skip
            await store.record_event("EVENTS_eu1", i + 1, accepted)
    a, b = "MakanBihun", "shakyr_XCIM"
    log = tmp_path / "servers.log"
    async with session("crm", "--db-url", state_db_url, log=log) as crm:
        for customer, task_id in ((a, "t-a1"), (a, "t-a2"), (b, "t-b1"), (a, "t-unknown")):
            args = {"customer_id": customer, "task_id": task_id, "idempotency_key": task_id}
            data(await crm.call_tool("add_note", {**args, "note": f"worked on {task_id}"}))
    async with session("ticket_history", "--db-url", state_db_url, log=log) as s:
        tools = (await s.list_tools()).tools
        of_a = data(await s.call_tool("history", {"customer_id": a, "limit": 50}))
        of_b = data(await s.call_tool("history", {"customer_id": b}))
        excluded = data(await s.call_tool("history", {"customer_id": a, "exclude_task_id": "t-a2"}))
        limited = data(await s.call_tool("history", {"customer_id": a, "limit": 1}))
        unknown = await s.call_tool("history", {"customer_id": "nobody_here"})
        too_many = await s.call_tool("history", {"customer_id": a, "limit": 51})
    assert [t.name for t in tools] == ["history"]
    tasks_a = [e["task_id"] for e in of_a["entries"] if e["task_id"]]
    assert tasks_a == ["t-unknown", "t-a2", "t-a1"]  # newest first
    assert [e["task_id"] for e in of_b["entries"] if e["task_id"]] == ["t-b1"]  # the control
    joined = {e["task_id"]: e["task"] for e in of_a["entries"] if e["task_id"]}
    assert joined["t-unknown"] is None  # a note whose task this site never recorded
    assert joined["t-a1"]["kind"] == "support_ticket"
    assert joined["t-a1"]["status"] == "accepted"
    assert joined["t-a1"]["submitted_at"].startswith("2026-03-01T12:00:00")
    seeded_notes = len(by_id(customers, a).notes)
    assert sum(1 for e in of_a["entries"] if e["source"] == "seed") == seeded_notes
    assert "t-a2" not in [e["task_id"] for e in excluded["entries"]]
    assert "t-a1" in [e["task_id"] for e in excluded["entries"]]
    assert len(limited["entries"]) == 1
    assert "customer_id: no customer" in error_text(unknown)
    assert "limit" in error_text(too_many)


# -- kb_search -----------------------------------------------------------------------------
async def test_kb_search_returns_passages(tmp_path: Path) -> None:
    async with session("kb_search", log=tmp_path / "kb.log") as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        kbs = data(await s.call_tool("list_kbs", {}))
        support = data(
            await s.call_tool(
                "search",
                {
                    "query": "zoom installer stuck at 3% network connection failed error 1006",
                    "kind": "support_ticket",
                    "tenant": "zoom_us",
                    "top_k": 3,
                },
            )
        )
        alert = data(
            await s.call_tool(
                "search",
                {"query": "etcd cluster members down", "kind": "telemetry_alert", "top_k": 2},
            )
        )
        banking = data(
            await s.call_tool(
                "search",
                {"query": "my card payment was declined", "kb": "banking-faq", "top_k": 2},
            )
        )
        unknown = await s.call_tool("search", {"query": "x", "kb": "nope"})
        bad_k = await s.call_tool("search", {"query": "x", "top_k": 0})
        bad_kind = await s.call_tool("search", {"query": "x", "kind": "email"})
    assert tools == {"search", "list_kbs"}
    assert {k["name"] for k in kbs["kbs"]} >= {"runbooks", "support-cases", "banking-faq"}
    assert all(k["docs"] > 0 for k in kbs["kbs"])
    passages = support["passages"]
    assert 1 <= len(passages) <= 3
    assert {p["kb"] for p in passages} == {"support-cases"}  # banking-faq serves bank* only
    assert [k["name"] for k in support["kbs"]] == ["support-cases"]
    assert all(p["score"] > 0 and p["text"] for p in passages)
    assert passages[0]["doc_kind"] == "case"
    assert all(p["kb"] == "runbooks" and p["doc_kind"] == "runbook" for p in alert["passages"])
    assert alert["passages"]
    assert "etcd" in alert["passages"][0]["doc_id"].lower()
    assert banking["passages"]
    assert banking["passages"][0]["doc_kind"] == "faq"
    assert "kb: no knowledge base 'nope'" in error_text(unknown)
    assert "top_k" in error_text(bad_k)
    assert "kind" in error_text(bad_kind)


# -- telemetry_query -----------------------------------------------------------------------
async def test_telemetry_query_reads_a_csv_source(tmp_path: Path) -> None:
    t0 = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [
        (t0 + timedelta(minutes=i), device, 10.0 * i + (0 if device == "r1" else 1000))
        for i in range(10)
        for device in ("r1", "r2")
    ]
    csv = tmp_path / "metrics.csv"
    csv.write_text(
        "timestamp,device,cpu\n" + "".join(f"{t:%Y-%m-%dT%H:%M:%SZ},{d},{v}\n" for t, d, v in rows),
        encoding="utf-8",
    )
    logs = tmp_path / "app.log"
    logs.write_text(
        "".join(
            f"{t0 + timedelta(minutes=i):%Y-%m-%dT%H:%M:%SZ} "
            + ("ERROR login failed for user alice\n" if i % 3 == 0 else "INFO heartbeat ok\n")
            for i in range(9)
        ),
        encoding="utf-8",
    )
    window = {"start": t0.isoformat(), "end": (t0 + timedelta(hours=1)).isoformat()}
    args = ["--source", f"cpu={csv}", "--source", f"app={logs}"]
    async with session("telemetry_query", *args, log=tmp_path / "tq.log") as s:
        tools = {t.name for t in (await s.list_tools()).tools}
        listed = data(await s.call_tool("list_sources", {}))
        described = data(await s.call_tool("describe_source", {"source": "cpu"}))
        r1 = data(
            await s.call_tool(
                "query_series", {"source": "cpu", "device": "r1", "max_points": 3, **window}
            )
        )
        r2 = data(await s.call_tool("query_series", {"source": "cpu", "device": "r2", **window}))
        none = data(
            await s.call_tool("query_series", {"source": "cpu", "metric": "mem*", **window})
        )
        errors = data(
            await s.call_tool(
                "query_logs", {"source": "app", "contains": "LOGIN FAILED", "limit": 2, **window}
            )
        )
        backwards = await s.call_tool(
            "query_series", {"source": "cpu", "start": window["end"], "end": window["start"]}
        )
        unknown = await s.call_tool("query_series", {"source": "nope", **window})
        bad_points = await s.call_tool(
            "query_series", {"source": "cpu", "max_points": 1001, **window}
        )
    assert tools == {"list_sources", "describe_source", "query_series", "query_logs"}
    assert [(x["name"], x["kind"], x["origin"]) for x in listed["sources"]] == [
        ("app", "logs", "local"), ("cpu", "series", "local"),
    ]  # fmt: skip
    assert described["devices"] == ["r1", "r2"]
    [series] = r1["series"]
    assert series["name"] == "metrics.cpu"
    assert series["count"] == 10
    assert (series["min"], series["max"], series["last"]) == (0.0, 90.0, 90.0)
    assert math.isclose(series["mean"], 45.0)
    assert series["values"] == [70.0, 80.0, 90.0]
    assert series["truncated"] is True
    assert series["timestamps"][-1].startswith("2026-03-01T00:09:00")
    assert r2["series"][0]["min"] == 1000.0
    assert r2["series"][0]["truncated"] is False
    assert none["series"] == []
    assert errors["matched"] == 3
    assert [ln["line"].endswith("login failed for user alice") for ln in errors["lines"]] == [
        True, True,
    ]  # fmt: skip
    assert errors["lines"][-1]["at"].startswith("2026-03-01T00:06:00")  # the newest kept
    assert "end: must be after start" in error_text(backwards)
    assert "source: no telemetry source 'nope' (known: app, cpu)" in error_text(unknown)
    assert "max_points" in error_text(bad_points)


# -- site knowledge bases and sources from the NATS artifact bucket -------------------------
async def test_site_kbs_and_sources_come_from_the_artifact_bucket(
    nats_server: NatsServer, js: JetStreamContext, site: str, tmp_path: Path
) -> None:
    bucket = await SiteArtifacts.open(js, site, create=True)

    def article(name: str, text: str) -> list[Document]:
        return [
            Document(
                id=f"{name}#intro",
                doc_id=name,
                doc_kind="article",
                title=f"{name} guide",
                text=text,
                tenant="acme",
            )
        ]

    await publish_kb(
        bucket, "acme-help", article("acme-help", "reset the flux capacitor of the widget"),
        kinds=["support_ticket"], tenants=["acme"], fmt="markdown",
    )  # fmt: skip
    csv = tmp_path / "site.csv"
    csv.write_text("timestamp,value\n2026-03-01T00:00:00Z,1\n", encoding="utf-8")
    await publish_source(bucket, SourceSpec(name="site-cpu", kind="series", location=str(csv)))
    env = {"SITEMESH_NATS_URL": nats_server.client_url, "SITEMESH_SITE": site}
    log = tmp_path / "servers.log"
    async with session("kb_search", log=log, env=env) as s:
        found = data(
            await s.call_tool(
                "search",
                {"query": "flux capacitor", "kind": "support_ticket", "tenant": "acme"},
            )
        )
        other_tenant = data(
            await s.call_tool(
                "search", {"query": "flux capacitor", "kind": "support_ticket", "tenant": "zoom_us"}
            )
        )
        await publish_kb(
            bucket, "acme-faq", article("acme-faq", "the sprocket warranty lasts two years"),
            kinds=["support_ticket"], tenants=["acme"], fmt="markdown",
        )  # fmt: skip

        async def faq_loaded() -> bool:
            kbs = data(await s.call_tool("list_kbs", {}))["kbs"]
            return "acme-faq" in {k["name"] for k in kbs}

        await assert_eventually(faq_loaded, timeout_s=30, msg="the live reload")
        origins = {k["name"]: k["origin"] for k in data(await s.call_tool("list_kbs", {}))["kbs"]}
    async with session("telemetry_query", log=log, env=env) as s:
        listed = data(await s.call_tool("list_sources", {}))
        window = {"start": "2026-03-01T00:00:00Z", "end": "2026-03-02T00:00:00Z"}
        series = data(await s.call_tool("query_series", {"source": "site-cpu", **window}))
    assert [p["kb"] for p in found["passages"]][:1] == ["acme-help"]
    assert "acme-help" not in [p["kb"] for p in other_tenant["passages"]]  # routed by tenant
    assert origins["acme-help"] == origins["acme-faq"] == "site"
    assert origins["support-cases"] == "bundled"
    assert [(x["name"], x["origin"]) for x in listed["sources"]] == [("site-cpu", "site")]
    assert series["series"][0]["count"] == 1


# -- the user's server (examples/mcp_server), by configuration, for a custom agent ---------
class NoPersonalData:
    """A scanner that finds nothing (the registry's own tests cover the real scan and its
    failures; loading Presidio here would add ~20 s)."""

    def __init__(self) -> None:
        self.texts = 0

    def scan_many(self, texts: Sequence[str]) -> list[list[DetectedEntity]]:
        self.texts += len(texts)
        return [[] for _ in texts]


def alert_item(metric: str, task_id: str) -> WorkItem:
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)
    alert = TelemetryAlert(
        device="leaf7", metric=metric, window_start=now - timedelta(minutes=10), window_end=now,
    )  # fmt: skip
    return work_item(
        Envelope(task_id=task_id, site="eu1", kind="x", submitted_at=now, accepted_at=now),
        alert,
        PolicyDecision(
            task_id=task_id,
            action="pin_edge",
            rule_id="test",
            policy_version="0" * 16,
            data_class="internal",
            decided_at=now,
        ),
    )


async def test_user_server_by_configuration_for_a_custom_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)  # the tools file's paths are relative to the workers' cwd
    monkeypatch.syspath_prepend(str(EXAMPLE))
    specs = load_tool_specs(EXAMPLE / "tools.toml")
    # the bundled servers come along (crm is bundled switched off)
    assert {"kb_search", "telemetry_query", "ticket_history"} <= {s.name for s in specs}
    [inventory] = [s for s in specs if s.name == "inventory"]
    assert inventory.transport == "stdio"
    assert inventory.argv[1] == ["examples/mcp_server/server.py"]
    agent = import_agent("parts_agent:PartsAgent").cls()
    scanner = NoPersonalData()
    outputs = {}
    async with ToolRegistry([inventory], scanner=scanner) as registry:
        resources = AgentResources("eu1", tools=lambda: registry)
        tools = {t.name for t in await registry.list_tools()}
        for task_id, metric in (
            ("t-optic", "interface.summary.not_up_count"),
            ("t-psu", "power.supply.output_watts"),
            ("t-none", "scheduled.health_check"),
        ):
            item = alert_item(metric, task_id)
            ctx = AgentContext(
                site="eu1", worker="pytest", resources=resources, task_id=task_id,
                step="parts", role="parts",
            )  # fmt: skip
            outputs[task_id] = await agent.handle(item, ctx)
    assert tools == {"inventory.lookup", "inventory.list_parts"}
    optic = outputs["t-optic"]
    assert (optic.checked, optic.in_stock, optic.sku, optic.quantity) == (
        True, True, "QSFP-100G-SR4-S", 16,
    )  # fmt: skip
    assert optic.stores == ["eu1-rack-room", "eu1-central-store"]
    psu = outputs["t-psu"]
    assert psu.checked
    assert not psu.in_stock
    assert psu.reason == "NC55-PWR-3KW-AC is out of stock in every store"
    assert not outputs["t-none"].checked  # no part applies: no call was made
    assert scanner.texts > 0  # the responses went through the registry's scan
    assert agent.summarize(optic) == "optic QSFP-100G-SR4-S: 16 in stock"


async def test_custom_agent_degrades_when_the_user_server_is_down(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLE))
    broken = tmp_path / "tools.toml"
    broken.write_text(
        '[[tools]]\nname = "inventory"\ntransport = "stdio"\ncommand = "{python}"\n'
        f'args = ["{tmp_path / "missing.py"}"]\nretries = 0\nconnect_timeout_s = 20\n',
        encoding="utf-8",
    )
    [spec] = load_tool_specs(broken, bundled_file=None)
    agent = import_agent("parts_agent:PartsAgent").cls()
    async with ToolRegistry([spec], scanner=NoPersonalData()) as registry:
        ctx = AgentContext(
            site="eu1", worker="pytest", resources=AgentResources("eu1", tools=lambda: registry),
            task_id="t-down", step="parts", role="parts",
        )  # fmt: skip
        out = await agent.handle(alert_item("bfd.summary.down_count", "t-down"), ctx)
    assert not out.checked
    assert out.sku == "QSFP-100G-SR4-S"
    assert out.reason.startswith("inventory: ")
