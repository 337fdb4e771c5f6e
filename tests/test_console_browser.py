"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright
with ``executable_path``; never a downloaded browser) against a real site: nats-server,
the recorder, the router and every agent as worker processes, and ``sitemesh console``
as its own process.

An approver logs in, watches a parked task appear live, opens its page and its trace,
approves it with a reason and sees the task turn answered on another open tab without
a reload; redrives a dead letter; reads the policy diff, health and cost. A viewer
sees masked text and no approve button. Screenshots (PNG) of each page go to
``$SITEMESH_SCREENSHOTS`` (default: the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from sitemesh.bus import NatsServer, Subjects, connect, free_port, provision
from sitemesh.cli._run import site_roles
from sitemesh.client import Client
from sitemesh.config import Settings
from sitemesh.console import hash_password, save_user
from sitemesh.edge_node import Supervisor, child_env, process_environ
from sitemesh.policy import PolicyStore
from sitemesh.runtime import wait_ready
from sitemesh.schemas import SupportTicket
from sitemesh.state import Store, migrate, read_audit
from tests._sites import process_site_settings
from tests.conftest import StateDatabases, assert_eventually

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(900)]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
"""Debian's chromium as root on a machine with no network beyond the package mirrors:
without the background-networking flags it keeps trying to reach Google's hosts."""

POLICY = """\
version = "console-browser.{n}"
public_kinds = []

[[rule]]
id = "bank-needs-approval"
description = "the bank's tickets wait for a person"
action = "require_approval"
match = {{ kinds = ["support_ticket"], tenants = ["OpsBank"] }}

[[rule]]
id = "everything-else-on-site"
description = "{desc}"
action = "pin_edge"
match = {{ data_classes = ["public", "internal", "confidential", "restricted"] }}
"""
PASSWORDS = {"artur": "approver-pass-1", "vera": "viewer-pass-1"}
BODY = "Hello, Maria Garcia here: online banking login times out for all branch staff."




SPEND = (  # (tenant, agent, provider/model, days ago, tokens in, tokens out, USD)
    ("OpsBank", "synthesiser", "openai/gpt-4.1", 0, 1800, 420, 0.0070),
    ("OpsBank", "planner", "vllm/qwen2.5-7b-instruct", 0, 950, 180, 0.0004),
    ("acme", "synthesiser", "anthropic/claude-sonnet-4-6", 1, 2100, 510, 0.0140),
    ("acme", "triage", "vllm/qwen2.5-7b-instruct", 2, 400, 20, 0.0001),
    ("OpsBank", "synthesiser", "openai/gpt-4.1", 3, 1600, 390, 0.0063),
)
"""Model calls of earlier days in the site's ledger (as its workers record them), so
the cost page has spend to chart; the live site adds its own calls on top."""


async def _seed_spend(settings: Settings, store: Store) -> None:
    from datetime import UTC, datetime, timedelta

    from sitemesh.models import ModelCall, ledger_for_settings

    await store.open()
    recorder, _ = ledger_for_settings(settings, store=store)  # what the workers use
    now = datetime.now(UTC)
    for i, (tenant, agent, ref, days, tin, tout, usd) in enumerate(SPEND):
        provider, model = ref.split("/", 1)
        await recorder.record(ModelCall(
            call_id=f"seed-{i}", call_key=f"seed-{i}", prompt_hash="0" * 64,
            provider=provider, model=model, outcome="ok", tokens_in=tin, tokens_out=tout,
            cost_usd=usd, tenant=tenant, agent=agent, task_id=f"seed-task-{i}",
            started_at=now - timedelta(days=days, minutes=5),
        ))  # fmt: skip


@dataclass
class Site:
    settings: Settings
    client: Client
    store: Store
    url: str
    shots: Path


@pytest.fixture(scope="module")
async def site(
    nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory, state_db: StateDatabases
) -> AsyncIterator[Site]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") or os.environ.get("SITEMESH_REQUIRE_BROWSER"):
            pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    tmp = tmp_path_factory.mktemp("console")
    shots = Path(os.environ.get("SITEMESH_SCREENSHOTS") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    async with state_db.fresh(tmp, "console") as db_url:
        name = "c" + uuid.uuid4().hex[:7]
        settings = process_site_settings(name, tmp, nats_server.client_url, db_url)
        nc = await connect(nats_server.client_url, name="console-test", timeout_s=5)
        js = nc.jetstream()
        await provision(js, Subjects(name), settings.bus)
        await migrate(settings.db_url)
        policies = PolicyStore(js)
        await policies.publish(POLICY.format(n=1, desc="the rest is answered on site"))
        await policies.publish(
            POLICY.format(n=2, desc="everything else stays on the site")
        )  # a second version to diff
        users = tmp / "users.toml"
        for user, role in (("artur", "approver"), ("vera", "viewer")):
            save_user(users, user, role, hash_password(PASSWORDS[user], n=2**14))  # type: ignore[arg-type]
        env = child_env(process_environ(), settings.to_env())
        # the planner's site model is down (nothing listens on the port): it falls back
        # to the runbook planner, and the health page shows the backend's open breaker
        env |= {
            "SITEMESH_MODELS_VLLM_BASE_URL": f"http://127.0.0.1:{free_port()}/v1",
            "SITEMESH_MODELS_SITE_CHAIN": '["vllm/down"]',
            "SITEMESH_MODELS_MAX_ATTEMPTS": "1",
            "SITEMESH_MODELS_BREAKER_FAILURES": "1",
            "SITEMESH_TOOLS_HEALTH_INTERVAL_S": "1",
        }
        sup = Supervisor(name, site_roles(1), env=env, log_dir=tmp / "logs", graceful_timeout_s=15)
        port = free_port()
        log = (tmp / "console.log").open("wb")
        console = subprocess.Popen(
            [sys.executable, "-m", "sitemesh", "console", "--port", str(port),
             "--users", str(users)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        store = Store(settings.db_url)
        await _seed_spend(settings, store)
        await sup.start()
        try:
            await wait_ready([(js, sup)], timeout_s=300)
            url = f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as http:

                async def up() -> bool:
                    try:
                        return (await http.get(url + "/healthz")).status_code == 200
                    except httpx.HTTPError:
                        return False

                await assert_eventually(up, timeout_s=120)
            yield Site(settings, Client(js, name), store, url, shots)
        finally:
            console.terminate()
            console.wait(30)
            log.close()
            await sup.stop()
            await store.close()
            await nc.drain()


@pytest.fixture(scope="module")
async def browser(site: Site) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            await b.close()


async def _login(browser: object, site: Site, user: str):  # type: ignore[no-untyped-def]
    ctx = await browser.new_context(viewport={"width": 1280, "height": 900})  # type: ignore[attr-defined]
    page = await ctx.new_page()
    resp = await page.goto(site.url + "/tasks")
    assert resp.status == 401  # the login form, answered 401
    await page.fill("#username", user)
    await page.fill("#password", PASSWORDS[user])
    await page.click("#login")
    await page.wait_for_url("**/tasks")
    assert user in await page.inner_text("#who")
    return ctx, page


async def test_approver_session(site: Site, browser: object) -> None:
    ctx, page = await _login(browser, site, "artur")
    try:
        await page.screenshot(path=site.shots / "01-tasks-empty.png", full_page=True)
        tid = "bank-" + uuid.uuid4().hex[:6]
        await site.client.submit(SupportTicket(tenant="OpsBank", channel="email", body=BODY),
                                 task_id=tid)  # fmt: skip
        # the row appears on the open page without a reload (SSE -> fragment swap)
        row = page.locator(f'tr[data-task="{tid}"]')
        await row.wait_for(timeout=60_000)
        assert "accepted" in await row.inner_text()
        await page.screenshot(path=site.shots / "02-tasks-live.png", full_page=True)

        # a second tab on the task page stays open while the task is approved
        watcher = await ctx.new_page()
        await watcher.goto(f"{site.url}/tasks/{tid}")
        assert await watcher.inner_text("#task-status") == "accepted"
        assert BODY in await watcher.inner_text("#stayed")  # an approver sees the raw text
        await watcher.screenshot(path=site.shots / "03-task-parked.png", full_page=True)
        await watcher.click("#open-trace")
        await watcher.wait_for_url(f"**/tasks/{tid}/trace")
        assert await watcher.locator("#waterfall svg").count() == 1
        await watcher.screenshot(path=site.shots / "04-trace.png", full_page=True)
        await watcher.go_back()
        await watcher.wait_for_selector("#task-status")

        await page.goto(site.url + "/approvals")
        card = page.locator(f'article.approval:has(a[href="/tasks/{tid}"])')
        await card.wait_for()
        await page.screenshot(path=site.shots / "05-approvals.png", full_page=True)
        await card.locator("button.approve").click()  # no reason: the browser refuses
        assert "/approvals" in page.url
        await card.locator("input[name=reason]").fill("customer called in, verified by phone")
        await card.locator("button.approve").click()
        await page.wait_for_url(f"**/tasks/{tid}")

        # the other tab turns answered live
        await watcher.locator("#task-status", has_text="answered").wait_for(timeout=120_000)
        assert await watcher.inner_text("#task-outcome") != "-"
        text = await watcher.inner_text("#approval")
        assert "artur" in text
        assert "verified by phone" in text
        calls = await watcher.inner_text("#model-calls")  # the planner asked the down model
        assert "vllm/down" in calls
        assert "vllm/vllm" not in calls
        assert "unavailable" in calls
        await watcher.screenshot(path=site.shots / "06-task-answered-live.png", full_page=True)
        await watcher.goto(f"{site.url}/tasks/{tid}/trace")
        await watcher.screenshot(path=site.shots / "06b-trace-answered.png", full_page=True)
        await watcher.close()

        # a dead letter: a malformed task, redriven from the browser
        bad = "bad-" + uuid.uuid4().hex[:6]
        await site.client.publish_raw("support_ticket", b'{"type": "support_ticket.v1", "body": 7}',
                                      task_id=bad)  # fmt: skip
        await page.goto(site.url + "/dead-letters")
        dl = page.locator("#dead-letters tr", has_text=bad)
        await dl.wait_for(timeout=60_000)
        await page.screenshot(path=site.shots / "07-dead-letters.png", full_page=True)
        await dl.locator("a").first.click()
        await page.wait_for_selector("#original")
        assert "$.body" in await page.inner_text("#reason") or "body" in await page.inner_text(
            "#reason"
        )
        await page.screenshot(path=site.shots / "08-dead-letter.png", full_page=True)
        await page.click("#redrive")
        await page.wait_for_url("**/dead-letters")
        assert "redriven" in await page.inner_text("#flash")
        await page.screenshot(path=site.shots / "09-redriven.png", full_page=True)

        # policy history and a diff between the two versions
        await page.goto(site.url + "/policy")
        revs = await page.locator("#history tbody tr").count()
        assert revs >= 2
        await page.select_option("select[name=a]", index=1)
        await page.select_option("select[name=b]", index=0)
        await page.click("#diff")
        diff = await page.inner_text("#diff-out")
        assert '+version = "console-browser.2"' in diff
        assert '-version = "console-browser.1"' in diff
        await page.screenshot(path=site.shots / "10-policy-diff.png", full_page=True)
        for path, shot in (("/workflows", "11-workflows"), ("/health", "12-health"),
                           ("/cost", "13-cost")):  # fmt: skip
            resp = await page.goto(site.url + path)
            assert resp.status == 200
            await page.screenshot(path=site.shots / f"{shot}.png", full_page=True)
        await page.goto(site.url + "/cost")
        cost = await page.inner_text("main")
        assert "acme" in cost  # the seeded spend, by tenant, agent, model and day
        assert "anthropic/claude-sonnet-4-6" in cost
        await page.goto(site.url + "/health")
        roles = await page.inner_text("#roles")
        assert "router" in roles
        assert "planner" in roles

        async def breaker_shown() -> str | None:
            await page.goto(site.url + "/health")
            models = await page.inner_text("#models")
            return models if "planner" in models and "vllm" in models else None

        models = await assert_eventually(breaker_shown, timeout_s=30, interval_s=1)
        assert "open" in models  # its one failed call opened it (breaker_failures=1)
        await page.screenshot(path=site.shots / "12-health.png", full_page=True)
    finally:
        await ctx.close()
    actions = {(e.user, e.action) for e in await read_audit(site.store.engine)}
    assert {("artur", "login"), ("artur", "view_raw"), ("artur", "approve"),
            ("artur", "redrive")} <= actions  # fmt: skip


async def test_viewer_session(site: Site, browser: object) -> None:
    tid = "bank-v-" + uuid.uuid4().hex[:6]
    await site.client.submit(SupportTicket(tenant="OpsBank", channel="email", body=BODY),
                             task_id=tid)  # fmt: skip
    ctx, page = await _login(browser, site, "vera")
    try:
        await page.goto(site.url + "/approvals")
        card = page.locator(f'article.approval:has(a[href="/tasks/{tid}"])')
        await card.wait_for(timeout=60_000)
        ticket = await card.locator("pre.ticket").inner_text()
        assert "Maria Garcia" not in ticket
        assert "<PERSON>" in ticket
        assert await card.locator("button.approve").count() == 0
        await page.screenshot(path=site.shots / "14-viewer-approvals.png", full_page=True)
        resp = await page.goto(site.url + "/audit")
        assert resp.status == 403
    finally:
        await ctx.close()
