"""The agent API (:class:`Agent`, :func:`agent`, :class:`AgentContext`), the
:class:`Registry` of roles, and the five built-in roles written on that same API.
The runtime (:mod:`sitemesh.runtime`) owns acking, retries, dead letters and
publishing. See ``docs/agents.md``.

The built-in roles are registered like any other, as ``sitemesh.agents`` entry points
in sitemesh's ``pyproject.toml``:

| role | does |
| --- | --- |
| triage | intent or category, urgency and language of a support ticket (``sitemesh.triage``) |
| retriever | BM25 over the knowledge bases routed by kind and tenant (``sitemesh.knowledge``) |
| diagnostics | diagnostic routines over the Cisco router telemetry of the task's device |
| planner | a reply drafted from the matched KB answer, a runbook plan, or the site model's |
| validator | schema, allowed actions, grounding, no PII in customer-facing text |
| escalation | resolved / escalate / needs_human, and the final answer |
"""

from __future__ import annotations

from ._actions import ACTION_DESCRIPTIONS, ALLOWED_ACTIONS
from ._base import Agent, AgentContext, AgentOutput, AgentResources, agent
from ._crm import crm_handle
from ._diagnostics import DiagnosticsAgent
from ._escalation import EscalationAgent
from ._faultlog import FaultScore, load_fault_log
from ._faultlog import score as fault_score
from ._kb import KnowledgeBase, default_kb
from ._planner import (
    FALLBACK_MESSAGE,
    TICKET_MESSAGE,
    PlannerAgent,
    PlanningBackend,
    RunbookPlanner,
    ToolPlanningBackend,
    diagnosis_ref,
)
from ._registry import (
    ENTRY_POINT_GROUP,
    RESERVED_ROLES,
    AgentSpec,
    Registry,
    check_agent_class,
    import_agent,
)
from ._retriever import RetrieverAgent
from ._triage import TriageAgent
from ._validator import ValidatorAgent

__all__ = [
    "ACTION_DESCRIPTIONS",
    "ALLOWED_ACTIONS",
    "ENTRY_POINT_GROUP",
    "FALLBACK_MESSAGE",
    "RESERVED_ROLES",
    "TICKET_MESSAGE",
    "Agent",
    "AgentContext",
    "AgentOutput",
    "AgentResources",
    "AgentSpec",
    "DiagnosticsAgent",
    "EscalationAgent",
    "FaultScore",
    "KnowledgeBase",
    "PlannerAgent",
    "PlanningBackend",
    "Registry",
    "RetrieverAgent",
    "RunbookPlanner",
    "ToolPlanningBackend",
    "TriageAgent",
    "ValidatorAgent",
    "agent",
    "check_agent_class",
    "crm_handle",
    "default_kb",
    "diagnosis_ref",
    "fault_score",
    "import_agent",
    "load_fault_log",
]
