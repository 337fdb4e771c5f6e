"""The built-in agents and the CRM tool on the hybrid topology (a hub and two sites on
real nats-servers, every role its own process, the real ``crm`` MCP server over stdio).

* ``eu1``: its CRM (the site database) is seeded with known customers. Urgent tickets
  that name them are escalated; the CRM's answer (names, e-mail addresses, phone
  numbers, IBANs) raised their data class to ``restricted`` after the policy decision,
  so they are answered on the site, addressing the customer by name and citing the
  account's last four digits (re-identified through the site vault). A client on ``>``
  in the hub's account sees none of the CRM values; control tickets whose customer the
  CRM does not know cross as usual (the positive control).
* ``us1``: its tools file points ``crm`` at a server that hangs. Its tickets degrade
  with the stated reason (``crm unavailable: ...``, then ``breaker open``) and
  ``sitemesh tools health --json`` shows the breaker open.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from types import SimpleNamespace
from typing import Any, Final

import pytest
from rich.console import Console

from sitemesh.bus import Subjects
from sitemesh.cli._hybrid import hybrid_stack, side_env
from sitemesh.config import BusSettings, Settings
from sitemesh.policy import PolicyStore
from sitemesh.runtime import connect
from sitemesh.schemas import EVENT_DECODER, FinalAnswer, TaskFailed, decode
from sitemesh.tools.servers import seed_crm
from tests._mcp.helpers import ROOT
from tests.conftest import TEST_STREAM_BYTES, assert_eventually
from tests.test_boundary_e2e import ALL_TO_CLOUD, HubWatch, leaked_values

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

CUSTOMERS: Final = [f"crmcust{i}" for i in range(6)]
"""Handles seeded in eu1's CRM."""
UNKNOWN: Final = [f"nocrm{i}" for i in range(4)]
"""Handles the CRM does not know: their tickets are not raised and cross (control)."""
BODY: Final = ("My card payment was declined twice today and my account balance looks "
               "wrong. Please check it urgently.")  # fmt: skip
HANGING_CRM: Final = f"""
[[tools]]
name = "crm"
transport = "stdio"
command = "{{python}}"
args = ["-m", "tests._mcp.crm_fake"]
cwd = "{ROOT}"
env = {{ CRM_FAKE_MODE = "hang" }}
timeout_s = 0.5
retries = 0
breaker_failures = 2
breaker_reset_s = 600
"""


CRM_ON = """
[[tools]]
name = "crm"
transport = "stdio"
command = "{python}"
args = ["-m", "sitemesh.tools.servers.crm"]
sitemesh_env = true
timeout_s = 30
retries = 2
"""


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("hybrid-tools"),
        bus=BusSettings(ack_wait_s=15, max_bytes=TEST_STREAM_BYTES, graceful_timeout_s=10),
    )
    # before the workers start: a retriever builds its registry (and starts the crm
    # server) in its setup, from <state_dir>/<site>/tools.toml
    us1 = settings.state_dir.resolve() / "us1"
    us1.mkdir(parents=True, exist_ok=True)
    (us1 / "tools.toml").write_text(HANGING_CRM, "utf-8")
    eu1 = settings.state_dir.resolve() / "eu1"  # the bundled crm, switched on
    eu1.mkdir(parents=True, exist_ok=True)
    (eu1 / "tools.toml").write_text(CRM_ON, "utf-8")
    async with hybrid_stack(settings, ["eu1", "us1"], Console(file=sys.stderr)) as s:
        assert s.sites["us1"].state_dir == us1
        seeded = await seed_crm(
            s.sites["eu1"].db_url, n=0, handles=dict.fromkeys(CUSTOMERS, "default"), seed=3
        )
        yield SimpleNamespace(topo=s.topo, sites=s.sites, seeded=seeded)


async def _run(stack: Any, site: str, tickets: dict[str, str]) -> dict[str, Any]:
    """Publish urgent tickets (task id -> customer handle) at ``site``; their ends."""
    nc = await connect(stack.sites[site], "operator", name=f"test-{site}")
    js = nc.jetstream()
    await PolicyStore(js).publish(ALL_TO_CLOUD)
    ended: dict[str, FinalAnswer | TaskFailed] = {}

    async def on_event(msg: Any) -> None:
        ev = decode(msg.data, EVENT_DECODER)
        if isinstance(ev, FinalAnswer | TaskFailed) and ev.task_id in tickets:
            ended[ev.task_id] = ev

    await js.subscribe(f"sm.v1.event.{site}.>", cb=on_event)
    await asyncio.sleep(1.0)  # routers follow the policy bucket
    for tid, handle in tickets.items():
        body = {"type": "support_ticket.v1", "task_id": tid, "customer": handle,
                "channel": "email", "urgency": 0, "body": BODY}  # fmt: skip
        await js.publish(Subjects(site).task("support_ticket"), json.dumps(body).encode())
    await assert_eventually(lambda: tickets.keys() <= ended.keys(), timeout_s=300, interval_s=0.5)
    await nc.drain()
    return ended


async def test_crm_values_stay_on_site_and_the_answer_uses_them(stack: Any) -> None:
    watch = await HubWatch.start(stack.topo)
    run = uuid.uuid4().hex[:6]
    crm = {f"crm-{run}-{h}": h for h in CUSTOMERS}
    control = {f"ctl-{run}-{h}": h for h in UNKNOWN}
    ended = await _run(stack, "eu1", crm | control)
    # the control tickets' cloud answers arrive after their incidents crossed
    everything = await watch.everything()
    incidents = watch.incidents()
    await watch.close()

    by_handle = {c.customer_id: c for c in stack.seeded}
    values = []
    for c in stack.seeded:
        values += [f"{c.given_name} {c.family_name}", c.email, c.phone_e164, c.phone_national]
        values += [v for a in c.accounts for v in (a.iban, a.account_number) if v]
    failed = {t: e.error_class for t, e in ended.items() if isinstance(e, TaskFailed)}
    assert not failed, failed
    routes = {t: e.route for t, e in ended.items()}
    print(f"routes: crm {[routes[t] for t in crm]}, control {[routes[t] for t in control]}")
    assert [routes[t] for t in control] == ["cloud"] * len(control), "positive control"
    assert len(incidents) >= len(control), "positive control: incidents reach the hub"
    why = {t: getattr(ended[t], "reasons", None) for t in crm}
    assert [routes[t] for t in crm] == ["edge"] * len(crm), why
    greeted = 0
    for tid, handle in crm.items():
        answer = ended[tid]
        c = by_handle[handle]
        assert answer.outcome == "escalate"
        assert answer.data_class == "restricted", answer.data_class
        assert any(r.startswith("kept on site: a tool response raised the data class to "
                                "restricted") for r in answer.reasons), answer.reasons  # fmt: skip
        active = [a for a in c.accounts if a.kind == "checking" and a.status == "active"]
        account = min(active or c.accounts, key=lambda a: a.opened_at)
        assert f"account ending in {account.account_number[-4:]}" in answer.customer_message
        assert "<PERSON_" not in answer.customer_message
        if f"Hello {c.given_name} {c.family_name}," in answer.customer_message:
            greeted += 1
    leaks = leaked_values(values, everything)
    print(f"CRM values on the hub: {len(leaks)} of {len(set(values))}; hub saw {watch.count} "
          f"messages, {len(incidents)} incidents; answers addressed by name: "
          f"{greeted} of {len(crm)}")  # fmt: skip
    assert leaks == [], f"CRM values on the hub: {leaks}"
    assert greeted == len(crm), "every reply addresses the customer by the CRM's name"


async def test_a_hanging_crm_degrades_tasks_and_health_shows_the_breaker_open(
    stack: Any,
) -> None:
    run = uuid.uuid4().hex[:6]
    first = {f"down-{run}-{i}": f"someone{i}" for i in range(2)}
    ended = await _run(stack, "us1", first)  # two timeouts open the breaker (in flight
    then = {f"down-{run}-{i}": f"someone{i}" for i in range(2, 4)}  # together, both pass it)
    ended |= await _run(stack, "us1", then)
    tickets = first | then
    reasons = []
    for answer in ended.values():
        assert isinstance(answer, FinalAnswer), answer
        assert answer.outcome == "escalate"
        reasons += [r for r in answer.reasons if r.startswith("crm unavailable: ")]
    print(f"degraded: {sorted(reasons)}")
    assert len(reasons) == len(tickets), reasons
    later = [r for t, a in ended.items() if t in then for r in a.reasons
             if r.startswith("crm unavailable: ")]  # fmt: skip
    assert later == ["crm unavailable: breaker open"] * 2, later
    assert "crm unavailable: timed out after 0.5 s" in reasons

    env = {**side_env(stack.sites["us1"]), "COLUMNS": "200"}

    async def breaker_open() -> bool:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sitemesh", "tools", "health", "--json", "--site", "us1",
            env=env, cwd=str(ROOT), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            return False
        doc = json.loads(out)
        tools = [t for p in doc["processes"] if p["role"] == "retriever" for t in p["tools"]]
        return any(t["tool"] == "crm.lookup_customer" and t["breaker"] == "open" for t in tools)

    await assert_eventually(breaker_open, timeout_s=60, interval_s=2.0,
                            msg="sitemesh tools health shows the breaker open")  # fmt: skip
