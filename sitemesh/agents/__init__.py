"""The five agent roles. Each is a class with one async ``handle(item, ctx)``; the
worker runtime (``sitemesh.bus``) owns acking, retries, dead letters and publishing.

| role | does |
| --- | --- |
| retriever | BM25 search over the packaged runbook knowledge base |
| diagnostics | diagnostic routines over the Cisco router telemetry of the task's device |
| planner | a typed plan from the matched runbook (``source="runbook"``) |
| validator | schema, allowed actions, grounding, no PII in customer-facing text |
| escalation | resolved / escalate / needs_human, and the final answer |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._actions import ALLOWED_ACTIONS
from ._base import Agent, AgentContext, AgentOutput
from ._diagnostics import DiagnosticsAgent
from ._escalation import EscalationAgent
from ._faultlog import FaultScore, load_fault_log
from ._faultlog import score as fault_score
from ._kb import KnowledgeBase, default_kb
from ._planner import PlannerAgent, PlanningBackend, RunbookPlanner
from ._retriever import RetrieverAgent
from ._telemetry import load_telemetry
from ._validator import ValidatorAgent

if TYPE_CHECKING:
    from ..config import Settings

AGENT_ROLES: tuple[str, ...] = ("retriever", "diagnostics", "planner", "validator", "escalation")
"""The agent roles, in pipeline order."""


def _model_planner(settings: Settings | None) -> PlanningBackend | None:
    """A model-backed planner when models are configured, else ``None`` (runbook)."""
    if settings is None:
        return None
    from ..edge_node._models import build_model_client
    from ..models import ModelPlanner

    client = build_model_client(settings)
    return ModelPlanner(client) if client is not None else None


def build_agent(role: str, settings: Settings | None = None) -> Agent:
    """Build the agent of ``role`` and load what it needs (index, telemetry, analyzer)
    now, so that its first message does not pay for it.

    Raises:
        ValueError: ``role`` is not an agent role.
    """
    agent: Agent
    if role == "retriever":
        default_kb()
        agent = RetrieverAgent()
    elif role == "diagnostics":
        load_telemetry("leaf7")
        agent = DiagnosticsAgent()
    elif role == "planner":
        default_kb()
        agent = PlannerAgent(backend=_model_planner(settings))
    elif role == "validator":
        validator = ValidatorAgent()
        validator.warm_up()
        agent = validator
    elif role == "escalation":
        agent = EscalationAgent()
    else:
        raise ValueError(f"unknown agent role {role!r}; expected one of {AGENT_ROLES}")
    return agent


__all__ = [
    "AGENT_ROLES",
    "ALLOWED_ACTIONS",
    "Agent",
    "AgentContext",
    "AgentOutput",
    "DiagnosticsAgent",
    "EscalationAgent",
    "FaultScore",
    "KnowledgeBase",
    "PlannerAgent",
    "PlanningBackend",
    "RetrieverAgent",
    "RunbookPlanner",
    "ValidatorAgent",
    "build_agent",
    "default_kb",
    "fault_score",
    "load_fault_log",
]
