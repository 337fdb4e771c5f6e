"""An agent that asks the site model for every item and falls back when it cannot.

``sitemesh worker --agent tests._workers.model_agent:ModelAgent`` with the site model
settings in the environment (``SITEMESH_MODELS_*``): the model health tests point it
at an endpoint that refuses connections and watch its breaker open.
"""

from __future__ import annotations

import msgspec

from sitemesh.agents import Agent, AgentContext, AgentResources
from sitemesh.models import CallContext, ChatMessage, ModelRequest
from sitemesh.schemas import WorkItem


class Asked(msgspec.Struct, frozen=True, kw_only=True, tag="asked_result.v1"):
    source: str
    """``model``, or ``fallback`` when no model answered."""


class ModelAgent(Agent):
    """One model call per item, with a deterministic fallback."""

    role = "asker"
    output = Asked

    async def setup(self, resources: AgentResources) -> None:
        self._models = resources.models

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Asked:
        if self._models is None:
            return Asked(source="none")
        response = await self._models.complete(
            ModelRequest(messages=[ChatMessage(role="user", content="Say ok.")], max_tokens=4),
            CallContext(kind="classification", agent=self.role, task_id=ctx.task_id),
            fallback=lambda: "ok",
        )
        return Asked(source=response.source)
