"""The planner: grounded steps with allowed actions from real runbooks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from sitemesh.agents._actions import ACTION_DESCRIPTIONS, ALLOWED_ACTIONS, classify_action
from sitemesh.agents._base import AgentContext
from sitemesh.agents._kb import KnowledgeBase, default_kb
from sitemesh.agents._planner import (
    FALLBACK_MESSAGE,
    TICKET_MESSAGE,
    PlannerAgent,
    PlanningBackend,
    RunbookPlanner,
    instructions,
)
from sitemesh.agents._retriever import RetrieverAgent
from sitemesh.schemas import (
    Diagnosis,
    Envelope,
    Finding,
    Plan,
    PlanStep,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    Task,
    TelemetryAlert,
    WorkItem,
)
from tests._items import with_outputs, work_item

DATA = Path(__file__).parent / "data"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")


def make_item(task: Task, diagnosis: Diagnosis | None = None) -> WorkItem:
    env = Envelope(
        task_id="t-1", site="lab", kind="support_ticket", submitted_at=T0, accepted_at=T0
    )
    decision = PolicyDecision(
        task_id="t-1", action="pin_edge", rule_id="r1", policy_version="0", data_class="internal"
    )
    return work_item(env, task, decision, diagnosis)


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return default_kb()


async def retrieved(kb: KnowledgeBase, item: WorkItem) -> WorkItem:
    result = await RetrieverAgent(kb).handle(item, CTX)
    return with_outputs(item, result)


def assert_grounded(item: WorkItem, plan: Plan) -> None:
    retrieval, diagnosis = item.output(RetrievalResult), item.output(Diagnosis)
    assert retrieval is not None
    known = {p.passage_id for p in retrieval.passages}
    if diagnosis:
        known |= {f"diagnosis#{n}" for n in range(1, len(diagnosis.findings) + 1)}
    assert [s.n for s in plan.steps] == list(range(1, len(plan.steps) + 1))
    for step in plan.steps:
        assert step.action in ALLOWED_ACTIONS
        assert step.grounding
        assert set(step.grounding) <= known
        assert 0 < len(step.description) <= 280


async def test_plan_follows_the_etcd_runbook(kb: KnowledgeBase) -> None:
    ticket = SupportTicket(
        title="etcd members down", body="Two etcd members are down since the upgrade."
    )
    item = await retrieved(kb, make_item(ticket))
    plan = await PlannerAgent(kb=kb).handle(item, CTX)
    assert plan.source == "runbook"
    assert plan.runbook is not None
    assert plan.runbook.endswith("/etcdMembersDown")
    assert 3 <= len(plan.steps) <= 8
    assert_grounded(item, plan)
    assert all(s.grounding[0].startswith(plan.runbook + "#") for s in plan.steps)
    sections = {s.grounding[0].split("#")[1] for s in plan.steps}
    assert {"diagnosis", "mitigation"} <= sections
    actions = {s.action for s in plan.steps}
    assert "check_status" in actions
    assert plan.customer_message == TICKET_MESSAGE
    assert plan.task_id == "t-1"


async def test_plan_is_deterministic(kb: KnowledgeBase) -> None:
    ticket = SupportTicket(title="Pod crash looping", body="my pod keeps restarting")
    item = await retrieved(kb, make_item(ticket))
    assert await PlannerAgent(kb=kb).handle(item, CTX) == await PlannerAgent(kb=kb).handle(
        item, CTX
    )


async def test_alert_plan_starts_with_grounded_findings(kb: KnowledgeBase) -> None:
    alert = TelemetryAlert(
        device="leaf7",
        interface="HundredGigE0/0/0/10",
        window_start=T0,
        window_end=T0 + timedelta(minutes=10),
        metric="bfd.session_state",
        summary="BFD session down on leaf7 HundredGigE0/0/0/10",
        severity="major",
    )
    diagnosis = Diagnosis(
        task_id="t-1",
        findings=[
            Finding(
                kind="bfd_session_down",
                device="leaf7",
                interface="HundredGigE0/0/0/10",
                evidence="bfd state up->down at 10:03:10",
                severity="major",
            ),
            Finding(
                kind="interface_down",
                device="leaf7",
                interface="HundredGigE0/0/0/10",
                evidence="oper_status up->down at 10:03:00",
                severity="critical",
            ),
        ],
    )
    item = await retrieved(kb, make_item(alert, diagnosis))
    plan = await PlannerAgent(kb=kb).handle(item, CTX)
    assert plan.source == "runbook"
    assert_grounded(item, plan)
    first, second = plan.steps[:2]
    assert (first.action, first.grounding) == ("check_status", ["diagnosis#2"])  # critical first
    assert (second.action, second.grounding) == ("check_status", ["diagnosis#1"])
    assert "leaf7" in first.description
    assert plan.customer_message == ""
    assert any(s.grounding[0].startswith(plan.runbook or "?") for s in plan.steps[2:])


async def test_fallback_without_retrieval_is_grounded_nowhere(kb: KnowledgeBase) -> None:
    ticket = SupportTicket(customer="Jane Doe", body="Nothing works, call me at +1 555 0100")
    plan = await PlannerAgent(kb=kb).handle(make_item(ticket), CTX)
    assert plan.source == "fallback"
    assert plan.runbook is None
    assert [s.action for s in plan.steps] == ["gather_details", "escalate"]
    assert all(not s.grounding for s in plan.steps)
    assert plan.customer_message == FALLBACK_MESSAGE


async def test_fallback_with_diagnosis_is_grounded_in_it(kb: KnowledgeBase) -> None:
    alert = TelemetryAlert(device="r1", window_start=T0, window_end=T0 + timedelta(minutes=1))
    diagnosis = Diagnosis(
        task_id="t-1", findings=[Finding(kind="cpu_high", device="r1", evidence="cpu 97%")]
    )
    plan = await PlannerAgent(kb=kb).handle(make_item(alert, diagnosis), CTX)
    assert plan.source == "fallback"
    assert all(s.grounding == ["diagnosis#1"] for s in plan.steps)
    assert plan.customer_message == ""


async def test_customer_message_never_copies_the_ticket(kb: KnowledgeBase) -> None:
    rows = json.loads((DATA / "tickets_sample.json").read_text(encoding="utf-8"))
    planner = PlannerAgent(kb=kb)
    for row in rows:
        ticket = msgspec.convert(row, SupportTicket)
        plan = await planner.handle(await retrieved(kb, make_item(ticket)), CTX)
        assert plan.customer_message in {TICKET_MESSAGE, FALLBACK_MESSAGE}
        assert plan.steps
        assert all(s.action in ALLOWED_ACTIONS for s in plan.steps)
        if ticket.customer:
            assert ticket.customer not in plan.customer_message + plan.rationale
            assert ticket.customer not in planner.summarize(plan)


@pytest.mark.parametrize(
    ("line", "phase", "action"),
    [
        ("Check the pod logs with `kubectl logs`", "diagnosis", "inspect_logs"),
        ("Verify switch port configuration", "mitigation", "check_status"),
        ("Restart the kubelet on the node", "mitigation", "restart_component"),
        ("Scale the deployment to 3 replicas", "mitigation", "scale_component"),
        ("Edit the ConfigMap and set the limit", "mitigation", "change_config"),
        ("Cordon and drain node to migrate apps from it.", "mitigation", "drain_node"),
        ("Notify the customer about the maintenance", "mitigation", "contact_customer"),
        ("Escalate to the storage team", "mitigation", "escalate"),
        ("Compact and defragment the etcd database", "mitigation", "free_capacity"),
        ("Wait for the node to come back", "mitigation", "wait_and_monitor"),
        (
            "A rolling reboot can trigger this alert; check the annotation",
            "diagnosis",
            "check_status",
        ),
        ("Something unusual happened here", "mitigation", "investigate"),
    ],
)
def test_classify_action(line: str, phase: str, action: str) -> None:
    assert classify_action(line, phase=phase) == action  # type: ignore[arg-type]


def test_allow_list_is_documented() -> None:
    assert frozenset(ACTION_DESCRIPTIONS) == ALLOWED_ACTIONS
    assert all(d.endswith(".") and "\n" not in d for d in ACTION_DESCRIPTIONS.values())
    assert {
        "check_status",
        "inspect_logs",
        "restart_component",
        "scale_component",
        "change_config",
        "contact_customer",
        "investigate",
        "escalate",
    } <= ALLOWED_ACTIONS


def test_instructions_from_markdown() -> None:
    text = (
        "Look at the [dashboard](https://x/y) first.\n\n"
        "1. **For disk issues:**\n"
        "   - Check disk usage\n"
        "     on every node\n"
        "   - Run the following command:\n\n"
        "```shell\n$ df -h /var\n```\n\n"
        "[1]: https://example.com\n"
    )
    found = instructions(text)
    assert [i.text for i in found] == [
        "Check disk usage on every node",
        "Run the following command:",
    ]
    assert found[1].command == "df -h /var"
    prose = instructions("First sentence. Second one. Third one.\n\nAnother paragraph here.")
    assert [i.text for i in prose] == ["First sentence. Second one.", "Another paragraph here."]


async def test_a_custom_backend_plugs_in() -> None:
    class Fixed:
        async def plan(self, item: WorkItem) -> Plan:
            step = PlanStep(n=1, action="investigate", description="look", grounding=[])
            return Plan(task_id=item.envelope.task_id, steps=[step], source="model")

    backend: PlanningBackend = Fixed()
    agent = PlannerAgent(backend)
    plan = await agent.handle(make_item(SupportTicket(body="x")), CTX)
    assert plan.source == "model"
    assert agent.summarize(plan) == "1 steps from model: investigate 1"
    assert isinstance(PlannerAgent().backend, RunbookPlanner)
    assert PlannerAgent.role == "planner"


async def test_summarize(kb: KnowledgeBase) -> None:
    item = await retrieved(kb, make_item(SupportTicket(title="etcd members down", body="etcd")))
    agent = PlannerAgent(kb=kb)
    line = agent.summarize(await agent.handle(item, CTX))
    assert line.startswith(tuple(f"{n} steps from runbook etcdMembersDown: " for n in range(1, 9)))
