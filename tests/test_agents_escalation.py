"""The escalation agent's decision table and the final answer it builds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitemesh.agents._base import AgentContext
from sitemesh.agents._escalation import HOLDING_MESSAGE, MIN_RETRIEVAL_CONFIDENCE, EscalationAgent
from sitemesh.schemas import (
    Diagnosis,
    Envelope,
    FinalAnswer,
    Finding,
    Plan,
    PlanStep,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    Task,
    TelemetryAlert,
    ValidationIssue,
    ValidationReport,
    WorkItem,
)
from tests._items import work_item

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")
PLAN = Plan(
    task_id="t-1",
    steps=[PlanStep(n=1, action="check_status", description="check", grounding=["d#s"])],
    customer_message="We are on it.",
)
OK = ValidationReport(task_id="t-1", ok=True, checks=["schema"])
FAILED = ValidationReport(
    task_id="t-1", ok=False, issues=[ValidationIssue(code="pii", message="PERSON")]
)
TICKET = SupportTicket(body="help", urgency=2)
ALERT = TelemetryAlert(device="r1", window_start=T0, window_end=T0 + timedelta(minutes=1))


def make_item(
    task: Task = ALERT,
    *,
    confidence: float | None = 0.6,
    plan: Plan | None = PLAN,
    validation: ValidationReport | None = OK,
    severities: tuple[str, ...] = (),
) -> WorkItem:
    env = Envelope(
        task_id="t-1",
        site="lab",
        kind="support_ticket",
        data_class="confidential",
        submitted_at=T0,
        accepted_at=T0 + timedelta(seconds=1),
    )
    decision = PolicyDecision(
        task_id="t-1",
        action="pin_edge",
        rule_id="r1",
        policy_version="0",
        data_class="confidential",
    )
    diagnosis = (
        Diagnosis(
            task_id="t-1",
            findings=[
                Finding(kind="interface_down", device="r1", evidence="x", severity=s)  # type: ignore[arg-type]
                for s in severities
            ],
        )
        if severities
        else None
    )
    retrieval = (
        None
        if confidence is None
        else RetrievalResult(task_id="t-1", query="q", confidence=confidence)
    )
    return work_item(env, task, decision, retrieval, diagnosis, plan, validation)


@pytest.mark.parametrize(
    ("item", "outcome", "reasons"),
    [
        (make_item(), "resolved", ["plan validated and grounded in a confident runbook match"]),
        (make_item(validation=FAILED), "needs_human", ["validation failed: pii"]),
        (make_item(validation=None), "needs_human", ["plan was not validated"]),
        (make_item(plan=None, validation=None), "needs_human", ["no plan was produced"]),
        (
            make_item(severities=("minor", "critical")),
            "escalate",
            ["critical finding: interface_down"],
        ),
        (make_item(severities=("major",)), "escalate", ["major finding: interface_down"]),
        (make_item(severities=("info", "minor")), "resolved", None),
        (
            make_item(SupportTicket(body="down!", urgency=0)),
            "escalate",
            ["ticket urgency 0 (critical)", "no knowledge-base answer for this ticket"],
        ),
        (
            make_item(SupportTicket(body="meh", urgency=1)),
            "escalate",
            ["no knowledge-base answer for this ticket"],
        ),
        (make_item(TICKET), "escalate", ["no knowledge-base answer for this ticket"]),
        (make_item(ALERT), "resolved", None),
        (
            make_item(
                TelemetryAlert(
                    device="r1", window_start=T0, window_end=T0 + timedelta(1), severity="critical"
                )
            ),
            "escalate",
            ["critical alert"],
        ),
        (make_item(confidence=0.123), "escalate", ["low retrieval confidence 0.12 < 0.30"]),
        (make_item(confidence=MIN_RETRIEVAL_CONFIDENCE), "resolved", None),
        (make_item(confidence=None), "escalate", ["no retrieval result"]),
        (
            make_item(validation=FAILED, confidence=0.1, severities=("critical",)),
            "needs_human",
            [
                "validation failed: pii",
                "critical finding: interface_down",
                "low retrieval confidence 0.10 < 0.30",
            ],
        ),
    ],
)
async def test_decision_table(item: WorkItem, outcome: str, reasons: list[str] | None) -> None:
    answer = await EscalationAgent().handle(item, CTX)
    assert answer.outcome == outcome
    if reasons is not None:
        assert answer.reasons == reasons


async def test_answer_copies_plan_diagnosis_and_envelope_facts() -> None:
    item = make_item(severities=("minor",))
    answer = await EscalationAgent().handle(item, CTX)
    assert isinstance(answer, FinalAnswer)
    assert answer.task_id == "t-1"
    assert answer.site == "lab"
    assert answer.plan == PLAN
    assert answer.diagnosis == item.output(Diagnosis)
    assert answer.data_class == "confidential"
    assert answer.submitted_at == T0
    assert answer.customer_message == "We are on it."


async def test_failed_validation_withholds_the_plan_message() -> None:
    answer = await EscalationAgent().handle(make_item(TICKET, validation=FAILED), CTX)
    assert answer.customer_message == HOLDING_MESSAGE
    alert_answer = await EscalationAgent().handle(make_item(ALERT, validation=FAILED), CTX)
    assert alert_answer.customer_message == ""


def test_threshold_is_configurable_and_checked() -> None:
    agent = EscalationAgent(min_confidence=0.7)
    assert agent.decide(make_item(confidence=0.6))[0] == "escalate"
    with pytest.raises(ValueError, match="min_confidence"):
        EscalationAgent(min_confidence=1.5)
    assert EscalationAgent.role == "escalation"


async def test_summarize() -> None:
    agent = EscalationAgent()
    answer = await agent.handle(make_item(confidence=0.2), CTX)
    assert agent.summarize(answer) == "escalate: low retrieval confidence 0.20 < 0.30"
