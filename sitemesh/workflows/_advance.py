"""Which step comes next: evaluated by whoever finished the previous one.

The router calls :func:`first_step` when it accepts a task; each agent's runtime
adapter calls :func:`next_step` after the agent returns. Both read only the work
item (which carries its workflow), so every worker agrees without reading KV, and
a replay makes the same choices.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import NoWorkflow, WorkflowError
from ..schemas import (
    DATA_CLASS_ORDER,
    DataClass,
    Envelope,
    PolicyDecision,
    Task,
    WorkflowSpec,
    WorkflowStep,
    WorkItem,
)
from ._conditions import Condition, parse_condition
from ._document import Workflows


@dataclass(frozen=True, slots=True)
class Skip:
    """A step that does not run, and why (PII-free: names and policy ids only)."""

    step: WorkflowStep
    reason: str


@dataclass(frozen=True, slots=True)
class Advance:
    """The outcome of :func:`next_step`.

    Attributes:
        step: the step to run next; ``None`` when the workflow has none left.
        skipped: steps passed over on the way, in order.
    """

    step: WorkflowStep | None
    skipped: tuple[Skip, ...]


def cloud_allowed(decision: PolicyDecision) -> bool:
    """Whether the policy lets the task's content leave the site: ``allow_cloud``, or
    ``require_approval`` once a person approved."""
    return decision.action == "allow_cloud" or (
        decision.action == "require_approval" and decision.approved_by is not None
    )


def data_class_raised(item: WorkItem) -> DataClass | None:
    """The task's data class when a step raised it above the class the policy decided
    on, else ``None``.

    A tool response with personal data raises the class mid-workflow (the runtime
    carries it in :attr:`Envelope.data_class`, see ``docs/tools.md``). The decision was
    made for the lower class and the facts to decide again stay with the router, so the
    decision no longer covers the task: it does not leave the site (cloud steps are
    skipped, the escalation is not forwarded). Fail closed (STYLE: privacy path).
    """
    now, decided = item.envelope.data_class, item.decision.data_class
    if DATA_CLASS_ORDER.index(now) > DATA_CLASS_ORDER.index(decided):
        return now
    return None


@functools.lru_cache(maxsize=2048)
def _condition(text: str, known: tuple[str, ...], where: str) -> Condition:
    return parse_condition(text, known=known, where=where)


def _scope(item: WorkItem) -> dict[str, Any]:
    scope: dict[str, Any] = {
        name: msgspec.json.decode(out.output) for name, out in item.outputs.items()
    }
    scope["task"] = msgspec.to_builtins(item.task)
    scope["decision"] = msgspec.to_builtins(item.decision)
    scope["envelope"] = msgspec.to_builtins(item.envelope)
    return scope


def _step_index(workflow: WorkflowSpec, name: str) -> int:
    for i, step in enumerate(workflow.steps):
        if step.name == name:
            return i
    raise WorkflowError(
        f"workflow {workflow.name!r} has no step {name!r}; steps: "
        f"{[s.name for s in workflow.steps]}"
    )


def _walk(item: WorkItem, start: int) -> Advance:
    wf = item.workflow
    names = tuple(s.name for s in wf.steps)
    skipped: list[Skip] = []
    scope: dict[str, Any] | None = None
    for i in range(start, len(wf.steps)):
        step = wf.steps[i]
        if step.zone == "cloud" and not cloud_allowed(item.decision):
            d = item.decision
            skipped.append(
                Skip(
                    step,
                    f"policy {d.action} (rule {d.rule_id}) keeps the task on site; "
                    f"step {step.name} runs in the cloud",
                )
            )
            continue
        raised = data_class_raised(item) if step.zone == "cloud" else None
        if raised is not None:
            skipped.append(
                Skip(
                    step,
                    f"data class raised to {raised} after the policy decision "
                    f"({item.decision.data_class}) keeps the task on site; "
                    f"step {step.name} runs in the cloud",
                )
            )
            continue
        if step.when is not None:
            scope = scope if scope is not None else _scope(item)
            where = f"workflow {wf.name!r} step {step.name!r} when"
            if not _condition(step.when, names[:i], where).evaluate(scope):
                skipped.append(Skip(step, f"when {step.when!r} is false"))
                continue
        return Advance(step, tuple(skipped))
    return Advance(None, tuple(skipped))


def first_step(item: WorkItem) -> Advance:
    """The first step of ``item.workflow`` that runs for the task.

    Raises:
        WorkflowError: a condition in the carried workflow does not parse (written
            around the checks); permanent.
    """
    return _walk(item, 0)


def next_step(item: WorkItem, after: str) -> Advance:
    """The step after ``after``, given the outputs in ``item`` (``after``'s included).

    ``after``'s jumps are tried first, in order; the first whose condition holds
    continues at its target. Otherwise the walk goes on with the following step.

    Raises:
        WorkflowError: ``after`` is not a step of the workflow, or a condition does
            not parse; permanent.
    """
    wf = item.workflow
    i = _step_index(wf, after)
    step = wf.steps[i]
    if step.jumps:
        names = tuple(s.name for s in wf.steps)
        scope = _scope(item)
        for j, jump in enumerate(step.jumps):
            where = f"workflow {wf.name!r} step {step.name!r} jumps[{j}] when"
            if _condition(jump.when, names[: i + 1], where).evaluate(scope):
                target = _step_index(wf, jump.to)
                passed = tuple(
                    Skip(s, f"jumped from {step.name} to {jump.to}: {jump.when!r}")
                    for s in wf.steps[i + 1 : target]
                )
                rest = _walk(item, target)
                return Advance(rest.step, passed + rest.skipped)
    return _walk(item, i + 1)


def new_item(
    envelope: Envelope,
    task: Task,
    decision: PolicyDecision,
    workflows: Workflows | None = None,
) -> WorkItem:
    """A work item for a new task, addressed to its workflow's first step (before
    conditions: the router then applies :func:`first_step`).

    Args:
        envelope: routing facts; ``envelope.kind`` picks the workflow.
        task: the task.
        decision: the policy decision.
        workflows: the workflows in force; default: the bundled ones.

    Raises:
        NoWorkflow: no workflow serves ``envelope.kind``.
    """
    doc = workflows if workflows is not None else Workflows.load()
    spec = doc.for_kind(envelope.kind)
    if spec is None:
        raise NoWorkflow(f"no workflow serves kind {envelope.kind!r}", field="kind")
    return WorkItem(
        envelope=envelope, task=task, decision=decision, workflow=spec, step=spec.steps[0].name
    )


def step_of(item: WorkItem) -> WorkflowStep:
    """The step ``item`` is addressed to.

    Raises:
        WorkflowError: ``item.step`` is not in ``item.workflow``.
    """
    return item.workflow.steps[_step_index(item.workflow, item.step)]


def step_names(workflow: WorkflowSpec) -> Sequence[str]:
    """The workflow's step names in order."""
    return [s.name for s in workflow.steps]
