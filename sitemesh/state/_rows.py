"""Conversions between wire messages, table rows and views."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import RowMapping

from ..schemas import (
    ENCODER,
    ApprovalRequested,
    DeadLetter,
    Event,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    StepSkipped,
    TaskAccepted,
    TaskFailed,
    TaskResubmitted,
    schema_tag,
)
from ._views import (
    DeadLetterView,
    DecisionView,
    EntityCountView,
    TaskEventView,
    TaskSummary,
)

Row = RowMapping
"""A result row's ``_mapping`` (column name -> value)."""


def dead_letter_row(dl: DeadLetter) -> dict[str, Any]:
    """The ``dead_letters`` row of ``dl``."""
    return {
        "stream": dl.stream,
        "stream_seq": dl.stream_seq,
        "site": dl.site,
        "role": dl.role,
        "subject": dl.subject,
        "task_id": dl.task_id,
        "reason": dl.reason,
        "error_class": dl.error_class,
        "field": dl.field,
        "deliveries": dl.deliveries,
        "original": dl.original,
        "original_headers": dict(dl.original_headers),
        "dead_at": dl.dead_at,
    }


def event_row(stream: str, stream_seq: int, event: Event) -> dict[str, Any]:
    """The ``task_events`` row of ``event`` read from ``stream`` at ``stream_seq``."""
    role: str | None
    started_at: datetime | None = None
    match event:
        case TaskAccepted():
            role, at = "router", event.accepted_at
            summary = f"accepted {event.kind}" + (f": {event.title}" if event.title else "")
        case PolicyDecision():
            role, at = "router", event.decided_at
            summary = f"{event.action} by rule {event.rule_id} ({event.data_class})"
        case StepCompleted():
            role, at, started_at = event.role, event.finished_at, event.started_at
            summary = f"{event.step}: {event.summary}" if event.step else event.summary
        case StepSkipped():
            role, at = event.role, event.skipped_at
            summary = f"{event.step} skipped: {event.reason}"
        case FinalAnswer():
            role, at = None, event.answered_at
            summary = f"answered: {event.outcome}"
        case TaskFailed():
            role, at = event.role, event.failed_at
            summary = f"failed: {event.error_class}: {event.reason}"
        case ApprovalRequested():
            role, at = "router", event.requested_at
            summary = f"awaiting approval: rule {event.rule_id} ({event.data_class})"
        case TaskResubmitted():  # the accepted task goes on: no change to its row
            role, at = "router", event.at
            summary = f"resubmitted ({event.outcome}, TASKS seq {event.stream_seq})"
    # the event's own JSON, stored as it is (the engine's JSON columns encode with
    # msgspec, which writes a Raw verbatim): a step's output is raw JSON already
    payload: Any = msgspec.Raw(ENCODER.encode(event))
    if isinstance(event, ApprovalRequested):
        payload = msgspec.json.decode(payload)
        payload.pop("item", None)  # the parked item lives in the approvals table
    return {
        "task_id": event.task_id,
        "stream": stream,
        "stream_seq": stream_seq,
        "type": schema_tag(event),
        "role": role,
        "summary": summary,
        "at": at,
        "started_at": started_at,
        "payload": payload,
    }


def decision_row(d: PolicyDecision) -> dict[str, Any]:
    """The ``policy_decisions`` row of ``d`` (entity types and counts only, no scores)."""
    return {
        "task_id": d.task_id,
        "action": d.action,
        "rule_id": d.rule_id,
        "policy_version": d.policy_version,
        "data_class": d.data_class,
        "entities": [{"entity_type": e.entity_type, "count": e.count} for e in d.entities],
        "reasons": list(d.reasons),
        "analyzer_ms": d.analyzer_ms,
        "decided_at": d.decided_at,
    }


def summary(m: Row) -> TaskSummary:
    return TaskSummary(
        task_id=m["task_id"],
        site=m["site"],
        kind=m["kind"],
        tenant=m["tenant"],
        title=m["title"],
        status=m["status"],
        data_class=m["data_class"],
        outcome=m["outcome"],
        reasons=tuple(m["reasons"] or ()),
        customer_message=m["customer_message"],
        submitted_at=m["submitted_at"],
        accepted_at=m["accepted_at"],
        finished_at=m["finished_at"],
        latency_ms=m["latency_ms"],
    )


def event_view(m: Row) -> TaskEventView:
    return TaskEventView(
        stream=m["stream"],
        stream_seq=m["stream_seq"],
        type=m["type"],
        role=m["role"],
        summary=m["summary"],
        at=m["at"],
        started_at=m["started_at"],
        payload=m["payload"],
    )


def decision_view(m: Row) -> DecisionView:
    entities: Sequence[dict[str, Any]] = m["entities"] or ()
    return DecisionView(
        action=m["action"],
        rule_id=m["rule_id"],
        policy_version=m["policy_version"],
        data_class=m["data_class"],
        entities=tuple(EntityCountView(e["entity_type"], int(e["count"])) for e in entities),
        reasons=tuple(m["reasons"] or ()),
        analyzer_ms=m["analyzer_ms"],
        decided_at=m["decided_at"],
    )


def dead_letter_view(m: Row) -> DeadLetterView:
    return DeadLetterView(
        stream=m["stream"],
        stream_seq=m["stream_seq"],
        site=m["site"],
        role=m["role"],
        subject=m["subject"],
        task_id=m["task_id"],
        reason=m["reason"],
        error_class=m["error_class"],
        field=m["field"],
        deliveries=m["deliveries"],
        original=bytes(m["original"]),
        original_headers=dict(m["original_headers"] or {}),
        dead_at=m["dead_at"],
    )
