"""From a location to a reader: :func:`infer_kind` and :func:`open_source`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Final

from ._errors import SourceError
from ._files import read_bytes, walk
from ._logs import LogReader, is_log_file
from ._promapi import PrometheusApiReader
from ._promtext import PrometheusTextReader, is_prom_file, looks_like_exposition
from ._protocol import TelemetryReader
from ._series import SeriesReader, is_series_file
from ._spec import SourceKind, SourceSpec, check_spec, check_url

SNIFF_BYTES: Final = 64 * 1024
"""How much of a ``.prom`` / ``.txt`` / ``.om`` file :func:`infer_kind` reads."""


def _file_kind(path: Path) -> SourceKind | None:
    """The kind of one file by its name (and content for exposition suffixes), or
    ``None`` for a name no kind reads."""
    if is_series_file(path):
        return "series"
    if is_prom_file(path):
        text = read_bytes(path, SNIFF_BYTES).decode("utf-8", "replace")
        if looks_like_exposition(text):
            return "prometheus_text"
        if path.name.lower().removesuffix(".gz").endswith(".txt"):
            return "logs"
        raise SourceError(
            "does not look like Prometheus text exposition or OpenMetrics (expected "
            "'# TYPE' / '# HELP' lines or 'name{labels} value [timestamp]' samples)",
            field="location",
            path=str(path),
        )
    if is_log_file(path):
        return "logs"
    return None


def infer_kind(location: str) -> SourceKind:
    """The kind of a location (``sitemesh telemetry add`` without ``--kind``).

    * ``http://`` / ``https://`` -> ``prometheus_api``;
    * a ``*.csv``, ``*.csv.gz`` or ``*.parquet`` file -> ``series``;
    * a ``*.prom``, ``*.om`` or ``*.txt`` file (gzipped too) with Prometheus text
      exposition or OpenMetrics content -> ``prometheus_text`` (a ``*.txt`` file
      without it -> ``logs``);
    * a ``*.log``, ``*.jsonl``, ``*.ndjson``, ``*.json`` file, rotated (``.log.1``)
      or gzipped -> ``logs``;
    * a directory: the kind of the files in it (recursively; other files ignored),
      which must all be of one kind.

    Raises:
        SourceError: another URL scheme, a path that does not exist, a file of no
            kind, a directory with no such files or with files of several kinds
            (register it once per kind with an explicit ``kind``). Field
            ``location``.
    """
    if location.lower().startswith(("http://", "https://")):
        return "prometheus_api"
    if "://" in location:
        raise SourceError(
            f"location: {location.split('://', 1)[0]}:// is not read; expected a path or "
            "an http(s):// Prometheus URL",
            field="location",
        )
    root = Path(location).expanduser()
    if root.is_file():
        kind = _file_kind(root)
        if kind is None:
            raise SourceError(
                "location: no kind reads this file: expected *.csv, *.csv.gz, *.parquet "
                "(series), *.prom, *.om, *.txt (prometheus_text) or *.log, *.jsonl, "
                "*.json, *.log.gz (logs)",
                field="location",
                path=str(root),
            )
        return kind
    counts = Counter(k for p in walk(root) if (k := _file_kind(p)) is not None)
    if not counts:
        raise SourceError(
            f"location: {root} holds no telemetry files (*.csv, *.csv.gz, *.parquet, "
            "*.prom, *.om, *.txt, *.log, *.jsonl, *.json, *.log.gz)",
            field="location",
        )
    if len(counts) > 1:
        found = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        raise SourceError(
            f"location: {root} holds files of several kinds ({found}); register it once "
            "per kind with an explicit kind",
            field="location",
        )
    return next(iter(counts))


def open_source(spec: SourceSpec) -> TelemetryReader:
    """A reader of ``spec``'s data (nothing is read yet: the first call reads).

    Args:
        spec: the source; checked again (:func:`~sitemesh.sources.check_spec`).

    Returns:
        A :class:`~sitemesh.sources.TelemetryReader`.

    Raises:
        SourceError: a bad field, a path that does not exist, or a malformed URL.
    """
    check_spec(spec)
    if spec.kind == "prometheus_api":
        check_url(spec.location)
        return PrometheusApiReader(spec)
    root = Path(spec.location).expanduser()
    if not root.exists():
        raise SourceError(f"location: {root} does not exist", field="location")
    if not (root.is_file() or root.is_dir()):
        raise SourceError(f"location: {root} is not a file or directory", field="location")
    match spec.kind:
        case "series":
            return SeriesReader(spec)
        case "prometheus_text":
            return PrometheusTextReader(spec)
        case _:
            return LogReader(spec)
