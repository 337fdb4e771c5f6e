"""The model-backed planner requests the site's tools through function calling: the calls
are checked against the tools offered and their input schemas, run through ``ctx.tools``
(scanned, pseudonymised, recorded), answered in the wire format each API requires, and
the plan's steps may cite the results. Fake model servers speak the real OpenAI and
Anthropic formats (and reject malformed tool conversations with the APIs' 400s); the
tool is a real MCP server in this process."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sitemesh.agents import (
    AgentContext,
    AgentResources,
    KnowledgeBase,
    PlannerAgent,
    RetrieverAgent,
    RunbookPlanner,
    ValidatorAgent,
)
from sitemesh.models import (
    AnthropicBackend,
    ChatMessage,
    ModelPlanner,
    ModelRequest,
    offer_tools,
    run_tool_calls,
)
from sitemesh.policy import PiiScanner, Pseudonymizer, Vault, generate_vault_key
from sitemesh.schemas import (
    Envelope,
    Plan,
    PolicyDecision,
    SupportTicket,
    ToolUse,
    ValidationReport,
    WorkItem,
)
from sitemesh.tools import ToolRegistry, ToolResponseUnscanned, ToolSpec
from tests._fakes.llm_server import Reply
from tests._fakes.models import Servers
from tests._items import with_outputs, work_item
from tests._mcp import history_fake
from tests._mcp.helpers import BrokenScanner

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
HISTORY = ToolSpec(name="ticket_history", transport="python",
                   target="tests._mcp.history_fake:server", retries=0)  # fmt: skip
CALL = "ticket_history__history"
PII = ("Jane Doe", "jane.doe@example.com")


@pytest.fixture
async def registry(scanner: PiiScanner, tmp_path: Path) -> AsyncIterator[ToolRegistry]:
    history_fake.CALLS.clear()
    async with Vault(f"sqlite+aiosqlite:///{tmp_path / 'vault.db'}", generate_vault_key()) as v:
        pseudo = Pseudonymizer(scanner, v)
        async with ToolRegistry([HISTORY], scanner=scanner, pseudonymizer=pseudo) as reg:
            yield reg


async def etcd_item(kb: KnowledgeBase) -> WorkItem:
    env = Envelope(task_id="t-1", site="lab", kind="support_ticket", tenant="acme",
                   submitted_at=T0, accepted_at=T0)  # fmt: skip
    decision = PolicyDecision(task_id="t-1", action="pin_edge", rule_id="r1",
                              policy_version="0", data_class="internal")  # fmt: skip
    ticket = SupportTicket(title="etcd members down", customer="@jdoe",
                           body="Two etcd members are down since the upgrade.")  # fmt: skip
    item = work_item(env, ticket, decision)
    result = await RetrieverAgent(kb).handle(item, AgentContext(site="lab", worker="t:1"))
    return with_outputs(item, result)


def ctx_for(registry: ToolRegistry) -> AgentContext:
    resources = AgentResources("lab", tools=lambda: registry)
    return AgentContext(site="lab", worker="test:1", step="plan", resources=resources,
                        task_id="t-1", role="planner")  # fmt: skip


def plan_reply(*grounding: str) -> Reply:
    return Reply(json={"steps": [
        {"n": 1, "action": "check_status",
         "description": "Check etcd member health as in the earlier case",
         "grounding": list(grounding)},
    ]})  # fmt: skip


def planner(client: Any, kb: KnowledgeBase) -> PlannerAgent:
    return PlannerAgent(ModelPlanner(client, fallback=RunbookPlanner(kb)))


async def test_the_model_calls_a_tool_and_cites_its_result(
    servers: Servers, kb: KnowledgeBase, registry: ToolRegistry
) -> None:
    item = await etcd_item(kb)
    servers.vllm.script(Reply(tool_calls=[(CALL, {"customer_id": "jdoe", "limit": 3})]),
                        plan_reply("S1", "T1"))  # fmt: skip
    ctx = ctx_for(registry)
    async with servers.client() as client:
        plan = await planner(client, kb).handle(item, ctx)

    assert history_fake.CALLS == [("history", {"customer_id": "jdoe", "limit": 3})]
    assert plan.source == "model", plan.rationale
    assert [u.outcome for u in plan.tools] == ["ok"]
    use = plan.tools[0]
    assert (use.ref, use.tool) == ("tool#1", "ticket_history.history")
    assert use.call_id
    assert "tool#1" in plan.steps[0].grounding
    assert "ticket_history.history ok" in plan.rationale
    # the history names a person: the step raises the task's data class
    assert ctx.tools is not None
    assert ctx.tools.data_class == "confidential"

    first, second = (r.body for r in servers.vllm.model_requests)
    offered = [t["function"]["name"] for t in first["tools"]]
    assert offered == [CALL]  # add_note changes something: never offered to a model
    params = first["tools"][0]["function"]["parameters"]
    assert set(params["properties"]) == {"customer_id", "limit"}
    assert "response_format" not in first
    assert "Customer id (for tool arguments only): jdoe" in first["messages"][1]["content"]

    call, answer = second["messages"][2], second["messages"][3]
    assert call["role"] == "assistant"
    assert call["tool_calls"][0]["id"] == "call_0"
    assert answer["role"] == "tool"
    assert answer["tool_call_id"] == "call_0"
    assert answer["content"].startswith("[T1] ticket_history.history")
    assert "<PERSON_" in answer["content"]  # the model reads placeholders, never the values
    assert not any(value in json.dumps(second) for value in PII)
    assert second["tool_choice"] == "none"
    enum = second["response_format"]["json_schema"]["schema"]["properties"]["steps"]["items"]
    assert "T1" in enum["properties"]["grounding"]["items"]["enum"]

    report = await ValidatorAgent().handle(with_outputs(item, plan), ctx)
    assert isinstance(report, ValidationReport)
    assert report.ok, report.issues


@pytest.mark.parametrize(
    ("name", "arguments", "reason"),
    [
        (CALL, {"limit": 3}, "invalid_arguments: ticket_history.history: argument "
                             "$.customer_id: required argument missing"),
        (CALL, {"customer_id": "jdoe", "limit": "ten"}, "argument $.limit: expected type"),
        (CALL, {"customer_id": "jdoe", "limit": 500}, "argument $.limit: fails 'maximum'"),
        ("ticket_history__add_note", {"customer_id": "jdoe", "note": "x"},
         "unknown_tool: 'ticket_history__add_note' is not one of the tools offered"),
        ("shell", {"cmd": "rm -rf /"}, "unknown_tool: 'shell'"),
    ],
)
async def test_a_call_off_the_offer_or_its_schema_is_rejected_and_not_run(
    servers: Servers, kb: KnowledgeBase, registry: ToolRegistry,
    name: str, arguments: dict[str, Any], reason: str,
) -> None:  # fmt: skip
    item = await etcd_item(kb)
    servers.vllm.script(Reply(tool_calls=[(name, arguments)]), plan_reply("S1"))
    async with servers.client() as client:
        plan = await planner(client, kb).handle(item, ctx_for(registry))

    assert history_fake.CALLS == []  # nothing ran: not even add_note, asked by name
    assert plan.source == "model", plan.rationale
    assert [(u.outcome, u.ref, u.call_id) for u in plan.tools] == [("rejected", "", "")]
    assert reason in plan.tools[0].reason
    answer = servers.vllm.model_requests[1].body["messages"][3]
    assert answer["role"] == "tool"
    assert answer["content"].startswith("rejected, not called:")
    assert "rm -rf" not in plan.tools[0].reason  # reasons never repeat argument values


async def test_citing_a_rejected_call_is_repaired_then_falls_back(
    servers: Servers, kb: KnowledgeBase, registry: ToolRegistry
) -> None:
    item = await etcd_item(kb)
    # a guided decoder would not let it write T1 (not in the enum); a loose one might
    servers.vllm.script(Reply(tool_calls=[(CALL, {})]), plan_reply("T1"), plan_reply("T1"))
    async with servers.client() as client:
        plan = await planner(client, kb).handle(item, ctx_for(registry))
    assert plan.source == "runbook"
    assert "unknown_grounding" in plan.rationale
    assert plan.tools[0].outcome == "rejected"
    assert plan.rationale.endswith("(ticket_history.history rejected)")


async def test_more_calls_than_the_cap_are_rejected_in_order(
    servers: Servers, kb: KnowledgeBase, registry: ToolRegistry
) -> None:
    item = await etcd_item(kb)
    calls = [(CALL, {"customer_id": "jdoe", "limit": n}) for n in (1, 2, 3)]
    servers.vllm.script(Reply(tool_calls=calls), plan_reply("S1", "T2"))
    async with servers.client() as client:
        backend = ModelPlanner(client, fallback=RunbookPlanner(kb), max_tool_calls=2)
        plan = await PlannerAgent(backend).handle(item, ctx_for(registry))
    assert [c[1]["limit"] for c in history_fake.CALLS] == [1, 2]
    assert [u.outcome for u in plan.tools] == ["ok", "ok", "rejected"]
    assert plan.tools[2].reason == "too_many_tool_calls: at most 2 calls per turn"
    assert plan.steps[0].grounding[-1] == "tool#2"
    tool_messages = [m for m in servers.vllm.model_requests[1].body["messages"]
                     if m["role"] == "tool"]  # fmt: skip
    assert [m["tool_call_id"] for m in tool_messages] == ["call_0", "call_1", "call_2"]


async def test_an_unscannable_tool_response_is_not_planned_with(
    servers: Servers, kb: KnowledgeBase
) -> None:
    item = await etcd_item(kb)
    servers.vllm.script(Reply(tool_calls=[(CALL, {"customer_id": "jdoe"})]), plan_reply("S1"))
    history_fake.CALLS.clear()
    async with ToolRegistry([HISTORY], scanner=BrokenScanner()) as reg, servers.client() as client:
        with pytest.raises(ToolResponseUnscanned):
            await planner(client, kb).handle(item, ctx_for(reg))
    assert len(servers.vllm.model_requests) == 1  # the model never read the response


async def test_no_tool_call_plans_in_one_more_turn_and_no_tools_means_one_turn(
    servers: Servers, kb: KnowledgeBase, registry: ToolRegistry
) -> None:
    item = await etcd_item(kb)
    servers.vllm.script(Reply(text="The sources suffice."), plan_reply("S1"))
    async with servers.client() as client:
        plan = await planner(client, kb).handle(item, ctx_for(registry))
        assert plan.source == "model"
        assert plan.tools == []
        second = servers.vllm.model_requests[1].body
        assert "tools" not in second
        assert len(second["messages"]) == 2

        servers.vllm.script(plan_reply("S1"))
        no_tools = AgentContext(site="lab", worker="t:1", step="plan", task_id="t-1")
        plan = await planner(client, kb).handle(item, no_tools)
        assert plan.source == "model"
    assert len(servers.vllm.model_requests) == 3
    assert history_fake.CALLS == []


async def test_anthropic_wire_format_of_a_tool_conversation(
    servers: Servers, registry: ToolRegistry
) -> None:
    """The same function-calling API against the Anthropic format (a cloud model, so not
    the planner's): calls come back as ``tool_use`` blocks, results go as one user turn
    of ``tool_result`` blocks, and the tools stay declared (the fake server answers 400
    otherwise, as the API does)."""
    backend = AnthropicBackend(base_url=servers.anthropic.url, api_key="sk-ant-test")
    tools = ctx_for(registry).tools
    assert tools is not None
    offered, notes = await offer_tools(tools, ["ticket_history", "not_configured"])
    assert [o.function for o in offered] == [CALL]
    assert notes == []
    ask = ModelRequest(messages=[ChatMessage(role="system", content="Look the customer up."),
                                 ChatMessage(role="user", content="Customer id: jdoe")],
                       tools=[o.spec for o in offered])  # fmt: skip
    servers.anthropic.script(Reply(tool_calls=[(CALL, {"customer_id": "jdoe"})]),
                             Reply(text="The customer had the same problem before."))  # fmt: skip
    try:
        turn = await backend.complete(ask, "claude-sonnet-4-6", max_tokens=100)
        assert [(c.id, c.name) for c in turn.tool_calls] == [("toolu_0", CALL)]
        done = await run_tool_calls(turn, offered, tools)
        follow = ModelRequest(messages=[*ask.messages, *done.messages],
                              tools=ask.tools, tool_choice="none")  # fmt: skip
        answer = await backend.complete(follow, "claude-sonnet-4-6", max_tokens=100)
    finally:
        await backend.aclose()
    assert answer.text == "The customer had the same problem before."
    assert [u.outcome for u in done.uses] == ["ok"]
    second = servers.anthropic.model_requests[1].body
    call, results = second["messages"][1], second["messages"][2]
    assert call == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "toolu_0", "name": CALL, "input": {"customer_id": "jdoe"}}]}
    assert results["role"] == "user"
    assert [(b["type"], b["tool_use_id"]) for b in results["content"]] == [
        ("tool_result", "toolu_0")]
    assert not any(value in json.dumps(second) for value in PII)
    assert second["tool_choice"] == {"type": "none"}
    assert [t["name"] for t in second["tools"]] == [CALL]


def test_the_fake_servers_reject_broken_tool_conversations() -> None:
    """The checks the fake model servers make are the APIs' (so the tests above can fail)."""
    from tests._fakes.llm_server import anthropic_protocol_error, openai_protocol_error

    call = {"role": "assistant", "content": None,
            "tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": "f", "arguments": "{}"}}]}  # fmt: skip
    assert openai_protocol_error({"messages": [call, {"role": "user", "content": "x"}]})
    assert openai_protocol_error({"messages": [{"role": "tool", "tool_call_id": "c9",
                                                "content": "x"}]})  # fmt: skip
    ok = [call, {"role": "tool", "tool_call_id": "c1", "content": "r"}]
    assert openai_protocol_error({"messages": ok}) is None
    use = {"role": "assistant", "content": [{"type": "tool_use", "id": "u1", "name": "f",
                                             "input": {}}]}  # fmt: skip
    result = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "u1",
                                           "content": "r"}]}  # fmt: skip
    assert anthropic_protocol_error({"messages": [use, result]})  # no tools declared
    assert anthropic_protocol_error({"messages": [use, result], "tools": [{"name": "f"}]}) is None


def test_plan_tool_uses_round_trip_and_default_empty() -> None:
    import msgspec

    plan = Plan(task_id="t-1", tools=[ToolUse(ref="tool#1", tool="a.b", outcome="ok")])
    assert msgspec.json.decode(msgspec.json.encode(plan), type=Plan) == plan
    assert "tools" not in msgspec.to_builtins(Plan(task_id="t-1"))



async def test_setup_starts_the_tool_servers_the_model_will_be_offered(
    servers: Servers, registry: ToolRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A model-backed planner starts its configured tool servers in ``setup`` (before
    its process reports ready), so the first plan does not pay for a cold start; a
    server it cannot start is logged, and setup still succeeds."""
    warmed: list[str] = []
    real_warm = registry.warm

    async def warm(server: str) -> None:
        warmed.append(server)
        await real_warm(server)

    registry.warm = warm  # type: ignore[method-assign]
    async with servers.client() as client:
        agent = PlannerAgent()
        await agent.setup(AgentResources("lab", models=lambda: client, tools=lambda: registry))
        assert isinstance(agent.backend, ModelPlanner)
        # ticket_history is configured; kb_search and telemetry_query are not: skipped
        assert warmed == ["ticket_history"]
        assert [t.name for t in await registry.list_tools("ticket_history")]

        missing = ToolSpec(name="kb_search", transport="python",
                           target="tests._mcp.no_such_module:server", retries=0)  # fmt: skip
        broken = ToolRegistry([missing])
        async with broken:
            other = PlannerAgent()
            with caplog.at_level("WARNING", logger="sitemesh.agent.planner"):
                await other.setup(AgentResources("lab", models=lambda: client,
                                                 tools=lambda: broken))  # fmt: skip
            assert isinstance(other.backend, ModelPlanner)
            assert "planner tool server kb_search not started" in caplog.text
    assert history_fake.CALLS == []  # started and listed, never called
