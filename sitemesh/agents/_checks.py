"""Diagnostic routines: rule-based checks over router telemetry.

Every routine is a pure function ``check(telemetry, start, end) -> list[Finding]``
over the samples in ``[start, end)``; a state transition is detected on the first
sample of the new state, so it is compared with the sample just before it even
when that sample lies before ``start``. Trailing baselines may also use samples
before ``start`` (a monitor has history); nothing after ``end`` is read.

The routines and their thresholds are listed in :data:`CHECKS`. They were tuned on
nothing but the public definitions quoted in each docstring; the fault log of the
capture is used only by :mod:`sitemesh.agents._faultlog` to score them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from statistics import median

from ..schemas import Finding, FindingKind
from ._telemetry import Series, Telemetry

Check = Callable[[Telemetry, datetime, datetime], list[Finding]]

UP = "up/up"
"""Interface-brief ``state/line-state`` of an interface that is up."""

TRAFFIC_BASELINE_SAMPLES = 12
"""Trailing baseline length for :func:`check_traffic_drop` (12 × ~11.5 s ≈ 2.3 min)."""
TRAFFIC_DROP_RATIO = 0.5
"""A traffic drop fires when the rate falls to at most this fraction of the baseline."""
TRAFFIC_NEAR_ZERO_RATIO = 0.01
"""A drop that reaches this fraction of the baseline (~0) is ``major``."""
TRAFFIC_MIN_BASELINE_KBPS = 100_000.0
"""Baselines below 100 Mbit/s (0.1 % of a 100G port) are treated as idle links."""
CPU_HIGH_PERCENT = 80.0
"""One-minute total CPU at or above this is ``cpu_high``."""
MEMORY_HIGH_PERCENT = 90.0
"""Application memory used at or above this share of RAM is ``memory_high``."""
FIB_DROP_JUMP_PACKETS = 10.0
"""A FIB drop counter rising by at least this many packets between two samples."""
SUMMARY_MATCH = timedelta(seconds=30)
"""A BFD summary change within this of a per-session transition is explained by it."""
TICKET_LOOKBACK = timedelta(minutes=30)
"""A ticket naming a device is diagnosed over this long before ``submitted_at``."""

INFERRED_PEERS: dict[tuple[str, str], str] = {
    ("HundredGigE0/0/0/16", "172.31.14.48"): "spine4-3464 eth1/25",
}
"""BFD sessions whose far end was inferred from the data (no topology file is shipped).

The leaf7 session on HundredGigE0/0/0/16 to 172.31.14.48 is the only one whose
transitions follow break_bfd/enable_bfd on spine4-3464 eth1/25 in the lab's event
log (1-37 s later, all four observable times), and it sits in 172.31.14.0/24 with
Hu0/0/0/16-19, the fourth block of uplinks (spine4).
"""


def _ts(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _num(value: float) -> str:
    return f"{value:,.0f}"


def _transitions(series: Series, start: datetime, end: datetime) -> list[tuple[int, str, str]]:
    """``(index, before, after)`` for each state change whose new sample is in range."""
    out = []
    for i in series.index_range(start, end):
        if i > 0 and series.values[i - 1] != series.values[i]:
            out.append((i, str(series.values[i - 1]), str(series.values[i])))
    return out


def _value_at(series: Series, at: datetime) -> float | None:
    """The last sample at or before ``at``, or ``None``."""
    i = series.index_range(at, at + timedelta(microseconds=1)).stop
    return float(series.values[i - 1]) if i > 0 else None


def check_interface_state(tel: Telemetry, start: datetime, end: datetime) -> list[Finding]:
    """Interface up/down transitions from the interface-brief ``state``/``line-state``.

    An interface is up when both are ``im-state-up``. Leaving up gives
    ``interface_down`` (``minor`` for ``admin-down``, an operator shutdown;
    ``major`` otherwise); entering up gives ``interface_up`` (``info``).
    Changes between two non-up states are not reported.

    Args:
        tel: the device's telemetry.
        start: window start, inclusive (timezone-aware).
        end: window end, exclusive.

    Returns:
        One finding per transition, ``at`` = first sample showing the new state.
    """
    findings = []
    for name, series in tel.interface_state.items():
        for i, before, after in _transitions(series, start, end):
            if (before == UP) == (after == UP):
                continue
            went_down = before == UP
            findings.append(
                Finding(
                    kind="interface_down" if went_down else "interface_up",
                    device=tel.device,
                    interface=name,
                    at=series.times[i],
                    evidence=(
                        f"{series.name}: {before} at {_ts(series.times[i - 1])} -> "
                        f"{after} at {_ts(series.times[i])}"
                    ),
                    severity=("minor" if after.startswith("admin-down") else "major")
                    if went_down
                    else "info",
                )
            )
    return findings


def check_bfd_sessions(tel: Telemetry, start: datetime, end: datetime) -> list[Finding]:
    """BFD session up/down transitions from the session briefs (RFC 5880 state).

    ``up -> down`` gives ``bfd_session_down`` (``major``: the routing protocols
    using the session tear down their adjacency); ``down -> up`` gives
    ``bfd_session_up`` (``info``). The evidence quotes the BFD summary
    down-count at the previous sample and 10 s after the new one, and the far
    end when it was inferred (:data:`INFERRED_PEERS`).

    Args:
        tel: the device's telemetry.
        start: window start, inclusive (timezone-aware).
        end: window end, exclusive.

    Returns:
        One finding per session transition.
    """
    findings = []
    down_count = tel.bfd_summary.get("down")
    for (ifname, dest), series in tel.bfd_sessions.items():
        for i, before, after in _transitions(series, start, end):
            if "down" not in (before, after):
                continue
            at, prev = series.times[i], series.times[i - 1]
            evidence = (
                f"{series.name} (destination {dest}): {before} at {_ts(prev)} -> "
                f"{after} at {_ts(at)}"
            )
            if down_count is not None:
                b = _value_at(down_count, prev)
                a = _value_at(down_count, at + timedelta(seconds=10))
                if b is not None and a is not None:
                    evidence += f"; {down_count.name} {_num(b)} -> {_num(a)}"
            if (ifname, dest) in INFERRED_PEERS:
                evidence += f"; far end inferred: {INFERRED_PEERS[ifname, dest]}"
            findings.append(
                Finding(
                    kind="bfd_session_down" if after == "down" else "bfd_session_up",
                    device=tel.device,
                    interface=ifname,
                    at=at,
                    evidence=evidence,
                    severity="major" if after == "down" else "info",
                )
            )
    return findings


def check_bfd_summary(tel: Telemetry, start: datetime, end: datetime) -> list[Finding]:
    """BFD summary down-count changes that no session-brief transition explains.

    The summary and the session briefs are separate subscriptions; a change of
    the down-count within :data:`SUMMARY_MATCH` (30 s, three samples) of a
    per-session transition is that transition and is not reported again. An
    unexplained rise is a ``bfd_session_down`` without an interface (e.g. the
    session briefs stopped before the summary did).

    Args:
        tel: the device's telemetry.
        start: window start, inclusive (timezone-aware).
        end: window end, exclusive.

    Returns:
        One finding per unexplained change.
    """
    series = tel.bfd_summary.get("down")
    if series is None:
        return []
    session_times = [
        s.times[i]
        for s in tel.bfd_sessions.values()
        for i in range(1, len(s.times))
        if s.values[i] != s.values[i - 1]
    ]
    findings = []
    for i, before, after in _transitions(series, start, end):
        at = series.times[i]
        if any(abs(t - at) <= SUMMARY_MATCH for t in session_times):
            continue
        rose = float(after) > float(before)
        last = max((s.last for s in tel.bfd_sessions.values() if s.last), default=None)
        note = f"; last session-brief sample {_ts(last)}" if last and last < at else ""
        findings.append(
            Finding(
                kind="bfd_session_down" if rose else "bfd_session_up",
                device=tel.device,
                at=at,
                evidence=(
                    f"{series.name}: {_num(float(before))} at {_ts(series.times[i - 1])} -> "
                    f"{_num(float(after))} at {_ts(at)}; no session-brief transition within "
                    f"{SUMMARY_MATCH.seconds} s names the session{note}"
                ),
                severity="major" if rose else "info",
            )
        )
    return findings


def check_traffic_drop(tel: Telemetry, start: datetime, end: datetime) -> list[Finding]:
    """Traffic on an interface falls to half its trailing baseline or less.

    The rate is input + output data rate (kbit/s). The baseline is the median of
    the previous :data:`TRAFFIC_BASELINE_SAMPLES` samples (≈2.3 min; the median
    ignores a single spike). A drop fires when the rate is at most
    :data:`TRAFFIC_DROP_RATIO` (50 %) of a baseline of at least
    :data:`TRAFFIC_MIN_BASELINE_KBPS`; it is ``major`` if the rate reaches ~0
    (≤ 1 % of the baseline) before ``end``, else ``minor``. One finding per
    episode: the check re-arms when the rate is back above 50 % of the baseline
    it fired on. The device reports a smoothed rate (exponential decay over
    ~30 s), so a shutdown shows up one or two samples after the event.

    Args:
        tel: the device's telemetry.
        start: window start, inclusive (timezone-aware).
        end: window end, exclusive.

    Returns:
        One finding per drop episode that starts in the window.
    """
    findings = []
    k = TRAFFIC_BASELINE_SAMPLES
    for name, rin in tel.input_rate.items():
        rout = tel.output_rate[name]
        total = [float(a) + float(b) for a, b in zip(rin.values, rout.values, strict=True)]
        stop = rin.index_range(start, end).stop
        armed_below: float | None = None
        for i in range(k, stop):
            if armed_below is not None:
                if total[i] > armed_below:
                    armed_below = None
                continue
            base = median(total[i - k : i])
            if base < TRAFFIC_MIN_BASELINE_KBPS or total[i] > TRAFFIC_DROP_RATIO * base:
                continue
            armed_below = TRAFFIC_DROP_RATIO * base
            if rin.times[i] < start:
                continue
            low = min(total[i:stop])
            findings.append(
                Finding(
                    kind="traffic_drop",
                    device=tel.device,
                    interface=name,
                    at=rin.times[i],
                    evidence=(
                        f"{rin.name} + output-data-rate: baseline {_num(base)} kbit/s (median "
                        f"of {k} samples to {_ts(rin.times[i - 1])}) -> {_num(total[i])} kbit/s "
                        f"at {_ts(rin.times[i])} ({total[i] / base - 1:+.0%}); lowest in window "
                        f"{_num(low)} kbit/s"
                    ),
                    severity="major" if low <= TRAFFIC_NEAR_ZERO_RATIO * base else "minor",
                )
            )
    return findings


def _threshold(
    group: dict[str, Series],
    kind: FindingKind,
    limit: float,
    start: datetime,
    end: datetime,
    device: str,
) -> list[Finding]:
    findings = []
    for node, series in group.items():
        for i in series.index_range(start, end):
            value = float(series.values[i])
            prev = float(series.values[i - 1]) if i > 0 else 0.0
            if value >= limit > prev:
                findings.append(
                    Finding(
                        kind=kind,
                        device=device,
                        at=series.times[i],
                        evidence=(
                            f"{series.name}: {prev:.1f} % -> {value:.1f} % at "
                            f"{_ts(series.times[i])} (threshold {limit:.0f} %, node {node})"
                        ),
                        severity="major",
                    )
                )
    return findings


def check_cpu(tel: Telemetry, start: datetime, end: datetime) -> list[Finding]:
    """One-minute total CPU of a node crosses :data:`CPU_HIGH_PERCENT` (80 %) upwards.

    80 % is the usual rising threshold of CPU-utilisation notifications (e.g. the
    example in Cisco's "CPU Threshold Notification" configuration guides); on
    this capture leaf7 stays at 2-7 %.

    Args:
        tel: the device's telemetry.
        start: window start, inclusive (timezone-aware).
        end: window end, exclusive.

    Returns:
        One ``cpu_high`` finding per upward crossing.
    """
    return _threshold(tel.cpu, "cpu_high", CPU_HIGH_PERCENT, start, end, tel.device)


def check_memory(tel: Telemetry, start: datetime, end: datetime) -> list[Finding]:
    """Application memory used crosses :data:`MEMORY_HIGH_PERCENT` (90 %) upwards.

    Used = 1 - free-application-memory / ram-memory; 90 % leaves about 10 % head
    room, a common memory alarm level. leaf7 stays at 27-29 % here.

    Args:
        tel: the device's telemetry.
        start: window start, inclusive (timezone-aware).
        end: window end, exclusive.

    Returns:
        One ``memory_high`` finding per upward crossing.
    """
    return _threshold(tel.memory, "memory_high", MEMORY_HIGH_PERCENT, start, end, tel.device)


def check_fib_drops(tel: Telemetry, start: datetime, end: datetime) -> list[Finding]:
    """A FIB drop counter of a node rises by ≥ :data:`FIB_DROP_JUMP_PACKETS` between samples.

    The counters are cumulative packets (no-route, incomplete-adjacency,
    discard...). Single packets trickle in normally; a jump of 10+ packets in one
    ~10 s sample means traffic hit a missing route or adjacency, as happens for
    a moment when a link goes down. A counter that decreases (reset) is ignored.

    Args:
        tel: the device's telemetry.
        start: window start, inclusive (timezone-aware).
        end: window end, exclusive.

    Returns:
        One ``fib_drops`` finding per node and sample, naming every counter that jumped.
    """
    findings = []
    for node, counters in tel.fib_drops.items():
        jumps: dict[datetime, list[str]] = {}
        for series in counters.values():
            for i in series.index_range(start, end):
                if i == 0:
                    continue
                before, after = float(series.values[i - 1]), float(series.values[i])
                if after - before >= FIB_DROP_JUMP_PACKETS:
                    jumps.setdefault(series.times[i], []).append(
                        f"{series.name}: {_num(before)} at {_ts(series.times[i - 1])} -> "
                        f"{_num(after)} (+{_num(after - before)} packets)"
                    )
        for at in sorted(jumps):
            findings.append(
                Finding(
                    kind="fib_drops",
                    device=tel.device,
                    at=at,
                    evidence=f"node {node} at {_ts(at)}: " + "; ".join(jumps[at]),
                )
            )
    return findings


CHECKS: tuple[tuple[str, Check], ...] = (
    ("interface_state", check_interface_state),
    ("bfd_session_state", check_bfd_sessions),
    ("bfd_summary", check_bfd_summary),
    ("traffic_drop", check_traffic_drop),
    ("cpu_utilization", check_cpu),
    ("memory_utilization", check_memory),
    ("fib_drops", check_fib_drops),
)
"""Every diagnostic routine, by the name reported in ``Diagnosis.checks_run``."""

STATE_KINDS: frozenset[str] = frozenset(
    {"interface_down", "interface_up", "bfd_session_down", "bfd_session_up"}
)
"""Finding kinds read from a device's own state machine (not a heuristic)."""


