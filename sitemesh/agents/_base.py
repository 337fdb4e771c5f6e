"""The agent interface: one async ``handle`` per role, no bus code inside."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol

from ..schemas import (
    Diagnosis,
    FinalAnswer,
    Plan,
    RetrievalResult,
    ValidationReport,
    WorkItem,
)

AgentOutput = RetrievalResult | Diagnosis | Plan | ValidationReport | FinalAnswer
"""What a role produces: the step agents return their part, escalation the answer."""


@dataclass(frozen=True, slots=True)
class AgentContext:
    """What an agent may know beyond the work item.

    Attributes:
        site: the site the agent runs at.
        worker: ``<host>:<pid>`` of the process.
        num_delivered: 1 on the first delivery; agents must be idempotent anyway.
    """

    site: str
    worker: str
    num_delivered: int = 1


class Agent(Protocol):
    """A role. The worker runtime owns acking, retries, dead letters and publishing.

    ``handle`` must be deterministic for the same input (so redeliveries and replays
    give the same output) and raise :class:`sitemesh.errors.PermanentError` for input
    it can never handle, :class:`sitemesh.errors.TransientError` for a dependency
    that is down.
    """

    role: ClassVar[str]

    async def handle(self, item: WorkItem, ctx: AgentContext) -> AgentOutput: ...

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line about ``output`` for the task's progress event."""
        ...
