"""Readers: a ``timestamp,value`` CSV into a :class:`Series`, log lines into
:class:`LogLine` records."""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from ._errors import DetectError
from ._series import Series


def parse_timestamp(text: str) -> datetime:
    """An ISO 8601 date-time (``2014-02-14 14:30:00``, ``...T14:30:00Z``,
    ``...+02:00``; naive means UTC) or epoch seconds (``1392388200``, ``1.5e9``).

    Returns:
        An aware UTC datetime.

    Raises:
        ValueError: neither form.
    """
    text = text.strip()
    try:
        return datetime.fromtimestamp(float(text), tz=UTC)
    except (ValueError, OverflowError, OSError):
        pass
    at = datetime.fromisoformat(text)
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def read_series_csv(
    path: str | Path,
    *,
    name: str | None = None,
    time_column: str = "timestamp",
    value_column: str = "value",
) -> Series:
    """A series from a CSV file with a header (NAB's ``timestamp,value`` layout).

    Args:
        path: the file (UTF-8).
        name: the series name; default the file name without ``.csv``.
        time_column: the column of :func:`parse_timestamp` times.
        value_column: the column of float values.

    Returns:
        The series, in file order.

    Raises:
        DetectError: a column is missing, a row has a bad time or value (the message
            gives the line), or :meth:`Series.from_points` rejects the data.
        OSError: the file cannot be read.
    """
    path = Path(path)
    name = name if name is not None else path.stem
    times: list[datetime] = []
    values: list[float] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {time_column, value_column} - set(reader.fieldnames or ())
        if missing:
            raise DetectError(path.name, f"no column {sorted(missing)[0]!r}", line=1)
        for row in reader:
            line = reader.line_num
            try:
                times.append(parse_timestamp(row[time_column] or ""))
                values.append(float(row[value_column] or ""))
            except ValueError as exc:
                raise DetectError(path.name, f"bad row: {exc}", line=line) from None
    return Series.from_points(name, times, values)


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log line.

    Attributes:
        text: the message to mine (the line without its timestamp prefix when a
            parser took it off).
        at: when it was logged (aware), or ``None``.
    """

    text: str
    at: datetime | None = None


TimeParser = Callable[[str], tuple[datetime | None, str]]
"""``line -> (time or None, message)``."""


def timestamp_parser(
    pattern: str, fmt: str, *, year: int | None = None, tz: tzinfo = UTC
) -> TimeParser:
    """A parser for lines that carry their time in a fixed format.

    Args:
        pattern: a regex searched from the start of the line (``re.match``) with a
            named group ``time``; the message is what follows the whole match, or
            the named group ``message`` if the pattern has one.
        fmt: the ``datetime.strptime`` format of the ``time`` group.
        year: for formats without a year (syslog's ``Sep  1 08:54:59``): the year
            to assume (it is parsed as part of the text, ``%Y`` + ``fmt``).
        tz: the zone of times without an offset (UTC by default).

    Returns:
        A parser; a line it does not match gives ``(None, line)``.

    Raises:
        re.error: ``pattern`` is not a valid regex. A pattern without a ``time``
            group raises ``ValueError``.
    """
    regex = re.compile(pattern)
    if "time" not in regex.groupindex:
        raise ValueError("the pattern needs a named group 'time'")
    full = f"%Y {fmt}" if year is not None else fmt

    def parse(line: str) -> tuple[datetime | None, str]:
        m = regex.match(line)
        if m is None:
            return None, line
        text = m.group("time")
        try:
            at = datetime.strptime(f"{year} {text}" if year is not None else text, full)
        except ValueError:
            return None, line
        at = at.replace(tzinfo=tz) if at.tzinfo is None else at
        message = m.group("message") if "message" in regex.groupindex else line[m.end() :]
        return at, message.strip()

    return parse


def log_lines(
    lines: Iterable[str], *, parser: TimeParser | None = None, skip_unparsed: bool = False
) -> list[LogLine]:
    """Log lines from text lines (newlines stripped, blank lines dropped).

    Args:
        lines: the raw lines.
        parser: takes the time off each line (:func:`timestamp_parser`); without one
            every line has ``at=None``.
        skip_unparsed: drop lines the parser does not match (a banner, a command
            echo) instead of keeping them without a time.

    Returns:
        The lines in input order.
    """
    out = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if parser is None:
            out.append(LogLine(text=line.strip()))
            continue
        at, message = parser(line)
        if at is None and skip_unparsed:
            continue
        out.append(LogLine(text=message, at=at))
    return out


def read_log_lines(
    path: str | Path, *, parser: TimeParser | None = None, skip_unparsed: bool = False
) -> list[LogLine]:
    """:func:`log_lines` of a UTF-8 text file (undecodable bytes replaced).

    Raises:
        OSError: the file cannot be read.
    """
    with Path(path).open(encoding="utf-8", errors="replace") as fh:
        return log_lines(fh, parser=parser, skip_unparsed=skip_unparsed)
