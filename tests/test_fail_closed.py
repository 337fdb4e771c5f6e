"""Fail closed on the privacy path: when the PII analyzer breaks, nothing leaves the
site; the task is dead-lettered with the reason (real workers, real nats-server)."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from sitemesh.agents import EscalationAgent, Registry
from sitemesh.bus import Subjects, Worker, provision
from sitemesh.config import BusSettings
from sitemesh.edge_node import BatchingDecider, Ingress, task_decoder, task_id_of
from sitemesh.edge_node._forward import CloudForwarder
from sitemesh.policy import (
    BoundaryRefs,
    EgressGuard,
    PiiScanner,
    Policy,
    PolicyRouter,
    Pseudonymizer,
)
from sitemesh.runtime import step_handler
from sitemesh.schemas import (
    DLQ_DECODER,
    WORK_DECODER,
    Envelope,
    Plan,
    PlanStep,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    ValidationReport,
    decode,
    encode,
    utcnow,
)
from tests._items import work_item
from tests.conftest import assert_eventually, stream_messages


def _boom(*args: object, **kwargs: object) -> object:
    raise RuntimeError("spaCy died")


def BrokenScanner() -> PiiScanner:
    """A real scanner whose analyzer dies inside on every call (spaCy crash, OOM...):
    the failure comes from under the scanner, which must turn it into PiiAnalyzerError."""
    scanner = PiiScanner(cache_size=0)
    scanner.scan("warm up the fast path")  # builds the scanner's FastScanner
    fast = scanner._fastscan
    assert fast is not None
    fast.analyze_many = _boom  # type: ignore[method-assign]
    return scanner


class FakeKV:
    def __init__(self) -> None:
        self.puts: list[str] = []

    async def put(self, key: str, value: bytes) -> int:
        self.puts.append(key)
        return 1


async def _outbox_watch(nc: Client, site: str) -> list[bytes]:
    seen: list[bytes] = []

    async def cb(msg: Any) -> None:
        seen.append(msg.data)

    await nc.subscribe(Subjects(site).all_out, cb=cb)
    return seen


async def test_router_with_broken_analyzer_dead_letters_the_task(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    router = PolicyRouter(Policy.load(), BrokenScanner())
    stream, durable, _ = subjects.consumer_for("router")
    worker = Worker(
        js, site=site, role="router", stream=stream, durable=durable,
        decoder=task_decoder(bus_settings.max_task_bytes),
        handler=Ingress(subjects, BatchingDecider(router)), settings=bus_settings,
        task_id_of=task_id_of,
    )  # fmt: skip
    body = {"type": "support_ticket.v1", "task_id": "fc-1", "body": "I am John Smith"}
    async with worker:
        await js.publish(subjects.task("support_ticket"), json.dumps(body).encode())
        dead = await assert_eventually(
            lambda: stream_messages(js, subjects.dlq_stream, subjects.all_dlq), timeout_s=20
        )
    letter = decode(dead[0].data or b"", DLQ_DECODER)
    assert letter.task_id == "fc-1"
    assert letter.error_class == "PiiAnalyzerError"
    assert "stays on site" in letter.reason or "analysis failed" in letter.reason
    work = await stream_messages(js, subjects.work_stream, subjects.all_work)
    assert work == [], "no work item may be produced without a policy decision"


@pytest.mark.parametrize("broken", ["pseudonymizer", "guard"])
async def test_forwarder_with_broken_analyzer_sends_nothing(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings, broken: str
) -> None:
    subjects = Subjects(site)
    await provision(js, subjects, bus_settings)
    outbox = await _outbox_watch(nc, site)
    good = PiiScanner()
    pseudo = Pseudonymizer(BrokenScanner() if broken == "pseudonymizer" else good)
    guard = EgressGuard(BrokenScanner() if broken == "guard" else good)
    kv = FakeKV()
    forwarder = CloudForwarder(subjects, pseudo, guard, kv, BoundaryRefs(b"k" * 32))  # type: ignore[arg-type]
    stream, durable, _ = subjects.consumer_for("escalation")
    worker = Worker(
        js, site=site, role="escalation", stream=stream, durable=durable,
        decoder=WORK_DECODER.decode,
        handler=step_handler(
            Registry.load().spec("escalation"), subjects, agent=EscalationAgent(),
            finaliser=forwarder,
        ),
        settings=bus_settings,
    )  # fmt: skip
    now = utcnow()
    item = work_item(
        Envelope(task_id="fc-2", site=site, kind="support_ticket",
                 data_class="confidential", submitted_at=now, accepted_at=now),
        SupportTicket(task_id="fc-2", body="Jane Doe, jane@example.com: router down",
                      customer="janedoe"),
        PolicyDecision(task_id="fc-2", action="allow_cloud", rule_id="r",
                       policy_version="v", data_class="confidential"),
        RetrievalResult(task_id="fc-2", query="router down", confidence=0.05),
        Plan(task_id="fc-2", steps=[PlanStep(n=1, action="escalate", description="x")]),
        ValidationReport(task_id="fc-2", ok=True),
    )  # fmt: skip
    assert (await EscalationAgent().handle(item, None)).outcome == "escalate"  # type: ignore[arg-type]
    item = msgspec.structs.replace(item, step="decide")
    async with worker:
        await js.publish(subjects.work("escalation"), encode(item),
                         headers={"sm-task-id": "fc-2"})  # fmt: skip
        dead = await assert_eventually(
            lambda: stream_messages(js, subjects.dlq_stream, subjects.all_dlq), timeout_s=20
        )
    letter = decode(dead[0].data or b"", DLQ_DECODER)
    assert letter.error_class == "PiiAnalyzerError", letter.reason
    assert outbox == [], "nothing may leave the site"
    assert kv.puts == [] or broken == "guard"
