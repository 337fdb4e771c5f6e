"""The retriever and the runbook knowledge base (real runbooks, real tickets)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from sitemesh.agents._base import AgentContext
from sitemesh.agents._escalation import MIN_RETRIEVAL_CONFIDENCE
from sitemesh.agents._kb import KB_ROOT, KnowledgeBase, default_kb, split_markdown, tokenize
from sitemesh.agents._retriever import RetrieverAgent, build_query, scrub_query_text
from sitemesh.schemas import (
    Envelope,
    PolicyDecision,
    SupportTicket,
    Task,
    TelemetryAlert,
    WorkItem,
)
from tests._items import work_item

DATA = Path(__file__).parent / "data"
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")


def make_item(task: Task, task_id: str = "t-1") -> WorkItem:
    env = Envelope(
        task_id=task_id, site="lab", kind="support_ticket", submitted_at=T0, accepted_at=T0
    )
    decision = PolicyDecision(
        task_id=task_id, action="pin_edge", rule_id="r1", policy_version="0", data_class="internal"
    )
    return work_item(env, task, decision)


def sample_tickets() -> list[SupportTicket]:
    rows = json.loads((DATA / "tickets_sample.json").read_text(encoding="utf-8"))
    return [msgspec.convert(row, SupportTicket) for row in rows]


@pytest.fixture(scope="module")
def kb() -> KnowledgeBase:
    return default_kb()


@pytest.fixture(scope="module")
def retriever(kb: KnowledgeBase) -> RetrieverAgent:
    return RetrieverAgent(kb)


def test_kb_is_the_packaged_copy_with_licences(kb: KnowledgeBase) -> None:
    assert Path(__file__).parents[1] / "sitemesh" / "agents" / "kb" == KB_ROOT
    for corpus in ("prometheus", "openshift"):
        assert "Apache" in (KB_ROOT / corpus / "LICENSE").read_text()
        assert "Commit" in (KB_ROOT / corpus / "SOURCE.md").read_text()
    docs = {s.doc_id for s in kb.sections}
    assert len(docs) > 350
    assert "prometheus/etcd/etcdMembersDown" in docs
    assert "openshift/cluster-etcd-operator/etcdMembersDown" in docs
    assert all(s.source.startswith("https://github.com/") for s in kb.sections)
    assert len({s.passage_id for s in kb.sections}) == len(kb.sections)


def test_index_version_is_a_short_stable_hash(kb: KnowledgeBase) -> None:
    assert len(kb.index_version) == 12
    assert KnowledgeBase(kb.sections[:50]).index_version != kb.index_version
    assert (
        KnowledgeBase(kb.sections[:50]).index_version
        == KnowledgeBase(kb.sections[:50]).index_version
    )


def test_split_markdown_by_heading() -> None:
    text = (
        "---\ntitle: X\n---\n# AlertName\n\n## Meaning\n\nIt fires.\n\n## Diagnosis\n\n"
        "Check it:\n\n```shell\n# not a heading\n$ kubectl get pods\n```\n\n"
        "### Sub part\n\nMore.\n\n## Diagnosis\n\nAgain.\n\n## Empty\n"
    )
    sections = split_markdown(text, doc_id="c/AlertName", source="https://example/x.md")
    assert [s.passage_id for s in sections] == [
        "c/AlertName#meaning",
        "c/AlertName#diagnosis",
        "c/AlertName#sub-part",
        "c/AlertName#diagnosis-2",
    ]
    assert all(s.title == "AlertName" for s in sections)
    assert "# not a heading" in sections[1].text
    assert sections[2].path == ("AlertName", "Diagnosis", "Sub part")
    no_h1 = split_markdown("Some text\n", doc_id="c/Stem", source="s")
    assert no_h1[0].title == "Stem"
    assert no_h1[0].passage_id == "c/Stem#overview"


def test_tokenize_splits_alert_names_and_stems() -> None:
    assert (
        tokenize("etcdMembersDown") == tokenize("etcd members down") == ["etcd", "member", "down"]
    )
    assert tokenize("KubePodCrashLooping") == ["kube", "pod", "crash", "loop"]
    assert "the" not in tokenize("the pod is restarting")


@pytest.mark.parametrize(
    ("query", "runbook"),
    [
        ("etcd members down", "etcdMembersDown"),
        ("pod is crash looping", "KubePodCrashLooping"),
        ("node filesystem almost out of space", "NodeFilesystemAlmostOutOfSpace"),
        ("network interface flapping", "NodeNetworkInterfaceFlapping"),
        ("Alertmanager failed to reload its configuration", "AlertmanagerFailedReload"),
    ],
)
async def test_obvious_query_finds_the_runbook(
    retriever: RetrieverAgent, query: str, runbook: str
) -> None:
    result = await retriever.handle(make_item(SupportTicket(title=query, body=query)), CTX)
    assert result.passages[0].doc_id.rsplit("/", 1)[-1] == runbook
    assert result.confidence >= MIN_RETRIEVAL_CONFIDENCE


async def test_passages_are_ranked_with_scores_and_sources(retriever: RetrieverAgent) -> None:
    ticket = SupportTicket(
        title="etcd members down", body="etcd cluster lost a member after upgrade"
    )
    result = await retriever.handle(make_item(ticket), CTX)
    assert 5 <= len(result.passages) <= 5 + retriever.expand
    scores = [p.score for p in result.passages]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 0
    assert result.top_score == scores[0]
    assert 0.0 < result.confidence <= 1.0
    assert result.index_version == retriever.kb.index_version
    assert result.took_ms >= 0
    for p in result.passages:
        assert p.passage_id.startswith(p.doc_id + "#")
        assert p.source.startswith("https://github.com/")
        assert p.source.endswith(".md")
        assert p.text
        assert len(p.text) <= 1200
    # the best runbook's action sections come along so the planner can ground steps
    best = [p for p in result.passages if p.doc_id == result.passages[0].doc_id]
    assert any(p.section.lower().startswith(("diagnosis", "mitigation")) for p in best)


async def test_retrieval_is_deterministic(retriever: RetrieverAgent) -> None:
    for ticket in sample_tickets()[:5]:
        a = await retriever.handle(make_item(ticket), CTX)
        b = await RetrieverAgent(retriever.kb).handle(make_item(ticket), CTX)
        assert msgspec.structs.replace(a, took_ms=0.0) == msgspec.structs.replace(b, took_ms=0.0)


def test_query_drops_handles_urls_and_emails() -> None:
    ticket = SupportTicket(
        customer="@someone",
        title="Login broken",
        body="@AcmeSupport hi, mail me at jane.doe@example.com, see https: //x.co/abc and "
        "https://example.com/a?b=1 or call +1 555 123 4567",
    )
    query = build_query(ticket)
    for leaked in ("@", "jane", "example", "x.co", "https", "555", "someone"):
        assert leaked not in query
    assert "Login broken" in query
    assert scrub_query_text("a  b\n c") == "a b c"


def test_alert_query_maps_telemetry_words_to_runbook_vocabulary() -> None:
    alert = TelemetryAlert(
        device="leaf7",
        interface="HundredGigE0/0/0/10",
        window_start=T0,
        window_end=T0 + timedelta(minutes=5),
        metric="bfd.session_state",
        summary="BFD session down on leaf7 HundredGigE0/0/0/10",
        severity="major",
    )
    query = build_query(alert)
    assert "leaf7" not in query
    assert "HundredGigE" not in query
    assert {"bfd", "network", "interface", "down"} <= set(query.lower().split())


async def test_alert_retrieves_a_network_runbook(retriever: RetrieverAgent) -> None:
    alert = TelemetryAlert(
        device="leaf7",
        interface="HundredGigE0/0/0/10",
        window_start=T0,
        window_end=T0 + timedelta(minutes=5),
        metric="interface.oper_status",
        summary="Interface HundredGigE0/0/0/10 on leaf7 went down",
    )
    result = await retriever.handle(make_item(alert), CTX)
    assert "Network" in result.passages[0].title


async def test_real_off_topic_tickets_get_low_confidence(retriever: RetrieverAgent) -> None:
    tickets = sample_tickets()
    assert len(tickets) == 15
    for ticket in tickets:
        result = await retriever.handle(make_item(ticket), CTX)
        assert result.confidence < MIN_RETRIEVAL_CONFIDENCE, ticket.source
        assert not re.search(r"(?<![\w.])@\w", result.query)  # no @handles
        assert ticket.customer is None or ticket.customer not in result.query


async def test_summarize_is_one_pii_free_line(retriever: RetrieverAgent) -> None:
    ticket = sample_tickets()[0]
    result = await retriever.handle(make_item(ticket), CTX)
    line = retriever.summarize(result)
    assert line.startswith(f"{len(result.passages)} passages, top '")
    assert "\n" not in line
    assert ticket.customer is not None
    assert ticket.customer not in line
    assert "confidence" in line


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="top_k"):
        RetrieverAgent(top_k=0)
    assert RetrieverAgent.role == "retriever"


async def test_a_query_with_nothing_but_contact_details_finds_nothing(
    retriever: RetrieverAgent,
) -> None:
    ticket = SupportTicket(body="@AcmeSupport https://example.com/x jane@example.com")
    result = await retriever.handle(make_item(ticket), CTX)
    assert result.query == ""
    assert result.passages == []
    assert result.confidence == 0.0
    assert retriever.summarize(result) == "0 passages, confidence 0.00"
