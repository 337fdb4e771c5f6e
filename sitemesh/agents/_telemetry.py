"""Router telemetry the diagnostics agent reads: loading, caching and time indexing.

The data is the Cisco Innovation Edge lab capture of router ``leaf7`` (folder 11
of https://github.com/cisco-ie/telemetry, CDLA-Permissive-1.0), copied to
``telemetry/cisco-leaf7/`` next to this module; see its ``SOURCE.md``. Each CSV
is one model-driven-telemetry (MDT) YANG path sampled every ~10 s; the first
column is the collection timestamp (UTC), ``Producer`` is the device.

Only the columns the diagnostic routines use are kept (a few MB in memory). The
files are parsed once per process, on first use, with :mod:`csv` and
:mod:`gzip`; :func:`load_telemetry` is cached.
"""

from __future__ import annotations

import csv
import gzip
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

DATA_DIR = Path(__file__).parent / "telemetry" / "cisco-leaf7"
"""Folder with the copied leaf7 CSVs (gzip), ``events.csv.gz`` and the licence."""

_PREFIX = "Cisco-IOS-XR-"
FILES = {
    "interface_brief": "pfi-im-cmd-oper__interfaces_interface-briefs_interface-brief",
    "interface_summary": "pfi-im-cmd-oper__interfaces_interface-summary",
    "bfd_session": "ip-bfd-oper__bfd_session-briefs_session-brief",
    "bfd_summary": "ip-bfd-oper__bfd_summary",
    "data_rate": "infra-statsd-oper__infra-statistics_interfaces_interface_data-rate",
    "cpu": "wdsysmon-fd-oper__system-monitoring_cpu-utilization",
    "memory": "nto-misc-oper__memory-summary_nodes_node_summary",
    "fib_drops": "fib-common-oper__fib-statistics_nodes_node_drops",
}
"""Series family -> CSV file stem (after ``Cisco-IOS-XR-``, before ``.csv.gz``)."""

YANG_PATHS = {
    "interface_brief": "Cisco-IOS-XR-pfi-im-cmd-oper:interfaces/interface-briefs/interface-brief",
    "interface_summary": "Cisco-IOS-XR-pfi-im-cmd-oper:interfaces/interface-summary",
    "bfd_session": "Cisco-IOS-XR-ip-bfd-oper:bfd/session-briefs/session-brief",
    "bfd_summary": "Cisco-IOS-XR-ip-bfd-oper:bfd/summary",
    "data_rate": "Cisco-IOS-XR-infra-statsd-oper:infra-statistics/interfaces/interface/data-rate",
    "cpu": "Cisco-IOS-XR-wdsysmon-fd-oper:system-monitoring/cpu-utilization",
    "memory": "Cisco-IOS-XR-nto-misc-oper:memory-summary/nodes/node/summary",
    "fib_drops": "Cisco-IOS-XR-fib-common-oper:fib-statistics/nodes/node/drops",
}
"""Series family -> the YANG path it was collected from (quoted in evidence)."""

DEVICES = ("leaf7",)
"""Devices with telemetry in this build (the ``Producer`` of every CSV row)."""

_FIB_SKIP = {"", "EncodingPath", "Producer", "Target", "host", "node-name"}


def _strip(value: str, prefix: str) -> str:
    return value[len(prefix) :] if value.startswith(prefix) else value


@dataclass(frozen=True, slots=True)
class Series:
    """One time series: sorted sample times and their values.

    Attributes:
        name: ``<yang path>[key]/<leaf>``, quoted in evidence.
        times: sample times, timezone-aware UTC, ascending.
        values: one value per time (``str`` for states, ``float`` for counters/rates).
    """

    name: str
    times: list[datetime]
    values: Sequence[str | float]

    def index_range(self, start: datetime, end: datetime) -> range:
        """Indices of the samples with ``start <= time < end``.

        Args:
            start: inclusive lower bound (timezone-aware).
            end: exclusive upper bound (timezone-aware).

        Returns:
            A (possibly empty) range of indices into ``times`` / ``values``.
        """
        return range(bisect_left(self.times, start), bisect_left(self.times, end))

    @property
    def first(self) -> datetime | None:
        """Time of the first sample, or ``None`` for an empty series."""
        return self.times[0] if self.times else None

    @property
    def last(self) -> datetime | None:
        """Time of the last sample, or ``None`` for an empty series."""
        return self.times[-1] if self.times else None


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Every series of one device, keyed as the diagnostic routines need them.

    Attributes:
        device: the device name (``leaf7``).
        interface_state: interface name -> ``"<state>/<line-state>"`` with the
            ``im-state-`` prefix removed, e.g. ``"up/up"``, ``"admin-down/admin-down"``.
        interface_counts: ``up`` / ``down`` / ``admin-down`` -> interface-summary count.
        bfd_sessions: ``(interface name, destination address)`` -> ``"up"``/``"down"``
            (``bfd-mgmt-session-state-`` prefix removed).
        bfd_summary: ``up`` / ``down`` / ``total`` -> BFD session count.
        input_rate: interface name -> input data rate in kbit/s.
        output_rate: interface name -> output data rate in kbit/s.
        cpu: node name -> total CPU utilisation over one minute in percent.
        memory: node name -> application memory used in percent of RAM.
        fib_drops: node name -> drop counter name -> cumulative packets.
    """

    device: str
    interface_state: dict[str, Series] = field(default_factory=dict)
    interface_counts: dict[str, Series] = field(default_factory=dict)
    bfd_sessions: dict[tuple[str, str], Series] = field(default_factory=dict)
    bfd_summary: dict[str, Series] = field(default_factory=dict)
    input_rate: dict[str, Series] = field(default_factory=dict)
    output_rate: dict[str, Series] = field(default_factory=dict)
    cpu: dict[str, Series] = field(default_factory=dict)
    memory: dict[str, Series] = field(default_factory=dict)
    fib_drops: dict[str, dict[str, Series]] = field(default_factory=dict)

    def all_series(self) -> Iterator[Series]:
        """Every series of the device, in a fixed order."""
        for group in (
            self.interface_state,
            self.interface_counts,
            self.bfd_summary,
            self.input_rate,
            self.output_rate,
            self.cpu,
            self.memory,
        ):
            yield from group.values()
        yield from self.bfd_sessions.values()
        for counters in self.fib_drops.values():
            yield from counters.values()

    @property
    def start(self) -> datetime:
        """Time of the earliest sample of any series (UTC)."""
        return min(s.times[0] for s in self.all_series() if s.times)

    @property
    def end(self) -> datetime:
        """Time of the latest sample of any series (UTC)."""
        return max(s.times[-1] for s in self.all_series() if s.times)

    def interfaces(self) -> list[str]:
        """Every interface name in the interface-brief or data-rate series, sorted."""
        return sorted(set(self.interface_state) | set(self.input_rate))

    def has_data(self, start: datetime, end: datetime) -> bool:
        """Whether any series has a sample in ``[start, end)``.

        Args:
            start: inclusive lower bound (timezone-aware).
            end: exclusive upper bound (timezone-aware).
        """
        return any(len(s.index_range(start, end)) > 0 for s in self.all_series())


def parse_time(text: str) -> datetime:
    """Parse a CSV timestamp (``2019-05-19 07:03:11.485000+00:00``) to aware UTC.

    Args:
        text: ISO 8601 date-time; naive values are taken as UTC.

    Returns:
        The timezone-aware UTC datetime.
    """
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _rows(family: str) -> Iterator[dict[str, str]]:
    path = DATA_DIR / f"{_PREFIX}{FILES[family]}.csv.gz"
    with gzip.open(path, "rt", newline="", encoding="utf-8") as f:
        yield from csv.DictReader(f)


class _Builder:
    """Accumulates (time, value) per key, then sorts into :class:`Series`."""

    def __init__(self, family: str) -> None:
        self.family = family
        self.points: dict[str, list[tuple[datetime, str | float]]] = defaultdict(list)

    def add(self, key: str, at: datetime, value: str | float) -> None:
        self.points[key].append((at, value))

    def build(self, fmt: str) -> dict[str, Series]:
        """Sorted series per key, named ``fmt.format(path=<yang path>, key=<key>)``."""
        out: dict[str, Series] = {}
        for key in sorted(self.points):
            pts = sorted(self.points[key], key=lambda p: p[0])
            name = fmt.format(path=YANG_PATHS[self.family], key=key)
            out[key] = Series(name, [p[0] for p in pts], [p[1] for p in pts])
        return out


@cache
def load_telemetry(device: str) -> Telemetry | None:
    """Load every series of ``device`` from the copied CSVs (once per process).

    Args:
        device: device name as in alerts, e.g. ``"leaf7"`` (case-sensitive).

    Returns:
        The device's :class:`Telemetry`, or ``None`` if there is no data for it.

    Raises:
        OSError: the data files are missing or unreadable (a broken install).
    """
    if device not in DEVICES:
        return None
    state, counts = _Builder("interface_brief"), _Builder("interface_summary")
    for r in _rows("interface_brief"):
        if r["Producer"] == device:
            value = f"{_strip(r['state'], 'im-state-')}/{_strip(r['line-state'], 'im-state-')}"
            state.add(r["interface-name"], parse_time(r[""]), value)
    for r in _rows("interface_summary"):
        if r["Producer"] == device:
            at = parse_time(r[""])
            for key in ("up", "down", "admin-down"):
                counts.add(key, at, float(r[f"interface-counts__{key}-interface-count"]))
    bfd, summary = _Builder("bfd_session"), _Builder("bfd_summary")
    for r in _rows("bfd_session"):
        if r["Producer"] == device:
            key = f"{r['interface-name']},{r['destination-address']}"
            bfd.add(key, parse_time(r[""]), _strip(r["state"], "bfd-mgmt-session-state-"))
    for r in _rows("bfd_summary"):
        if r["Producer"] == device:
            at = parse_time(r[""])
            for key in ("up", "down", "total"):
                summary.add(key, at, float(r[f"session-state__{key}-count"]))
    rate_in, rate_out = _Builder("data_rate"), _Builder("data_rate")
    for r in _rows("data_rate"):
        if r["Producer"] == device:
            at = parse_time(r[""])
            rate_in.add(r["interface-name"], at, float(r["input-data-rate"]))
            rate_out.add(r["interface-name"], at, float(r["output-data-rate"]))
    cpu, mem = _Builder("cpu"), _Builder("memory")
    for r in _rows("cpu"):
        if r["Producer"] == device:
            cpu.add(r["node-name"], parse_time(r[""]), float(r["total-cpu-one-minute"]))
    for r in _rows("memory"):
        if r["Producer"] == device and float(r["ram-memory"]) > 0:
            used = 100.0 * (1.0 - float(r["free-application-memory"]) / float(r["ram-memory"]))
            mem.add(r["node-name"], parse_time(r[""]), used)
    fib: dict[str, _Builder] = defaultdict(lambda: _Builder("fib_drops"))
    for r in _rows("fib_drops"):
        if r["Producer"] == device:
            at = parse_time(r[""])
            for column, text in r.items():
                if column not in _FIB_SKIP and text.isdigit():
                    fib[r["node-name"]].add(column, at, float(text))
    sessions: dict[tuple[str, str], Series] = {}
    for key, series in bfd.build("{path}[{key}]/state").items():
        ifname, dest = key.split(",", 1)
        sessions[ifname, dest] = series
    return Telemetry(
        device=device,
        interface_state=state.build("{path}[{key}]/state,line-state"),
        interface_counts=counts.build("{path}/interface-counts/{key}-interface-count"),
        bfd_sessions=sessions,
        bfd_summary=summary.build("{path}/session-state/{key}-count"),
        input_rate=rate_in.build("{path}[{key}]/input-data-rate"),
        output_rate=rate_out.build("{path}[{key}]/output-data-rate"),
        cpu=cpu.build("{path}[{key}]/total-cpu-one-minute"),
        memory=mem.build("{path}[{key}]/(1 - free-application-memory / ram-memory)"),
        fib_drops={node: b.build(f"{{path}}[{node}]/{{key}}") for node, b in sorted(fib.items())},
    )
