"""Models: the one client agents call models through (docs/models.md).

``ModelClient`` routes each call by kind, complexity and the privacy policy to an
ordered chain of ``vllm/...`` (site), ``openai/...`` and ``anthropic/...`` models,
calls them through the official SDKs with timeouts, jittered retries honouring
``Retry-After``, a circuit breaker per backend and fallback down the chain, records
every call by prompt hash for replay, and labels the deterministic fallback when no
model answers.
"""

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
    "MODEL_FALLBACK_NOTE",
    "MODEL_SKIPPED_NOTE",
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
    "ModelPlanner",
    "ModelRef",
    "ModelRequest",
    "ModelResponse",
    "ModelSynthesiser",
    "NoBudget",
    "NullRecorder",
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
    "ToolSpec",
    "Usage",
    "VllmServer",
    "call_key",
    "check_hub_models",
    "cost_rollup",
    "ledger_for_settings",
    "local_hub_models",
    "local_model_path",
    "local_site_models",
    "object_schema",
    "parse_retry_after",
    "plan_schema",
    "rejection_code",
    "site_endpoints",
    "synthesis_schema",
    "total",
    "vllm_health",
    "with_local_model",
]
