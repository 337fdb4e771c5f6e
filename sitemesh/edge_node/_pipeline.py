"""Adapts an :class:`~sitemesh.agents.Agent` to the worker runtime's handler shape.

The agent only computes its output; this adapter merges it into the work item,
addresses the next role (or the task's event subject for the final answer), and
derives every ``Nats-Msg-Id`` from (task id, step, role) so that a redelivered
step republishes nothing new.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import msgspec

from ..agents._base import Agent, AgentContext
from ..bus import Outbound, Subjects, msg_id, next_role
from ..bus._types import Handler, MsgContext
from ..schemas import (
    Diagnosis,
    FinalAnswer,
    Plan,
    RetrievalResult,
    StepCompleted,
    ValidationReport,
    WorkItem,
    utcnow,
)

_FIELD_OF: dict[type, str] = {
    RetrievalResult: "retrieval",
    Diagnosis: "diagnosis",
    Plan: "plan",
    ValidationReport: "validation",
}
"""Which ``WorkItem`` field each step output fills."""


Finaliser = Callable[[WorkItem, FinalAnswer, MsgContext], Awaitable[Sequence[Outbound] | None]]
"""Decides where a final answer goes: returns the messages to publish instead of
answering on the site (e.g. :class:`~sitemesh.edge_node.CloudForwarder`), or ``None``."""


def agent_handler(
    agent: Agent, subjects: Subjects, *, finaliser: Finaliser | None = None
) -> Handler[WorkItem]:
    """Wrap ``agent`` into a ``Handler[WorkItem]`` for :class:`sitemesh.bus.Worker`.

    Args:
        agent: the role's agent.
        subjects: the site's subjects.
        finaliser: for the last role: may take over the final answer (forward it).

    Returns:
        A handler publishing a ``StepCompleted`` event plus either the enriched
        ``WorkItem`` for the next role or, from the last role, the ``FinalAnswer``.

    Raises (from the handler):
        TypeError: the agent returned an output its role cannot produce (a bug).
    """
    role = agent.role

    async def handle(item: WorkItem, ctx: MsgContext) -> Sequence[Outbound]:
        started = utcnow()
        env = item.envelope
        output = await agent.handle(
            item,
            AgentContext(site=subjects.site, worker=ctx.worker, num_delivered=ctx.num_delivered),
        )
        tid = env.task_id
        dclass = env.data_class
        step = StepCompleted(
            task_id=tid,
            site=subjects.site,
            role=role,
            summary=agent.summarize(output),
            started_at=started,
            deliveries=ctx.num_delivered,
            worker=ctx.worker,
        )
        outs = [
            Outbound(
                subjects.event(tid), step, msg_id(tid, "step", role), task_id=tid, data_class=dclass
            )
        ]
        nxt = next_role(role)
        if isinstance(output, FinalAnswer):
            if nxt is not None:
                raise TypeError(f"{role} returned a FinalAnswer but is not the last role")
            if finaliser is not None:
                taken = await finaliser(item, output, ctx)
                if taken is not None:
                    return [*outs, *taken]
            outs.append(
                Outbound(
                    subjects.event(tid),
                    output,
                    msg_id(tid, "final", role),
                    task_id=tid,
                    data_class=dclass,
                )
            )
            return outs
        field = _FIELD_OF.get(type(output))
        if field is None or nxt is None:
            raise TypeError(f"{role} returned {type(output).__name__}, which it cannot produce")
        merged = msgspec.structs.replace(item, **{field: output})
        outs.append(
            Outbound(
                subjects.work(nxt), merged, msg_id(tid, "work", nxt), task_id=tid, data_class=dclass
            )
        )
        return outs

    return handle
