"""The real local model: SmolLM2-135M-Instruct behind llama.cpp's server (xllamacpp).

Three tests around one module-scoped server process and one planning call: the server
answers a JSON-schema-constrained chat completion that parses; ModelPlanner's plan
for a real alert is either accepted by the ValidatorAgent or is the deterministic
plan saying why; the call is recorded in the site's call table and a strict replay
with the server stopped gives the same plan. Needs the ``local`` extra (skipped
otherwise); marked ``slow`` and ``local_model`` (``pytest -m "not local_model"``
leaves them out). The fast failure paths are in tests/test_local_model_fallback.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

import httpx
import pytest

from sitemesh.agents import (
    AgentContext,
    AgentResources,
    PlannerAgent,
    RetrieverAgent,
    RunbookPlanner,
    ValidatorAgent,
    default_kb,
)
from sitemesh.config import Settings
from sitemesh.errors import ConfigError
from sitemesh.models import (
    CallRecorder,
    InMemoryRecorder,
    LocalModelServer,
    ModelClient,
    ModelPlanner,
    OpenAIBackend,
    RetryPolicy,
    Router,
    ledger_for_settings,
    local_model_path,
    plan_schema,
)
from sitemesh.schemas import (
    Diagnosis,
    Envelope,
    Finding,
    Plan,
    PolicyDecision,
    TelemetryAlert,
    WorkItem,
)
from sitemesh.tools import ToolRegistry, ToolSpec, validate_arguments
from tests._items import with_outputs, work_item
from tests._mcp import history_fake
from tests._mcp.helpers import NoPii

pytestmark = [pytest.mark.slow, pytest.mark.local_model, pytest.mark.timeout(600)]

T0 = datetime(2019, 5, 19, 7, 13, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")
MAX_TOKENS = 400
"""Output cap of the planning call: three schema-bound steps fit in ~250 tokens."""
CALL_TIMEOUT_S = 300.0
"""Generous for 2 shared cores (one plan takes 5-60 s here), but bounded."""


def _require_extra() -> None:
    try:
        local_model_path()
    except ConfigError as exc:
        pytest.skip(f"local extra not installed: {exc}")


@pytest.fixture(scope="module")
async def server(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LocalModelServer]:
    _require_extra()
    log = tmp_path_factory.mktemp("local-model") / "server.log"
    async with LocalModelServer(log_path=log) as srv:
        yield srv


def alert_item() -> WorkItem:
    """A BFD alert of the example data (leaf7) with the findings diagnostics reports."""
    alert = TelemetryAlert(
        device="leaf7", interface="HundredGigE0/0/0/10", window_start=T0,
        window_end=T0 + timedelta(minutes=11), metric="bfd.summary.down_count",
        summary="leaf7: down count rose: bfd.summary.down_count 5 -> 6 at 07:23:02Z",
        severity="major",
    )  # fmt: skip
    diagnosis = Diagnosis(task_id="alert-1", findings=[
        Finding(kind="bfd_session_down", device="leaf7", interface="HundredGigE0/0/0/10",
                evidence="bfd session state up -> down at 07:23:02Z", severity="major"),
        Finding(kind="interface_down", device="leaf7", interface="HundredGigE0/0/0/10",
                evidence="oper_status up -> down at 07:23:04Z", severity="critical"),
    ])  # fmt: skip
    env = Envelope(task_id="alert-1", site="lab", kind="telemetry_alert", submitted_at=T0,
                   accepted_at=T0)
    decision = PolicyDecision(task_id="alert-1", action="pin_edge", rule_id="r1",
                              policy_version="0", data_class="internal")
    return work_item(env, alert, decision, diagnosis)


def client_for(
    url: str, recorder: CallRecorder, *, replay: Literal["off", "strict"] = "off"
) -> ModelClient:
    backend = OpenAIBackend(provider="vllm", base_url=url, timeout_s=CALL_TIMEOUT_S)
    return ModelClient({"vllm": backend}, Router(["vllm/smollm2-135m-instruct"], []),
                       retry=RetryPolicy(max_attempts=1), recorder=recorder, replay=replay,
                       max_tokens=MAX_TOKENS)


@dataclass
class Planned:
    item: WorkItem
    plan: Plan
    settings: Settings


@pytest.fixture(scope="module")
async def planned(server: LocalModelServer, tmp_path_factory: pytest.TempPathFactory) -> Planned:
    """One real planning call, recorded in a site database (SQLite)."""
    kb = default_kb()
    item = alert_item()
    item = with_outputs(item, await RetrieverAgent(kb).handle(item, CTX))
    settings = Settings(state_dir=tmp_path_factory.mktemp("site"))
    recorder, _ = ledger_for_settings(settings)
    try:
        async with client_for(server.base_url, recorder) as client:
            plan = await ModelPlanner(client, fallback=RunbookPlanner(kb), max_steps=3).plan(item)
    finally:
        await recorder.store.close()
    return Planned(item, plan, settings)


async def test_server_answers_schema_constrained_json(server: LocalModelServer) -> None:
    schema = plan_schema(["S1", "F1"], max_steps=1)
    step_schema = schema["properties"]["steps"]["items"]["properties"]
    step_schema["description"]["maxLength"] = 80  # a step in < 200 tokens, even looping
    body = {
        "model": server.name,
        "messages": [
            {"role": "system", "content": "Plan the task. Reply with JSON only."},
            {"role": "user", "content": "Interface Gi0/1 on leaf7 is down.\n\n"
             "[S1] Runbook / Mitigation\nCheck the cable and restart the interface.\n"
             "[F1] interface_down on leaf7 Gi0/1 (major)"},
        ],
        "max_tokens": 200,
        "temperature": 0,
        "response_format": {"type": "json_schema",
                            "json_schema": {"name": "PlanDraft", "schema": schema}},
    }  # fmt: skip
    async with httpx.AsyncClient(timeout=CALL_TIMEOUT_S) as http:
        listed = (await http.get(f"{server.base_url}/models")).json()
        answer = (await http.post(f"{server.base_url}/chat/completions", json=body)).json()
    assert server.name in {m["id"] for m in listed["data"]}
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "stop", choice  # complete, not cut at max_tokens
    draft = json.loads(choice["message"]["content"])  # the grammar made it parse
    assert len(draft["steps"]) == 1
    for step in draft["steps"]:
        assert step["action"] in step_schema["action"]["enum"]
        assert len(step["description"]) <= 80
        assert set(step["grounding"]) <= {"S1", "F1"}
    assert answer["usage"]["completion_tokens"] <= 200


async def test_a_real_plan_is_validated_or_rejected_and_says_so(planned: Planned) -> None:
    plan, item = planned.plan, planned.item
    if plan.source == "model":
        report = ValidatorAgent(pii_check=lambda text: []).validate(with_outputs(item, plan))
        assert report.ok, (report.issues, plan)
        assert "[model vllm/smollm2-135m-instruct" in plan.rationale
        assert 1 <= len(plan.steps) <= 3
    else:
        base = RunbookPlanner(default_kb()).build(item)
        assert (plan.source, plan.steps) == (base.source, base.steps)
        assert plan.rationale.startswith("Model planning unavailable ("), plan.rationale
    assert plan.customer_message == ""  # alerts: the deterministic plan's (none)


async def test_offered_a_tool_the_real_model_calls_it_validly_or_plans_without(
    server: LocalModelServer,
) -> None:
    """Function calling against the real llama.cpp server: the tools request is accepted
    and answered; whatever SmolLM2 makes of it (measured: prose, no call), a call only
    runs when it matches the tool's input schema, and the plan is a checked model plan
    or the deterministic one saying why."""
    history_fake.CALLS.clear()
    kb = default_kb()
    item = alert_item()
    item = with_outputs(item, await RetrieverAgent(kb).handle(item, CTX))
    recorder = InMemoryRecorder()
    spec = ToolSpec(name="ticket_history", transport="python",
                    target="tests._mcp.history_fake:server", retries=0)  # fmt: skip
    async with ToolRegistry([spec], scanner=NoPii()) as registry:
        resources = AgentResources("lab", tools=lambda: registry)
        ctx = AgentContext(site="lab", worker="test:1", step="plan", resources=resources,
                           task_id="alert-1", role="planner")  # fmt: skip
        async with client_for(server.base_url, recorder) as client:
            backend = ModelPlanner(client, fallback=RunbookPlanner(kb), max_steps=3)
            plan = await PlannerAgent(backend).handle(item, ctx)
    calls = recorder.calls
    assert calls[0].request is not None
    assert [t.name for t in calls[0].request.tools] == ["ticket_history__history"]
    assert calls[0].outcome in {"ok", "timeout"}, calls[0]
    async with ToolRegistry([spec], scanner=NoPii()) as listing:
        info = (await listing.list_tools())[0]
    for _, arguments in history_fake.CALLS:
        validate_arguments(info.name, info.input_schema, arguments)
    for use in plan.tools:
        assert (use.outcome == "ok") == bool(use.ref), use
        if use.outcome == "rejected":
            assert use.reason.split(":")[0] in {"unknown_tool", "bad_arguments",
                                                "invalid_arguments", "too_many_tool_calls"}
    if plan.source == "model":
        report = ValidatorAgent(pii_check=lambda text: []).validate(with_outputs(item, plan))
        assert report.ok, (report.issues, plan)
    else:
        assert plan.rationale.startswith("Model planning unavailable ("), plan.rationale


async def test_the_call_is_recorded_and_replays_without_the_server(
    server: LocalModelServer, planned: Planned
) -> None:
    url = server.base_url
    await server.shutdown()  # the last test of the module: nothing serves the model now
    async with httpx.AsyncClient(timeout=2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"{url}/models")
    recorder, _ = ledger_for_settings(planned.settings)
    try:
        calls = await recorder.calls("alert-1")
        assert calls, "the planning call was not recorded"
        assert {c.provider for c in calls} == {"vllm"}
        assert all(c.request is not None for c in calls)
        assert all(c.response is not None for c in calls if c.outcome != "timeout")
        async with client_for(url, recorder, replay="strict") as client:
            again = await ModelPlanner(client, fallback=RunbookPlanner(default_kb()),
                                       max_steps=3).plan(planned.item)
        replayed = [c for c in await recorder.calls("alert-1") if c.outcome == "replayed"]
    finally:
        await recorder.store.close()
    answered = {c.outcome for c in calls} & {"ok", "invalid_output"}
    if answered:  # the model answered (accepted, repaired or rejected): the same plan
        assert again == planned.plan
        assert len(replayed) == len(calls)
    else:  # it timed out: nothing to replay, the deterministic steps are the same
        assert (again.source, again.steps) == (planned.plan.source, planned.plan.steps)
