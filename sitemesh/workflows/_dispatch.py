"""Turning a workflow step decision into bus messages (events and the next work item)."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ..bus import Outbound, Subjects, msg_id
from ..errors import WorkflowError
from ..schemas import StepSkipped, WorkflowStep, WorkItem
from ._advance import Advance, Skip


def skipped_events(
    item: WorkItem, skips: Sequence[Skip], subjects: Subjects, producer: str
) -> list[Outbound]:
    """One ``StepSkipped`` event per skipped step (msg id ``<task>:skip:<step>``), on
    ``producer``'s event subject (the role deciding the next step publishes them)."""
    env, wf = item.envelope, item.workflow
    return [
        Outbound(
            subjects.event(env.task_id, producer),
            StepSkipped(
                task_id=env.task_id,
                site=subjects.site,
                step=s.step.name,
                role=s.step.role,
                reason=s.reason,
                workflow=wf.name,
                workflow_version=wf.version,
            ),
            msg_id(env.task_id, "skip", s.step.name),
            task_id=env.task_id,
            data_class=env.data_class,
        )
        for s in skips
    ]


def dispatch(
    item: WorkItem, advance: Advance, subjects: Subjects, producer: str
) -> tuple[WorkItem, list[Outbound]]:
    """The events for ``advance.skipped`` and the work message for ``advance.step``.

    ``producer`` is the role (or ``operator``) publishing them: the skip events go on
    its event subject (:meth:`Subjects.event`).

    Returns:
        ``(item addressed to the next step, messages)``.

    Raises:
        WorkflowError: no step is left (the workflow ended without a final answer;
            the checks make that impossible for a validated workflow).
    """
    env = item.envelope
    outs = skipped_events(item, advance.skipped, subjects, producer)
    step: WorkflowStep | None = advance.step
    if step is None:
        raise WorkflowError(
            f"workflow {item.workflow.name!r} ended after step {item.step!r} without a final "
            "answer (its last step must produce one)"
        )
    nxt = msgspec.structs.replace(
        item, step=step.name, skipped=[*item.skipped, *(s.step.name for s in advance.skipped)]
    )
    outs.append(
        Outbound(
            subjects.work(step.role),
            nxt,
            msg_id(env.task_id, "work", step.name),
            task_id=env.task_id,
            data_class=env.data_class,
        )
    )
    return nxt, outs
