"""Adapts an :class:`~sitemesh.agents.Agent` to the worker runtime's handler shape.

The agent only computes its output. This adapter checks the item is addressed to
the agent's role and is a task it accepts, checks the output's type, records the
output under the step's name, picks the next step from the item's workflow
(:func:`sitemesh.workflows.next_step`), and derives every ``Nats-Msg-Id`` from
(task id, step) so that a redelivered step republishes nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import msgspec

from ..agents import AgentContext, AgentResources, AgentSpec
from ..bus import Handler, MsgContext, Outbound, Subjects, msg_id
from ..errors import SchemaError, WorkflowError
from ..schemas import (
    DATA_CLASS_ORDER,
    ENCODER,
    DataClass,
    FinalAnswer,
    StepCompleted,
    StepOutput,
    WorkItem,
    schema_tag,
    utcnow,
)
from ..workflows import dispatch, next_step, step_of

Finaliser = Callable[[WorkItem, FinalAnswer, MsgContext], Awaitable[Sequence[Outbound] | None]]
"""Decides where a final answer goes: returns the messages to publish instead of
answering on the site (e.g. :class:`~sitemesh.edge_node.CloudForwarder`), or ``None``."""


def _raised(item: WorkItem, tool_class: DataClass | None) -> WorkItem:
    """``item`` with its envelope's data class raised to what the step's tools returned
    (a CRM answer with names and IBANs makes the task ``restricted``): the next steps,
    the events' ``sm-data-class`` headers, the final answer and the boundary see it."""
    env = item.envelope
    if tool_class is None:
        return item
    order = DATA_CLASS_ORDER.index
    if order(tool_class) <= order(env.data_class):
        return item
    envelope = msgspec.structs.replace(env, data_class=tool_class)
    return msgspec.structs.replace(item, envelope=envelope)


def step_handler(
    spec: AgentSpec,
    subjects: Subjects,
    *,
    agent: object | None = None,
    resources: AgentResources | None = None,
    finaliser: Finaliser | None = None,
) -> Handler[WorkItem]:
    """Wrap the agent of ``spec`` into a ``Handler[WorkItem]`` for :class:`sitemesh.bus.Worker`.

    Args:
        spec: the role's registry entry.
        subjects: the site's subjects.
        agent: the agent instance (already set up); default ``spec.create()``
            (then call :meth:`Agent.setup` yourself before the first message).
        resources: what the agent reaches through its context.
        finaliser: for a role that ends workflows: may take over the final answer
            (forward it to the cloud).

    Returns:
        A handler publishing a ``StepCompleted`` event (with the output) plus either
        the item for the next step or, from a final step, the ``FinalAnswer``.

    Raises (from the handler):
        SchemaError: the item is addressed to another role's step, or its task is
            a kind the agent does not accept (dead-lettered, naming the field).
        TypeError: the agent returned something other than ``spec.output`` (a bug).
    """
    role = spec.role
    instance = agent if agent is not None else spec.create()
    handle_fn = instance.handle  # type: ignore[attr-defined]
    summarize = instance.summarize  # type: ignore[attr-defined]
    accepts = spec.accepts
    expected = spec.output
    out_tag = str(expected.__struct_config__.tag)
    log = logging.getLogger(f"sitemesh.agent.{role}")

    async def handle(item: WorkItem, ctx: MsgContext) -> Sequence[Outbound]:
        started = utcnow()
        env = item.envelope
        try:
            step = step_of(item)
        except WorkflowError as exc:
            raise SchemaError(str(exc), field="$.step") from exc
        if step.role != role:
            raise SchemaError(
                f"step {step.name!r} is for role {step.role!r}, not {role!r}", field="$.step"
            )
        if accepts is not None and not isinstance(item.task, accepts):
            names = [str(t.__struct_config__.tag) for t in accepts]
            raise SchemaError(
                f"role {role!r} takes {names}, not {schema_tag(item.task)!r}", field="$.task.type"
            )
        agent_ctx = AgentContext(
            site=subjects.site,
            worker=ctx.worker,
            num_delivered=ctx.num_delivered,
            step=step.name,
            resources=resources,
            log=log,
            task_id=env.task_id,
            role=role,
        )
        output = await handle_fn(item, agent_ctx)
        if not isinstance(output, expected):
            raise TypeError(
                f"{role} returned {type(output).__name__}, but declares output {expected.__name__}"
            )
        item = _raised(item, agent_ctx.tool_data_class)
        env = item.envelope
        tid, dclass, wf = env.task_id, env.data_class, item.workflow
        raw = msgspec.Raw(ENCODER.encode(output))
        event = StepCompleted(
            task_id=tid,
            site=subjects.site,
            role=role,
            summary=summarize(output),
            started_at=started,
            deliveries=ctx.num_delivered,
            worker=ctx.worker,
            step=step.name,
            workflow=wf.name,
            workflow_version=wf.version,
            output_type=out_tag,
            output=msgspec.Raw(b"null") if isinstance(output, FinalAnswer) else raw,
        )
        outs = [
            Outbound(
                subjects.event(tid, role),
                event,
                msg_id(tid, "step", step.name),
                task_id=tid,
                data_class=dclass,
            )
        ]
        if isinstance(output, FinalAnswer):
            answer = msgspec.structs.replace(
                output,
                tenant=item.envelope.tenant,
                workflow=wf.name,
                workflow_version=wf.version,
            )
            if DATA_CLASS_ORDER.index(dclass) > DATA_CLASS_ORDER.index(answer.data_class):
                answer = msgspec.structs.replace(answer, data_class=dclass)
            if finaliser is not None:
                taken = await finaliser(item, answer, ctx)
                if taken is not None:
                    return [*outs, *taken]
            outs.append(  # create-only: neither a forged msg id nor a redelivery
                Outbound(  # can store a second answer or drop the real one
                    subjects.answer(tid, answer.tenant),
                    answer,
                    msg_id(tid, "final", role),
                    task_id=tid,
                    data_class=dclass,
                    create_only=True,
                )
            )
            return outs
        done = msgspec.structs.replace(
            item,
            outputs={**item.outputs, step.name: StepOutput(role=role, type=out_tag, output=raw)},
        )
        try:
            advance = next_step(done, step.name)
        except WorkflowError as exc:
            raise SchemaError(str(exc), field="$.workflow") from exc
        _, more = dispatch(done, advance, subjects, role)
        return [*outs, *more]

    return handle
