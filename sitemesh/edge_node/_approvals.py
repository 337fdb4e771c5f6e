"""Deciding a parked ``require_approval`` task: record the decision, then publish
its outcome (the work item released to its first agent, or ``TaskFailed``).

What ``sitemesh approve`` / ``reject`` and the console's approvals page both call.
The decision is recorded first (compare-and-set in the site's database: a second
decision is refused), then published; if publishing fails the decision is undone,
so it can be retried.
"""

from __future__ import annotations

from typing import Final

import msgspec
from nats.js import JetStreamContext

from ..bus import Outbound, Publisher, Subjects, msg_id
from ..schemas import TaskFailed, WorkItem, utcnow
from ..state import ApprovalRecord, Store, decide_approval, undo_decision
from ._ingress import start_workflow

REJECTED_ERROR_CLASS: Final = "ApprovalRejected"
"""``error_class`` of the ``TaskFailed`` event published on reject."""


def approved_item(record: ApprovalRecord) -> WorkItem:
    """The parked work item with its decision marked approved by ``record.decided_by``.

    Raises:
        ValueError: ``record`` is not approved.
        SchemaError: the stored work item does not decode.
    """
    if record.status != "approved" or record.decided_by is None:
        raise ValueError(f"approval {record.approval_id} is {record.status}, not approved")
    item = record.item()
    note = f"approved by {record.decided_by}" + (f": {record.reason}" if record.reason else "")
    decision = msgspec.structs.replace(
        item.decision,
        approved_by=record.decided_by,
        approved_at=record.decided_at,
        reasons=[*item.decision.reasons, note],
    )
    return msgspec.structs.replace(item, decision=decision)


async def release(js: JetStreamContext, record: ApprovalRecord) -> WorkItem:
    """Publish an approved task's work item to its first agent, and the updated decision.

    Idempotent: the ``Nats-Msg-Id`` values are derived from the task id, so a
    repeat within the stream's duplicate window is dropped by the server.

    Args:
        js: JetStream context of the site's NATS.
        record: an approved approval.

    Returns:
        The work item as published.

    Raises:
        ValueError: the approval is not approved.
        TransientError: no PubAck in time.
        nats.js.errors.APIError: the server refused the message.
    """
    item = approved_item(record)
    task_id, data_class = item.envelope.task_id, item.decision.data_class
    subjects = Subjects(item.envelope.site)
    await Publisher(js).publish_many(
        [
            Outbound(
                subjects.event(task_id, "operator"),
                item.decision,
                msg_id(task_id, "decision", "approval"),
                task_id=task_id,
                data_class=data_class,
            ),
            *start_workflow(item, subjects, "operator"),
        ]
    )
    return item


async def reject_task(js: JetStreamContext, record: ApprovalRecord) -> TaskFailed:
    """Publish ``TaskFailed`` (``rejected by <who>: <reason>``) for a rejected approval.

    Args:
        js: JetStream context of the site's NATS.
        record: a rejected approval.

    Returns:
        The event as published.

    Raises:
        ValueError: the approval is not rejected.
        TransientError: no PubAck in time.
        nats.js.errors.APIError: the server refused the message.
    """
    if record.status != "rejected":
        raise ValueError(f"approval {record.approval_id} is {record.status}, not rejected")
    reason = f"rejected by {record.decided_by}: {record.reason or 'no reason given'}"
    failed = TaskFailed(
        task_id=record.task_id,
        site=record.site,
        role="router",
        reason=reason,
        error_class=REJECTED_ERROR_CLASS,
        failed_at=record.decided_at or utcnow(),
    )
    await Publisher(js).publish(
        Outbound(
            Subjects(record.site).event(record.task_id, "operator"),
            failed,
            msg_id(record.task_id, "failed", "approval"),
            task_id=record.task_id,
            data_class=record.data_class,
        )
    )
    return failed


async def decide_and_publish(
    store: Store, js: JetStreamContext, approval_id: str, approve: bool, who: str, reason: str
) -> ApprovalRecord:
    """Record a decision, then publish its outcome; undo the decision if that fails.

    Args:
        store: the site's state store.
        js: JetStream context of the site's NATS.
        approval_id: approval id or task id.
        approve: approve (``True``) or reject.
        who: the person deciding.
        reason: why.

    Returns:
        The decided approval.

    Raises:
        UnknownApproval: no such approval.
        ApprovalAlreadyDecided: decided before.
        TransientError, nats.js.errors.APIError: publishing failed; the approval is
            pending again.
    """
    record = await decide_approval(store, approval_id, approve, who, reason)
    try:
        if approve:
            await release(js, record)
        else:
            await reject_task(js, record)
    except BaseException:
        await undo_decision(store, record)
        raise
    return record
