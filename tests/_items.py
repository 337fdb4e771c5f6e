"""Work items for agent unit tests, built the way the runtime builds them."""

from __future__ import annotations

import msgspec

from sitemesh.schemas import TASK_KINDS, Envelope, PolicyDecision, Task, WorkItem
from sitemesh.workflows import new_item

STEP_OF: dict[str, str] = {
    "triage.v1": "triage",
    "retrieval_result.v1": "retrieve",
    "diagnosis.v1": "diagnose",
    "plan.v1": "plan",
    "validation_report.v1": "validate",
}
"""The bundled workflows' step name for each built-in output."""


def work_item(
    envelope: Envelope,
    task: Task,
    decision: PolicyDecision,
    *outputs: msgspec.Struct | None,
    **named: msgspec.Struct | None,
) -> WorkItem:
    """``new_item(...)`` with ``outputs`` recorded under the bundled step names (``None``
    is skipped); ``named`` = step name -> output, for other steps."""
    kind = next(k for k, t in TASK_KINDS.items() if isinstance(task, t))
    item = new_item(msgspec.structs.replace(envelope, kind=kind), task, decision)
    item = msgspec.structs.replace(item, envelope=envelope)
    for out in outputs:
        if out is not None:
            item = item.with_output(STEP_OF[str(out.__struct_config__.tag)], out)
    for step, out in named.items():
        if out is not None:
            item = item.with_output(step, out)
    return item


def with_outputs(item: WorkItem, *outputs: msgspec.Struct | None) -> WorkItem:
    """``item`` with each output recorded under its bundled step name."""
    for out in outputs:
        if out is not None:
            item = item.with_output(STEP_OF[str(out.__struct_config__.tag)], out)
    return item
