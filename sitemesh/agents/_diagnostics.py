"""The diagnostics agent: runs the routines of :mod:`._checks` over the window of a
telemetry alert, or over the devices a support ticket names.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import UTC, datetime
from typing import ClassVar

from ..errors import PermanentError
from ..schemas import Diagnosis, Finding, SupportTicket, TelemetryAlert, WorkItem
from ._base import Agent, AgentContext, AgentOutput, AgentResources
from ._checks import (
    CHECKS,
    STATE_KINDS,
    TICKET_LOOKBACK,
    _ts,
)
from ._inline import INLINE_LOGS, INLINE_METRICS, diagnose_logs, diagnose_samples
from ._telemetry import DEVICES, load_telemetry


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _sort_key(f: Finding) -> tuple[datetime, str, str, str]:
    return (f.at or datetime.min.replace(tzinfo=UTC), f.kind, f.interface or "", f.evidence)


def _describe(findings: list[Finding]) -> str:
    parts = [
        f"{f.kind} {f.interface or '-'} {_ts(f.at)[11:19]}Z" if f.at else f.kind
        for f in findings[:6]
    ]
    more = f" and {len(findings) - 6} more" if len(findings) > 6 else ""
    return "; ".join(parts) + more


def diagnose(device: str, start: datetime, end: datetime, *, task_id: str) -> Diagnosis:
    """Run every check in :data:`CHECKS` on ``device`` over ``[start, end)``.

    Args:
        device: device name, e.g. ``"leaf7"``.
        start: window start, inclusive (naive values are taken as UTC).
        end: window end, exclusive.
        task_id: id of the task the diagnosis answers.

    Returns:
        The findings sorted by time, kind and interface. An unknown device, an
        empty or inverted window, or a window without samples gives a diagnosis
        with no findings and a summary that says why.
    """
    start, end = _utc(start), _utc(end)
    tel = load_telemetry(device)
    window = f"[{_ts(start)}, {_ts(end)})"
    if tel is None:
        return Diagnosis(
            task_id=task_id,
            summary=f"no telemetry for device {device!r} (not in the packaged capture); "
            "devices with data: " + ", ".join(DEVICES),
        )
    if end <= start:
        return Diagnosis(task_id=task_id, summary=f"empty window {window}; no checks run")
    if not tel.has_data(start, end):
        return Diagnosis(
            task_id=task_id,
            summary=f"no telemetry for {device} in {window}; data covers "
            f"{_ts(tel.start)} to {_ts(tel.end)}",
        )
    findings = sorted((f for _, check in CHECKS for f in check(tel, start, end)), key=_sort_key)
    state = sum(f.kind in STATE_KINDS for f in findings)
    summary = f"{device} {window}: " + (
        f"{state} state change(s), {len(findings) - state} other finding(s): " + _describe(findings)
        if findings
        else "no findings"
    )
    return Diagnosis(
        task_id=task_id, findings=findings, checks_run=[n for n, _ in CHECKS], summary=summary
    )


def diagnose_alert(alert: TelemetryAlert, *, task_id: str) -> Diagnosis:
    """Diagnose a telemetry alert on the packaged capture and on its inline telemetry.

    Without ``samples`` or ``logs`` this is :func:`diagnose` on the packaged capture.
    With them, :mod:`sitemesh.detect` runs on each (``checks_run`` gains
    ``inline_metrics`` / ``inline_logs``, see :mod:`._inline`), and a device of the
    capture is also diagnosed from it. An alert with no data at all (nothing inline,
    device not in the capture) gives no findings, empty ``checks_run`` and a summary
    that says so; the escalation agent turns that into a ``no telemetry`` reason.

    Args:
        alert: the alert.
        task_id: id of the task.

    Returns:
        The diagnosis, findings sorted by time, kind and interface.
    """
    if not alert.samples and not alert.logs:
        return diagnose(alert.device, alert.window_start, alert.window_end, task_id=task_id)
    start, end = _utc(alert.window_start), _utc(alert.window_end)
    findings: list[Finding] = []
    checks: list[str] = []
    parts: list[str] = []
    if load_telemetry(alert.device) is not None:
        packaged = diagnose(alert.device, start, end, task_id=task_id)
        findings += packaged.findings
        checks += packaged.checks_run
        parts.append(packaged.summary)
    inline: list[Finding] = []
    if alert.samples:
        found, notes = diagnose_samples(alert)
        inline += found
        checks.append(INLINE_METRICS)
        parts.append(
            f"inline metrics ({len(alert.samples)} series): "
            + (f"{len(found)} finding(s)" if found else "no findings")
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    if alert.logs:
        found = diagnose_logs(alert)
        inline += found
        checks.append(INLINE_LOGS)
        parts.append(
            f"inline logs ({len(alert.logs)} lines): "
            + (f"{len(found)} finding(s)" if found else "no findings")
        )
    findings = sorted(findings + inline, key=_sort_key)
    window = f"[{_ts(start)}, {_ts(end)})"
    head = f"{alert.device} {window} inline: " + (_describe(inline) if inline else "no findings")
    return Diagnosis(
        task_id=task_id,
        findings=findings,
        checks_run=checks,
        summary=" | ".join([head, *parts]),
    )


_IFNAME = re.compile(r"\b(HundredGigE|Hu|MgmtEth|Null)\s?(\d+(?:/\w+)*)", re.IGNORECASE)
"""An IOS-XR interface name, full (``HundredGigE0/0/0/10``) or short (``Hu0/0/0/10``)."""


def _interface_key(m: re.Match[str]) -> str:
    """Lower-case full interface name of an :data:`_IFNAME` match."""
    kind = m[1].lower()
    return ("hundredgige" if kind == "hu" else kind) + m[2].lower()


def diagnose_ticket(ticket: SupportTicket, *, task_id: str) -> Diagnosis:
    """Look for telemetry inventory names in a ticket and diagnose what it names.

    The title and body are searched for device names (:data:`DEVICES`) and, for
    a named device, its interface names (``HundredGigE0/0/0/10`` or ``Hu0/0/0/10``).
    A named device is diagnosed over :data:`TICKET_LOOKBACK` before
    ``submitted_at`` when that time is known; nothing is inferred otherwise.
    The ticket text itself is never copied into the diagnosis.

    Args:
        ticket: the support ticket.
        task_id: id of the task.

    Returns:
        A diagnosis; without a device name it has no findings and says so.
    """
    text = f"{ticket.title}\n{ticket.body}"
    devices = [d for d in DEVICES if re.search(rf"\b{re.escape(d)}\b", text, re.IGNORECASE)]
    if not devices:
        return Diagnosis(
            task_id=task_id,
            checks_run=["inventory_lookup"],
            summary="no device referenced; no telemetry checks applicable",
        )
    notes = []
    results = []
    for device in devices:
        tel = load_telemetry(device)
        known = {n.lower(): n for n in tel.interfaces()} if tel else {}
        keys = (_interface_key(m) for m in _IFNAME.finditer(text))
        named = sorted({known[k] for k in keys if k in known})
        notes.append(device + (f" ({', '.join(named)})" if named else ""))
        if ticket.submitted_at is not None:
            end = _utc(ticket.submitted_at)
            results.append(diagnose(device, end - TICKET_LOOKBACK, end, task_id=task_id))
    refs = "ticket references " + "; ".join(notes)
    if not results:
        return Diagnosis(
            task_id=task_id,
            checks_run=["inventory_lookup"],
            summary=f"{refs}; no submission time, so no telemetry window to check",
        )
    findings = sorted((f for r in results for f in r.findings), key=_sort_key)
    ran = {n for r in results for n in r.checks_run}
    checks = ["inventory_lookup"] + [n for n, _ in CHECKS if n in ran]
    return Diagnosis(
        task_id=task_id,
        findings=findings,
        checks_run=checks,
        summary=f"{refs}; " + " | ".join(r.summary for r in results),
    )


class DiagnosticsAgent(Agent):
    """The ``diagnostics`` role: runs :data:`CHECKS` on the devices a task names.

    Deterministic: the output depends only on the task and the shipped data.
    The first call loads the telemetry (about 1 s) in a worker thread.
    """

    role: ClassVar[str] = "diagnostics"
    output: ClassVar[type[Diagnosis]] = Diagnosis
    description: ClassVar[str] = "diagnostic routines over the device telemetry a task names"

    async def setup(self, resources: AgentResources) -> None:
        """Load the packaged telemetry before the first message (about 1 s)."""
        del resources
        await asyncio.to_thread(load_telemetry, "leaf7")

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Diagnosis:
        """Diagnose the task of ``item``.

        Args:
            item: the work item; its task is a ``TelemetryAlert`` or ``SupportTicket``.
            ctx: the worker context (unused).

        Returns:
            A :class:`~sitemesh.schemas.Diagnosis` with ``source="rules"``.
        """
        task_id = item.envelope.task_id
        match item.task:
            case TelemetryAlert() as alert:
                return await asyncio.to_thread(diagnose_alert, alert, task_id=task_id)
            case SupportTicket() as ticket:
                return await asyncio.to_thread(diagnose_ticket, ticket, task_id=task_id)
            case other:
                raise PermanentError(
                    f"diagnostics cannot handle {type(other).__name__}", field="$.task"
                )

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line: finding counts by kind and the number of checks."""
        if not isinstance(output, Diagnosis):
            return f"diagnostics: unexpected output {type(output).__name__}"
        kinds = Counter(f.kind for f in output.findings)
        detail = ", ".join(f"{k} x{n}" for k, n in sorted(kinds.items()))
        return (
            f"diagnosis ({output.source}): {len(output.findings)} finding(s)"
            + (f" [{detail}]" if detail else "")
            + f" from {len(output.checks_run)} check(s)"
        )
