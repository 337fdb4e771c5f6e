"""The built-in agents use the site's CRM tool through ``ctx.tools``, the public API an
external agent has: the retriever looks the ticket's customer up pseudonymised, the
result raises the task's data class (which keeps it on site), the escalation step
re-identifies the name and the account on the site, a tool failure degrades the task
with its reason, and an unscannable response dead-letters it with nothing on
``sm.v1.out.>`` (real workers on a real nats-server, the real ``crm`` MCP server)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from sitemesh.agents import AgentContext, AgentResources, EscalationAgent, Registry, RetrieverAgent
from sitemesh.bus import Subjects, Worker, provision
from sitemesh.config import BusSettings
from sitemesh.edge_node._forward import forwards
from sitemesh.policy import PiiScanner, Pseudonymizer, Vault
from sitemesh.runtime import step_handler
from sitemesh.schemas import (
    DLQ_DECODER,
    EVENT_DECODER,
    WORK_DECODER,
    Envelope,
    FinalAnswer,
    Plan,
    PolicyDecision,
    RetrievalResult,
    StepCompleted,
    SupportTicket,
    ValidationReport,
    WorkflowSpec,
    WorkflowStep,
    WorkItem,
    decode,
    encode,
    utcnow,
)
from sitemesh.tools import ToolRegistry, ToolResponseUnscanned, ToolSpec
from sitemesh.tools.servers import seed_crm
from sitemesh.workflows import data_class_raised, next_step
from tests._items import with_outputs, work_item
from tests._mcp import crm_fake
from tests._mcp.helpers import BrokenScanner
from tests.conftest import assert_eventually, stream_messages

pytestmark = pytest.mark.timeout(180)

FAKE = ToolSpec(name="crm", transport="python", target="tests._mcp.crm_fake:server",
                retries=0, breaker_failures=2, breaker_reset_s=600)  # fmt: skip
LABELLED = ("Jane Doe", "jane.doe@example.com", "GB33BUKB20201555555555", "+442079460123",
            "020 7946 0123")  # fmt: skip
"""The fake CRM's personal data, none of which may travel in a work item."""


@pytest.fixture(autouse=True)
def crm_mode() -> Any:
    crm_fake.MODE = "ok"
    crm_fake.CALLS.clear()
    yield
    crm_fake.MODE = "ok"


def _item(task_id: str, *, customer: str | None = "jdoe", action: str = "allow_cloud",
          data_class: str = "internal") -> WorkItem:  # fmt: skip
    now = utcnow()
    env = Envelope(task_id=task_id, site="eu1", kind="support_ticket", data_class=data_class,
                   submitted_at=now, accepted_at=now)  # fmt: skip
    body = "My card payment was declined twice today, please help."
    ticket = SupportTicket(task_id=task_id, customer=customer, channel="email", body=body)
    decision = PolicyDecision(task_id=task_id, action=action, rule_id="r",  # type: ignore[arg-type]
                              policy_version="v", data_class=data_class)  # type: ignore[arg-type]  # fmt: skip
    return msgspec.structs.replace(work_item(env, ticket, decision), step="retrieve")


def _ctx(registry: ToolRegistry, item: WorkItem, step: str, role: str) -> AgentContext:
    resources = AgentResources("eu1", tools=lambda: registry)
    return AgentContext(site="eu1", worker="test:1", step=step, resources=resources,
                        task_id=item.envelope.task_id, role=role)  # fmt: skip


def _decided(item: WorkItem, retrieval: RetrievalResult, *, confidence: float = 0.05) -> WorkItem:
    """``item`` after the planner and validator (a fallback plan: the ticket escalates)."""
    plan = Plan(task_id=item.envelope.task_id, source="fallback",
                customer_message="Thank you for contacting us.")  # fmt: skip
    out = with_outputs(item, msgspec.structs.replace(retrieval, confidence=confidence), plan,
                       ValidationReport(task_id=item.envelope.task_id, ok=True))  # fmt: skip
    return msgspec.structs.replace(out, step="decide")


async def test_retriever_looks_the_customer_up_pseudonymised_and_the_reply_uses_the_values(
    scanner: PiiScanner, vault: Vault
) -> None:
    pseudo = Pseudonymizer(scanner, vault)
    item = _item("crm-1")
    async with ToolRegistry([FAKE], scanner=scanner, pseudonymizer=pseudo) as registry:
        ctx = _ctx(registry, item, "retrieve", "retriever")
        result = await RetrieverAgent().handle(item, ctx)
        customer = result.customer
        assert customer is not None
        assert customer.status == "found", customer
        assert crm_fake.CALLS == ["lookup_customer", "get_account"]
        assert ctx.tool_data_class == "restricted"  # an IBAN: card/bank identifiers
        assert customer.data_class == "restricted"
        assert customer.entities.get("IBAN_CODE", 0) >= 1
        wire = encode(result).decode()
        assert [v for v in LABELLED if v in wire] == [], "the CRM's values travel pseudonymised"
        assert customer.name.startswith("<PERSON_"), customer.name
        assert customer.email.startswith("<EMAIL_ADDRESS_"), customer.email
        assert customer.account_last4 == "5555" or customer.account.startswith("<"), customer
        assert "crm found (restricted)" in RetrieverAgent().summarize(result)

        decided = _decided(item, result)
        esc = _ctx(registry, decided, "decide", "escalation")
        answer = await EscalationAgent().handle(decided, esc)
    assert answer.outcome == "escalate"
    assert "Jane Doe" in answer.customer_message, answer.customer_message
    assert "account ending in 5555" in answer.customer_message, answer.customer_message
    assert "<PERSON_" not in answer.customer_message


async def test_without_a_customer_or_without_the_crm_tool_nothing_is_asked(
    scanner: PiiScanner,
) -> None:
    other = ToolSpec(name="kb", transport="python", target="tests._mcp.inproc:server")
    async with ToolRegistry([FAKE], scanner=scanner) as registry:
        item = _item("crm-2", customer=None)
        result = await RetrieverAgent().handle(item, _ctx(registry, item, "retrieve", "retriever"))
        assert result.customer is None
        item = _item("crm-3", customer="not a handle!")
        result = await RetrieverAgent().handle(item, _ctx(registry, item, "retrieve", "retriever"))
        assert result.customer is None
    async with ToolRegistry([other], scanner=scanner) as registry:
        item = _item("crm-4")
        result = await RetrieverAgent().handle(item, _ctx(registry, item, "retrieve", "retriever"))
        assert result.customer is None
    assert crm_fake.CALLS == []
    assert (await RetrieverAgent().handle(item, None)).customer is None  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["error", "hang"])
async def test_a_failing_crm_degrades_the_task_with_the_reason(
    scanner: PiiScanner, mode: str
) -> None:
    crm_fake.MODE = mode
    spec = msgspec.structs.replace(FAKE, timeout_s=0.3)
    reasons = []
    async with ToolRegistry([spec], scanner=scanner) as registry:
        for i in range(3):  # two failures open the breaker; the third is refused
            item = _item(f"down-{mode}-{i}")
            result = await RetrieverAgent().handle(
                item, _ctx(registry, item, "retrieve", "retriever")
            )
            assert result.kbs, "retrieval stands without the CRM"
            customer = result.customer
            assert customer is not None
            assert customer.status == "unavailable"
            reasons.append(customer.reason)
            answer = await EscalationAgent().handle(
                _decided(item, result, confidence=0.99),
                _ctx(registry, item, "decide", "escalation"),
            )
            assert answer.outcome == "escalate"
            assert customer.reason in answer.reasons
        health = {h.tool: h for h in registry.health()}
    first = "crm unavailable: timed out after 0.3 s" if mode == "hang" else "crm unavailable: "
    assert reasons[0].startswith(first), reasons
    assert reasons[2] == "crm unavailable: breaker open", reasons
    assert health["crm.lookup_customer"].breaker == "open"
    assert health["crm.lookup_customer"].circuit_open == 1
    assert len(crm_fake.CALLS) == 2  # the open breaker refused the third call


async def test_an_unscannable_crm_response_raises_for_a_dead_letter() -> None:
    async with ToolRegistry([FAKE], scanner=BrokenScanner()) as registry:
        item = _item("unscanned-1")
        with pytest.raises(ToolResponseUnscanned) as caught:
            await RetrieverAgent().handle(item, _ctx(registry, item, "retrieve", "retriever"))
    assert caught.value.reason == "scanner_failed"


def test_a_raised_data_class_keeps_the_task_on_site() -> None:
    item = _item("raised-1")
    assert data_class_raised(item) is None
    raised = msgspec.structs.replace(
        item, envelope=msgspec.structs.replace(item.envelope, data_class="restricted")
    )
    assert data_class_raised(raised) == "restricted"
    answer = FinalAnswer(task_id="raised-1", site="eu1", outcome="escalate",
                         submitted_at=utcnow())  # fmt: skip
    assert forwards(item, answer), "positive control: the policy lets the task out"
    assert not forwards(raised, answer)
    # a cloud step after the raise is skipped, saying why
    wf = WorkflowSpec(name="w", kinds=["support_ticket"], steps=[
        WorkflowStep(name="retrieve", role="retriever"),
        WorkflowStep(name="summary", role="summary", zone="cloud"),
        WorkflowStep(name="decide", role="escalation"),
    ])  # fmt: skip
    for it, skipped in ((item, False), (raised, True)):
        advance = next_step(msgspec.structs.replace(it, workflow=wf), "retrieve")
        assert advance.step is not None
        assert (advance.step.name == "decide") is skipped
        if skipped:
            assert "data class raised to restricted" in advance.skipped[0].reason
    decided = _decided(raised, RetrievalResult(task_id="raised-1", query="q"))
    reasons = EscalationAgent().answer(decided).reasons
    assert any(r.startswith("kept on site: a tool response raised") for r in reasons), reasons


# -- real workers on a real nats-server ------------------------------------------------


def _crm_spec(db_url: str) -> ToolSpec:
    return ToolSpec(name="crm", transport="stdio", command="{python}", retries=0,
                    args=["-m", "sitemesh.tools.servers.crm", "--db-url", db_url])  # fmt: skip


async def _retriever_worker(
    js: JetStreamContext, subjects: Subjects, bus: BusSettings, registry: Callable[[], Any]
) -> Worker[WorkItem]:
    stream, durable, _ = subjects.consumer_for("retriever")
    resources = AgentResources(subjects.site, tools=registry)
    return Worker(
        js, site=subjects.site, role="retriever", stream=stream, durable=durable,
        decoder=WORK_DECODER.decode, settings=bus,
        handler=step_handler(Registry.load().spec("retriever"), subjects,
                             agent=RetrieverAgent(), resources=resources),
    )  # fmt: skip


async def _publish(js: JetStreamContext, subjects: Subjects, item: WorkItem) -> None:
    item = msgspec.structs.replace(
        item, envelope=msgspec.structs.replace(item.envelope, site=subjects.site)
    )
    await js.publish(subjects.work("retriever"), encode(item),
                     headers={"sm-task-id": item.envelope.task_id})  # fmt: skip


async def test_worker_raises_the_envelope_and_dead_letters_an_unscanned_response(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings, tmp_path: Path,
    scanner: PiiScanner,
) -> None:  # fmt: skip
    """The real CRM server (seeded site database) behind a worker's ``ctx.tools``: a good
    scanner -> the next work item carries the raised class and no CRM value; a broken
    scanner -> a dead letter with the reason, no next step, nothing on sm.v1.out.>."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'site.db'}"
    seeded = await seed_crm(db_url, n=0, handles={"jdoe": "default"}, seed=7)
    person = seeded[0]
    values = [f"{person.given_name} {person.family_name}", person.email, person.phone_e164,
              *[a.iban or a.account_number for a in person.accounts]]  # fmt: skip
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    outbox: list[bytes] = []

    async def on_out(msg: Any) -> None:
        outbox.append(msg.data)

    await nc.subscribe(subjects.all_out, cb=on_out)
    pseudo = Pseudonymizer(scanner, None)
    good = ToolRegistry([_crm_spec(db_url)], scanner=scanner, pseudonymizer=pseudo)
    async with good, await _retriever_worker(js, subjects, bus_settings, lambda: good):
        await _publish(js, subjects, _item("ok-1"))
        work = await assert_eventually(
            lambda: stream_messages(js, subjects.work_stream, subjects.work("planner")),
            timeout_s=60,
        )
    nxt = decode(work[0].data or b"", WORK_DECODER)
    assert nxt.envelope.data_class == "restricted", "raised by the CRM's answer"
    assert nxt.decision.data_class == "internal"
    customer = nxt.output(RetrievalResult).customer  # type: ignore[union-attr]
    assert customer is not None
    assert customer.status == "found"
    text = (work[0].data or b"").decode()
    assert [v for v in values if v in text] == [], "CRM values travel pseudonymised"
    events = await stream_messages(js, subjects.events_stream, subjects.task_events("ok-1"))
    steps = [e for e in (decode(m.data or b"", EVENT_DECODER) for m in events)
             if isinstance(e, StepCompleted)]  # fmt: skip
    assert steps, "positive control: the retriever's step event"
    assert "crm found (restricted)" in steps[0].summary
    assert [m.headers.get("sm-data-class") for m in events] == ["restricted"] * len(events)

    broken = ToolRegistry([_crm_spec(db_url)], scanner=BrokenScanner(), pseudonymizer=pseudo)
    async with broken, await _retriever_worker(js, subjects, bus_settings, lambda: broken):
        await _publish(js, subjects, _item("unscanned-2"))
        dead = await assert_eventually(
            lambda: stream_messages(js, subjects.dlq_stream, subjects.all_dlq), timeout_s=60
        )
    letter = decode(dead[0].data or b"", DLQ_DECODER)
    assert letter.task_id == "unscanned-2"
    assert letter.error_class == "ToolResponseUnscanned"
    assert "could not be scanned" in letter.reason
    assert "withheld" in letter.reason
    later = await stream_messages(js, subjects.work_stream, subjects.work("planner"))
    assert [decode(m.data or b"", WORK_DECODER).envelope.task_id for m in later] == ["ok-1"]
    await nc.flush()
    assert outbox == [], "nothing may leave the site"
    assert not [v for v in values if v in json.dumps(letter.reason)]
