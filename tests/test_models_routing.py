"""Routing rules, the ``models`` settings group, and the package's public API."""

from __future__ import annotations

import pytest

import sitemesh.models
from sitemesh.config import load_settings
from sitemesh.errors import ConfigError
from sitemesh.models import CallContext, ModelClient, ModelRef, Router

SITE = ["vllm/qwen2.5-7b-instruct"]
CLOUD = ["openai/gpt-4.1", "anthropic/claude-sonnet-4-6"]


def refs(chain: list[ModelRef]) -> list[str]:
    return [str(r) for r in chain]


def test_model_refs() -> None:
    qwen = ModelRef.parse("vllm/Qwen/Qwen2.5-7B-Instruct")
    assert qwen == ModelRef("vllm", "Qwen/Qwen2.5-7B-Instruct")
    assert ModelRef.parse("openai/gpt-4.1").on_site is False
    for bad in ["gpt-4.1", "mistral/large", "vllm/"]:
        with pytest.raises(ConfigError, match="models"):
            ModelRef.parse(bad)
    with pytest.raises(ConfigError, match=r"site_chain: openai/gpt-4\.1 is not a site model"):
        Router(site_chain=["openai/gpt-4.1"])


@pytest.mark.parametrize(
    ("ctx", "expected"),
    [
        (CallContext(kind="synthesis", complexity=0.9, action="allow_cloud"), CLOUD + SITE),
        (CallContext(kind="synthesis", complexity=0.2, action="allow_cloud"), SITE + CLOUD),
        (CallContext(kind="classification", complexity=0.9, action="allow_cloud"), SITE + CLOUD),
        (CallContext(kind="extraction", action="allow_cloud"), SITE + CLOUD),
        (CallContext(kind="synthesis", complexity=0.9, action="pin_edge"), SITE),
        (CallContext(kind="synthesis", complexity=0.9, action="deny"), SITE),
        (CallContext(kind="synthesis", complexity=0.9, action="require_approval"), SITE),
        (CallContext(kind="synthesis", complexity=0.9, action="require_approval", approved=True),
         CLOUD + SITE),
        (CallContext(), SITE),  # the default context is site-pinned
    ],
)
def test_routing_table(ctx: CallContext, expected: list[str]) -> None:
    assert refs(Router(SITE, CLOUD).chain(ctx)) == expected


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEMESH_MODELS_SITE_CHAIN", '["vllm/qwen2.5-7b-instruct"]')
    monkeypatch.setenv("SITEMESH_MODELS_CLOUD_CHAIN", '["anthropic/claude-sonnet-4-6"]')
    monkeypatch.setenv("SITEMESH_MODELS_VLLM_BASE_URL", "http://gpu1:8000/v1")
    monkeypatch.setenv("SITEMESH_MODELS_ANTHROPIC_API_KEY", "sk-ant-secret")
    monkeypatch.setenv("SITEMESH_MODELS_OPENAI_TIMEOUT_S", "12.5")
    monkeypatch.setenv("SITEMESH_MODELS_BREAKER_FAILURES", "2")
    settings = load_settings()
    m = settings.models
    assert m.site_chain == ["vllm/qwen2.5-7b-instruct"]
    assert m.openai_timeout_s == 12.5
    assert m.breaker_failures == 2
    assert "sk-ant-secret" not in repr(m)
    env = settings.to_env()
    assert env["SITEMESH_MODELS_CLOUD_CHAIN"] == '["anthropic/claude-sonnet-4-6"]'
    assert env["SITEMESH_MODELS_ANTHROPIC_API_KEY"] == "sk-ant-secret"
    client = ModelClient.from_settings(m)
    assert sorted(client.backends) == ["anthropic", "vllm"]  # no OpenAI key: no backend
    assert refs(client.chain(CallContext(kind="synthesis", complexity=1, action="allow_cloud"))) \
        == ["anthropic/claude-sonnet-4-6", "vllm/qwen2.5-7b-instruct"]
    assert client.breakers["vllm"].failures == 2


PUBLIC = [
    "FALLBACK_MODEL", "MODEL_FALLBACK_NOTE", "REPAIR_PROMPT", "SITE_PROVIDERS",
    "SYNTHESIS_FALLBACK_LABEL", "AnthropicBackend", "BreakerState", "Budget", "CallContext",
    "CallRecorder", "ChatMessage", "CircuitBreaker", "DeltaCallback", "InMemoryRecorder",
    "ModelBackend", "ModelCall", "ModelClient", "ModelHealth", "ModelPlanner", "ModelRef",
    "ModelRequest",
    "ModelResponse", "ModelSynthesiser", "NoBudget", "NullRecorder", "OpenAIBackend",
    "Outcome", "OutputSchema", "PlanDraft", "Provider", "RetryPolicy", "Router", "Structured",
    "SynthesisDraft", "ToolCall", "ToolSpec", "Usage", "VllmServer", "call_key",
    "object_schema", "parse_retry_after", "vllm_health",
    "COST_KEYS", "CostRow", "cost_rollup", "ledger_for_settings", "total",
    "check_hub_models", "site_endpoints",
    "LOCAL_MODEL_NAME", "MODEL_SKIPPED_NOTE", "LocalModelServer", "local_hub_models",
    "local_model_path", "local_site_models", "PlanSources", "plan_schema", "rejection_code",
    "synthesis_schema", "with_local_model",
    "MAX_TOOL_CALLS", "MAX_TOOL_RESULT_CHARS", "PLANNER_TOOL_SERVERS", "OfferedTool",
    "ToolRound", "function_name", "offer_tools", "run_tool_calls",
]  # fmt: skip


def test_public_api_is_pinned() -> None:
    assert sorted(sitemesh.models.__all__) == sorted(PUBLIC)
    for name in PUBLIC:
        assert getattr(sitemesh.models, name) is not None
