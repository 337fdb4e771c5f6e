"""The validator: schema, allow-list, grounding and PII checks."""

from __future__ import annotations

import re
import sys
import types
from datetime import UTC, datetime

import msgspec
import pytest

from sitemesh.agents._base import AgentContext
from sitemesh.agents._escalation import HOLDING_MESSAGE
from sitemesh.agents._kb import default_kb
from sitemesh.agents._planner import FALLBACK_MESSAGE, TICKET_MESSAGE, PlannerAgent
from sitemesh.agents._retriever import RetrieverAgent
from sitemesh.agents._validator import CHECKS, ValidatorAgent, default_pii_check
from sitemesh.schemas import (
    Diagnosis,
    Envelope,
    Finding,
    Passage,
    Plan,
    PlanStep,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    WorkItem,
)
from tests._items import with_outputs, work_item

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")
PID = "prometheus/etcd/etcdMembersDown#diagnosis"


def fake_pii(text: str) -> list[str]:
    """A stand-in for Presidio: e-mail addresses, @handles and "Jane Doe"."""
    found = ["EMAIL_ADDRESS"] * len(re.findall(r"\S+@\S+\.\w+", text))
    found += ["USERNAME"] * len(re.findall(r"(?<!\S)@\w+", text))
    found += ["PERSON"] * text.count("Jane Doe")
    return found


def make_item(plan: Plan | None, *, findings: int = 0) -> WorkItem:
    env = Envelope(
        task_id="t-1", site="lab", kind="support_ticket", submitted_at=T0, accepted_at=T0
    )
    decision = PolicyDecision(
        task_id="t-1", action="pin_edge", rule_id="r1", policy_version="0", data_class="internal"
    )
    passage = Passage(
        passage_id=PID,
        doc_id="prometheus/etcd/etcdMembersDown",
        title="etcdMembersDown",
        section="Diagnosis",
        text="Check health of master nodes.",
        source="https://github.com/prometheus-operator/runbooks/blob/x/content/runbooks/etcd/etcdMembersDown.md",
        score=6.2,
    )
    diagnosis = Diagnosis(
        task_id="t-1",
        findings=[Finding(kind="cpu_high", device="r1", evidence="97%") for _ in range(findings)],
    )
    return work_item(
        env,
        SupportTicket(body="x"),
        decision,
        RetrievalResult(task_id="t-1", query="q", passages=[passage], confidence=0.5),
        diagnosis if findings else None,
        plan,
    )


def plan_of(*steps: PlanStep, message: str = "We are on it.") -> Plan:
    return Plan(
        task_id="t-1",
        steps=list(steps),
        runbook="prometheus/etcd/etcdMembersDown",
        customer_message=message,
    )


GOOD = PlanStep(n=1, action="check_status", description="Check master nodes", grounding=[PID])


@pytest.fixture
def validator() -> ValidatorAgent:
    return ValidatorAgent(pii_check=fake_pii)


def codes(report: object) -> list[str]:
    return [i.code for i in report.issues]  # type: ignore[attr-defined]


async def test_a_good_plan_passes(validator: ValidatorAgent) -> None:
    report = await validator.handle(make_item(plan_of(GOOD)), CTX)
    assert report.ok
    assert report.issues == []
    assert report.checks == list(CHECKS)
    assert report.task_id == "t-1"
    assert validator.summarize(report) == f"ok, {len(CHECKS)} checks"


async def test_ungrounded_and_unknown_grounding_are_flagged(validator: ValidatorAgent) -> None:
    plan = plan_of(
        GOOD,
        PlanStep(n=2, action="investigate", description="look around"),
        PlanStep(n=3, action="check_status", description="x", grounding=["other/doc#meaning"]),
    )
    report = validator.validate(make_item(plan))
    assert not report.ok
    assert [(i.code, i.step) for i in report.issues] == [
        ("ungrounded_step", 2),
        ("unknown_grounding", 3),
    ]
    assert validator.summarize(report) == "2 issues: ungrounded_step, unknown_grounding"


async def test_diagnosis_grounding(validator: ValidatorAgent) -> None:
    step = PlanStep(n=1, action="check_status", description="cpu", grounding=["diagnosis#2"])
    assert validator.validate(make_item(plan_of(step), findings=2)).ok
    assert codes(validator.validate(make_item(plan_of(step), findings=1))) == ["unknown_grounding"]
    assert codes(validator.validate(make_item(plan_of(step)))) == ["unknown_grounding"]


async def test_unknown_action_is_flagged(validator: ValidatorAgent) -> None:
    bad = PlanStep(n=2, action="rm_rf_everything", description="x", grounding=[PID])
    report = validator.validate(make_item(plan_of(GOOD, bad)))
    assert [(i.code, i.step) for i in report.issues] == [("action_not_allowed", 2)]
    narrow = ValidatorAgent(pii_check=fake_pii, allowed_actions={"investigate"})
    assert codes(narrow.validate(make_item(plan_of(GOOD)))) == ["action_not_allowed"]


@pytest.mark.parametrize(
    "message",
    ["Hi Jane Doe, we will call you.", "Reply to jane.doe@example.com", "Thanks @jdoe42!"],
)
async def test_pii_in_customer_message_is_flagged(validator: ValidatorAgent, message: str) -> None:
    report = validator.validate(make_item(plan_of(GOOD, message=message)))
    assert codes(report) == ["pii"]
    assert "jane" not in report.issues[0].message.lower()  # types only, never the text
    assert "jdoe42" not in report.issues[0].message


async def test_pii_check_fails_closed() -> None:
    def broken(text: str) -> list[str]:
        raise RuntimeError("analyzer down")

    report = ValidatorAgent(pii_check=broken).validate(make_item(plan_of(GOOD)))
    assert not report.ok
    assert codes(report) == ["pii_check_failed"]


async def test_empty_missing_and_misnumbered_plans(validator: ValidatorAgent) -> None:
    assert codes(validator.validate(make_item(plan_of()))) == ["empty_plan"]
    missing = validator.validate(make_item(None))
    assert not missing.ok
    assert codes(missing) == ["no_plan"]
    step = msgspec.structs.replace(GOOD, n=3)
    assert codes(validator.validate(make_item(plan_of(step)))) == ["bad_step_number"]


def test_default_pii_check_uses_sitemesh_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    entity = types.SimpleNamespace(entity_type="PERSON")
    fake = types.ModuleType("sitemesh.policy")
    fake.find_pii = lambda text: [entity] if "Jane" in text else []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "sitemesh.policy", fake)
    assert default_pii_check("Hello Jane") == ["PERSON"]
    assert (
        ValidatorAgent().validate(make_item(plan_of(GOOD, message="Hi Jane"))).issues[0].code
        == "pii"
    )


async def test_real_pipeline_plan_validates(validator: ValidatorAgent) -> None:
    kb = default_kb()
    item = make_item(None)
    item = msgspec.structs.replace(
        item,
        task=SupportTicket(title="etcd members down", body="etcd lost members"),
        outputs={},
    )
    item = with_outputs(item, await RetrieverAgent(kb).handle(item, CTX))
    item = with_outputs(item, await PlannerAgent(kb=kb).handle(item, CTX))
    report = await validator.handle(item, CTX)
    assert report.ok, report.issues
    no_retrieval = msgspec.structs.replace(
        item, outputs={k: v for k, v in item.outputs.items() if k != "retrieve"}
    )
    fallback = await PlannerAgent(kb=kb).handle(no_retrieval, CTX)
    report = validator.validate(with_outputs(item, fallback))
    assert not report.ok
    assert set(codes(report)) == {"ungrounded_step"}
    assert ValidatorAgent.role == "validator"


def test_reply_templates_pass_the_real_pii_detector() -> None:
    pytest.importorskip("presidio_analyzer")
    validator = ValidatorAgent()
    validator.warm_up()
    for message in (TICKET_MESSAGE, FALLBACK_MESSAGE, HOLDING_MESSAGE):
        assert validator.validate(make_item(plan_of(GOOD, message=message))).ok, message
    leaky = validator.validate(make_item(plan_of(GOOD, message="Mail jane.doe@example.com")))
    assert codes(leaky) == ["pii"]
