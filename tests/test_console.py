"""The console's access rules over HTTP (Starlette's TestClient, the real app and a real
SQLite database; no NATS: the pages that need it say so): 401 without a login, 403
for a role that may not, masked PII for viewers, the audit log of raw views, CSRF,
bad input named, live fragments."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from sitemesh.bus import free_port
from sitemesh.config import DbSettings, Settings
from sitemesh.console import (
    ConsoleConfigError,
    create_app,
    hash_password,
    load_users,
    save_user,
    verify_password,
)
from sitemesh.schemas import Envelope, PolicyDecision, SupportTicket, TaskAccepted
from sitemesh.state import Store, read_audit, request_approval
from sitemesh.workflows import new_item
from tests.conftest import assert_eventually

T0 = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
BODY = "Hi, this is Alice Johnson, my phone +1 212 555 0199 stopped getting calls."
PASSWORDS = {"vera": "viewer-pass-1", "artur": "approver-pass-1", "ada": "admin-pass-1"}


def _users(path: Path) -> Path:
    for name, role in (("vera", "viewer"), ("artur", "approver"), ("ada", "admin")):
        save_user(path, name, role, hash_password(PASSWORDS[name], n=2**14))  # type: ignore[arg-type]
    return path


async def _seed(url: str) -> None:
    env = Envelope(task_id="cs-1", site="eu1", kind="support_ticket", tenant="OpsBank",
                   data_class="confidential", submitted_at=T0, accepted_at=T0)  # fmt: skip
    decision = PolicyDecision(task_id="cs-1", action="require_approval", rule_id="bank-approval",
                              policy_version="0123456789abcdef", data_class="confidential",
                              decided_at=T0,
                              reasons=["the bank's tickets wait for a person"])  # fmt: skip
    ticket = SupportTicket(tenant="OpsBank", body=BODY, task_id="cs-1")
    async with Store(url) as store:
        await store.record_event("EVENTS_eu1", 1, TaskAccepted(
            task_id="cs-1", site="eu1", kind="support_ticket", tenant="OpsBank", title="ticket",
            submitted_at=T0, accepted_at=T0 + timedelta(milliseconds=4)))  # fmt: skip
        for i in range(2, 30):
            await store.record_event("EVENTS_eu1", i, TaskAccepted(
                task_id=f"cs-other-{i}", site="us1" if i % 2 else "eu1", kind="support_ticket",
                submitted_at=T0 - timedelta(minutes=i)))  # fmt: skip
        await request_approval(store, new_item(env, ticket, decision), now=T0)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(
        site="eu1", state_dir=tmp_path, db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path}/s.db")
    )
    asyncio.run(_seed(settings.db_url))
    app = create_app(settings, users_file=_users(tmp_path / "users.toml"), secret_key="k" * 32)
    with TestClient(app) as client:
        yield client, settings


def login(client: TestClient, name: str) -> None:
    r = client.post("/login", data={"username": name, "password": PASSWORDS[name]},
                    follow_redirects=False)  # fmt: skip
    assert r.status_code == 303, r.text


def csrf(client: TestClient, page: str = "/approvals") -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', client.get(page).text)
    assert m
    return m.group(1)


def audit_log(settings: Settings) -> list[tuple[str, str, str]]:
    async def read() -> list[tuple[str, str, str]]:
        async with Store(settings.db_url) as store:
            return [(e.user, e.action, e.target) for e in await read_audit(store.engine)]

    return asyncio.run(read())


def test_password_hashes() -> None:
    h = hash_password("correct horse", n=2**14)
    assert h.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", h)
    assert not verify_password("wrong", h)
    assert not verify_password("x", "md5$abc")
    assert hash_password("correct horse", n=2**14) != h  # salted


def test_users_file_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConsoleConfigError, match="no console users file"):
        load_users(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[users.bob]\nrole = "root"\npassword = "scrypt$1$1$1$a$b"\n')
    with pytest.raises(ConsoleConfigError, match=r"users.bob.role: role must be one of viewer"):
        load_users(bad)
    bad.write_text('[users.bob]\nrole = "viewer"\npassword = "hunter2"\n')
    with pytest.raises(ConsoleConfigError, match=r"users.bob.password: expected an scrypt hash"):
        load_users(bad)


def test_every_page_needs_a_login(site: tuple[TestClient, Settings]) -> None:
    client, _ = site
    for path in ("/tasks", "/tasks/cs-1", "/tasks/cs-1/trace", "/approvals", "/dead-letters",
                 "/policy", "/workflows", "/health", "/cost", "/audit", "/events"):  # fmt: skip
        r = client.get(path, follow_redirects=False)
        assert r.status_code == 401, path
        assert 'name="password"' in r.text  # the login form
    r = client.get("/api/tasks")
    assert (r.status_code, r.json()) == (401, {"error": "login required"})
    assert (
        client.post("/approvals/x", data={"decision": "approve", "reason": "r"}).status_code == 401
    )
    assert client.get("/healthz").status_code == 200
    headers = client.get("/login").headers  # no page is framed, cached or scripted from elsewhere
    assert headers["content-security-policy"].startswith("default-src 'self'")
    assert headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store"


def test_wrong_password_is_refused_and_audited(site: tuple[TestClient, Settings]) -> None:
    client, settings = site
    r = client.post("/login", data={"username": "vera", "password": "nope"})
    assert r.status_code == 401
    assert "wrong user name or password" in r.text
    assert client.get("/tasks").status_code == 401
    assert ("vera", "login_failed", "") in audit_log(settings)


def test_viewer_sees_masked_text_and_cannot_decide(site: tuple[TestClient, Settings]) -> None:
    client, settings = site
    login(client, "vera")
    page = client.get("/approvals").text
    assert "Alice Johnson" not in page
    assert "555 0199" not in page
    assert "&lt;PERSON&gt;" in page
    assert "&lt;PHONE_NUMBER&gt;" in page
    assert "approving needs the approver role" in page
    task = client.get("/tasks/cs-1").text
    assert "Alice Johnson" not in task
    assert "PII masked" in task
    token = csrf(client)
    r = client.post("/approvals/cs-1", data={"decision": "approve", "reason": "ok", "csrf": token})
    assert r.status_code == 403
    assert "needs the approver role" in r.text
    assert client.post("/dead-letters/1/redrive", data={"csrf": token}).status_code == 403
    assert client.get("/dead-letters/1?raw=1").status_code in (403, 404)
    assert client.get("/audit").status_code == 403
    assert not [a for a in audit_log(settings) if a[1] == "view_raw"]


def test_approver_sees_raw_text_and_each_view_is_audited(site: tuple[TestClient, Settings]) -> None:
    client, settings = site
    login(client, "artur")
    assert BODY in client.get("/tasks/cs-1").text.replace("&#43;", "+")
    assert BODY in client.get("/approvals").text.replace("&#43;", "+")
    masked = client.get("/tasks/cs-1?masked=1").text
    assert "Alice Johnson" not in masked
    log = audit_log(settings)
    assert ("artur", "view_raw", "task:cs-1") in log
    assert ("artur", "view_raw", "approval:" + _approval_id(client)) in log
    assert log.count(("artur", "view_raw", "task:cs-1")) == 1  # the masked view is not raw
    assert client.get("/audit").status_code == 403  # the audit log is the admin's


def _approval_id(client: TestClient) -> str:
    m = re.search(r'data-approval="([^"]+)"', client.get("/approvals").text)
    assert m
    return m.group(1)


def test_decisions_need_a_reason_and_the_csrf_token(site: tuple[TestClient, Settings]) -> None:
    client, _settings = site
    login(client, "artur")
    r = client.post("/approvals/cs-1", data={"decision": "approve", "reason": "fine"})
    assert r.status_code == 403
    assert "CSRF" in r.text
    token = csrf(client)
    r = client.post("/approvals/cs-1", data={"decision": "approve", "reason": "  ", "csrf": token})
    assert r.status_code == 400
    assert "reason: a reason is required" in r.text
    r = client.post("/approvals/cs-1", data={"decision": "maybe", "reason": "x", "csrf": token})
    assert r.status_code == 400
    assert "decision: expected approve or reject" in r.text
    # no NATS: nothing can be published, so nothing is decided
    r = client.post("/approvals/cs-1", data={"decision": "approve", "reason": "ok", "csrf": token})
    assert r.status_code == 503
    assert "pending" in client.get("/tasks/cs-1").text


def test_admin_reads_the_audit_log(site: tuple[TestClient, Settings]) -> None:
    client, _ = site
    login(client, "artur")
    client.get("/tasks/cs-1")
    client.post("/logout", data={"csrf": csrf(client, "/tasks")})
    login(client, "ada")
    page = client.get("/audit").text
    assert "view_raw" in page
    assert "task:cs-1" in page
    assert "artur" in page


def test_task_list_filters_and_fragments(site: tuple[TestClient, Settings]) -> None:
    client, _ = site
    login(client, "vera")
    page = client.get("/tasks").text
    assert "cs-1" in page
    assert "cs-other-3" in page
    eu = client.get("/tasks?site=us1").text
    assert "cs-other-3" in eu
    assert 'data-task="cs-1"' not in eu
    assert 'data-task="cs-other-2"' not in eu
    r = client.get("/tasks?q=cs-1", follow_redirects=False)  # an exact id opens the task
    assert (r.status_code, r.headers["location"]) == (303, "/tasks/cs-1")
    r = client.get("/tasks?since=yesterday")
    assert r.status_code == 400
    assert "since: expected an ISO 8601 time" in r.text
    frag = client.get("/tasks", headers={"X-Sitemesh-Fragment": "1"}).text
    assert "<html" not in frag
    assert 'id="tasks"' in frag
    assert client.get("/api/tasks?site=eu1").json()["tasks"][0]["site"] == "eu1"
    assert client.get("/tasks/nope").status_code == 404
    # the pages that read NATS say it is away instead of failing
    for path in ("/dead-letters", "/policy", "/health", "/cost"):
        r = client.get(path)
        assert r.status_code == 200, path


def test_proxy_header_login(tmp_path: Path) -> None:
    path = tmp_path / "users.toml"
    path.write_text(
        '[console]\ntrusted_proxy_header = "X-Forwarded-User"\n'
        'trusted_proxies = ["testclient"]\n\n[users.pat]\nrole = "approver"\n'
    )
    settings = Settings(
        site="eu1", state_dir=tmp_path, db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path}/s.db")
    )
    asyncio.run(_seed(settings.db_url))
    with TestClient(create_app(settings, users_file=path, warm_analyzer=False)) as client:
        assert client.get("/tasks").status_code == 401
        r = client.get("/tasks", headers={"X-Forwarded-User": "pat"})
        assert r.status_code == 200
        assert "pat (approver)" in r.text
        assert client.get("/tasks", headers={"X-Forwarded-User": "mallory"}).status_code == 401


async def test_live_pages_get_a_change_event_when_the_site_records_something(
    tmp_path: Path,
) -> None:
    """``GET /events`` over a real server: quiet while nothing changes, then one
    ``change`` event after the recorder writes an event (what a live page re-fetches on)."""
    import httpx
    import uvicorn

    settings = Settings(site="eu1", state_dir=tmp_path,
                        db=DbSettings(url=f"sqlite+aiosqlite:///{tmp_path}/s.db"))  # fmt: skip
    await _seed(settings.db_url)
    app = create_app(settings, users_file=_users(tmp_path / "users.toml"), warm_analyzer=False)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            r = await http.post("/login", data={"username": "vera", "password": PASSWORDS["vera"]})
            assert r.status_code == 303
            async with http.stream("GET", "/events") as events:
                assert events.status_code == 200
                assert events.headers["content-type"].startswith("text/event-stream")
                got: list[str] = []

                async def read() -> None:
                    async for line in events.aiter_lines():
                        got.append(line)

                reader = asyncio.create_task(read())
                try:
                    await asyncio.sleep(2.5)  # nothing recorded: no change
                    assert "event: change" not in got
                    async with Store(settings.db_url) as store:
                        await store.record_event("EVENTS_eu1", 99, TaskAccepted(
                            task_id="cs-live", site="eu1", kind="support_ticket",
                            submitted_at=T0))  # fmt: skip
                    await assert_eventually(lambda: "event: change" in got, 10)
                    assert got.count("event: change") == 1
                finally:
                    reader.cancel()
    finally:
        server.should_exit = True
        await serving
