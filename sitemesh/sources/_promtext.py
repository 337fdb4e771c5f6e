"""Kind ``prometheus_text``: files of Prometheus text exposition or OpenMetrics
snapshots (what ``/metrics`` answers, node_exporter's textfile collector files),
parsed with ``prometheus_client``'s parsers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final

from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families as text_families

from ..schemas import MAX_SERIES_POINTS
from ._errors import SourceError
from ._files import FileData, FileReader, read_bytes
from ._store import Labels, Track, TrackSet, clean_labels, series_name, sort_track

PROM_SUFFIXES: Final = (".prom", ".txt", ".om", ".prom.gz", ".txt.gz", ".om.gz")
"""File names a ``prometheus_text`` directory is read for (any case)."""

_SAMPLE = re.compile(
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?[ \t]+(?P<value>\S+)(?:[ \t]+\S+)?[ \t]*$"
)


def is_prom_file(path: Path) -> bool:
    """Whether ``path`` is named like an exposition file (:data:`PROM_SUFFIXES`)."""
    return path.name.lower().endswith(PROM_SUFFIXES)


def looks_like_exposition(text: str) -> bool:
    """Whether ``text`` reads as Prometheus exposition: a ``# TYPE`` / ``# HELP``
    line, or sample lines (``name{labels} value [timestamp]``) only, among its first
    50 lines."""
    lines = [x.strip() for x in text.splitlines()[:50] if x.strip()]
    if any(x.startswith(("# TYPE ", "# HELP ")) for x in lines):
        return True
    samples = [x for x in lines if not x.startswith("#")]
    if not samples:
        return False
    for x in samples:
        m = _SAMPLE.match(x)
        if m is None:
            return False
        try:
            float(m.group("value"))
        except ValueError:
            return False
    return True


def instance_host(instance: str | None) -> str | None:
    """The host part of an ``instance`` label (``leaf7:9100`` -> ``leaf7``,
    ``[::1]:9100`` -> ``::1``, ``http://leaf7/x`` -> ``leaf7``)."""
    if not instance:
        return None
    s = instance.split("://", 1)[-1].split("/", 1)[0]
    if s.startswith("[") and "]" in s:
        return s[1 : s.index("]")] or None
    if s.count(":") == 1:
        s = s.split(":", 1)[0]
    return s or None


def _is_openmetrics(path: Path, text: str) -> bool:
    return path.name.lower().removesuffix(".gz").endswith(".om") or (
        text.rstrip().endswith("# EOF")
    )


def _bad_line(text: str, parse: Callable[[str], Iterable[Any]], openmetrics: bool) -> int | None:
    """The first line that does not parse on its own (the parsers do not say)."""
    lines = text.splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            list(parse(line + "\n" + ("# EOF\n" if openmetrics else "")))
        except ValueError:
            return n
    return len(lines) if openmetrics and lines else None


class PrometheusTextReader(FileReader):
    """Reads kind ``prometheus_text`` (see ``docs/telemetry-sources.md``).

    Each sample is one point of the series ``<sample name>{labels}``: its timestamp
    when the line has one (text format: milliseconds; OpenMetrics: seconds), else
    the file's modification time. OpenMetrics is read for ``*.om`` files and files
    that end with ``# EOF``; the text format otherwise. ``*_created`` samples (a
    creation time, not a measurement) and non-finite values are left out. Counters
    keep their raw, cumulative values: a reset or a change of rate shows as a level
    shift, which the detectors report.

    The device of a sample is its ``device_label`` label, else the host part of its
    ``instance`` label, else the file's per-device subdirectory (then added as the
    ``device_label`` label), else none.

    A file that is rewritten in place (the textfile collector) accumulates: the
    points read from its earlier versions are kept in memory, up to
    ``MAX_SERIES_POINTS`` per series (more when the file itself holds more), and
    lost when the reader is opened again.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._history: dict[Path, dict[tuple[str, Labels], Track]] = {}

    def accept(self, path: Path) -> bool:
        return is_prom_file(path)

    def parse(self, path: Path, mtime: float) -> FileData:
        text = read_bytes(path).decode("utf-8", "replace")
        openmetrics = _is_openmetrics(path, text)
        parse = openmetrics_families if openmetrics else text_families
        label = self.spec.device_label
        subdir = self.device_of(path)
        found = TrackSet()
        try:
            for family in parse(text):
                for s in family.samples:
                    if s.name.endswith("_created"):
                        continue
                    labels = dict(s.labels)
                    device = labels.get(label) or instance_host(labels.get("instance"))
                    if device is None and subdir is not None:
                        device = labels[label] = subdir
                    t = mtime if s.timestamp is None else float(s.timestamp)
                    found.add(
                        series_name(s.name), clean_labels(labels, label), device, t, float(s.value)
                    )
        except ValueError as exc:
            kind = "OpenMetrics" if openmetrics else "Prometheus text exposition"
            raise SourceError(
                f"not {kind}: {exc}", path=str(path), line=_bad_line(text, parse, openmetrics)
            ) from None
        return FileData(tracks=self._accumulate(path, found.tracks()))

    def _accumulate(self, path: Path, tracks: list[Track]) -> list[Track]:
        """Merge ``tracks`` with the earlier versions of ``path`` (newer values win)."""
        old = self._history.get(path, {})
        merged: dict[tuple[str, Labels], Track] = dict(old)
        for track in tracks:
            before = old.get(track.key)
            if before is None:
                merged[track.key] = track
                continue
            points = dict(zip(before.times, before.values, strict=True))
            points.update(zip(track.times, track.values, strict=True))
            keep = max(MAX_SERIES_POINTS, len(track.times))
            times = sorted(points)[-keep:]
            merged[track.key] = sort_track(
                Track(track.name, track.labels, track.device, times, [points[t] for t in times])
            )
        self._history[path] = merged
        return list(merged.values())
