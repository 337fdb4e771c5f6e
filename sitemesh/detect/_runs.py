"""Grouping flagged samples into runs, and formatting durations for evidence."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from ._series import BoolArray, FloatArray


def runs(flags: BoolArray, times: FloatArray, max_gap_s: float) -> list[tuple[int, int]]:
    """Group the flagged samples into runs.

    Args:
        flags: shape ``(n,)``.
        times: shape ``(n,)``, epoch seconds.
        max_gap_s: two flagged samples at most this many seconds apart are in one run.

    Returns:
        ``(first, last)`` sample indices (inclusive) of each run, in time order.
    """
    idx = np.flatnonzero(flags)
    if idx.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(times[idx]) > max_gap_s)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [idx.size - 1]])
    return [(int(idx[a]), int(idx[b])) for a, b in zip(starts, ends, strict=True)]


def human(seconds: float) -> str:
    """``300 -> "5 min"``, ``5400 -> "1.5 h"``, ``172800 -> "2.0 d"``, ``42 -> "42 s"``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def seconds(delta: timedelta) -> float:
    """``delta`` in seconds."""
    return delta.total_seconds()
