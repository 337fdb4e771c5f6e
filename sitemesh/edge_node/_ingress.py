"""The site's ingress: the router role turns raw tasks into classified work items.

For each message on ``sm.v1.task.<site>.<kind>`` it checks the size, decodes the
task, checks that its type matches the subject kind, derives the task id, asks the
policy router for a decision, and publishes ``TaskAccepted`` and the
``PolicyDecision`` on the task's event subject and a ``WorkItem`` for the first
agent. Anything wrong with the input raises a :class:`~sitemesh.errors.PermanentError`
that the worker runtime dead-letters with the reason.

With a :class:`~sitemesh.edge_node.TaskRegistry` a task id names one task for good:
the router records each id it accepts (create-only, ``sitemesh_tasks_<site>``) and
answers a later ``TASKS`` message under the same id with a ``TaskResubmitted``
instead of running it again: a duplicate (same body) or a refused conflict (another
body). A redelivery of the accepted message itself is processed as usual.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from ..bus import (
    HDR_MSG_ID,
    HDR_TASK_ID,
    MsgContext,
    Outbound,
    Subjects,
    msg_id,
    tenant_token,
)
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
    TaskResubmitted,
    WorkItem,
    decode,
    schema_tag,
    task_digest,
    utcnow,
)
from ..workflows import Workflows, dispatch, first_step
from ._task_ids import TaskRecord, TaskRegistry

log = logging.getLogger("sitemesh.router")

_TASK_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

HDR_REDRIVE_OF = "sm-redrive-of"
"""Mirror of :data:`sitemesh.replay.HDR_REDRIVE_OF` (the replay package imports this one):
a redriven dead letter of the accepted task runs again under its id."""


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
        registry: the site's task-id registry; ``None`` (tests, a replay sandbox):
            ids are deduplicated within the stream's duplicate window only.
    """

    def __init__(
        self,
        subjects: Subjects,
        decider: Decider,
        workflows: Callable[[], Workflows] | None = None,
        *,
        registry: TaskRegistry | None = None,
    ) -> None:
        self._subjects = subjects
        self._task_prefix = subjects.task("")  # sm.v1.task.<site>. (then [tenant.]kind)
        self._decider = decider
        self._registry = registry
        if workflows is None:
            bundled = Workflows.load()

            def workflows() -> Workflows:
                return bundled

        self._workflows = workflows

    async def __call__(self, task: Task, ctx: MsgContext) -> Sequence[Outbound]:
        """Classify ``task`` and hand it to the first agent.

        Raises:
            SchemaError: the task's type does not match the subject kind, its
                ``tenant`` is not the tenant of a ``sm.v1.task.<site>.<tenant>.<kind>``
                subject, or the task id from a header is not a valid id.
            PolicyDenied: the policy denied the task.
            NoWorkflow: no workflow in force serves the task's kind.
            TransientError: the task-id registry cannot be read or written.
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
        prefix = self._task_prefix
        rest = ctx.subject[len(prefix) :] if ctx.subject.startswith(prefix) else kind
        scoped = rest.rpartition(".")[0]
        if scoped and scoped != tenant_token(task.tenant):
            # a tenant's client identity may publish only on its own tenant's subject;
            # the body must not claim another tenant (its answer would go to that one)
            raise SchemaError(
                f"`tenant` is {task.tenant[:64]!r} but the task was published on tenant "
                f"{scoped!r}'s subject {ctx.subject!r}",
                field="$.tenant",
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
        digest = task_digest(task)
        first = await self._first(task_id, digest, ctx)
        if first is not None:
            return await self._resubmitted(task_id, digest, first, ctx)
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
        event = self._subjects.event(task_id, "router")
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
            stream_seq=ctx.stream_seq,
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
        else:
            outs.extend(start_workflow(item, self._subjects, "router"))
        # recorded last: a task refused above may be submitted again under its id
        first = await self._claim(task_id, digest, ctx, now)
        if first is not None:  # another message took the id meanwhile
            return await self._resubmitted(task_id, digest, first, ctx)
        return outs

    @staticmethod
    def _redrive(first: TaskRecord, task_id: str, digest: str, ctx: MsgContext) -> bool:
        """Whether ``ctx``'s message is a redriven dead letter of the accepted task."""
        return HDR_REDRIVE_OF in ctx.headers and (first.task_id, first.digest) == (task_id, digest)

    async def _first(self, task_id: str, digest: str, ctx: MsgContext) -> TaskRecord | None:
        """The record of the task first accepted under ``task_id``'s token when this
        message is a resubmission; ``None`` for a new id, a redelivery of the accepted
        message (same stream sequence) or its redriven dead letter."""
        if self._registry is None:
            return None
        first = await self._registry.lookup(task_id)
        if first is None or first.stream_seq == ctx.stream_seq:
            return None
        return None if self._redrive(first, task_id, digest, ctx) else first

    async def _claim(
        self, task_id: str, digest: str, ctx: MsgContext, now: datetime
    ) -> TaskRecord | None:
        """Record ``task_id`` for this message (create-only); ``None`` when it is now
        (or already was) this message's, else the record of the message that has it."""
        if self._registry is None:
            return None
        mine = TaskRecord(
            task_id=task_id, digest=digest, stream_seq=ctx.stream_seq, accepted_at=now
        )
        first = await self._registry.claim(mine)
        if first.stream_seq != ctx.stream_seq and self._redrive(first, task_id, digest, ctx):
            first = await self._registry.reclaim(mine, first)
        return None if first.stream_seq == ctx.stream_seq else first

    async def _resubmitted(
        self, task_id: str, digest: str, first: TaskRecord, ctx: MsgContext
    ) -> list[Outbound]:
        """The ``TaskResubmitted`` report of a message under an id accepted before."""
        assert self._registry is not None
        state = await self._registry.answer_state(first.task_id)
        events = self._subjects.events_stream
        accepted = (
            f"first accepted at {first.accepted_at.isoformat(timespec='seconds')} "
            f"({self._subjects.tasks_stream} seq {first.stream_seq})"
        )
        duplicate = (first.task_id, first.digest) == (task_id, digest)
        if duplicate:
            where = {
                "answered": f"its answer is already published ({events} seq {state.seq})",
                "failed": f"it failed ({events} seq {state.seq}); submit it under a new id",
                "awaiting_approval": "it is waiting for approval (sitemesh approvals)",
                "in_progress": "its answer is still in progress",
                "unknown": f"its events are no longer in {events}",
            }[state.status]
            reason = f"task id {task_id!r} is a duplicate of the task {accepted}; {where}"
            log.info("%s", reason)
        elif first.task_id != task_id:
            reason = (
                f"task id {task_id!r} is refused: it shares its event subjects with task id "
                f"{first.task_id!r}, {accepted}; use another id"
            )
            log.warning("%s", reason)
        else:
            reason = (
                f"task id {task_id!r} is refused: its body differs from the one {accepted}; "
                "a task id names one task, so submit a new task under a new id"
            )
            log.warning("%s", reason)
        report = TaskResubmitted(
            task_id=task_id,
            site=self._subjects.site,
            outcome="duplicate" if duplicate else "conflict",
            code="task_id_duplicate" if duplicate else "task_id_conflict",
            reason=reason,
            stream_seq=ctx.stream_seq,
            first_stream_seq=first.stream_seq,
            first_accepted_at=first.accepted_at,
            status=state.status,
            answer_seq=state.seq,
            answered_at=state.at,
        )
        step = f"resubmitted-{ctx.stream_seq}"
        event = self._subjects.event(task_id, "router")
        return [Outbound(event, report, msg_id(task_id, step, "router"), task_id)]


def start_workflow(item: WorkItem, subjects: Subjects, producer: str) -> list[Outbound]:
    """The messages that start ``item``'s workflow: a ``StepSkipped`` per step passed
    over, and the item for the first step that runs (``<task>:work:<step>``).

    Used by the router and by ``sitemesh approve`` (the approved item); ``producer``
    (``router``, ``operator``) names the event subject the skip events go on.

    Raises:
        WorkflowError: the workflow has no step to run (it cannot, once validated).
    """
    _, outs = dispatch(item, first_step(item), subjects, producer)
    return outs
