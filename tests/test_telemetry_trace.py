"""One trace per task across site -> cloud -> site, and no PII in any span or log line.

Real nats-servers (a hub and the leaf site ``eu1``: :class:`sitemesh.topology.Topology`,
with its in-process inbox relay) but in-process workers: the in-memory span
exporter only sees the spans of this process, so every role runs here as a
:class:`sitemesh.bus.Worker` built after :func:`setup_telemetry`, exactly as the
worker processes build theirs. The roles are the real runtime pieces where they
matter for the crossing (ingress, the agent adapter, :class:`CloudForwarder`,
the synthesiser, :class:`InboxFinaliser`, the recorder) and stand-ins where a
model would be needed (policy decider, pass-through agents, pseudonymiser from
the corpus labels).

Records of the labelled PII corpus are pushed through; one task is retried once
and one is dead-lettered, both with errors that quote the customer's text. Then
every span (name, attributes, events, status, links, resource) and every log
record is searched for every labelled value.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
from nats.js.api import AckPolicy, ConsumerConfig
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from rich.console import Console

from sitemesh.agents import Agent, AgentSpec
from sitemesh.bus import Outbound, Subjects, Worker, find_nats_server, pending_kv, provision
from sitemesh.bus._types import MsgContext
from sitemesh.cli._trace_cmds import show_trace
from sitemesh.cloud_node._run import provision_cloud, synthesiser_worker
from sitemesh.config import BusSettings, DbSettings, Settings, TelemetrySettings
from sitemesh.edge_node._forward import CloudForwarder, InboxFinaliser
from sitemesh.edge_node._ingress import Ingress, task_decoder, task_id_of
from sitemesh.errors import PermanentError, TransientError
from sitemesh.policy import BoundaryRefs
from sitemesh.runtime import step_handler
from sitemesh.schemas import (
    ANSWER_DECODER,
    WORK_DECODER,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    Task,
    WorkItem,
    decode,
    utcnow,
)
from sitemesh.state import Recorder, Store, migrate
from sitemesh.telemetry import refuses, setup_telemetry, shutdown_telemetry
from sitemesh.telemetry._setup import Telemetry
from sitemesh.topology import Topology, TopologySpec
from sitemesh.workflows import dispatch, next_step
from tests.conftest import TEST_STREAM_BYTES, assert_eventually

pytestmark = pytest.mark.timeout(90)

CORPUS = Path(__file__).parent / "data" / "pii-presidio" / "synth_dataset_v2.json"
SITE = "eu1"
EU1 = Subjects(SITE)
BUS = BusSettings(
    max_bytes=TEST_STREAM_BYTES // 8,
    duplicate_window_s=120,
    ack_wait_s=5,
    max_deliver=3,
    backoff_base_s=0.05,
    backoff_max_s=0.2,
    graceful_timeout_s=5,
)
N_RECORDS = 40
RETRIED = "pii-1"
"""Fails once in the retriever (a TransientError quoting the ticket), then passes."""
DEAD = "pii-2"
"""Fails for good in the validator (a PermanentError quoting the ticket)."""


def _records() -> list[dict[str, Any]]:
    data = json.loads(CORPUS.read_text("utf-8"))
    return [r for r in data if r["spans"]][:N_RECORDS]


RECORDS = {f"pii-{i}": r for i, r in enumerate(_records())}


# -- stand-ins for what would need a model -----------------------------------------


class AllowCloud:
    """Decider: every task may go to the cloud."""

    async def decide(self, task: Task, task_id: str) -> PolicyDecision:
        return PolicyDecision(
            task_id=task_id,
            action="allow_cloud",
            rule_id="test-all-to-cloud",
            policy_version="test0001",
            data_class="confidential",
        )


def _pass_through(role: str) -> Any:
    async def handle(item: WorkItem, ctx: MsgContext) -> Sequence[Outbound]:
        tid = item.envelope.task_id
        body = getattr(item.task, "body", "")
        if role == "retriever" and tid == RETRIED and ctx.num_delivered == 1:
            raise TransientError(f"index busy while reading {body!r}", retry_after_s=0.05)
        if role == "validator" and tid == DEAD:
            raise PermanentError(f"cannot validate {body!r}", field="$.task.body")
        step = StepCompleted(
            task_id=tid,
            site=SITE,
            role=role,
            summary=f"{role} passed",
            started_at=ctx.published_at or utcnow(),
            deliveries=ctx.num_delivered,
            worker=ctx.worker,
        )
        dclass = "confidential"
        _, more = dispatch(item, next_step(item, item.step), EU1, role)
        return [
            Outbound(
                EU1.event(tid, role), step, f"{tid}:step:{role}", task_id=tid, data_class=dclass
            ),
            *more,
        ]

    return handle


class Escalate(Agent):
    """The escalation agent: escalates, with the customer's text in its answer."""

    role: ClassVar[str] = "escalation"
    output = FinalAnswer

    async def handle(self, item: WorkItem, ctx: Any) -> FinalAnswer:
        body = getattr(item.task, "body", "")
        return FinalAnswer(
            task_id=item.envelope.task_id,
            site=SITE,
            outcome="escalate",
            reasons=["needs a specialist"],
            customer_message=f"Dear customer, about: {body}",
            data_class=item.envelope.data_class,
            submitted_at=item.envelope.submitted_at,
        )

    def summarize(self, output: Any) -> str:
        return "escalated"


@dataclass
class _Done:
    texts: dict[str, str]
    mapping: dict[str, str]


class LabelPseudonymizer:
    """Replaces the corpus's labelled values with typed placeholders (and back)."""

    def __init__(self) -> None:
        self.maps: dict[str, dict[str, str]] = {}

    async def pseudonymize(
        self, task_id: str, texts: dict[str, str], *, known: dict[str, list[str]] | None = None
    ) -> object:
        mapping: dict[str, str] = {}
        spans = sorted(
            RECORDS[task_id]["spans"], key=lambda s: len(s["entity_value"]), reverse=True
        )
        out = dict(texts)
        for i, s in enumerate(spans):
            value = s["entity_value"]
            placeholder = f"<{s['entity_type']}_{i + 1}>"
            if any(value in t for t in out.values()):
                mapping[placeholder] = value
                out = {k: t.replace(value, placeholder) for k, t in out.items()}
        self.maps[task_id] = mapping
        return _Done(out, mapping)

    async def reidentify(self, task_id: str, text: str) -> str:
        for placeholder, value in self.maps.get(task_id, {}).items():
            text = text.replace(placeholder, value)
        return text


class NoGuard:
    def check(self, payload: msgspec.Struct) -> None:
        return None


# -- the stack ------------------------------------------------------------------------


@dataclass
class Run:
    telemetry: Telemetry
    spans: list[ReadableSpan]
    settings: Settings
    logs: list[logging.LogRecord]
    metrics: InMemoryMetricReader
    answers: dict[str, str]
    """Each answered task's re-identified customer message (the PII came back)."""
    live: str
    """``show_trace`` of ``pii-0`` with the site's NATS server up (stream events too)."""


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
async def run(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Run]:
    tmp = tmp_path_factory.mktemp("telemetry")
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    shutdown_telemetry()
    telemetry = setup_telemetry(
        TelemetrySettings(), span_exporter=exporter, metric_reader=reader,
        task_ref=lambda task_id: REFS.ref(SITE, task_id),
    )  # fmt: skip
    assert telemetry is not None
    capture = _Capture()
    root, ours = logging.getLogger(), logging.getLogger("sitemesh")
    old_levels = root.level, ours.level
    root.addHandler(capture)
    root.setLevel(logging.INFO)  # libraries at the production level (aiosqlite's DEBUG
    ours.setLevel(logging.DEBUG)  # lines quote SQL parameters); sitemesh's at DEBUG
    db_url = f"sqlite+aiosqlite:///{tmp / 'site.db'}"
    settings = Settings(site=SITE, state_dir=tmp, db=DbSettings(url=db_url), bus=BUS)
    await migrate(db_url)
    spec = TopologySpec.for_sites([SITE], tmp / "topology")
    try:
        async with Topology(spec, binary=find_nats_server(None), bus=BUS) as topo:
            site_nc = await topo.connect_site(SITE, "pytest-site")
            js = site_nc.jetstream()
            await provision(js, EU1, BUS)
            hub_nc = await topo.connect_hub("pytest-cloud")
            hub_js = hub_nc.jetstream()
            await provision_cloud(hub_js, BUS)
            await js.add_consumer(
                EU1.inbox_stream,
                ConsumerConfig(
                    durable_name="inbox",
                    ack_policy=AckPolicy.EXPLICIT,
                    ack_wait=BUS.ack_wait_s,
                    max_deliver=BUS.max_deliver,
                    filter_subject=EU1.all_in,
                ),
            )
            pending = await pending_kv(js, SITE)
            pseudo = LabelPseudonymizer()
            forwarder = CloudForwarder(EU1, pseudo, NoGuard(), pending, REFS)

            def work(role: str, handler: Any) -> Worker[Any]:
                stream, durable, _ = EU1.consumer_for(role)
                return Worker(
                    js, site=SITE, role=role, stream=stream, durable=durable,
                    decoder=lambda b: decode(b, WORK_DECODER), handler=handler, settings=BUS,
                )  # fmt: skip

            workers: list[Any] = [
                Worker(
                    js,
                    site=SITE,
                    role="router",
                    stream=EU1.tasks_stream,
                    durable="router",
                    decoder=task_decoder(BUS.max_task_bytes),
                    handler=Ingress(EU1, AllowCloud()),
                    settings=BUS,
                    task_id_of=task_id_of,
                ),
                *(work(r, _pass_through(r))
                  for r in ("triage", "retriever", "diagnostics", "planner")),
                work("validator", _pass_through("validator")),
                work(
                    "escalation",
                    step_handler(
                        AgentSpec("escalation", Escalate, "test"), EU1, finaliser=forwarder
                    ),
                ),
                Worker(
                    js,
                    site=SITE,
                    role="escalation",
                    stream=EU1.inbox_stream,
                    durable="inbox",
                    decoder=ANSWER_DECODER.decode,
                    handler=InboxFinaliser(EU1, pseudo, pending),
                    settings=BUS,
                ),
                synthesiser_worker(hub_js, BUS),
            ]
            async with Store(db_url) as store:
                recorder = Recorder(js, store, SITE, BUS)
                for w in (*workers, recorder):
                    await w.__aenter__()
                try:
                    for tid, record in RECORDS.items():
                        body = json.dumps(
                            {"type": "support_ticket.v1", "task_id": tid,
                             "body": record["full_text"], "channel": "email"}
                        )  # fmt: skip
                        await js.publish(EU1.task("support_ticket"), body.encode())
                    expected = len(RECORDS) - 1  # all but the dead-lettered one

                    async def finished() -> bool:
                        answered = await store.answered_ids()
                        dead = await store.dead_letters()
                        return len(answered) >= expected and len(dead) >= 1

                    await assert_eventually(finished, timeout_s=45, interval_s=0.1)
                    answers = {}
                    for tid in await store.answered_ids():
                        view = await store.get_task(tid)
                        assert view is not None
                        answers[tid] = view.task.customer_message
                finally:
                    for w in (recorder, *reversed(workers)):
                        await w.shutdown()
            console = Console(record=True, width=200)
            live = settings.model_copy(
                update={"nats": settings.nats.model_copy(update={"url": topo.site_url(SITE)})}
            )
            assert await show_trace(live, "pii-0", console) == 0
            await site_nc.drain()
            await hub_nc.drain()
        spans = list(exporter.get_finished_spans())
        yield Run(
            telemetry, spans, settings, capture.records, reader, answers, console.export_text()
        )
    finally:
        root.removeHandler(capture)
        root.setLevel(old_levels[0])
        ours.setLevel(old_levels[1])
        shutdown_telemetry()


# -- helpers --------------------------------------------------------------------------


REFS = BoundaryRefs(b"t" * 32)


def ref(task_id: str) -> str:
    """What a task id becomes in spans: the site's boundary reference."""
    return REFS.ref(SITE, task_id)


def test_no_span_carries_a_caller_chosen_task_id(run: Run) -> None:
    assert run.spans  # positive control: the run produced spans
    ids = [t for t in RECORDS]
    assert any((s.attributes or {}).get("sitemesh.task_id") == ref(ids[0]) for s in run.spans)
    for s in run.spans:
        values = [s.name, *map(str, (s.attributes or {}).values())]
        values += [str(v) for e in s.events for v in (e.attributes or {}).values()]
        for tid in ids:
            assert not any(tid in v for v in values), (tid, s.name, s.attributes)


def _trace_of(spans: list[ReadableSpan], tid: str) -> list[ReadableSpan]:
    roots = [
        s
        for s in spans
        if (s.attributes or {}).get("sitemesh.task_id") == ref(tid)
        and (s.attributes or {}).get("sitemesh.role") == "router"
        and s.kind is SpanKind.CONSUMER
    ]
    assert len(roots) == 1, f"{tid}: {len(roots)} router process spans"
    trace_id = roots[0].context.trace_id
    return [s for s in spans if s.context.trace_id == trace_id]


def _ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[ReadableSpan]:
    chain = []
    while span.parent is not None:
        span = by_id[span.parent.span_id]
        chain.append(span)
    return chain


def _process(spans: list[ReadableSpan], role: str, stream: str) -> list[ReadableSpan]:
    return [
        s
        for s in spans
        if s.kind is SpanKind.CONSUMER
        and (s.attributes or {}).get("sitemesh.role") == role
        and (s.attributes or {}).get("sitemesh.stream") == stream
    ]


# -- tests ----------------------------------------------------------------------------


def test_one_trace_per_task_across_site_cloud_site(run: Run) -> None:
    crossed = [t for t in RECORDS if t != DEAD]
    for tid in crossed:
        spans = _trace_of(run.spans, tid)
        by_id = {s.context.span_id: s for s in spans}
        roots = [s for s in spans if s.parent is None]
        assert len(roots) == 1, f"{tid}: {len(roots)} roots"
        assert roots[0].name == "process sm.v1.task.eu1.support_ticket"
        for s in spans:  # one tree: every parent is in the trace
            assert s.parent is None or s.parent.span_id in by_id, f"{tid}: orphan {s.name}"
            if s.kind is SpanKind.CONSUMER and s.parent is not None:
                assert by_id[s.parent.span_id].kind is SpanKind.PRODUCER, s.name
        # every span that names a task names this one: one trace per task
        assert {(s.attributes or {}).get("sitemesh.task_id") for s in spans} <= {ref(tid), None}
        others = [
            s
            for s in run.spans
            if (s.attributes or {}).get("sitemesh.task_id") == ref(tid)
            and s.context.trace_id != roots[0].context.trace_id
        ]
        assert not others, f"{tid}: spans in another trace: {[s.name for s in others]}"

        # the path: router -> ... -> escalation (site) -> synthesiser (hub) -> inbox (site)
        (inbox,) = _process(spans, "escalation", EU1.inbox_stream)
        (synth,) = _process(spans, "synthesiser", "CLOUD_IN")
        escalations = _process(spans, "escalation", EU1.work_stream)
        chain = _ancestors(inbox, by_id)
        assert synth in chain, f"{tid}: the site's inbox span does not descend from the cloud"
        assert any(e in chain for e in escalations)
        roles = [
            (s.attributes or {}).get("sitemesh.role") for s in reversed(chain)
            if s.kind is SpanKind.CONSUMER
        ]  # fmt: skip
        assert roles == [  # the bundled support workflow: no diagnostics for tickets
            "router", "triage", "retriever", "planner", "validator", "escalation",
            "synthesiser",
        ], roles  # fmt: skip
        assert (synth.attributes or {})["sitemesh.site"] == "hub"
        assert (inbox.attributes or {})["sitemesh.site"] == SITE
        # the final answer's send span is the inbox span's child
        finals = [s for s in spans if s.parent and s.parent.span_id == inbox.context.span_id]
        assert any(s.name.startswith("send sm.v1.event.eu1.{task}.final.") for s in finals)
        # the recorder's spans join the same tree
        assert _process(spans, "recorder", EU1.events_stream)


def test_messaging_conventions(run: Run) -> None:
    spans = _trace_of(run.spans, "pii-0")
    for s in spans:
        a = s.attributes or {}
        assert a["messaging.system"] == "nats"
        assert a["messaging.operation.type"] in ("process", "send")
        assert a["messaging.destination.name"].startswith("sm.v1.")
        if s.parent is not None:  # the user's raw task came without a Nats-Msg-Id
            assert a["messaging.message.id"]
        if s.kind is SpanKind.CONSUMER:
            assert a["messaging.consumer.group.name"]
            assert a["sitemesh.deliveries"] >= 1
            assert a["sitemesh.outcome"] == "ack"
            assert a["sitemesh.site"] in (SITE, "hub")
            assert a["sitemesh.task_id"] == ref("pii-0")
        else:
            assert s.kind is SpanKind.PRODUCER
            assert a["sitemesh.stream_seq"] >= 1


def test_retry_and_dead_letter_are_visible(run: Run) -> None:
    spans = _trace_of(run.spans, RETRIED)
    retr = _process(spans, "retriever", EU1.work_stream)
    outcomes = sorted(
        ((s.attributes or {})["sitemesh.deliveries"], (s.attributes or {})["sitemesh.outcome"])
        for s in retr
    )
    assert outcomes == [(1, "nak"), (2, "ack")]
    failed = next(s for s in retr if (s.attributes or {})["sitemesh.outcome"] == "nak")
    assert (failed.attributes or {})["error.type"] == "TransientError"
    assert failed.status.description == "TransientError"

    spans = _trace_of(run.spans, DEAD)
    (val,) = _process(spans, "validator", EU1.work_stream)
    assert (val.attributes or {})["sitemesh.outcome"] == "dead_letter"
    assert (val.attributes or {})["error.type"] == "PermanentError"
    children = [s for s in spans if s.parent and s.parent.span_id == val.context.span_id]
    assert any(s.name == "send sm.v1.dlq.eu1.validator" for s in children)


def _labelled_values() -> list[str]:
    return sorted(
        {
            s["entity_value"].strip()
            for r in RECORDS.values()
            for s in r["spans"]
            if len(s["entity_value"].strip()) >= 4
        }
    )


def _span_texts(span: ReadableSpan) -> list[str]:
    texts = [span.name, span.status.description or ""]
    texts += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        texts.append(event.name)
        texts += [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    for link in span.links:
        texts += [f"{k}={v}" for k, v in (link.attributes or {}).items()]
    texts += [f"{k}={v}" for k, v in span.resource.attributes.items()]
    return texts


def test_no_labelled_pii_in_any_span_or_log_line(run: Run) -> None:
    values = _labelled_values()
    assert len(values) > 40
    texts = [t for s in run.spans for t in _span_texts(s)]
    logs = [r.getMessage() for r in run.logs]
    assert len(texts) > 1000
    assert logs
    # positive control: the PII went through this very run (re-identified answers)
    returned = [v for v in values if any(v in a for a in run.answers.values())]
    assert len(returned) > 20
    # the PII really went through the pipeline: the site's answers carry it back
    pattern = re.compile("|".join(rf"(?<!\w){re.escape(v)}(?!\w)" for v in values))
    for name, corpus in (("span", texts), ("log", logs)):
        leaks = sorted({m.group() for t in corpus for m in pattern.finditer(t)})
        assert not leaks, f"labelled PII in {name}s: {leaks[:5]}"
    # and nothing the guard refuses: the spans are clean by construction
    assert run.telemetry.redactor.refused == 0
    assert not [
        (s.name, k) for s in run.spans for k, v in (s.attributes or {}).items() if refuses(v)
    ]


async def test_show_trace_renders_the_tree(run: Run) -> None:
    out = Console(record=True, width=200)
    code = await show_trace(run.settings, "pii-0", out)
    text = out.export_text()
    assert code == 0
    for expected in ("router", "escalation", "cloud", "allow_cloud", "test-all-to-cloud"):
        assert expected in text, expected
    out = Console(record=True, width=200)
    assert await show_trace(run.settings, RETRIED, out) == 0
    out = Console(record=True, width=200)
    assert await show_trace(run.settings, DEAD, out) == 0
    text = out.export_text()
    assert "dead letter" in text
    assert "PermanentError" in text
    assert "cannot validate" not in text  # the error's text quotes the ticket: never shown
    out = Console(record=True, width=200)
    assert await show_trace(run.settings, "no-such-task", out) == 1


def test_show_trace_reads_the_stream_when_nats_is_up(run: Run) -> None:
    assert "trace " in run.live  # the trace id, from the events' traceparent
    assert "cloud" in run.live


def test_metrics_per_role_and_site(run: Run) -> None:
    data = run.metrics.get_metrics_data()
    assert data is not None
    points: dict[str, list[Any]] = {}
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points.setdefault(m.name, []).extend(m.data.data_points)
    for name in (
        "messaging.process.duration", "sitemesh.hop.latency", "messaging.client.consumed.messages",
        "messaging.client.sent.messages", "sitemesh.redeliveries", "sitemesh.dead_letters",
        "sitemesh.queue.depth",
    ):  # fmt: skip
        assert points.get(name), name
    roles = {(p.attributes["sitemesh.site"], p.attributes["sitemesh.role"])
             for p in points["sitemesh.hop.latency"]}  # fmt: skip
    assert {(SITE, "router"), (SITE, "escalation"), ("hub", "synthesiser")} <= roles
    assert sum(p.value for p in points["sitemesh.redeliveries"]) >= 1
    dead = [
        p for p in points["sitemesh.dead_letters"] if p.attributes["sitemesh.role"] == "validator"
    ]
    assert sum(p.value for p in dead) == 1
