"""Tickets answered from the knowledge base: the drafted reply, its checks, the decision
between resolved and escalated, and what the final answer carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sitemesh.agents import EscalationAgent, RunbookPlanner, ValidatorAgent
from sitemesh.agents._base import AgentContext
from sitemesh.agents._escalation import (
    HOLDING_MESSAGE,
    MIN_AGREED_CONFIDENCE,
    MIN_ANSWER_CONFIDENCE,
)
from sitemesh.agents._planner import CUSTOMER, draft_reply
from sitemesh.schemas import (
    Envelope,
    Passage,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    Triage,
    WorkItem,
)
from tests._items import with_outputs, work_item

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")
URL = "https://support.example.com/answer/185111"

CASE = Passage(
    passage_id="support-cases:case-1#0",
    doc_id="case-1",
    title="channel suspended",
    section="",
    text="my channel was suspended",
    source="ibm-twitter-cdp",
    score=9.0,
    kb="support-cases",
    doc_kind="case",
    url=URL,
    answer=(
        "@<PERSON> Thanks for the tag! If you believe the suspension was done in error, you "
        f"can appeal. Here's how: {URL} We've sent you a DM with details. Hope this helps, "
        "<PERSON>!"
    ),
)
FAQ = Passage(
    passage_id="banking-faq:card_arrival#0",
    doc_id="card_arrival",
    title="card arrival",
    section="",
    text="when will my card arrive",
    source="sitemesh",
    score=7.0,
    kb="banking-faq",
    doc_kind="faq",
    url="https://help.example.com/banking/card_arrival",
    intent="card_arrival",
    answer="New cards usually arrive within 5 working days. You can track delivery in the app.",
)


def item_for(
    passage: Passage | None,
    *,
    confidence: float = 0.9,
    triage: Triage | None = None,
    ticket: SupportTicket | None = None,
) -> WorkItem:
    env = Envelope(
        task_id="t-1", site="lab", kind="support_ticket", data_class="confidential",
        submitted_at=T0, accepted_at=T0 + timedelta(seconds=1),
    )  # fmt: skip
    decision = PolicyDecision(
        task_id="t-1", action="pin_edge", rule_id="r1", policy_version="0",
        data_class="confidential",
    )  # fmt: skip
    task = ticket or SupportTicket(body="my channel got suspended", channel="twitter",
                                   customer="maria_g")  # fmt: skip
    retrieval = RetrievalResult(
        task_id="t-1", query="q", confidence=confidence,
        passages=[passage] if passage is not None else [], kbs=["support-cases"],
    )  # fmt: skip
    return work_item(env, task, decision, triage, retrieval)


async def run_steps(item: WorkItem, *, pii: list[str] | None = None) -> tuple[WorkItem, object]:
    plan = RunbookPlanner().build(item)
    item = with_outputs(item, plan)
    seen: list[str] = []

    def check(text: str) -> list[str]:
        seen.append(text)
        return list(pii or [])

    report = ValidatorAgent(pii_check=check).validate(item)
    item = with_outputs(item, report)
    return item, (plan, report, seen)


def test_draft_keeps_general_advice_drops_old_customer_and_promises() -> None:
    reply = draft_reply(CASE, addressed=True)
    assert reply.startswith(f"Hi {CUSTOMER}, Thanks for the tag!")
    assert URL in reply
    assert "<PERSON>" not in reply  # the earlier customer's name is not carried over
    assert "sent you a DM" not in reply  # work done for someone else is not promised


def test_draft_adds_the_url_when_the_answer_lacks_it() -> None:
    reply = draft_reply(FAQ, addressed=False)
    assert reply.startswith("Hello, New cards usually arrive")
    assert reply.endswith("You can find the steps here: https://help.example.com/banking/card_arrival")


def test_draft_from_nothing_usable_is_empty() -> None:
    bare = Passage(
        passage_id="p#0", doc_id="p", title="", section="", text="", source="", score=1.0,
        kb="k", doc_kind="case", answer="@<PERSON> We've fixed it for you <PERSON>.",
    )  # fmt: skip
    assert draft_reply(bare, addressed=True) == ""


async def test_confident_case_resolves_with_a_grounded_addressed_reply() -> None:
    item, (plan, report, seen) = await run_steps(item_for(CASE, confidence=0.93))
    assert plan.source == "knowledge"  # type: ignore[attr-defined]
    assert report.ok, report  # type: ignore[attr-defined]
    # the sentences copied from the (ingest-pseudonymised) answer are not re-scanned;
    # the rest of the reply is
    assert seen
    assert all("appeal" not in s for s in seen)
    answer = await EscalationAgent().handle(item, CTX)
    assert answer.outcome == "resolved"
    assert answer.customer_message.startswith("Hi @maria_g, Thanks for the tag!")
    assert URL in answer.customer_message
    assert answer.resolution is not None
    assert (answer.resolution.kb, answer.resolution.doc_id, answer.resolution.url) == (
        "support-cases", "case-1", URL,
    )  # fmt: skip
    assert answer.resolution.confidence == pytest.approx(0.93)
    assert "reply grounded in case case-1 (support-cases), confidence 0.93" in answer.reasons[0]


async def test_unconfirmed_low_confidence_case_escalates_without_promises() -> None:
    item, _ = await run_steps(item_for(CASE, confidence=MIN_ANSWER_CONFIDENCE - 0.01))
    answer = await EscalationAgent().handle(item, CTX)
    assert answer.outcome == "escalate"
    assert answer.reasons == [
        f"low knowledge confidence {MIN_ANSWER_CONFIDENCE - 0.01:.2f} < "
        f"{MIN_ANSWER_CONFIDENCE:.2f} (no triage label to confirm it)"
    ]
    assert answer.customer_message == HOLDING_MESSAGE
    assert answer.resolution is not None  # what was considered stays on the record


def triage(label: str, p: float, *, urgency: int = 3) -> Triage:
    return Triage(task_id="t-1", label=label, label_set="banking77", confidence=p,
                  urgency=urgency, urgency_source="rule", language="en")  # fmt: skip


BANK = SupportTicket(body="when will my card arrive?", tenant="bank", channel="app")


@pytest.mark.parametrize(
    ("tri", "confidence", "outcome", "reason"),
    [
        (triage("card_arrival", 0.9), MIN_AGREED_CONFIDENCE, "resolved", "triage agrees"),
        (triage("card_arrival", 0.9), 0.2, "escalate", "low knowledge confidence 0.20"),
        (triage("card_arrival", 0.4), 0.9, "escalate", "triage uncertain: card_arrival 0.40"),
        (triage("card_delivery_estimate", 0.9), 0.9, "escalate", "disagree"),
        (triage("card_arrival", 0.9, urgency=0), 0.9, "escalate", "triage urgency 0"),
    ],
)
async def test_faq_needs_triage_to_agree(
    tri: Triage, confidence: float, outcome: str, reason: str
) -> None:
    item, _ = await run_steps(item_for(FAQ, confidence=confidence, triage=tri, ticket=BANK))
    answer = await EscalationAgent().handle(item, CTX)
    assert answer.outcome == outcome
    assert any(reason in r for r in answer.reasons), answer.reasons
    assert answer.triage == tri
    if outcome == "resolved":
        assert answer.customer_message.startswith("Hello, New cards usually arrive")
    else:
        assert answer.customer_message == HOLDING_MESSAGE


async def test_reply_without_its_url_fails_validation() -> None:
    item = item_for(CASE)
    plan = RunbookPlanner().build(item)
    broken = type(plan)(**{**{f: getattr(plan, f) for f in plan.__struct_fields__},
                           "customer_message": "Hi <CUSTOMER>, please appeal."})  # fmt: skip
    report = ValidatorAgent(pii_check=lambda _t: []).validate(with_outputs(item, broken))
    assert not report.ok
    assert [i.code for i in report.issues] == ["ungrounded_reply"]


async def test_pii_outside_the_vetted_answer_fails_validation() -> None:
    item, (_, report, _) = await run_steps(item_for(CASE), pii=["PERSON"])
    assert not report.ok  # type: ignore[attr-defined]
    answer = await EscalationAgent().handle(item, CTX)
    assert answer.outcome == "needs_human"
    assert answer.customer_message == HOLDING_MESSAGE


async def test_no_passage_means_no_knowledge_answer() -> None:
    item, _ = await run_steps(item_for(None, confidence=0.0))
    answer = await EscalationAgent().handle(item, CTX)
    assert answer.outcome == "escalate"
    assert "no knowledge-base answer for this ticket" in answer.reasons
