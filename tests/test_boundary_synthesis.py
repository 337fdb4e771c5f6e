"""The cloud side of the boundary: answers composed from the structured incident alone,
saying what happens next and promising nothing that was not done."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from sitemesh.agents import ACTION_DESCRIPTIONS
from sitemesh.cloud_node import COMPOSED_LABEL, ComposingSynthesiser, describe_incident
from sitemesh.models import ModelSynthesiser
from sitemesh.schemas import (
    CloudIncident,
    IncidentFinding,
    IncidentResolution,
    IncidentStep,
    IncidentTriage,
    describe_reason,
)

CASE = "case#r" + "a" * 26
INCIDENT = CloudIncident(
    task_id="r" + "b" * 26,
    site="eu1",
    kind="support_ticket",
    data_class="confidential",
    policy_version="3f2a9c0d",
    rule_id="every-ticket-to-cloud",
    placeholders=["<CUSTOMER_ID_1>", "<EMAIL_ADDRESS_1>", "<PERSON_1>"],
    steps=[
        IncidentStep(n=1, action="contact_customer", grounding=[CASE],
                     placeholders=["<EMAIL_ADDRESS_1>"]),
        IncidentStep(n=2, action="escalate", grounding=["card_arrival#faq"]),
    ],
    reasons=["critical_urgency", "knowledge_triage_disagree", "other"],
    triage=IncidentTriage(label="card_arrival", label_set="banking77", urgency=0, language="en"),
    resolution=IncidentResolution(kb="support-cases", doc_kind="case", doc=CASE,
                                  intent="card_arrival"),
)

PROMISES = re.compile(
    r"\b(prepared a fix|fixed|resolved|we (have|'ve) (applied|changed|restarted|refunded)"
    r"|has been (fixed|resolved|refunded|applied)|is (done|fixed)|apply it)\b",
    re.IGNORECASE,
)
"""Statements of work done, which an escalated case cannot make."""


def test_the_reply_says_what_happens_next_and_claims_no_work() -> None:
    answer = ComposingSynthesiser().synthesise(INCIDENT)
    msg = answer.customer_message
    assert msg.startswith("Hello <CUSTOMER_ID_1>,")
    assert "specialist, who will review your case" in msg
    assert "urgent" in msg  # critical urgency
    assert "<EMAIL_ADDRESS_1>" in msg
    assert not PROMISES.search(msg), msg
    assert not PROMISES.search(answer.proposal), answer.proposal
    assert "nothing has been changed yet" in answer.proposal


def test_the_proposal_is_read_from_codes_and_actions() -> None:
    answer = ComposingSynthesiser().synthesise(INCIDENT)
    assert answer.proposal.startswith(COMPOSED_LABEL)
    for code in INCIDENT.reasons:
        assert describe_reason(code) in answer.proposal
    for step in INCIDENT.steps:
        assert f"[{step.action}] {ACTION_DESCRIPTIONS[step.action]}" in answer.proposal
    assert "Triage: card_arrival (banking77), urgency 0" in answer.proposal
    assert "a past case of the site's own knowledge base (kept on the site)" in answer.proposal
    assert [s.description for s in answer.steps] == [
        ACTION_DESCRIPTIONS["contact_customer"], ACTION_DESCRIPTIONS["escalate"]]
    assert [s.grounding for s in answer.steps] == [[CASE], ["card_arrival#faq"]]


def test_an_unknown_action_or_code_is_read_safely() -> None:
    odd = CloudIncident(task_id="r" + "c" * 26, site="eu1", kind="support_ticket",
                        data_class="internal", policy_version="0", rule_id="r",
                        steps=[IncidentStep(n=1, action="teleport")], reasons=["brand_new"])
    proposal = ComposingSynthesiser().synthesise(odd).proposal
    assert "[teleport] An action outside the allow-list" in proposal
    assert describe_reason("other") in proposal  # fmt: skip


def test_an_alert_gets_no_customer_reply() -> None:
    alert = CloudIncident(
        task_id="r" + "d" * 26, site="eu1", kind="telemetry_alert", data_class="internal",
        policy_version="0", rule_id="r", reasons=["major_finding:interface_down"],
        findings=[IncidentFinding(kind="interface_down", device="leaf7", severity="major",
                                  at=datetime(2019, 5, 19, 7, 23, tzinfo=UTC))],
    )  # fmt: skip
    answer = ComposingSynthesiser().synthesise(alert)
    assert answer.customer_message == ""
    assert "Finding: interface_down on leaf7 at 2019-05-19T07:23:00+00:00 (major)." in (
        answer.proposal)
    assert "The site has no grounded plan." in answer.proposal


def test_the_model_is_given_the_structured_incident_only() -> None:
    request = ModelSynthesiser.request(INCIDENT)
    system, user = (m.content for m in request.messages)
    assert user == "\n".join(describe_incident(INCIDENT))
    assert "claims no work as done" in system


@pytest.mark.parametrize("steps", [0, 3, 20])
def test_describe_incident_caps_the_steps(steps: int) -> None:
    many = CloudIncident(task_id="r" + "e" * 26, site="eu1", kind="support_ticket",
                         data_class="internal", policy_version="0", rule_id="r",
                         steps=[IncidentStep(n=i, action="investigate")
                                for i in range(1, steps + 1)])  # fmt: skip
    lines = describe_incident(many, max_steps=12)
    assert sum(line.startswith("  ") for line in lines) == min(steps, 12)
