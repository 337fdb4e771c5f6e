"""How events change a task's row: the fold the store applies to a batch.

A task row is a projection of the task's events. :func:`apply_event` is the one
definition of what each event does to it, applied in stream order to the row as
read from the database (or ``None`` when the task has no row yet); the store reads
the rows of a batch's tasks once, folds every new event of the batch over them and
writes the changed rows back in one statement (see :meth:`Store.record_events`).

The rules (the module docstring of :mod:`._store` states them for readers):

* ``task_accepted`` fills in site, kind, tenant and title; ``submitted_at`` and
  ``accepted_at`` keep their first value (a resubmission does not move them);
* ``policy_decision`` sets the data class (the latest decision wins);
* ``step_completed`` only creates the row if it is missing;
* ``final_answer`` makes the task ``answered`` (final), with the answer's outcome,
  reasons, message and latency; the data class and ``submitted_at`` are filled in
  only where still unknown;
* ``task_failed`` (and a dead letter) make an ``accepted`` task ``failed``; an
  answered or already failed task keeps its status and reasons;
* ``step_skipped`` and ``approval_requested`` leave the row alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

from ..schemas import Event, FinalAnswer, PolicyDecision, StepCompleted, TaskAccepted, TaskFailed

TaskValues = dict[str, Any]
"""A ``tasks`` row as column name -> value (every column, ``task_id`` included)."""

TASK_COLUMNS: Final = (
    "task_id",
    "site",
    "kind",
    "tenant",
    "title",
    "status",
    "data_class",
    "outcome",
    "reasons",
    "customer_message",
    "submitted_at",
    "accepted_at",
    "finished_at",
    "latency_ms",
)
"""The columns of ``tasks``, in table order."""

ROW_EVENTS: Final = (TaskAccepted, PolicyDecision, StepCompleted, FinalAnswer, TaskFailed)
"""Event types that create or change a task row (the others leave it alone)."""


def new_task(task_id: str) -> TaskValues:
    """The row of a task no event has touched yet (the table's defaults)."""
    return {
        "task_id": task_id,
        "site": "",
        "kind": "",
        "tenant": "default",
        "title": "",
        "status": "accepted",
        "data_class": None,
        "outcome": None,
        "reasons": [],
        "customer_message": "",
        "submitted_at": None,
        "accepted_at": None,
        "finished_at": None,
        "latency_ms": None,
    }


def apply_event(row: TaskValues | None, event: Event) -> TaskValues | None:
    """``row`` after ``event`` (see the module docstring); ``row`` is changed in place.

    Args:
        row: the task's row, or ``None`` when it has none yet.
        event: an event of that task, newly recorded.

    Returns:
        The row (a new one if ``row`` was ``None`` and the event creates it), or
        ``None`` if the task still has no row.
    """
    match event:
        case TaskAccepted():
            row = row or new_task(event.task_id)
            row.update(site=event.site, kind=event.kind, tenant=event.tenant, title=event.title)
            if row["submitted_at"] is None:
                row["submitted_at"] = event.submitted_at
            if row["accepted_at"] is None:
                row["accepted_at"] = event.accepted_at
        case PolicyDecision():
            row = row or new_task(event.task_id)
            row["data_class"] = event.data_class
        case StepCompleted():
            if row is None:
                row = new_task(event.task_id)
                row["site"] = event.site
        case FinalAnswer():
            if row is None:
                row = new_task(event.task_id)
                row["site"] = event.site
            row.update(
                status="answered",
                outcome=event.outcome,
                reasons=list(event.reasons),
                customer_message=event.customer_message,
                finished_at=event.answered_at,
                latency_ms=(event.answered_at - event.submitted_at).total_seconds() * 1000.0,
            )
            if row["data_class"] is None:
                row["data_class"] = event.data_class
            if row["submitted_at"] is None:
                row["submitted_at"] = event.submitted_at
        case TaskFailed():
            row = mark_failed(
                row,
                event.task_id,
                event.site,
                f"{event.error_class}: {event.reason}",
                event.failed_at,
            )
        case _:
            pass
    return row


def mark_failed(
    row: TaskValues | None, task_id: str, site: str, reason: str, at: datetime
) -> TaskValues:
    """``row`` failed with ``reason`` at ``at`` if it is still ``accepted`` (or new).

    Args:
        row: the task's row, or ``None`` (a row is created with ``site``).
        task_id: the task.
        site: its site (only used for a new row).
        reason: ``"<error class>: <reason>"``.
        at: when it failed (UTC).

    Returns:
        The row, changed in place, or the new row.
    """
    if row is None:
        row = new_task(task_id)
        row["site"] = site
    if row["status"] == "accepted":
        row.update(status="failed", reasons=[reason], finished_at=at)
    return row
