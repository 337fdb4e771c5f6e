"""A metric series: sorted sample times (epoch seconds, UTC) and float values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from ._errors import DetectError

FloatArray = npt.NDArray[np.float64]
"""A 1-d float64 array."""
BoolArray = npt.NDArray[np.bool_]
"""A 1-d boolean array."""


def to_epoch(at: datetime | float | int) -> float:
    """Seconds since the Unix epoch for ``at``.

    Args:
        at: an aware datetime (any zone), a naive datetime (taken as UTC), or epoch
            seconds.

    Returns:
        Epoch seconds (float).
    """
    if isinstance(at, datetime):
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        return at.timestamp()
    return float(at)


def to_datetime(epoch_s: float) -> datetime:
    """The aware UTC datetime of ``epoch_s`` (epoch seconds), to the microsecond."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=round(epoch_s * 1e6))


@dataclass(frozen=True, eq=False, slots=True)
class Series:
    """One metric: ``n`` samples in time order.

    Build it with :meth:`from_points` (checks its input) or :func:`read_series_csv`.

    Attributes:
        name: what the series is, e.g. ``ec2_cpu_utilization_24ae8d`` (it appears in
            findings, so it should name a metric, not a person).
        times: shape ``(n,)``, epoch seconds (UTC), non-decreasing. Equal times are
            allowed: NAB's ``ec2_disk_write_bytes_1ef3de`` has 12 samples stamped
            03:00 where its clock skipped an hour for daylight saving.
        values: shape ``(n,)``, finite floats, in the metric's own unit.
    """

    name: str
    times: FloatArray
    values: FloatArray

    @classmethod
    def from_points(
        cls,
        name: str,
        timestamps: Sequence[datetime | float | int] | FloatArray,
        values: Sequence[float] | FloatArray,
    ) -> Series:
        """A series from parallel sequences.

        Args:
            name: the series name.
            timestamps: shape ``(n,)``: aware or naive-UTC datetimes, or epoch seconds;
                non-decreasing.
            values: shape ``(n,)``: finite numbers.

        Returns:
            The series, with float64 copies of the arrays.

        Raises:
            DetectError: the lengths differ, ``n`` is 0, a value or time is not finite,
                or a time is earlier than the one before it (the message gives the
                index).
        """
        if len(timestamps) != len(values):
            raise DetectError(name, f"{len(timestamps)} timestamps but {len(values)} values")
        if len(values) == 0:
            raise DetectError(name, "the series is empty")
        if isinstance(timestamps, np.ndarray) and timestamps.dtype.kind in "fiu":
            times = np.asarray(timestamps, dtype=np.float64).copy()
        else:
            times = np.array([to_epoch(t) for t in timestamps], dtype=np.float64)
        vals = np.asarray(values, dtype=np.float64).copy()
        bad = np.flatnonzero(~np.isfinite(vals) | ~np.isfinite(times))
        if bad.size:
            raise DetectError(name, f"sample {int(bad[0])} is not finite")
        back = np.flatnonzero(np.diff(times) < 0)
        if back.size:
            raise DetectError(
                name, f"times must not decrease; sample {int(back[0]) + 1} is earlier"
            )
        times.flags.writeable = False
        vals.flags.writeable = False
        return cls(name=name, times=times, values=vals)

    def __len__(self) -> int:
        return int(self.values.size)

    @property
    def cadence_s(self) -> float:
        """The median step between samples in seconds (1.0 for a single sample)."""
        if self.values.size < 2:
            return 1.0
        return float(np.median(np.diff(self.times)))

    @property
    def days(self) -> float:
        """The span from the first to one cadence past the last sample, in days."""
        return float(self.times[-1] - self.times[0] + self.cadence_s) / 86_400.0

    def at(self, i: int) -> datetime:
        """The UTC datetime of sample ``i``."""
        return to_datetime(float(self.times[i]))
