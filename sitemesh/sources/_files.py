"""Sources that are files: finding them, reading them (``.gz`` too), caching what
was parsed by (path, size, mtime), and the reader methods every file kind shares."""

from __future__ import annotations

import gzip
import os
import threading
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..schemas import LogLine, MetricSeries
from ._errors import SourceError
from ._protocol import SourceSummary
from ._spec import SourceSpec
from ._store import Entry, LogIndex, SeriesIndex, Track, from_epoch


@dataclass(slots=True)
class FileData:
    """What one file gave: series tracks and/or log entries."""

    tracks: list[Track] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)


def walk(root: Path) -> list[Path]:
    """``root`` itself when it is a file, else every file under it (recursively, in
    sorted order), leaving out hidden files and folders (``.name``).

    Raises:
        SourceError: ``root`` does not exist (field ``location``).
    """
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise SourceError(f"location: {root} does not exist", field="location")
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out += [Path(folder, f) for f in sorted(files) if not f.startswith(".")]
    return out


def subdir_device(root: Path, path: Path, label: str) -> str | None:
    """The device of a file in the per-device layout ``<root>/<device>/...``: the
    first folder below ``root`` (``<label>=<name>``, Hive style, gives ``name``);
    ``None`` for a file directly in ``root`` or a ``root`` that is a file."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if len(parts) < 2:
        return None
    name = parts[0]
    prefix = f"{label}="
    return name.removeprefix(prefix) if name.startswith(prefix) else name


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, gunzipped when its name ends in ``.gz`` (at most ``limit``
    bytes when given, for sniffing).

    Raises:
        SourceError: unreadable, or a broken gzip stream (names the file).
    """
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read(limit if limit is not None else -1)
        with path.open("rb") as fh:
            return fh.read(limit if limit is not None else -1)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        if limit is not None:
            return b""
        raise SourceError(f"not a complete gzip file ({exc})", path=str(path)) from None
    except OSError as exc:
        raise SourceError(f"cannot read: {exc.strerror or exc}", path=str(path)) from None


class FileSet:
    """The files of a source and what each gave, parsed again only when a file's
    (size, mtime) changed; files that went away are forgotten.

    Not thread-safe on its own (the reader holds a lock around :meth:`refresh`).
    """

    def __init__(self, reader: FileReader) -> None:
        self._reader = reader
        self._cache: dict[Path, tuple[tuple[int, int], FileData]] = {}

    def refresh(self) -> tuple[list[tuple[Path, FileData]], bool]:
        """Re-list and re-parse what changed.

        Returns:
            ``(files in walk order with their data, whether anything changed)``.

        Raises:
            SourceError: the location is gone or a file cannot be parsed.
        """
        reader = self._reader
        paths = [p for p in walk(reader.root) if reader.root.is_file() or reader.accept(p)]
        changed = set(self._cache) != set(paths)
        cache: dict[Path, tuple[tuple[int, int], FileData]] = {}
        for path in paths:
            try:
                st = path.stat()
            except FileNotFoundError:  # rotated away between the listing and now
                changed = True
                continue
            key = (st.st_size, st.st_mtime_ns)
            old = self._cache.get(path)
            if old is not None and old[0] == key:
                cache[path] = old
                continue
            cache[path] = (key, reader.parse(path, st.st_mtime))
            changed = True
        self._cache = cache
        return [(p, d) for p, (_, d) in cache.items()], changed


class FileReader(ABC):
    """A :class:`~sitemesh.sources.TelemetryReader` over files: subclasses say which
    files belong (:meth:`accept`) and how one is parsed (:meth:`parse`).

    Args:
        spec: the checked spec; ``spec.location`` must exist.
    """

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        self.root = Path(spec.location).expanduser()
        self._lock = threading.Lock()
        self._files = FileSet(self)
        self._series = SeriesIndex()
        self._logs = LogIndex()

    @abstractmethod
    def accept(self, path: Path) -> bool:
        """Whether a file found under a directory location is read."""

    @abstractmethod
    def parse(self, path: Path, mtime: float) -> FileData:
        """Parse one file (``mtime``: its modification time, epoch seconds).

        Raises:
            SourceError: naming the file and line.
        """

    def device_of(self, path: Path) -> str | None:
        """The per-device-subdirectory device of ``path`` (:func:`subdir_device`)."""
        return subdir_device(self.root, path, self.spec.device_label)

    def _refresh(self) -> tuple[SeriesIndex, LogIndex]:
        with self._lock:
            files, changed = self._files.refresh()
            if changed:
                self._series = SeriesIndex(t for _, d in files for t in d.tracks)
                self._logs = LogIndex(d.entries for _, d in files)
            return self._series, self._logs

    def describe(self) -> SourceSummary:
        series, logs = self._refresh()
        firsts = [t for t in (series.first, logs.first) if t is not None]
        lasts = [t for t in (series.last, logs.last) if t is not None]
        return SourceSummary(
            kind=self.spec.kind,
            devices=sorted(set(series.devices) | set(logs.devices)),
            series=len(series.tracks),
            log_lines=len(logs.entries),
            first=from_epoch(min(firsts)) if firsts else None,
            last=from_epoch(max(lasts)) if lasts else None,
        )

    def devices(self) -> list[str]:
        series, logs = self._refresh()
        return sorted(set(series.devices) | set(logs.devices))

    def latest(self) -> datetime | None:
        series, logs = self._refresh()
        lasts = [t for t in (series.last, logs.last) if t is not None]
        return from_epoch(max(lasts)) if lasts else None

    def series(self, device: str | None, start: datetime, end: datetime) -> list[MetricSeries]:
        return self._refresh()[0].query(device, start, end)

    def logs(self, device: str | None, start: datetime, end: datetime) -> list[LogLine]:
        return self._refresh()[1].query(device, start, end)
