"""Kind ``logs``: plain text log files and JSON lines, gzipped or not."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Final

from ._errors import SourceError
from ._files import FileData, FileReader, read_bytes
from ._logtime import LineFormat, detect_format, spec_format
from ._store import date_entries, epoch_number, text_epoch

LOG_FILE: Final = re.compile(r"\.(?:log|jsonl|ndjson|json|txt)(?:\.\d+)?(?:\.gz)?$", re.I)
"""File names a ``logs`` directory is read for: ``*.log``, ``*.jsonl``, ``*.ndjson``,
``*.json``, ``*.txt``, rotated (``*.log.1``) and gzipped (``*.log.2.gz``) ones."""

TIME_FIELDS: Final = ("time", "ts", "timestamp", "@timestamp")
"""JSON fields read as the time, in this order (ISO 8601 or epoch s / ms)."""
MESSAGE_FIELDS: Final = ("message", "msg", "log", "line")
"""JSON fields read as the message, in this order (else the whole JSON line)."""
HOST_FIELDS: Final = ("host", "hostname")
"""JSON fields read as the device after ``device_label`` (a string, or an object with
``name`` / ``hostname``, as Elastic Common Schema's ``host``)."""

Parsed = tuple[float | None, str | None, str]
"""``(epoch seconds or None, device or None, message)`` of one line."""


def is_log_file(path: Path) -> bool:
    """Whether ``path`` is named like a log file (:data:`LOG_FILE`)."""
    return LOG_FILE.search(path.name) is not None


class LogReader(FileReader):
    """Reads kind ``logs`` (see ``docs/telemetry-sources.md``).

    A file whose first non-blank line is a JSON object is JSON lines (a ``.json``
    file starting with ``[`` an array of objects); any other is text, its time
    found with the spec's ``time_pattern`` / ``time_format`` or, without them, the
    format of :data:`~sitemesh.sources._logtime.FORMATS` that dates most of the
    file's first 200 lines.

    Times and devices:

    * a line without a parsable time keeps ``at=None`` and goes with the timed line
      before it (a stack trace, a wrapped message): it is returned when that line is,
      right after it. Lines before a file's first timed line go with that one; a
      file without any time is dated by its modification time as a whole;
    * the device of a line is its host field (syslog formats, a pattern's
      ``device`` / ``host`` group; JSON: ``device_label``, then ``host`` /
      ``hostname``), else the file's per-device subdirectory, else none;
    * year-less times (BSD syslog) take the year of the file's modification time,
      or the year before when that would put them more than a day after it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._format = spec_format(self.spec.time_pattern, self.spec.time_format)

    def accept(self, path: Path) -> bool:
        return is_log_file(path)

    def parse(self, path: Path, mtime: float) -> FileData:
        text = read_bytes(path).decode("utf-8", "replace")
        lines = [x for x in text.splitlines() if x.strip()]
        subdir = self.device_of(path)
        head = lines[0].lstrip() if lines else ""
        if head.startswith("[") and path.name.lower().removesuffix(".gz").endswith(".json"):
            parsed = self._json_array(path, text)
        elif head.startswith("{") and _is_object(head):
            parsed = [self._json_line(x) for x in lines]
        else:
            fmt: LineFormat | None = self._format or detect_format(lines, mtime)
            parsed = (
                [fmt.parse(x, mtime) for x in lines]
                if fmt is not None
                else [(None, None, x.strip()) for x in lines]
            )
        return FileData(entries=date_entries([(t, d or subdir, m) for t, d, m in parsed], mtime))

    def _json_array(self, path: Path, text: str) -> list[Parsed]:
        try:
            items = json.loads(text)
        except ValueError as exc:
            line = getattr(exc, "lineno", None)
            raise SourceError(
                f"not a JSON array of log records: {exc}", path=str(path), line=line
            ) from None
        if not isinstance(items, list):
            raise SourceError("not a JSON array of log records", path=str(path))
        return [self._record(x, json.dumps(x)) for x in items]

    def _json_line(self, line: str) -> Parsed:
        try:
            obj = json.loads(line)
        except ValueError:
            return None, None, line.strip()
        return self._record(obj, line.strip())

    def _record(self, obj: object, raw: str) -> Parsed:
        """One JSON log record (a non-object keeps ``raw`` as its message, untimed)."""
        if not isinstance(obj, dict):
            return None, None, raw
        t = None
        for key in TIME_FIELDS:
            if key in obj:
                t = _time(obj[key])
                break
        message = next((obj[k] for k in MESSAGE_FIELDS if obj.get(k) is not None), raw)
        if not isinstance(message, str):
            message = json.dumps(message)
        device = _name(obj.get(self.spec.device_label))
        for key in HOST_FIELDS:
            device = device or _name(obj.get(key))
        return t, device, message.strip()


def _is_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _time(value: object) -> float | None:
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int | float):
            return epoch_number(float(value))
        if isinstance(value, str):
            return text_epoch(value)
    except (ValueError, OverflowError):
        return None
    return None


def _name(value: object) -> str | None:
    if isinstance(value, dict):
        value = value.get("name") or value.get("hostname")
    if isinstance(value, bool) or value is None or value == "":
        return None
    return str(value) if isinstance(value, str | int) else None
