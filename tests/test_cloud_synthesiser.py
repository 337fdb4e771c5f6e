"""The cloud synthesiser composes from anonymised incidents only, deterministically."""

from __future__ import annotations

from datetime import UTC, datetime

from sitemesh.bus._types import MsgContext
from sitemesh.cloud_node import COMPOSED_LABEL, ComposingSynthesiser, Synthesiser
from sitemesh.schemas import CloudAnswer, CloudIncident, IncidentFinding, IncidentStep

INCIDENT = CloudIncident(
    task_id="t-1",
    site="eu1",
    kind="support_ticket",
    data_class="confidential",
    policy_version="abc",
    rule_id="confidential-complex-to-cloud",
    placeholders=["<CUSTOMER_ID_1>", "<EMAIL_ADDRESS_1>"],
    findings=[
        IncidentFinding(
            kind="interface_down",
            device="leaf7",
            interface="HundredGigE0/0/0/10",
            at=datetime(2019, 5, 19, 7, 23, tzinfo=UTC),
            severity="major",
        )
    ],
    steps=[IncidentStep(n=1, action="check_status", grounding=[])],
    runbook="prometheus/node/NodeNetworkInterfaceFlapping.md",
    reasons=["major_finding:interface_down"],
)


def test_composed_answer_is_labelled_and_uses_placeholders() -> None:
    answer = ComposingSynthesiser().synthesise(INCIDENT)
    assert answer.source == "composed"
    assert answer.proposal.startswith(COMPOSED_LABEL)
    assert "interface_down on leaf7 HundredGigE0/0/0/10" in answer.proposal
    assert answer.customer_message.startswith("Hello <CUSTOMER_ID_1>,")
    assert "<EMAIL_ADDRESS_1>" in answer.customer_message
    assert ComposingSynthesiser().synthesise(INCIDENT).proposal == answer.proposal


async def test_handler_answers_on_the_sites_inbox_subject() -> None:
    ctx = MsgContext(
        subject="sm.v1.out.eu1.escalation", headers={}, stream="CLOUD_IN", stream_seq=1,
        num_delivered=1, site="hub", role="synthesiser", worker="w", data=b"",
    )  # fmt: skip
    (out,) = await Synthesiser()(INCIDENT, ctx)
    assert out.subject == "sm.v1.in.eu1.t-1"
    assert out.msg_id == "eu1:t-1:answer:synthesiser"  # site-scoped: sites never collide
    assert isinstance(out.payload, CloudAnswer)
