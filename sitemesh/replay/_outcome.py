"""What a task's run produced, reduced to what a replay compares.

A task's outcome is assembled from its records in ``EVENTS_<site>`` (acceptance,
policy decision, step summaries, final answer or failure, approval request) and
``WORK_<site>`` (the work item each agent received, which carries every earlier
step's output). Volatile fields — timestamps, worker ids, delivery counts,
latencies, the analyzer's time and the policy version hash — are dropped, so two
runs of the same input under the same rules give equal outcomes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final

import msgspec

from ..bus import HDR_TASK_ID
from ..schemas import (
    EVENT_DECODER,
    WORK_DECODER,
    ApprovalRequested,
    FinalAnswer,
    PolicyDecision,
    StepCompleted,
    StepSkipped,
    TaskAccepted,
    TaskFailed,
)
from ._readback import StreamRecord

VOLATILE: Final[frozenset[str]] = frozenset(
    {
        "accepted_at",
        "analyzer_ms",
        "answered_at",
        "approved_at",
        "approved_by",
        "causation_id",
        "dead_at",
        "decided_at",
        "deliveries",
        "stream_seq",
        "failed_at",
        "finished_at",
        "policy_version",
        "requested_at",
        "started_at",
        "submitted_at",
        "took_ms",
        "worker",
    }
)
"""Field names dropped at any depth before comparing (they differ run to run)."""

_DENIED: Final = re.compile(r"^policy (?P<version>\S+) rule '(?P<rule>[^']+)' denies")
"""``PolicyDenied`` text of :class:`sitemesh.edge_node.Ingress`."""

Outcome = dict[str, Any]
"""A task's comparable outcome: JSON-like builtins keyed ``status``, ``accepted``,
``decision``, ``steps`` (every step's output, by step name, custom agents' included),
``summaries``, ``skipped``, ``final``, ``failed``, ``approval``."""


def strip_volatile(value: Any) -> Any:
    """``value`` (builtins) without :data:`VOLATILE` keys, recursively."""
    if isinstance(value, dict):
        return {k: strip_volatile(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [strip_volatile(v) for v in value]
    return value


def _plain(struct: msgspec.Struct) -> Any:
    """``struct`` as builtins without its top-level :data:`VOLATILE` fields.

    Top level only (3x faster than :func:`strip_volatile`): the nested types of
    compared messages (plans, findings, passages, entity counts) carry no
    volatile field; a new one would show up in every replay's diff.
    """
    out: dict[str, Any] = msgspec.to_builtins(struct)
    for key in VOLATILE.intersection(out):
        del out[key]
    return out


class OutcomeBuilder:
    """Accumulates the outcomes of a set of tasks from their stream records.

    Args:
        task_ids: the tasks to keep; records of other tasks are skipped.
    """

    def __init__(self, task_ids: Iterable[str]) -> None:
        self._ids = set(task_ids)
        self._out: dict[str, Outcome] = {}
        self._versions: dict[str, str] = {}
        self._workflows: dict[str, str] = {}

    def _of(self, task_id: str) -> Outcome:
        got = self._out.get(task_id)
        if got is None:
            got = self._out[task_id] = {"status": "pending"}
        return got

    def add_events(self, records: Iterable[StreamRecord]) -> None:
        """Fold ``EVENTS_<site>`` records in (undecodable ones are skipped)."""
        for rec in records:
            tid = rec.headers.get(HDR_TASK_ID)
            if tid is not None and tid not in self._ids:
                continue
            try:
                ev = EVENT_DECODER.decode(rec.data)
            except msgspec.MsgspecError:
                continue
            if ev.task_id not in self._ids:
                continue
            out = self._of(ev.task_id)
            match ev:
                case TaskAccepted():
                    self._workflows[ev.task_id] = ev.workflow_version
                    out["accepted"] = _plain(ev)
                case PolicyDecision():
                    self._versions[ev.task_id] = ev.policy_version
                    out["decision"] = _plain(ev)
                case StepCompleted():
                    out.setdefault("summaries", {})[ev.step or ev.role] = ev.summary
                case StepSkipped():
                    out.setdefault("skipped", {})[ev.step] = ev.reason
                case FinalAnswer():
                    out["final"] = _plain(ev)
                    out["status"] = "answered"
                case TaskFailed():
                    out["failed"] = _plain(ev)
                    out["status"] = "failed"
                case ApprovalRequested():
                    out["approval"] = {"rule_id": ev.rule_id, "data_class": ev.data_class}
                    if out["status"] == "pending":
                        out["status"] = "parked"

    def add_work(self, records: Iterable[StreamRecord]) -> None:
        """Fold ``WORK_<site>`` records in: every step output any work item carries."""
        for rec in records:
            tid = rec.headers.get(HDR_TASK_ID)
            if tid is not None and tid not in self._ids:
                continue
            try:
                item = WORK_DECODER.decode(rec.data)
            except msgspec.MsgspecError:
                continue
            if item.envelope.task_id not in self._ids:
                continue
            steps = self._of(item.envelope.task_id).setdefault("steps", {})
            for name, out in item.outputs.items():
                steps[name] = strip_volatile(msgspec.json.decode(out.output))

    def policy_version(self, task_id: str) -> str | None:
        """The policy version that decided ``task_id`` (reported, not compared)."""
        return self._versions.get(task_id)

    def workflow_version(self, task_id: str) -> str | None:
        """The workflows version ``task_id`` was accepted on, if recorded."""
        return self._workflows.get(task_id)

    def outcomes(self) -> dict[str, Outcome]:
        """``task id -> outcome`` for every task seen (``status`` ``pending`` if unended).

        The failure reason's policy version (``policy <hash> rule ...``) is masked
        so that a changed rules file alone does not mark a denied task as changed.
        """
        for tid, out in self._out.items():
            version = self._versions.get(tid)
            failed = out.get("failed")
            if failed and "decision" not in out and failed.get("error_class") == "PolicyDenied":
                # the router publishes no decision event for a denied task: take
                # the deciding rule from the failure, so the diff names it
                denied = _DENIED.search(str(failed.get("reason", "")))
                if denied is not None:
                    version = version or denied["version"]
                    out["decision"] = {
                        "action": "deny",
                        "rule_id": denied["rule"],
                        "task_id": tid,
                    }
            if version and failed and isinstance(failed.get("reason"), str):
                failed["reason"] = failed["reason"].replace(version, "<policy>")
        return self._out

    def ended(self) -> set[str]:
        """Tasks with a final answer, a failure or a pending approval."""
        return {t for t, o in self._out.items() if o["status"] != "pending"}
