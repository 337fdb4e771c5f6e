"""Model-backed planner and synthesiser: valid output is used, invalid output is repaired
once, and otherwise the deterministic backend answers and says so."""

from __future__ import annotations

from datetime import UTC, datetime

from sitemesh.agents._base import AgentContext
from sitemesh.agents._kb import KnowledgeBase
from sitemesh.agents._planner import TICKET_MESSAGE, RunbookPlanner
from sitemesh.agents._retriever import RetrieverAgent
from sitemesh.models import ModelPlanner, ModelSynthesiser
from sitemesh.schemas import (
    CloudIncident,
    Envelope,
    IncidentFinding,
    IncidentStep,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    WorkItem,
)
from tests._fakes.llm_server import Reply, server_error
from tests._fakes.models import Servers
from tests._items import with_outputs, work_item

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")

INCIDENT = CloudIncident(
    task_id="t-1",
    site="eu1",
    kind="support_ticket",
    data_class="confidential",
    policy_version="abc",
    rule_id="confidential-complex-to-cloud",
    placeholders=["<CUSTOMER_ID_1>", "<EMAIL_ADDRESS_1>"],
    findings=[IncidentFinding(kind="interface_down", device="leaf7", severity="major")],
    steps=[IncidentStep(n=1, action="check_status")],
    reasons=["major_finding:interface_down"],
)


async def etcd_item(kb: KnowledgeBase, action: str = "allow_cloud") -> WorkItem:
    env = Envelope(task_id="t-1", site="lab", kind="support_ticket", tenant="acme",
                   submitted_at=T0, accepted_at=T0)
    decision = PolicyDecision(task_id="t-1", action=action,  # type: ignore[arg-type]
                              rule_id="r1", policy_version="0", data_class="internal")
    ticket = SupportTicket(title="etcd members down",
                           body="Two etcd members are down since the upgrade.")
    item = work_item(env, ticket, decision)
    result = await RetrieverAgent(kb).handle(item, CTX)
    return with_outputs(item, result)


def draft_for(item: WorkItem) -> dict[str, object]:
    retrieval = item.output(RetrievalResult)
    assert retrieval is not None
    pid = retrieval.passages[0].passage_id
    return {
        "steps": [
            {"n": 1, "action": "check_status", "description": "Check etcd member health",
             "grounding": [pid]},
            {"n": 2, "action": "restart_component", "description": "Restart the failed member",
             "grounding": [pid]},
        ],
        "runbook": retrieval.passages[0].doc_id,
        "rationale": "Follows the etcd runbook.",
    }


async def test_model_plan_is_used_and_stays_on_site(servers: Servers, kb: KnowledgeBase) -> None:
    item = await etcd_item(kb)  # even allow_cloud: raw site text goes to site models only
    servers.vllm.default = Reply(json=draft_for(item))
    async with servers.client() as client:
        plan = await ModelPlanner(client, fallback=RunbookPlanner(kb)).plan(item)
    assert plan.source == "model"
    assert plan.task_id == "t-1"
    assert [s.action for s in plan.steps] == ["check_status", "restart_component"]
    assert plan.customer_message == TICKET_MESSAGE  # never model-written on site
    assert "[model vllm/qwen2.5-7b-instruct]" in plan.rationale
    assert servers.openai.requests == []
    assert servers.anthropic.requests == []
    body = servers.vllm.model_requests[0].body
    assert body["response_format"]["json_schema"]["name"] == "PlanDraft"


async def test_disallowed_action_is_repaired(servers: Servers, kb: KnowledgeBase) -> None:
    item = await etcd_item(kb)
    bad = draft_for(item)
    bad["steps"][1]["action"] = "rm_rf_cluster"  # type: ignore[index]
    servers.vllm.script(Reply(json=bad), Reply(json=draft_for(item)))
    async with servers.client() as client:
        plan = await ModelPlanner(client, fallback=RunbookPlanner(kb)).plan(item)
    assert plan.source == "model"
    assert "repaired" in plan.rationale
    repair = servers.vllm.model_requests[1].body["messages"][-1]["content"]
    assert "'rm_rf_cluster' is not allowed" in repair
    assert "$.steps[1].action" in repair


async def test_invalid_twice_falls_back_to_the_runbook(servers: Servers, kb: KnowledgeBase) -> None:
    item = await etcd_item(kb)
    servers.vllm.script(Reply(text="I would restart etcd."), Reply(json={"steps": "none"}))
    async with servers.client() as client:
        plan = await ModelPlanner(client, fallback=RunbookPlanner(kb)).plan(item)
    assert plan.source == "runbook"
    assert plan.rationale.startswith("Model planning unavailable (invalid output after repair")
    assert plan.steps == RunbookPlanner(kb).build(item).steps


async def test_models_down_falls_back_and_says_so(servers: Servers, kb: KnowledgeBase) -> None:
    item = await etcd_item(kb, action="pin_edge")
    servers.vllm.default = server_error(503)
    async with servers.client(max_attempts=2) as client:
        plan = await ModelPlanner(client, fallback=RunbookPlanner(kb)).plan(item)
    assert plan.source == "runbook"
    assert plan.rationale.startswith("Model planning unavailable (every model failed")
    assert servers.openai.requests == []


async def test_model_synthesis(servers: Servers) -> None:
    servers.openai.default = Reply(json={
        "proposal": "Upgrade leaf7 line card firmware.",
        "customer_message": "Hello <CUSTOMER_ID_1>, we are fixing your line.",
        "steps": [{"n": 3, "action": "change_config", "description": "Apply the fix"}],
    })
    async with servers.client() as client:
        answer = await ModelSynthesiser(client).synthesise(INCIDENT)
    assert answer.source == "model"
    assert answer.agent == "synthesiser:openai/gpt-4.1"
    assert answer.customer_message.startswith("Hello <CUSTOMER_ID_1>")
    assert answer.steps[0].n == 1
    sent = servers.openai.model_requests[0].body["messages"][-1]["content"]
    assert "<EMAIL_ADDRESS_1>" in sent


async def test_synthesis_rejects_invented_placeholders_then_composes(servers: Servers) -> None:
    invented = {"proposal": "p", "customer_message": "Hello <PERSON_7>", "steps": []}
    servers.openai.default = Reply(json=invented)
    async with servers.client() as client:
        answer = await ModelSynthesiser(client).synthesise(INCIDENT)
    assert answer.source == "composed"
    assert answer.proposal.startswith("Composed from the anonymised findings and plan "
                                      "(model synthesis unavailable: unknown placeholder "
                                      "<PERSON_7>")
    assert len(servers.openai.model_requests) == 2  # the one repair, then compose


async def test_only_cloud_models_configured_sensitive_task_stays_on_site(
    servers: Servers, kb: KnowledgeBase
) -> None:
    """Issue 4: a sensitive task with only cloud models configured is not sent to the
    cloud — the planner takes its deterministic fallback and says why."""
    from sitemesh.models import ModelClient, Router
    from sitemesh.models._backends import AnthropicBackend, OpenAIBackend

    item = await etcd_item(kb, action="pin_edge")
    client = ModelClient(
        {
            "openai": OpenAIBackend(provider="openai", base_url=servers.openai.openai_url,
                                    api_key="sk-test", timeout_s=5),
            "anthropic": AnthropicBackend(base_url=servers.anthropic.url, api_key="sk-ant-test",
                                          timeout_s=5),
        },
        Router([], ["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-6"]),
    )  # fmt: skip
    async with client:
        plan = await ModelPlanner(client, fallback=RunbookPlanner(kb)).plan(item)
    assert plan.source == "runbook"
    assert plan.rationale.startswith("Model planning unavailable"), plan.rationale
    assert "policy pin_edge: site models only allowed, and none is configured" in plan.rationale
    assert servers.openai.requests == []
    assert servers.anthropic.requests == []
    assert servers.vllm.requests == []
