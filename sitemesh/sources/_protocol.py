"""What every opened source offers: :class:`TelemetryReader` and :class:`SourceSummary`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from ..schemas import LogLine, MetricSeries
from ._spec import SourceKind, SourceSpec


@dataclass(frozen=True, slots=True)
class SourceSummary:
    """What one read of a whole source found (``sitemesh telemetry add`` prints it).

    Attributes:
        kind: the source's kind.
        devices: the devices the data names, sorted (``[]``: none; the data then
            matches every device).
        series: distinct series (name and labels) over all devices.
        log_lines: log lines over all files.
        first: the oldest data time (UTC), or ``None`` when there is no data.
        last: the newest data time (UTC), or ``None``.
    """

    kind: SourceKind
    devices: list[str]
    series: int
    log_lines: int
    first: datetime | None
    last: datetime | None


@runtime_checkable
class TelemetryReader(Protocol):
    """An opened telemetry source (:func:`~sitemesh.sources.open_source`).

    Synchronous and thread-safe: callers run it in a worker thread. Files are
    re-listed on every call and a file is parsed again only when its size or
    modification time changed, so a source that grows between calls is read up to
    date. Every datetime is timezone-aware UTC; naive arguments are taken as UTC.

    The device rule: ``device=None`` means every device; a device name selects the
    data that names that device *and* the data that names no device at all (no
    device column, label or field, not in a per-device subdirectory): such data
    belongs to a single-device source and matches every device.
    """

    spec: SourceSpec

    def describe(self) -> SourceSummary:
        """Read the whole source once and summarise it.

        Raises:
            SourceError: it cannot be read.
        """
        ...

    def devices(self) -> list[str]:
        """The devices the data names, sorted (``[]`` when it names none).

        Raises:
            SourceError: it cannot be read.
        """
        ...

    def latest(self) -> datetime | None:
        """The newest data time (UTC), a watcher's watermark; ``None``: no data.

        Raises:
            SourceError: it cannot be read.
        """
        ...

    def series(self, device: str | None, start: datetime, end: datetime) -> list[MetricSeries]:
        """The metric series of ``device`` with samples at ``start <= t < end``.

        Args:
            device: a device name, or ``None`` for every device (see the device rule).
            start: window start (inclusive).
            end: window end (exclusive).

        Returns:
            At most ``MAX_INLINE_SERIES`` series, sorted by name and labels (the first
            ones in that order are kept), each with at most ``MAX_SERIES_POINTS``
            points (the newest are kept); series without a sample in the window are
            left out.

        Raises:
            SourceError: it cannot be read.
        """
        ...

    def logs(self, device: str | None, start: datetime, end: datetime) -> list[LogLine]:
        """The log lines of ``device`` at ``start <= t < end``, in time order.

        Args:
            device: a device name, or ``None`` for every device.
            start: window start (inclusive).
            end: window end (exclusive).

        Returns:
            At most ``MAX_LOG_LINES`` lines (the newest are kept), each cut to
            ``MAX_LOG_LINE_CHARS`` characters.

        Raises:
            SourceError: it cannot be read.
        """
        ...
