"""A site planner that echoes the ticket into its plan, and nothing of it on the hub.

Text a site model writes from a ticket is ticket text. Here the planner of a real site
(a hub and the site on real nats-servers, every worker a process) is an agent that
copies the ticket into every step's description, its rationale and its runbook field,
the worst a site model can do. 30 adversarial tickets (``tests/data/adversarial_pii.jsonl``:
obfuscated e-mails, spoken and oddly separated phone numbers, dotted card numbers,
spaced IBANs, lower-case names, addresses, handles without ``@``, dates of birth), each
urgent, all escalated to the cloud under an all-to-cloud policy; a client on ``>`` in
the hub's account records every message the whole time, and the hub's streams are read
at the end. None of the values, nor their digit strings, may be in any of it.

The echo planner is a user's agent (:class:`EchoPlanner`, role ``echo_planner``, found
by import path like any other) that the site's workflows override puts at the ``plan``
step; its backend is a :class:`sitemesh.agents.PlanningBackend`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from rich.console import Console

from sitemesh.agents import TICKET_MESSAGE, PlannerAgent
from sitemesh.bus import Subjects, provision
from sitemesh.cli._hybrid import hybrid_stack, side_env
from sitemesh.config import BusSettings, Settings
from sitemesh.edge_node import Supervisor
from sitemesh.policy import PolicyStore
from sitemesh.runtime import connect, wait_ready
from sitemesh.schemas import (
    EVENT_DECODER,
    FinalAnswer,
    Plan,
    PlanStep,
    RetrievalResult,
    SupportTicket,
    TaskFailed,
    WorkItem,
    decode,
)
from sitemesh.workflows import WorkflowStore, bundled_text
from tests.conftest import TEST_STREAM_BYTES, assert_eventually
from tests.test_boundary_e2e import ALL_TO_CLOUD, HubWatch, leaked_values, publish_site_kb

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[1]
ADVERSARIAL = Path(__file__).parent / "data" / "adversarial_pii.jsonl"
AGENT = "tests.test_boundary_echo:EchoPlanner"
SITE = "eu1"
TENANT = "bank-eu"
HELP_KB = "echo-help"
"""A site knowledge base of one plain article, so every ticket retrieves a passage
its echoed steps can be grounded in (the validator wants a known grounding)."""
HELP_ARTICLE = {
    "id": "help/contact#overview", "doc_id": "help/contact", "doc_kind": "article",
    "title": "Contacting support", "section": "Overview",
    "text": "card refund account address phone call email mail router wifi transfer app "
            "verification identity passport birth courier parcel iban salary payment "
            "banking locked frozen blocked stolen vpn documents social charge declined "
            "atm top-up daughter moved flat twitter discord urgent",
}  # fmt: skip


class EchoBackend:
    """A :class:`~sitemesh.agents.PlanningBackend` that copies the ticket into the plan:
    every step's description, the rationale and the ``runbook`` field; grounded in the
    retrieved passages, so the plan validates and the task reaches the forwarder."""

    async def plan(self, item: WorkItem) -> Plan:
        task = item.task
        text = "\n".join(p for p in (getattr(task, "title", None), getattr(task, "body", ""))
                         if p) if isinstance(task, SupportTicket) else str(task)  # fmt: skip
        retrieval = item.output(RetrievalResult)
        refs = [p.passage_id for p in retrieval.passages[:2]] if retrieval else []
        steps = [
            PlanStep(n=1, action="contact_customer", description=f"Write back: {text}"[:280],
                     grounding=refs[:1]),
            PlanStep(n=2, action="gather_details", description=f"The customer said {text}",
                     grounding=refs[-1:]),
            PlanStep(n=3, action="escalate", description=text, grounding=refs[:1]),
        ]  # fmt: skip
        return Plan(
            task_id=item.envelope.task_id,
            steps=steps,
            source="model",
            runbook=text[:200],
            customer_message=TICKET_MESSAGE,
            rationale=f"echo of the ticket: {text}",
        )


class EchoPlanner(PlannerAgent):
    """Role ``echo_planner``: the built-in planner's agent with :class:`EchoBackend`."""

    role: ClassVar[str] = "echo_planner"
    description: ClassVar[str] = "a planner that echoes the ticket (test)"

    def __init__(self) -> None:
        super().__init__(EchoBackend())


def _workflows() -> str:
    """The bundled workflows with the support workflow's ``plan`` step on ``echo_planner``."""
    text = bundled_text()
    plan_step = 'name = "plan"\n  role = "planner"'
    assert plan_step in text, "the bundled workflows changed shape"
    text = text.replace(plan_step, 'name = "plan"\n  role = "echo_planner"', 1)
    lines = text.splitlines()
    out = [f'version = "echo-test-{uuid.uuid4().hex[:8]}"' if ln.startswith("version =") else ln
           for ln in lines]  # fmt: skip
    return "\n".join(out) + "\n"


def _rows() -> list[dict[str, Any]]:
    return [json.loads(line) for line in ADVERSARIAL.read_text("utf-8").splitlines() if line]


def test_the_adversarial_set_is_well_formed() -> None:
    rows = _rows()
    assert len(rows) == 30
    assert len({r["id"] for r in rows}) == 30
    for r in rows:
        assert r["values"], r["id"]
        for v in r["values"]:
            assert v.lower() in r["text"].lower(), (r["id"], v)


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = Settings(
        state_dir=tmp_path_factory.mktemp("echo"),
        bus=BusSettings(ack_wait_s=10, max_bytes=TEST_STREAM_BYTES, graceful_timeout_s=10),
    )
    # the echo planner runs beside the stack: it gets an identity of its own
    async with hybrid_stack(settings, [SITE], Console(file=sys.stderr),
                            roles=["echo_planner"]) as s:  # fmt: skip
        yield s


async def test_a_planner_echoing_the_ticket_puts_nothing_of_it_on_the_hub(stack: Any) -> None:
    rows = _rows()
    site_settings = stack.sites[SITE]
    watch = await HubWatch.start(stack.topo)
    nc = await connect(site_settings, "operator", name="test-echo")
    js = nc.jetstream()
    subjects = Subjects(SITE)
    await PolicyStore(js).publish(ALL_TO_CLOUD)
    await WorkflowStore(js).publish(_workflows(), site=SITE)
    # its consumer, as the operator (a worker with an identity provisions nothing)
    await provision(js, subjects, site_settings.bus, roles=("router", "echo_planner"))
    env = side_env(site_settings) | {"PYTHONPATH": str(ROOT)}
    echo = Supervisor(SITE, ["echo_planner"], env=env, agents=[AGENT],
                      log_dir=site_settings.state_dir / "logs", graceful_timeout_s=10)  # fmt: skip
    ended: dict[str, FinalAnswer | TaskFailed] = {}

    async def on_event(msg: Any) -> None:
        ev = decode(msg.data, EVENT_DECODER)
        if isinstance(ev, FinalAnswer | TaskFailed):
            ended[ev.task_id] = ev

    await js.subscribe(subjects.all_events, cb=on_event)
    await echo.start()
    try:
        await wait_ready([(js, echo)], timeout_s=180)
        await _echo_in_force(js, subjects, ended)
        ids = await _send(js, subjects, rows)
        await assert_eventually(lambda: set(ids) <= ended.keys(), timeout_s=300, interval_s=0.5,
                                msg="not every adversarial ticket ended")  # fmt: skip
        hub_text = await watch.everything()
    finally:
        await echo.stop()
        await WorkflowStore(js).remove_override(SITE)
        await watch.close()
    outcomes = {t: (a.route if isinstance(a, FinalAnswer) else a.error_class)
                for t, a in ended.items() if t in ids}  # fmt: skip
    print(f"outcomes: {sorted(outcomes.values())}")
    assert set(outcomes.values()) == {"cloud"}, outcomes  # all escalated, all answered
    # positive controls: the planner did echo, and the incidents did reach the hub
    echoed = 0
    for tid, row in ids.items():
        answer = ended[tid]
        assert isinstance(answer, FinalAnswer)
        assert answer.plan is not None
        assert answer.plan.source == "model", "the echo planner did not plan"
        plan_text = msgspec.json.encode(answer.plan).decode("utf-8")
        echoed += all(json.dumps(v, ensure_ascii=False)[1:-1] in plan_text
                      for v in row["values"])  # fmt: skip
    assert echoed == len(rows), f"only {echoed} plans carry their ticket's values"
    assert hub_text.count("cloud_incident.v2") >= len(rows), "positive control: incidents"
    assert "cloud_answer.v1" in hub_text, "positive control: answers"
    values = [v for row in rows for v in row["values"]]
    leaks = leaked_values(values, hub_text)
    print(f"{len(rows)} texts, {len(values)} values, {len(leaks)} on the hub "
          f"({watch.count} messages seen, {len(hub_text)} characters)")  # fmt: skip
    assert leaks == [], f"ticket values on the hub: {leaks}"
    await nc.drain()


async def _echo_in_force(js: Any, subjects: Subjects, ended: dict[str, Any]) -> None:
    """Publish the help article and wait until a probe ticket is planned by the echo
    planner, grounded in it, and answered by the cloud: the policy, the workflows
    override, the echo worker and the article are live."""
    probes: list[str] = []

    async def echoed_and_answered() -> bool:
        for tid in probes:
            answer = ended.get(tid)
            if (
                isinstance(answer, FinalAnswer)
                and answer.route == "cloud"
                and answer.plan is not None
                and answer.plan.source == "model"
                and any(s.grounding for s in answer.plan.steps)
            ):
                return True  # fmt: skip
        # put again each time: see tests/test_boundary_e2e.py::_case_kb_in_force
        await publish_site_kb(js, SITE, HELP_KB, [HELP_ARTICLE], fmt="markdown")
        tid = f"probe-{uuid.uuid4().hex[:8]}"
        probes.append(tid)
        body = {"type": "support_ticket.v1", "task_id": tid, "tenant": TENANT, "urgency": 0,
                "body": "my card payment was declined at the atm"}  # fmt: skip
        await js.publish(subjects.task("support_ticket"), json.dumps(body).encode())
        await asyncio.sleep(2.0)
        return False

    await assert_eventually(echoed_and_answered, timeout_s=180, interval_s=1.0,
                            msg="the echo planner's workflow is not in force")  # fmt: skip


async def _send(js: Any, subjects: Subjects, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Publish the tickets (urgent: every one is escalated); ``{task id: row}``."""
    out: dict[str, Any] = {}
    run = uuid.uuid4().hex[:6]
    for i, row in enumerate(rows):
        tid = f"echo-{run}-{i}"
        out[tid] = row
        body = {"type": "support_ticket.v1", "task_id": tid, "tenant": TENANT, "urgency": 0,
                "channel": "email", "body": row["text"]}  # fmt: skip
        await js.publish(subjects.task("support_ticket"), json.dumps(body).encode())
    return out
