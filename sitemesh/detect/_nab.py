"""The bundled NAB copy, and scoring detections against its anomaly windows.

NAB is the Numenta Anomaly Benchmark (Lavin & Ahmad 2015, "Evaluating Real-time
Anomaly Detection Algorithms - the Numenta Anomaly Benchmark", IEEE ICMLA; data
and licence in ``data/nab/``). The scorer here is our implementation of the
scoring the paper describes; ``docs/detect.md`` lists where it differs from
NAB's own code.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec
import numpy as np

from ._findings import MetricFinding
from ._readers import parse_timestamp, read_series_csv
from ._series import Series, to_epoch

NAB_DIR: Final = Path(__file__).parent / "data" / "nab"
"""The bundled copy: ``data/<category>/<file>.csv`` and ``labels/combined_windows.json``."""

NAB_CATEGORIES: Final = ("artificialNoAnomaly", "artificialWithAnomaly", "realAWSCloudwatch")
"""The NAB categories bundled (28 of NAB's 58 files)."""

PROBATION_SHARE: Final = 0.15
"""NAB's probationary period: the first 15 % of a file, at most 750 records
(0.15 x 5000), is neither scored nor counted."""


@dataclass(frozen=True, slots=True)
class NabSeries:
    """One NAB file with its labelled anomaly windows.

    Attributes:
        key: ``<category>/<file>.csv``, as in the label file.
        category: the NAB category (``realAWSCloudwatch``...).
        series: the data; its name is the file name without ``.csv``.
        windows: ``(start, end)`` epoch seconds, inclusive, in time order.
        tune: ``True`` for the tuning half (see :func:`load_nab`).
    """

    key: str
    category: str
    series: Series
    windows: tuple[tuple[float, float], ...]
    tune: bool

    @property
    def probation(self) -> int:
        """Records in the probationary period: ``min(floor(0.15 n), 750)``."""
        return int(min(math.floor(PROBATION_SHARE * len(self.series)), PROBATION_SHARE * 5000))

    @property
    def scored_from(self) -> float:
        """Epoch seconds of the first scored record."""
        return float(self.series.times[min(self.probation, len(self.series) - 1)])

    @property
    def scored_days(self) -> float:
        """Days from the first scored record to one cadence past the last."""
        s = self.series
        return float(s.times[-1] - self.scored_from + s.cadence_s) / 86_400.0


def load_nab(root: Path = NAB_DIR) -> list[NabSeries]:
    """The NAB files under ``root``, sorted by key.

    The split: within each category, files sorted by name alternate between the
    tuning half (1st, 3rd, ...) and the held-out half (2nd, 4th, ...): 9 + 3 + 3
    tuning files and 8 + 3 + 2 held out (realAWSCloudwatch, artificialWithAnomaly,
    artificialNoAnomaly).

    Raises:
        DetectError: a CSV cannot be parsed.
        OSError: a file is missing.
    """
    labels = json.loads((root / "labels" / "combined_windows.json").read_text(encoding="utf-8"))
    out = []
    for category in NAB_CATEGORIES:
        files = sorted((root / "data" / category).glob("*.csv"))
        for i, path in enumerate(files):
            key = f"{category}/{path.name}"
            windows = tuple(
                (to_epoch(parse_timestamp(a)), to_epoch(parse_timestamp(b)))
                for a, b in labels.get(key, [])
            )
            out.append(
                NabSeries(
                    key=key,
                    category=category,
                    series=read_series_csv(path),
                    windows=tuple(sorted(windows)),
                    tune=i % 2 == 0,
                )
            )
    return sorted(out, key=lambda s: s.key)


class NabProfile(msgspec.Struct, frozen=True, kw_only=True):
    """NAB's application profile: the weights of the cost matrix."""

    tp: float = 1.0
    """A_TP: reward for the earliest detection in a window."""
    fp: float = 0.11
    """|A_FP|: the most a false positive costs (the paper writes A_FP = -0.11)."""
    fn: float = 1.0
    """|A_FN|: the cost of a window without a detection (A_FN = -1)."""


STANDARD_PROFILE: Final = NabProfile()
"""NAB's standard profile: A_TP = 1, A_FP = -0.11, A_FN = -1 (Lavin & Ahmad 2015,
Table 1)."""


class NabScore(msgspec.Struct, frozen=True, kw_only=True):
    """Scores summed over a set of files."""

    score: float
    """``100 * (raw - null) / (perfect - null)``: 0 is the detector that never fires,
    100 the one that fires at the start of every window. NaN without windows."""
    raw: float
    null: float
    perfect: float
    tp: int
    """Windows whose first detection scored."""
    fp: int
    """Detections outside every window (after the probationary period)."""
    fn: int
    """Windows without a detection."""


def scaled_sigmoid(y: float) -> float:
    """NAB's ``2 / (1 + exp(5 y)) - 1`` (-1 beyond ``y > 3``): near +1 early in a
    window (``y = -1``), 0 at its end (``y = 0``), falling to -1 after it."""
    if y > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def _raw(
    item: NabSeries, detections: Sequence[float], profile: NabProfile
) -> tuple[float, int, int, int]:
    """``(raw score, tp, fp, fn)`` of one file; positions are record indices, as NAB's."""
    t = item.series.times
    bounds = [
        (int(np.searchsorted(t, a, side="left")), int(np.searchsorted(t, b, side="right")) - 1)
        for a, b in item.windows
    ]
    hit = [False] * len(bounds)
    max_tp = scaled_sigmoid(-1.0)
    raw, tp, fp = 0.0, 0, 0
    for at in sorted(detections):
        i = min(int(np.searchsorted(t, at, side="left")), t.size - 1)
        if i < item.probation:
            continue
        inside = next((w for w, (lo, hi) in enumerate(bounds) if lo <= i <= hi), None)
        if inside is not None:
            if not hit[inside]:
                hit[inside] = True
                tp += 1
                lo, hi = bounds[inside]
                position = -(hi - i + 1) / (hi - lo + 1)
                raw += profile.tp * scaled_sigmoid(position) / max_tp
            continue
        fp += 1
        before = [(lo, hi) for lo, hi in bounds if hi < i]
        if not before:
            raw -= profile.fp
        else:
            lo, hi = before[-1]
            raw += profile.fp * scaled_sigmoid(abs(i - hi) / max(hi - lo, 1))
    fn = hit.count(False)
    return raw - profile.fn * fn, tp, fp, fn


def nab_score(
    results: Iterable[tuple[NabSeries, Sequence[datetime | float]]],
    profile: NabProfile = STANDARD_PROFILE,
) -> NabScore:
    """The NAB score of detections on a set of files.

    Per file: the first detection inside a window scores
    ``A_TP * sigma(y) / sigma(-1)`` with ``y = -(right - i + 1) / width`` (record
    indices; the window's first record gives exactly ``A_TP``) and later ones in the
    same window nothing; a detection outside every window costs ``A_FP`` if no
    window precedes it, else ``A_FP * sigma(d / (width - 1))`` with ``d`` the records
    since the preceding window's end (little just after a window, all of it 3 widths
    on); a window without a detection costs ``A_FN``. Detections in the
    probationary period are ignored. The sums over the files are normalised with
    the null detector (no detections: ``-A_FN`` per window) and the perfect one
    (``+A_TP`` per window).

    Args:
        results: ``(file, detection times)`` pairs; times are datetimes or epoch
            seconds, matched to the first record at or after them.
        profile: the weights (:data:`STANDARD_PROFILE`).

    Returns:
        The totals; ``score`` is NaN when the files have no window.
    """
    raw = null = perfect = 0.0
    tp = fp = fn = 0
    for item, detections in results:
        r, a, b, c = _raw(item, [to_epoch(d) for d in detections], profile)
        raw += r
        tp, fp, fn = tp + a, fp + b, fn + c
        null -= profile.fn * len(item.windows)
        perfect += profile.tp * len(item.windows)
    score = 100.0 * (raw - null) / (perfect - null) if perfect > null else math.nan
    return NabScore(score=score, raw=raw, null=null, perfect=perfect, tp=tp, fp=fp, fn=fn)


class WindowCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Window recall and false positives over a set of files."""

    windows: int
    detected: int
    """Windows overlapped by at least one finding."""
    false_positives: int
    """Findings overlapping no window."""
    days: float
    """Scored days (after each file's probationary period)."""

    @property
    def recall(self) -> float:
        """``detected / windows`` (NaN without windows)."""
        return self.detected / self.windows if self.windows else math.nan

    @property
    def fp_per_day(self) -> float:
        """``false_positives / days``."""
        return self.false_positives / self.days if self.days else math.nan


def window_counts(results: Iterable[tuple[NabSeries, Sequence[MetricFinding]]]) -> WindowCounts:
    """Count detected windows and false positives.

    A window is detected when a finding's ``[start, end]`` overlaps it; a finding
    overlapping no window is a false positive. Findings that end in the
    probationary period are ignored. Findings are assumed already merged (one per
    anomalous stretch), as every detector here returns them.
    """
    windows = detected = fps = 0
    days = 0.0
    for item, findings in results:
        spans = [
            (to_epoch(f.start), to_epoch(f.end))
            for f in findings
            if to_epoch(f.end) >= item.scored_from
        ]
        windows += len(item.windows)
        detected += sum(any(s <= b and e >= a for s, e in spans) for a, b in item.windows)
        fps += sum(not any(s <= b and e >= a for a, b in item.windows) for s, e in spans)
        days += item.scored_days
    return WindowCounts(windows=windows, detected=detected, false_positives=fps, days=days)


def write_nab_source(
    root: Path, *, category: str = "realAWSCloudwatch", tune: bool = False
) -> dict[str, NabSeries]:
    """Write NAB files as a telemetry source folder: ``root/aws-<file>/<file>.csv``
    (``timestamp,value``, UTC), one folder per device, the layout
    ``sitemesh telemetry add NAME ROOT`` reads as a ``series`` source.

    Args:
        root: the folder to write (created).
        category: the NAB category.
        tune: the tuning half (``True``) or the held-out half (``False``).

    Returns:
        Device name -> its file, for the files that have labelled windows.

    Raises:
        OSError: ``root`` cannot be written.
    """
    out: dict[str, NabSeries] = {}
    for nab in load_nab():
        if nab.tune != tune or nab.category != category or not nab.windows:
            continue
        name = nab.series.name
        device = f"aws-{name}"[:120]
        folder = root / device
        folder.mkdir(parents=True, exist_ok=True)
        rows = "".join(
            f"{datetime.fromtimestamp(float(t), UTC).strftime('%Y-%m-%d %H:%M:%S')},"
            f"{float(v):.6g}\n"
            for t, v in zip(nab.series.times, nab.series.values, strict=True)
        )
        (folder / f"{name}.csv").write_text("timestamp,value\n" + rows, "utf-8")
        out[device] = nab
    return out
