"""A cheap estimate of how hard a task is, for rules that route by complexity."""

from __future__ import annotations

import re

from ..schemas import SupportTicket, Task, TelemetryAlert

__all__ = ["estimate_complexity", "task_lines", "task_text"]

# Device-ish tokens: host names with a number (leaf7, spine-02, edge1.par),
# interface names (HundredGigE0/0/0/10, eth0, ge-0/0/1) and IPv4 addresses.
_DEVICE = re.compile(
    r"\b(?:[A-Za-z]+-?\d+(?:[./-]\w+)*|(?:\d{1,3}\.){3}\d{1,3})\b",
)
_QUESTION = re.compile(r"\?+")

_SEVERITY = {"info": 0.0, "minor": 1 / 3, "major": 2 / 3, "critical": 1.0}

_TICKET_CHARS = 1500
"""Ticket length (characters) that counts as "long": about three paragraphs."""
_ALERT_CHARS = 600
"""Alert summary length (characters) that counts as "long"."""


def task_text(task: Task) -> str:
    """The free text of a task that may carry PII, joined by blank lines.

    Args:
        task: a support ticket (customer, title, body) or a telemetry alert
            (summary).

    Returns:
        The non-empty fields joined by ``"\\n\\n"``; may be empty.
    """
    match task:
        case SupportTicket(customer=customer, title=title, body=body):
            parts = [customer or "", title, body]
        case TelemetryAlert(summary=summary):
            parts = [summary]
    return "\n\n".join(p for p in parts if p.strip())


def task_lines(task: Task) -> list[str]:
    """The machine-written text a task carries beside :func:`task_text`, one string each.

    Args:
        task: a telemetry alert (its inline ``logs`` and its samples' labels) or a
            support ticket (none).

    Returns:
        Each log line's ``line``, in order, then each sample label as ``key=value``
        (the key gives the value its context: ``user=alice``); may be empty. Series
        names are metric identifiers and left out.
    """
    match task:
        case TelemetryAlert(logs=logs, samples=samples):
            lines = [log.line for log in logs]
            lines.extend(f"{k}={v}" for series in samples for k, v in series.labels.items())
            return lines
        case SupportTicket():
            return []


def _saturate(value: float, full: float) -> float:
    return min(value / full, 1.0)


def estimate_complexity(task: Task) -> float:
    """Estimate how complex a task is, 0 (trivial) .. 1 (hard).

    A documented heuristic, not a calibrated model: a weighted sum of features
    that each saturate at 1.

    * Support ticket: 0.4 x length (1500 characters = 1) + 0.35 x questions
      (3 question marks = 1) + 0.25 x distinct device/host/interface/IP tokens
      (4 = 1). A one-line question scores below 0.2; a long, multi-question,
      multi-device report scores above 0.6.
    * Telemetry alert: 0.3 x severity (info 0, minor 1/3, major 2/3,
      critical 1) + 0.3 x summary length (600 characters = 1) + 0.4 x distinct
      device-ish tokens including the alert's own device and interface (4 = 1).

    Args:
        task: the task.

    Returns:
        A float in [0, 1].
    """
    match task:
        case SupportTicket():
            text = task_text(task)
            devices = set(_DEVICE.findall(text))
            score = (
                0.4 * _saturate(len(text), _TICKET_CHARS)
                + 0.35 * _saturate(len(_QUESTION.findall(text)), 3)
                + 0.25 * _saturate(len(devices), 4)
            )
        case TelemetryAlert():
            devices = set(_DEVICE.findall(task.summary)) | {task.device}
            if task.interface:
                devices.add(task.interface)
            score = (
                0.3 * _SEVERITY[task.severity]
                + 0.3 * _saturate(len(task.summary), _ALERT_CHARS)
                + 0.4 * _saturate(len(devices), 4)
            )
    return round(min(max(score, 0.0), 1.0), 4)
