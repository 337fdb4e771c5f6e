"""The diagnostics agent: runs the routines of :mod:`._checks` over the window of a
telemetry alert, or over the devices a support ticket names.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ClassVar, Final

import msgspec

from ..errors import PermanentError
from ..schemas import (
    Diagnosis,
    Finding,
    LogLine,
    MetricSeries,
    SupportTicket,
    TelemetryAlert,
    WorkItem,
)

if TYPE_CHECKING:
    from ..sources import SourceSpec, TelemetryReader
from ._base import Agent, AgentContext, AgentOutput, AgentResources
from ._checks import (
    CHECKS,
    STATE_KINDS,
    TICKET_LOOKBACK,
    _ts,
)
from ._inline import INLINE_LOGS, INLINE_METRICS, diagnose_logs, diagnose_samples
from ._telemetry import DEVICES, load_telemetry

log = logging.getLogger("sitemesh.agents.diagnostics")


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


SOURCE_LOOKBACK: Final = timedelta(days=2)
"""How far before ``window_start`` a telemetry source is read: the baseline. Two days
is more than :data:`~sitemesh.detect.DEFAULT_CONFIG`'s baseline window plus minimum
history (1.5 days), so a 5-minute series read from a source gets the NAB-tuned
settings (see :func:`sitemesh.detect.config_for_times`)."""

SOURCE_METRICS: Final = "source_metrics"
"""``Diagnosis.checks_run`` name of the metric detectors on series read from a source."""
SOURCE_LOGS: Final = "source_logs"
"""``Diagnosis.checks_run`` name of the log template mining on lines read from a source."""


@dataclass(frozen=True, slots=True)
class SourceData:
    """What was read from the telemetry source an alert names.

    Attributes:
        name: the source's name.
        samples: series of the alert's device over ``[window_start - SOURCE_LOOKBACK,
            window_end)``, at most ``MAX_INLINE_SERIES``.
        logs: log lines over the same span, at most ``MAX_LOG_LINES``.
        problem: why nothing could be read (``None``: the read worked), PII-free.
    """

    name: str
    samples: list[MetricSeries] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    problem: str | None = None


def read_source(reader: TelemetryReader, alert: TelemetryAlert) -> SourceData:
    """Read the alert's device from ``reader`` over its window and baseline.

    Args:
        reader: the opened source.
        alert: the alert (``device``, ``window_start``, ``window_end``).

    Returns:
        The series and lines; a :class:`~sitemesh.sources.SourceError` while reading
        (a file gone, the Prometheus server down) is returned as ``problem``.
    """
    from ..sources import SourceError

    name = reader.spec.name
    start = _utc(alert.window_start) - SOURCE_LOOKBACK
    end = _utc(alert.window_end)
    try:
        samples = reader.series(alert.device, start, end)
        logs = reader.logs(alert.device, start, end)
    except SourceError as exc:
        return SourceData(name, problem=f"telemetry source {name!r} not read: {exc}")
    return SourceData(name, samples=samples, logs=logs)


def _inline_parts(
    alert: TelemetryAlert, label: str, names: tuple[str, str]
) -> tuple[list[Finding], list[str], list[str]]:
    """Detectors on ``alert.samples`` and ``alert.logs``: findings, checks, summary parts."""
    findings: list[Finding] = []
    checks: list[str] = []
    parts: list[str] = []
    if alert.samples:
        found, notes = diagnose_samples(alert)
        findings += found
        checks.append(names[0])
        parts.append(
            f"{label} metrics ({len(alert.samples)} series): "
            + (f"{len(found)} finding(s)" if found else "no findings")
            + (f"; {'; '.join(notes)}" if notes else "")
        )
    if alert.logs:
        found = diagnose_logs(alert)
        findings += found
        checks.append(names[1])
        parts.append(
            f"{label} logs ({len(alert.logs)} lines): "
            + (f"{len(found)} finding(s)" if found else "no findings")
        )
    return findings, checks, parts


def diagnose_alert(
    alert: TelemetryAlert, *, task_id: str, source: SourceData | None = None
) -> Diagnosis:
    """Diagnose a telemetry alert on the packaged capture, its inline telemetry and
    the telemetry source it names.

    * The packaged capture (:data:`~sitemesh.sources.CISCO_SOURCE`): the checks of
      :data:`CHECKS` run when the alert's device is in it (always, when the alert names
      that source).
    * Inline ``samples`` / ``logs``: :mod:`sitemesh.detect` runs on each
      (``checks_run`` gains ``inline_metrics`` / ``inline_logs``, see :mod:`._inline`).
    * ``source`` (read by :func:`read_source` from ``alert.telemetry_source``): the
      same detectors on what was read (``source_metrics`` / ``source_logs``).

    An alert with no data at all gives no findings, empty ``checks_run`` and a
    summary that says why; the escalation agent turns that into a ``no telemetry``
    reason.

    Args:
        alert: the alert.
        task_id: id of the task.
        source: what was read from the alert's telemetry source, if it names one
            other than the packaged capture.

    Returns:
        The diagnosis, findings sorted by time, kind and interface.
    """
    from ..sources import CISCO_SOURCE

    named = alert.telemetry_source
    packaged = named == CISCO_SOURCE or (named is None and not alert.samples and not alert.logs)
    if packaged and not alert.samples and not alert.logs and source is None:
        return diagnose(alert.device, alert.window_start, alert.window_end, task_id=task_id)
    start, end = _utc(alert.window_start), _utc(alert.window_end)
    findings: list[Finding] = []
    checks: list[str] = []
    parts: list[str] = []
    if packaged or load_telemetry(alert.device) is not None:
        capture = diagnose(alert.device, start, end, task_id=task_id)
        findings += capture.findings
        checks += capture.checks_run
        parts.append(capture.summary)
    found, ran, said = _inline_parts(alert, "inline", (INLINE_METRICS, INLINE_LOGS))
    inline = list(found)
    checks += ran
    parts += said
    if source is not None:
        if source.problem is not None:
            parts.append(source.problem)
        elif not source.samples and not source.logs:
            parts.append(
                f"telemetry source {source.name!r}: no series or log lines of "
                f"{alert.device} in [{_ts(start - SOURCE_LOOKBACK)}, {_ts(end)})"
            )
        else:
            sourced = msgspec.structs.replace(alert, samples=source.samples, logs=source.logs)
            found, ran, said = _inline_parts(sourced, f"source {source.name}", (SOURCE_METRICS,
                                                                               SOURCE_LOGS))
            inline += found
            checks += ran
            parts += said
    findings = sorted(findings + inline, key=_sort_key)
    window = f"[{_ts(start)}, {_ts(end)})"
    used = (["inline"] if alert.samples or alert.logs else []) + (
        [f"source {source.name}"] if source is not None else []
    )
    what = " and ".join(used)
    head = f"{alert.device} {window} {what}: " + (_describe(inline) if inline else "no findings")
    if not checks:
        head = f"{alert.device} {window}: no telemetry"
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

    def __init__(self) -> None:
        self._resources: AgentResources | None = None
        self._readers: dict[str, TelemetryReader] = {}

    async def setup(self, resources: AgentResources) -> None:
        """Load the packaged telemetry before the first message (about 1 s), and follow
        the site's telemetry sources (``sitemesh telemetry add``)."""
        self._resources = resources
        await asyncio.to_thread(load_telemetry, "leaf7")
        resources.on_artifact_change(self._artifact_changed)

    async def _artifact_changed(self, name: str) -> None:
        if not name:
            self._readers.clear()
        elif name.startswith("telemetry/"):
            self._readers.pop(name.removeprefix("telemetry/"), None)

    async def _reader(self, name: str) -> TelemetryReader:
        """The opened source ``name`` of this site (cached until its spec changes).

        Raises:
            PermanentError: no such source at the site (field ``$.task.telemetry_source``).
        """
        from ..sources import SourceError, SourceNotFound, fetch_source, open_source

        if (reader := self._readers.get(name)) is not None:
            return reader
        artifacts = await self._resources.artifacts() if self._resources is not None else None
        if artifacts is None:
            raise PermanentError(
                f"telemetry source {name!r} is not registered at this site (no sources are; "
                "add one with `sitemesh telemetry add`)",
                field="$.task.telemetry_source",
            )
        try:
            spec: SourceSpec = await fetch_source(artifacts, name)
            reader = await asyncio.to_thread(open_source, spec)
        except SourceNotFound as exc:
            raise PermanentError(
                f"{exc}; add it with `sitemesh telemetry add {name} SOURCE`",
                field="$.task.telemetry_source",
            ) from exc
        except SourceError as exc:
            raise PermanentError(
                f"telemetry source {name!r} cannot be opened: {exc}",
                field="$.task.telemetry_source",
            ) from exc
        self._readers[name] = reader
        return reader

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Diagnosis:
        """Diagnose the task of ``item``.

        Args:
            item: the work item; its task is a ``TelemetryAlert`` or ``SupportTicket``.
            ctx: the worker context (unused).

        Returns:
            A :class:`~sitemesh.schemas.Diagnosis` with ``source="rules"``.

        Raises:
            PermanentError: another task type, or the alert names a telemetry source
                that is not registered at the site (dead-lettered with the field).
        """
        from ..sources import CISCO_SOURCE

        task_id = item.envelope.task_id
        match item.task:
            case TelemetryAlert(telemetry_source=str(name)) as alert if name != CISCO_SOURCE:
                reader = await self._reader(name)
                data = await asyncio.to_thread(read_source, reader, alert)
                if data.problem is not None:
                    log.warning("diagnostics: %s", data.problem)
                return await asyncio.to_thread(
                    diagnose_alert, alert, task_id=task_id, source=data
                )
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
