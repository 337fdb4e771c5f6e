"""Scoring diagnoses against the lab's injected-fault log (``events.csv.gz``).

The log lists what the lab operators did to the network during the leaf7 capture.
It is ground truth for scoring only: neither the diagnostics agent nor the alert
generator reads it.

Matching rules (one injected event -> one expected finding on leaf7):

==================  ====================  ==========================================
event               expected finding      on
==================  ====================  ==========================================
shutdown_interface  ``interface_down``    the event's interface (HundredGigE0/0/0/10)
enable_interface    ``interface_up``      the event's interface
break_bfd           ``bfd_session_down``  leaf7's session toward spine4-3464 eth1/25,
                                          HundredGigE0/0/0/16 (inferred, see
                                          :data:`~sitemesh.agents._diagnostics.INFERRED_PEERS`)
enable_bfd          ``bfd_session_up``    the same session
==================  ====================  ==========================================

A finding matches if its time is within :data:`TOLERANCE` of the event. Statuses:

* ``hit`` - the event is inside a diagnosed alert window and a matching finding
  of one of the diagnoses covering it lies within the tolerance;
* ``miss`` - inside a diagnosed window, observable, but not found;
* ``unobservable`` - inside a diagnosed window, but the series the finding is
  read from has no sample before the event or none within the tolerance after
  it (e.g. the event happened before collection started or after it ended);
* ``not_diagnosed`` - no alert window covers the event.

Findings are deduplicated on ``(kind, interface, at)`` across diagnoses
(overlapping windows repeat them). A finding that is no event's hit is
*secondary* if it lies within the tolerance of an injected event and is on that
event's leaf7 interface or on no interface (the BFD session riding a shut
interface, the traffic leaving it, FIB drops); otherwise it is a *false
positive*, listed separately for state-transition kinds and heuristic kinds.
"""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from ..schemas import Diagnosis, Finding, TelemetryAlert
from ._checks import INFERRED_PEERS, STATE_KINDS
from ._telemetry import DATA_DIR, Series, load_telemetry

FaultAction = Literal["break_bfd", "enable_bfd", "shutdown_interface", "enable_interface"]
EventStatus = Literal["hit", "miss", "unobservable", "not_diagnosed"]

TOLERANCE = timedelta(seconds=60)
"""Max |finding.at - event| for a match: the 10 s telemetry cadence, the
collection lag, and BFD's slow re-establishment after ``enable_bfd`` (up to
37 s observed here; RFC 5880 §6.8.3 lets the session restart slowly)."""

DEVICE = "leaf7"
"""The device the capture is from."""

SPINE4_SESSION = next(
    key for key, peer in INFERRED_PEERS.items() if peer.startswith("spine4-3464 eth1/25")
)
"""leaf7's ``(interface, destination)`` BFD session toward spine4-3464 eth1/25."""

_EXPECTED: dict[str, str] = {
    "shutdown_interface": "interface_down",
    "enable_interface": "interface_up",
    "break_bfd": "bfd_session_down",
    "enable_bfd": "bfd_session_up",
}


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One injected fault or repair.

    Attributes:
        at: when the operator's script acted (UTC).
        action: what it did.
        device: the device acted on as logged (``leaf7``, ``spine4-3464``).
        interface: the interface acted on as logged (``eth1/25``).
    """

    at: datetime
    action: FaultAction
    device: str
    interface: str

    @property
    def leaf7_interface(self) -> str:
        """The leaf7 interface where the event shows (inferred for spine4 BFD events)."""
        return self.interface if self.device == DEVICE else SPINE4_SESSION[0]

    @property
    def expected_kind(self) -> str:
        """The finding kind that detects this event."""
        return _EXPECTED[self.action]


@dataclass(frozen=True, slots=True)
class EventRow:
    """The score of one event.

    Attributes:
        event: the injected event.
        status: ``hit``, ``miss``, ``unobservable`` or ``not_diagnosed``.
        finding: the matching finding for a hit.
        delay_s: ``finding.at - event.at`` in seconds for a hit.
        note: why an event is unobservable, or which alert windows cover it.
    """

    event: FaultEvent
    status: EventStatus
    finding: Finding | None = None
    delay_s: float | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class FaultScore:
    """Findings compared with the fault log.

    Attributes:
        rows: one row per injected event, in time order.
        false_positives_state: unique state-transition findings matching no event.
        false_positives_heuristic: unique heuristic findings (traffic, CPU, FIB...)
            matching no event.
        secondary: unique findings explained as consequences of an event.
        tolerance: the matching tolerance used.
    """

    rows: list[EventRow]
    false_positives_state: list[Finding] = field(default_factory=list)
    false_positives_heuristic: list[Finding] = field(default_factory=list)
    secondary: list[Finding] = field(default_factory=list)
    tolerance: timedelta = TOLERANCE

    def count(self, status: EventStatus) -> int:
        """Number of events with ``status``."""
        return sum(r.status == status for r in self.rows)

    @property
    def hits(self) -> int:
        """Events detected."""
        return self.count("hit")

    @property
    def misses(self) -> int:
        """Observable events in a diagnosed window that were not detected."""
        return self.count("miss")

    def render(self) -> str:
        """A plain-text table of the rows followed by the totals and false positives."""
        lines = [
            f"{'time (UTC)':<20} {'event':<19} {'device/interface':<32} {'status':<13} "
            f"{'delay':>6}  finding"
        ]
        for r in self.rows:
            e = r.event
            found = f"{r.finding.kind} {r.finding.interface or '-'}" if r.finding else r.note
            delay = f"{r.delay_s:+.0f}s" if r.delay_s is not None else ""
            lines.append(
                f"{e.at.strftime('%Y-%m-%d %H:%M:%S'):<20} {e.action:<19} "
                f"{e.device + ' ' + e.interface:<32} {r.status:<13} {delay:>6}  {found}"
            )
        lines.append(
            f"hits {self.hits}, misses {self.misses}, unobservable {self.count('unobservable')}, "
            f"not diagnosed {self.count('not_diagnosed')}; tolerance ±{self.tolerance.seconds} s"
        )
        lines.append(
            f"false positives: state {len(self.false_positives_state)}, heuristic "
            f"{len(self.false_positives_heuristic)}; secondary (explained) {len(self.secondary)}"
        )
        for label, group in (
            ("FP state", self.false_positives_state),
            ("FP heuristic", self.false_positives_heuristic),
        ):
            for f in group:
                at = f.at.strftime("%H:%M:%S") if f.at else "-"
                lines.append(f"  {label}: {f.kind} {f.interface or '-'} at {at}")
        return "\n".join(lines)


def load_fault_log() -> list[FaultEvent]:
    """The injected faults and repairs of the copied ``events.csv.gz``, in time order.

    Configuration and traffic-generator rows (``apply_device_configs``,
    ``clear_telemetry``, ``ixchariot_traffic``...) are dropped.

    Returns:
        The ``break_bfd``, ``enable_bfd``, ``shutdown_interface`` and
        ``enable_interface`` events with epoch timestamps as UTC datetimes.
    """
    events = []
    with gzip.open(DATA_DIR / "events.csv.gz", "rt", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            action = row["event"]
            if action in _EXPECTED:
                events.append(
                    FaultEvent(
                        at=datetime.fromtimestamp(float(row["timestamp"]), UTC),
                        action=action,  # type: ignore[arg-type]
                        device=row["device"],
                        interface=row["interface"],
                    )
                )
    return sorted(events, key=lambda e: e.at)


def _series_for(event: FaultEvent) -> Series | None:
    tel = load_telemetry(DEVICE)
    if tel is None:
        return None
    if event.action in ("break_bfd", "enable_bfd"):
        return tel.bfd_sessions.get(SPINE4_SESSION)
    return tel.interface_state.get(event.interface)


def _observability(event: FaultEvent, tolerance: timedelta) -> str:
    """Empty if the event's series has samples before and within ``tolerance`` after it."""
    series = _series_for(event)
    if series is None or not series.times:
        return "no series for this event"
    if series.times[0] > event.at:
        return f"{event.expected_kind} series starts {series.times[0]:%H:%M:%S}, after the event"
    if not series.index_range(event.at, event.at + tolerance):
        last = series.times[-1].strftime("%H:%M:%S.%f")[:-3]
        return f"{event.expected_kind} series ends {last}, before the event"
    return ""


def _utc(at: datetime) -> datetime:
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def score(
    diagnoses: Sequence[Diagnosis],
    alerts: Sequence[TelemetryAlert],
    *,
    events: Sequence[FaultEvent] | None = None,
    tolerance: timedelta = TOLERANCE,
) -> FaultScore:
    """Compare the findings of ``diagnoses`` with the injected-fault log.

    Args:
        diagnoses: one diagnosis per alert, joined on ``task_id``.
        alerts: the alerts diagnosed (their windows say which events were in scope).
        events: the fault log; default :func:`load_fault_log`.
        tolerance: max |finding time - event time| for a match.

    Returns:
        Per-event rows, false positives and secondary findings (see the module doc).
    """
    events = load_fault_log() if events is None else events
    by_task = {d.task_id: d for d in diagnoses}
    windows = [
        (a, _utc(a.window_start), _utc(a.window_end), by_task[a.task_id])
        for a in alerts
        if a.task_id in by_task and a.device == DEVICE
    ]
    rows: list[EventRow] = []
    hit_keys: set[tuple[str, str | None, datetime | None]] = set()
    for e in events:
        covering = [(a, d) for a, s, t, d in windows if s <= e.at < t]
        if not covering:
            rows.append(EventRow(event=e, status="not_diagnosed"))
            continue
        candidates = [
            f
            for _, d in covering
            for f in d.findings
            if f.kind == e.expected_kind
            and f.interface == e.leaf7_interface
            and f.at is not None
            and abs(f.at - e.at) <= tolerance
        ]
        ids = ", ".join(sorted({str(a.task_id) for a, _ in covering}))
        if candidates:
            best = min(candidates, key=lambda f: (abs(f.at - e.at), f.evidence))  # type: ignore[operator]
            assert best.at is not None
            hit_keys.add((best.kind, best.interface, best.at))
            rows.append(
                EventRow(
                    event=e,
                    status="hit",
                    finding=best,
                    delay_s=(best.at - e.at).total_seconds(),
                    note=ids,
                )
            )
            continue
        why = _observability(e, tolerance)
        rows.append(EventRow(event=e, status="unobservable" if why else "miss", note=why or ids))
    unique: dict[tuple[str, str | None, datetime | None], Finding] = {}
    for _, _, _, d in windows:
        for f in d.findings:
            unique.setdefault((f.kind, f.interface, f.at), f)
    fp_state, fp_heur, secondary = [], [], []
    for key in sorted(unique, key=lambda k: (k[2] or datetime.min.replace(tzinfo=UTC), k[0])):
        if key in hit_keys:
            continue
        f = unique[key]
        explained = f.at is not None and any(
            abs(f.at - e.at) <= tolerance and f.interface in (None, e.leaf7_interface)
            for e in events
        )
        if explained:
            secondary.append(f)
        elif f.kind in STATE_KINDS:
            fp_state.append(f)
        else:
            fp_heur.append(f)
    return FaultScore(
        rows=rows,
        false_positives_state=fp_state,
        false_positives_heuristic=fp_heur,
        secondary=secondary,
        tolerance=tolerance,
    )
