"""An agent that loads only when told: the readiness tests watch it while it "loads".

``sitemesh worker --agent tests._workers.gated_agent:GatedAgent`` with
``GATED_AGENT_GATE=/path/to/file`` in the environment: ``setup()`` waits until that
file exists (the test creates it), as a real agent waits for its models or indexes.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import msgspec

from sitemesh.agents import Agent, AgentContext, AgentResources
from sitemesh.schemas import WorkItem

GATE_ENV = "GATED_AGENT_GATE"


class Gated(msgspec.Struct, frozen=True, kw_only=True, tag="gated_result.v1"):
    ok: bool = True


class GatedAgent(Agent):
    """Loads once the gate file exists; answers every item with ``ok``."""

    role = "gated"
    output = Gated

    async def setup(self, resources: AgentResources) -> None:
        gate = Path(os.environ[GATE_ENV])
        while not gate.exists():  # the test opens the gate; a real agent loads here
            await asyncio.sleep(0.02)

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Gated:
        return Gated()
