"""Agents written the way a user writes them, registered by import path in tests."""

from __future__ import annotations

from typing import Literal

import msgspec

from sitemesh.agents import Agent, AgentContext, agent
from sitemesh.schemas import SupportTicket, WorkItem


class Tone(msgspec.Struct, frozen=True, kw_only=True, tag="tone.v1"):
    """A toy classification: ``urgent`` when the ticket shouts."""

    label: Literal["urgent", "calm"]
    exclamations: int


class ToneAgent(Agent):
    """Counts exclamation marks (a stand-in for a real classifier)."""

    role = "tone"
    output = Tone
    accepts = (SupportTicket,)

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Tone:
        assert isinstance(item.task, SupportTicket)
        n = item.task.body.count("!")
        return Tone(label="urgent" if n >= 2 else "calm", exclamations=n)

    def summarize(self, output: Tone) -> str:
        return f"tone {output.label}"


class Length(msgspec.Struct, frozen=True, kw_only=True, tag="length.v1"):
    chars: int


@agent(role="length", output=Length)
async def length(item: WorkItem, ctx: AgentContext) -> Length:
    """Characters of the task's text."""
    return Length(chars=len(getattr(item.task, "body", "") or ""))


class CloudOnly(Agent):
    """A role that may only run in the cloud zone."""

    role = "cloudy"
    output = Length
    zones = frozenset({"cloud"})

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Length:
        return Length(chars=0)


class NotAnAgent:
    role = "nope"


class BadOutput(Agent):
    role = "badout"
    output = int  # type: ignore[assignment]
