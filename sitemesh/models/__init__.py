"""Models: the one client agents call models through (docs/models.md).

``ModelClient`` routes each call by kind, complexity and the privacy policy to an
ordered chain of ``vllm/...`` (site), ``openai/...`` and ``anthropic/...`` models,
calls them through the official SDKs with timeouts, jittered retries honouring
``Retry-After``, a circuit breaker per backend and fallback down the chain, records
every call by prompt hash for replay, and labels the deterministic fallback when no
model answers.

Function calling (:func:`offer_tools`, :func:`run_tool_calls`): a model is offered the
site's read-only tools, and what it requests is checked against the offer and each
tool's input schema and run through the agent's ``ctx.tools``; :class:`ModelPlanner`
uses it (docs/tools.md, "Tools for models").
"""

from ..schemas import ModelHealth
from ._agents import (
    MODEL_FALLBACK_NOTE,
    MODEL_SKIPPED_NOTE,
    SYNTHESIS_FALLBACK_LABEL,
    ModelPlanner,
    ModelSynthesiser,
    PlanDraft,
    PlanSources,
    SynthesisDraft,
    plan_schema,
    rejection_code,
    synthesis_schema,
)
from ._backends import AnthropicBackend, DeltaCallback, ModelBackend, OpenAIBackend, object_schema
from ._client import FALLBACK_MODEL, REPAIR_PROMPT, ModelClient, Structured, call_key
from ._hooks import Budget, NoBudget
from ._ledger import COST_KEYS, CostRow, cost_rollup, ledger_for_settings, total
from ._local import (
    LOCAL_MODEL_NAME,
    LocalModelServer,
    local_hub_models,
    local_model_path,
    local_site_models,
    with_local_model,
)
from ._recorder import CallRecorder, InMemoryRecorder, NullRecorder
from ._resilience import BreakerState, CircuitBreaker, RetryPolicy, parse_retry_after
from ._routing import ModelRef, Router
from ._sides import check_hub_models, site_endpoints
from ._tool_use import (
    MAX_TOOL_CALLS,
    MAX_TOOL_RESULT_CHARS,
    PLANNER_TOOL_SERVERS,
    OfferedTool,
    ToolRound,
    function_name,
    offer_tools,
    run_tool_calls,
)
from ._types import (
    SITE_PROVIDERS,
    CallContext,
    ChatMessage,
    ModelCall,
    ModelRequest,
    ModelResponse,
    Outcome,
    OutputSchema,
    Provider,
    ToolCall,
    ToolSpec,
    Usage,
)
from ._vllm import VllmServer, vllm_health

__all__ = [
    "COST_KEYS",
    "FALLBACK_MODEL",
    "LOCAL_MODEL_NAME",
    "MAX_TOOL_CALLS",
    "MAX_TOOL_RESULT_CHARS",
    "MODEL_FALLBACK_NOTE",
    "MODEL_SKIPPED_NOTE",
    "PLANNER_TOOL_SERVERS",
    "REPAIR_PROMPT",
    "SITE_PROVIDERS",
    "SYNTHESIS_FALLBACK_LABEL",
    "AnthropicBackend",
    "BreakerState",
    "Budget",
    "CallContext",
    "CallRecorder",
    "ChatMessage",
    "CircuitBreaker",
    "CostRow",
    "DeltaCallback",
    "InMemoryRecorder",
    "LocalModelServer",
    "ModelBackend",
    "ModelCall",
    "ModelClient",
    "ModelHealth",
    "ModelPlanner",
    "ModelRef",
    "ModelRequest",
    "ModelResponse",
    "ModelSynthesiser",
    "NoBudget",
    "NullRecorder",
    "OfferedTool",
    "OpenAIBackend",
    "Outcome",
    "OutputSchema",
    "PlanDraft",
    "PlanSources",
    "Provider",
    "RetryPolicy",
    "Router",
    "Structured",
    "SynthesisDraft",
    "ToolCall",
    "ToolRound",
    "ToolSpec",
    "Usage",
    "VllmServer",
    "call_key",
    "check_hub_models",
    "cost_rollup",
    "function_name",
    "ledger_for_settings",
    "local_hub_models",
    "local_model_path",
    "local_site_models",
    "object_schema",
    "offer_tools",
    "parse_retry_after",
    "plan_schema",
    "rejection_code",
    "run_tool_calls",
    "site_endpoints",
    "synthesis_schema",
    "total",
    "vllm_health",
    "with_local_model",
]
