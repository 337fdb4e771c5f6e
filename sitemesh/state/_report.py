"""One task as a JSON-ready document: what ``sitemesh show --json`` and ``trace --json``
print and what the console renders (triage, the grounding document, the plan, the
customer message, the cloud's proposal, what left the site)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from ._views import TaskView

FINAL_ANSWER: Final = "final_answer.v1"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def final_answer(view: TaskView) -> Mapping[str, Any] | None:
    """The task's recorded ``final_answer`` event payload (the last one), or ``None``."""
    for ev in reversed(view.events):
        if ev.type == FINAL_ANSWER:
            return ev.payload
    return None


def left_site(view: TaskView) -> Mapping[str, Any] | None:
    """What the site sent across the boundary for this task: the anonymised incident
    the forwarder recorded as its step output, or ``None`` (nothing left)."""
    for ev in view.events:
        out_type = str(ev.payload.get("output_type") or "")
        if out_type.startswith("cloud_incident") and ev.payload.get("output") is not None:
            out = ev.payload["output"]
            return out if isinstance(out, Mapping) else None
    return None


def task_report(view: TaskView) -> dict[str, Any]:
    """``view`` as JSON-compatible builtins (recorded payloads leave out fields at
    their defaults, e.g. a triage ``urgency`` of 3).

    Returns:
        ``{"task", "triage", "resolution", "plan", "customer_message", "proposal",
        "route", "reasons", "left_site", "events", "dead_letters"}``; absent parts
        are ``None`` / empty. Times are RFC 3339 strings (UTC), durations ms.
    """
    t = view.task
    answer = final_answer(view) or {}
    d = view.decision
    return {
        "task": {
            "task_id": t.task_id, "site": t.site, "kind": t.kind, "tenant": t.tenant,
            "title": t.title, "status": t.status, "outcome": t.outcome,
            "data_class": t.data_class, "submitted_at": _iso(t.submitted_at),
            "accepted_at": _iso(t.accepted_at), "finished_at": _iso(t.finished_at),
            "latency_ms": t.latency_ms,
        },
        "policy": None if d is None else {
            "action": d.action, "rule_id": d.rule_id, "policy_version": d.policy_version,
            "data_class": d.data_class, "reasons": list(d.reasons),
            "entities": {e.entity_type: e.count for e in d.entities},
        },
        "triage": answer.get("triage"),
        "resolution": answer.get("resolution"),
        "plan": answer.get("plan"),
        "customer_message": answer.get("customer_message", t.customer_message),
        "proposal": answer.get("proposal", ""),
        "route": answer.get("route"),
        "reasons": list(answer.get("reasons", t.reasons)),
        "left_site": left_site(view),
        "events": [
            {
                "type": ev.type, "role": ev.role, "step": ev.payload.get("step"),
                "summary": ev.summary, "at": _iso(ev.at), "took_ms": ev.duration_ms,
                "stream": ev.stream, "stream_seq": ev.stream_seq,
            }
            for ev in view.events
        ],
        "dead_letters": [
            {
                "role": dl.role, "error": dl.error_class, "field": dl.field,
                "deliveries": dl.deliveries, "reason": dl.reason,
                "original": f"{dl.stream}#{dl.stream_seq}",
            }
            for dl in view.dead_letters
        ],
    }  # fmt: skip
