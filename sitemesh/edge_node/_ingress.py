"""The site's ingress: the router role turns raw tasks into classified work items.

For each message on ``sm.v1.task.<site>.<kind>`` it checks the size, decodes the
task, checks that its type matches the subject kind, derives the task id, asks the
policy router for a decision, and publishes ``TaskAccepted`` and the
``PolicyDecision`` on the task's event subject and a ``WorkItem`` for the first
agent. Anything wrong with the input raises a :class:`~sitemesh.errors.PermanentError`
that the worker runtime dead-letters with the reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import msgspec

from ..bus import HDR_MSG_ID, HDR_TASK_ID, MsgContext, Outbound, Subjects, msg_id
from ..errors import MessageTooLarge, NoWorkflow, PolicyDenied, SchemaError
from ..schemas import (
    TASK_DECODER,
    TASK_KINDS,
    ApprovalRequested,
    Envelope,
    PolicyDecision,
    SupportTicket,
    Task,
    TaskAccepted,
    WorkItem,
    decode,
    schema_tag,
    utcnow,
)
from ..workflows import Workflows, dispatch, first_step

_TASK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class Decider(Protocol):
    """What ingress needs from the policy router (a :class:`BatchingDecider` around
    ``sitemesh.policy.PolicyRouter``); must raise, never pass, when it cannot decide."""

    async def decide(self, task: Task, task_id: str) -> PolicyDecision: ...


def task_decoder(max_task_bytes: int) -> Callable[[bytes], Task]:
    """A decoder for raw task bytes that enforces ``max_task_bytes`` first.

    Raises (from the returned callable):
        MessageTooLarge: the payload is larger than ``max_task_bytes`` (field ``$``).
        SchemaError: the JSON does not match any task schema (names the field).
    """

    def _decode(data: bytes) -> Task:
        if len(data) > max_task_bytes:
            raise MessageTooLarge(len(data), max_task_bytes)
        task: Task = decode(data, TASK_DECODER)
        return task

    return _decode


class _IdOnly(msgspec.Struct):
    task_id: str | None = None


_ID_DECODER = msgspec.json.Decoder(_IdOnly)


def task_id_of(data: bytes, headers: Mapping[str, str]) -> str | None:
    """Best-effort task id of a raw task that may not decode (for dead letters): the
    ``sm-task-id`` header, else a string ``task_id`` in a body that is still JSON,
    else ``Nats-Msg-Id``."""
    if tid := headers.get(HDR_TASK_ID):
        return tid
    try:
        tid = _ID_DECODER.decode(data).task_id
    except msgspec.MsgspecError:
        tid = None
    if tid and _TASK_ID.match(tid):
        return tid
    return headers.get(HDR_MSG_ID)


def _title(task: Task, kind: str) -> str:
    """A PII-free label for status listings: the kind and the source record only."""
    if isinstance(task, SupportTicket):
        return f"{kind} via {task.channel}" + (f" [{task.source}]" if task.source else "")
    return f"{kind} {task.device} {task.metric}".strip()


class Ingress:
    """Handler of the ``router`` role.

    Args:
        subjects: the site's subject map.
        decider: the policy router; must fail closed (raise) when it cannot decide.
        workflows: the workflows in force (a :class:`~sitemesh.workflows.LiveWorkflows`
            follows KV); default: the bundled ones.
    """

    def __init__(
        self,
        subjects: Subjects,
        decider: Decider,
        workflows: Callable[[], Workflows] | None = None,
    ) -> None:
        self._subjects = subjects
        self._decider = decider
        if workflows is None:
            bundled = Workflows.load()

            def workflows() -> Workflows:
                return bundled

        self._workflows = workflows

    async def __call__(self, task: Task, ctx: MsgContext) -> Sequence[Outbound]:
        """Classify ``task`` and hand it to the first agent.

        Raises:
            SchemaError: the task's type does not match the subject kind, or the
                task id from a header is not a valid id.
            PolicyDenied: the policy denied the task.
            NoWorkflow: no workflow in force serves the task's kind.
        """
        kind = ctx.subject.rsplit(".", 1)[-1]
        expected = TASK_KINDS.get(kind)
        if expected is None:
            raise SchemaError(
                f"unknown task kind {kind!r} in subject {ctx.subject!r}; "
                f"expected one of {sorted(TASK_KINDS)}",
                field="subject",
            )
        if not isinstance(task, expected):
            raise SchemaError(
                f"`type` is {schema_tag(task)!r} but the subject kind {kind!r} takes "
                f"{expected.__struct_config__.tag!r}",
                field="$.type",
            )
        task_id = (
            task.task_id
            or task_id_of(ctx.data, ctx.headers)
            or (f"{self._subjects.site}-{ctx.stream_seq}")
        )
        if not _TASK_ID.match(task_id):
            raise SchemaError(
                f"task id {task_id[:64]!r} must be 1-128 characters of [A-Za-z0-9._:-]",
                field=HDR_TASK_ID,
            )
        workflow = self._workflows().for_kind(kind)
        if workflow is None:
            raise NoWorkflow(
                f"no workflow serves kind {kind!r}: add one to the workflows document "
                "(`sitemesh workflows`)",
                field="kind",
            )
        now = utcnow()
        # latency is measured from when the bus stored the task, not from a time the
        # caller wrote into it (an alert may describe a window hours in the past)
        submitted_at = ctx.published_at or now
        decision = await self._decider.decide(task, task_id)
        if decision.action == "deny":
            raise PolicyDenied(
                f"policy {decision.policy_version} rule {decision.rule_id!r} denies this task",
                rule_id=decision.rule_id,
            )
        envelope = Envelope(
            task_id=task_id,
            site=self._subjects.site,
            kind=kind,
            tenant=task.tenant,
            data_class=decision.data_class,
            causation_id=ctx.msg_id,
            submitted_at=submitted_at,
            accepted_at=now,
        )
        event = self._subjects.event(task_id)
        accepted = TaskAccepted(
            task_id=task_id,
            site=self._subjects.site,
            kind=kind,
            tenant=task.tenant,
            title=_title(task, kind),
            submitted_at=submitted_at,
            accepted_at=now,
            workflow=workflow.name,
            workflow_version=workflow.version,
        )
        tid, dclass = task_id, decision.data_class
        item = WorkItem(
            envelope=envelope,
            task=task,
            decision=decision,
            workflow=workflow,
            step=workflow.steps[0].name,
        )
        outs = [
            Outbound(event, accepted, msg_id(tid, "accepted", "router"), tid, dclass),
            Outbound(event, decision, msg_id(tid, "decision", "router"), tid, dclass),
        ]
        if decision.action == "require_approval" and decision.approved_by is None:
            # parked: the recorder stores the item; `sitemesh approve` starts its
            # workflow (start_workflow) once a person decided
            parked = ApprovalRequested(
                task_id=tid,
                site=self._subjects.site,
                rule_id=decision.rule_id,
                policy_version=decision.policy_version,
                data_class=dclass,
                item=item,
            )
            outs.append(Outbound(event, parked, msg_id(tid, "approval", "router"), tid, dclass))
            return outs
        return [*outs, *start_workflow(item, self._subjects)]


def start_workflow(item: WorkItem, subjects: Subjects) -> list[Outbound]:
    """The messages that start ``item``'s workflow: a ``StepSkipped`` per step passed
    over, and the item for the first step that runs (``<task>:work:<step>``).

    Used by the router and by ``sitemesh approve`` (the approved item).

    Raises:
        WorkflowError: the workflow has no step to run (it cannot, once validated).
    """
    _, outs = dispatch(item, first_step(item), subjects)
    return outs
