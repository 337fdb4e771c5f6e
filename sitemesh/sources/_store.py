"""Parsed telemetry in memory: series tracks and log entries, windowed and limited
the same way for every kind, and the times they are keyed by."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import pairwise
from typing import Final

from ..detect import parse_timestamp
from ..schemas import (
    MAX_INLINE_SERIES,
    MAX_LOG_LINE_CHARS,
    MAX_LOG_LINES,
    MAX_SERIES_POINTS,
    LogLine,
    MetricSeries,
)

MAX_LABELS: Final = 16
"""``MetricSeries.labels`` holds at most 16 labels, keys of 1-64 characters, values of
at most 256; longer values are cut, longer keys dropped."""


def utc(at: datetime) -> datetime:
    """``at`` in UTC; a naive datetime is taken as UTC."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def to_epoch(at: datetime) -> float:
    """Seconds since the epoch of ``at`` (naive = UTC)."""
    return utc(at).timestamp()


def from_epoch(t: float) -> datetime:
    """The aware UTC datetime of epoch seconds ``t``."""
    return datetime.fromtimestamp(t, UTC)


def epoch_number(x: float) -> float:
    """Epoch seconds from a number in seconds, milliseconds, microseconds or
    nanoseconds, told apart by size: above 1e11 is taken as milliseconds (1e11 s is
    the year 5138, 1e11 ms is 1973), above 1e14 as microseconds, above 1e17 as
    nanoseconds.

    Raises:
        ValueError: not finite.
    """
    if not math.isfinite(x):
        raise ValueError(f"{x} is not a time")
    size = abs(x)
    if size >= 1e17:
        return x / 1e9
    if size >= 1e14:
        return x / 1e6
    if size >= 1e11:
        return x / 1e3
    return x


def text_epoch(text: str) -> float:
    """Epoch seconds from an epoch number (:func:`epoch_number`) or an ISO 8601
    date-time (:func:`sitemesh.detect.parse_timestamp`; a ``,`` decimal mark and a
    space before the offset are accepted; naive means UTC).

    Raises:
        ValueError: neither.
    """
    text = text.strip()
    try:
        return epoch_number(float(text))
    except (ValueError, OverflowError):
        pass
    try:
        return parse_timestamp(text).timestamp()
    except ValueError:
        fixed = text.replace(",", ".")
        if fixed == text:
            raise
        return parse_timestamp(fixed).timestamp()


Labels = tuple[tuple[str, str], ...]


def clean_labels(labels: Mapping[str, object], first: str) -> Labels:
    """Labels as ``MetricSeries`` takes them: sorted, at most :data:`MAX_LABELS`
    (``first``, the device label, is always kept), keys of 1-64 characters, values
    cut to 256 characters."""
    items = sorted((str(k), str(v)[:256]) for k, v in labels.items() if k and len(str(k)) <= 64)
    if len(items) > MAX_LABELS:
        lead = [kv for kv in items if kv[0] == first]
        items = sorted(lead + [kv for kv in items if kv[0] != first][: MAX_LABELS - len(lead)])
    return tuple(items)


def series_name(name: str) -> str:
    """A ``MetricSeries`` name: 1-128 characters."""
    return name[:128] or "value"


def series_signal(
    series: MetricSeries, *, device: str | None = None, device_label: str = "device"
) -> str:
    """What findings and alerts call ``series``: ``name{k=v,...}``, its labels sorted
    by key (``name`` alone when it has none), e.g. ``if_in_octets{interface=eth0}``.

    Args:
        series: the series.
        device: the device it was read for: its ``device_label`` label is left out
            when it only repeats that device. ``None``: every label is kept.
        device_label: the label naming the device (the source's ``device_label``).

    Returns:
        The name with its labels (unquoted values, no spaces).
    """
    labels = ",".join(
        f"{k}={v}"
        for k, v in sorted(series.labels.items())
        if device is None or not (k == device_label and v == device)
    )
    return f"{series.name}{{{labels}}}" if labels else series.name


@dataclass(slots=True)
class Track:
    """One series of one file (or merged over files): epoch-second times with values.

    Attributes:
        name: the series name (1-128 characters).
        labels: its labels (:func:`clean_labels`).
        device: the device it belongs to, or ``None`` (it matches every device).
        times: epoch seconds, sorted once :meth:`TrackSet.tracks` returned it.
        values: finite values, one per time.
    """

    name: str
    labels: Labels
    device: str | None
    times: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, Labels]:
        return self.name, self.labels


class TrackSet:
    """Collects samples into tracks by (name, labels); non-finite values are dropped."""

    def __init__(self) -> None:
        self._tracks: dict[tuple[str, Labels], Track] = {}

    def add(self, name: str, labels: Labels, device: str | None, t: float, v: float) -> None:
        if not math.isfinite(v) or not math.isfinite(t):
            return
        key = (name, labels)
        track = self._tracks.get(key)
        if track is None:
            track = self._tracks[key] = Track(name, labels, device)
        track.times.append(t)
        track.values.append(v)

    def tracks(self) -> list[Track]:
        """The tracks, each sorted by time (stable: equal times keep their order)."""
        return [sort_track(t) for t in self._tracks.values() if t.times]


def sort_track(track: Track) -> Track:
    times = track.times
    if all(a <= b for a, b in pairwise(times)):
        return track
    order = sorted(range(len(times)), key=times.__getitem__)
    track.times = [times[i] for i in order]
    track.values = [track.values[i] for i in order]
    return track


def matches(device: str | None, wanted: str | None) -> bool:
    """The device rule: ``wanted=None`` takes everything; data without a device
    matches every device."""
    return wanted is None or device is None or device == wanted


class SeriesIndex:
    """The tracks of every file, merged by (name, labels) and sorted by it."""

    def __init__(self, tracks: Iterable[Track] = ()) -> None:
        merged: dict[tuple[str, Labels], Track] = {}
        for track in tracks:
            have = merged.get(track.key)
            if have is None:
                merged[track.key] = Track(
                    track.name,
                    track.labels,
                    track.device,
                    list(track.times),
                    list(track.values),
                )
            else:
                have.times += track.times
                have.values += track.values
        self.tracks = sorted((sort_track(t) for t in merged.values()), key=lambda t: t.key)
        self.devices = sorted({t.device for t in self.tracks if t.device is not None})
        self.first = min((t.times[0] for t in self.tracks), default=None)
        self.last = max((t.times[-1] for t in self.tracks), default=None)

    def query(self, device: str | None, start: datetime, end: datetime) -> list[MetricSeries]:
        """See :meth:`TelemetryReader.series`."""
        lo, hi = to_epoch(start), to_epoch(end)
        out: list[MetricSeries] = []
        for track in self.tracks:
            if not matches(track.device, device):
                continue
            i, j = bisect_left(track.times, lo), bisect_left(track.times, hi)
            if j <= i:
                continue
            i = max(i, j - MAX_SERIES_POINTS)
            out.append(
                MetricSeries(
                    name=track.name,
                    labels=dict(track.labels),
                    timestamps=[from_epoch(t) for t in track.times[i:j]],
                    values=track.values[i:j],
                )
            )
            if len(out) == MAX_INLINE_SERIES:
                break
        return out


@dataclass(slots=True)
class Entry:
    """One log line of a file.

    Attributes:
        t: the time it is windowed and ordered by: its own, else the previous timed
            line's of its file (a continuation), else the first timed line's (a
            header), else the file's modification time (a file without times).
        at: its own time (epoch seconds), or ``None``.
        device: the device it belongs to, or ``None`` (it matches every device).
        text: the message.
    """

    t: float
    at: float | None
    device: str | None
    text: str


def date_entries(parsed: list[tuple[float | None, str | None, str]], mtime: float) -> list[Entry]:
    """Entries from ``(time, device, text)`` of one file's lines, in file order, with
    the effective time of :attr:`Entry.t`."""
    first = next((t for t, _, _ in parsed if t is not None), mtime)
    out: list[Entry] = []
    last = first
    for at, device, text in parsed:
        if at is not None:
            last = at
        out.append(Entry(last, at, device, text))
    return out


class LogIndex:
    """The entries of every file, ordered by (time, file, line)."""

    def __init__(self, files: Iterable[list[Entry]] = ()) -> None:
        keyed = [(e.t, n, i, e) for n, entries in enumerate(files) for i, e in enumerate(entries)]
        keyed.sort(key=lambda x: (x[0], x[1], x[2]))
        self.entries = [x[3] for x in keyed]
        self.times = [x[0] for x in keyed]
        self.devices = sorted({e.device for e in self.entries if e.device is not None})
        self.first = self.times[0] if self.times else None
        self.last = self.times[-1] if self.times else None

    def query(self, device: str | None, start: datetime, end: datetime) -> list[LogLine]:
        """See :meth:`TelemetryReader.logs`."""
        i = bisect_left(self.times, to_epoch(start))
        j = bisect_left(self.times, to_epoch(end))
        picked: list[Entry] = []
        for k in range(j - 1, i - 1, -1):  # newest first, so the limit keeps the newest
            e = self.entries[k]
            if matches(e.device, device):
                picked.append(e)
                if len(picked) == MAX_LOG_LINES:
                    break
        picked.reverse()
        return [
            LogLine(
                at=from_epoch(e.at) if e.at is not None else None,
                line=e.text[:MAX_LOG_LINE_CHARS],
            )
            for e in picked
        ]
