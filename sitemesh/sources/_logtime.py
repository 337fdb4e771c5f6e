"""Where a log line keeps its time: the formats detected per file, and the format a
spec gives (``time_pattern`` / ``time_format``)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ._store import epoch_number, text_epoch

Convert = Callable[[str, int], float | None]
"""``(time text, year to assume) -> epoch seconds`` or ``None``."""

_ISO: Final = (
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"(?: ?(?:Z|[+-]\d{2}(?::?\d{2})?))?"
)
_YEARS: Final = ("%Y", "%y", "%G")
SAMPLE_LINES: Final = 200
"""Detection looks at a file's first 200 non-blank lines."""
ROLLOVER_S: Final = 86_400.0
"""A year-less time more than a day after the file's mtime is from the year before."""


def _iso(text: str, year: int) -> float | None:
    del year
    try:
        return text_epoch(text)
    except (ValueError, OverflowError):
        return None


def _epoch(text: str, year: int) -> float | None:
    del year
    try:
        return epoch_number(float(text))
    except (ValueError, OverflowError):
        return None


def strptime(*formats: str) -> Convert:
    """A converter trying ``datetime.strptime`` with each format; a format without a
    year (``%Y``, ``%y``, ``%G``) is given the year to assume; no offset means UTC."""

    def convert(text: str, year: int) -> float | None:
        for fmt in formats:
            yearless = not any(y in fmt for y in _YEARS)
            try:
                at = (
                    datetime.strptime(f"{year} {text}", f"%Y {fmt}")
                    if yearless
                    else datetime.strptime(text, fmt)
                )
            except ValueError:
                continue
            return (at.replace(tzinfo=UTC) if at.tzinfo is None else at).timestamp()
        return None

    return convert


@dataclass(frozen=True, slots=True)
class LineFormat:
    """A way a line carries its time.

    Attributes:
        name: what it is (``iso``, ``syslog``...).
        regex: matched at the line's start; a ``time`` group, optional ``message``
            (else the message is what follows the match) and ``device`` / ``host``.
        convert: the ``time`` group to epoch seconds.
        yearless: the time has no year: the file's mtime year is assumed, or the
            year before when that puts it more than a day after the mtime.
    """

    name: str
    regex: re.Pattern[str]
    convert: Convert
    yearless: bool = False

    def parse(self, line: str, mtime: float) -> tuple[float | None, str | None, str]:
        """``(epoch seconds or None, device or None, message)`` of ``line``."""
        m = self.regex.match(line)
        if m is None:
            return None, None, line.strip()
        text = m.group("time")
        year = datetime.fromtimestamp(mtime, UTC).year
        t = self.convert(text, year)
        if t is None:
            return None, None, line.strip()
        if self.yearless and t > mtime + ROLLOVER_S:
            t = self.convert(text, year - 1)
        groups = self.regex.groupindex
        message = m.group("message") if "message" in groups else line[m.end() :]
        device = next((m.group(g) for g in ("device", "host") if g in groups and m.group(g)), None)
        return t, device, (message or "").strip()


def _fmt(name: str, pattern: str, convert: Convert, *, yearless: bool = False) -> LineFormat:
    return LineFormat(name, re.compile(pattern), convert, yearless)


FORMATS: Final[tuple[LineFormat, ...]] = (
    # RFC 5424 syslog: <165>1 2003-10-11T22:14:15.003Z mymachine evntslog - ...
    _fmt("rfc5424", r"^<\d{1,3}>\d{1,2} (?P<time>\S+) (?P<host>\S+) (?P<message>.*)$", _iso),
    # rsyslog's RFC 3339 file format: 2024-03-01T10:00:00+00:00 leaf7 sshd[42]: ...
    _fmt(
        "iso-syslog",
        rf"^(?P<time>{_ISO}) (?P<host>[A-Za-z0-9][\w.:-]*) "
        r"(?P<message>[\w./()-]+(?:\[\d+\])?: .*)$",
        _iso,
    ),
    # 2024-03-01T10:00:00Z ..., 2024-03-01 10:00:00,123 - INFO ... (log4j style)
    _fmt("iso", rf"^\[?(?P<time>{_ISO})\]?", _iso),
    # BSD syslog (RFC 3164): Mar  1 10:00:00 leaf7 sshd[42]: ...
    _fmt(
        "syslog",
        r"^(?P<time>[A-Z][a-z]{2} [ \d]?\d \d{2}:\d{2}:\d{2}) (?P<host>\S+) (?P<message>.*)$",
        strptime("%b %d %H:%M:%S"),
        yearless=True,
    ),
    # BGL / Thunderbird style (loghub): - 1709287200 2024.03.01 node-7 ...
    _fmt(
        "bgl", r"^\S+ (?P<time>\d{10}) \d{4}\.\d{2}\.\d{2} (?P<host>\S+) (?P<message>.*)$", _epoch
    ),
    # Apache error log: [Fri Mar 01 10:00:00 2024] [error] ...
    _fmt(
        "apache",
        r"^\[(?P<time>[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]?\d \d{2}:\d{2}:\d{2}(?:\.\d+)? \d{4})\]",
        strptime("%a %b %d %H:%M:%S %Y", "%a %b %d %H:%M:%S.%f %Y"),
    ),
    # Common / combined access log: the whole line is the message
    _fmt(
        "access",
        r"^(?P<message>\S+ \S+ \S+ "
        r"\[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\].*)$",
        strptime("%d/%b/%Y:%H:%M:%S %z"),
    ),
    # HDFS style (loghub): 240301 100000 42 INFO ...
    _fmt("hdfs", r"^(?P<time>\d{6} \d{6})\s", strptime("%y%m%d %H%M%S")),
    # Spark / Hadoop yy/mm/dd: 24/03/01 10:00:00 INFO ...
    _fmt(
        "yymmdd", r"^(?P<time>\d{2}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})\s", strptime("%y/%m/%d %H:%M:%S")
    ),
    # Android logcat: 03-01 10:00:00.123  100  200 D Tag: ...
    _fmt(
        "logcat",
        r"^(?P<time>\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3})\s",
        strptime("%m-%d %H:%M:%S.%f"),
        yearless=True,
    ),
    # HealthApp style (loghub): 20240301-10:00:00:123|Component|...
    _fmt(
        "healthapp",
        r"^(?P<time>\d{8}-\d{1,2}:\d{1,2}:\d{1,2}:\d{1,3})\|",
        strptime("%Y%m%d-%H:%M:%S:%f"),
    ),
    # Proxifier style (loghub): [03.01 10:00:00] app.exe - ...
    _fmt(
        "proxifier",
        r"^\[(?P<time>\d{2}\.\d{2} \d{2}:\d{2}:\d{2})\]",
        strptime("%m.%d %H:%M:%S"),
        yearless=True,
    ),
    # epoch seconds or milliseconds first: 1392388200 ..., 1392388200123 ...
    _fmt("epoch", r"^\[?(?P<time>\d{10}(?:\.\d+)?|\d{13})\]?(?:\s|$)", _epoch),
    # a word, then ISO 8601 (OpenStack style): api.log.1 2024-03-01 10:00:00.008 ...
    _fmt("word-iso", rf"^\S+ (?P<time>{_ISO})\s", _iso),
)
"""The formats tried per file, most specific first (a tie goes to the earlier)."""

_KNOWN: Final = strptime(
    "%b %d %H:%M:%S",
    "%a %b %d %H:%M:%S %Y",
    "%a %b %d %H:%M:%S.%f %Y",
    "%d/%b/%Y:%H:%M:%S %z",
    "%y%m%d %H%M%S",
    "%y/%m/%d %H:%M:%S",
    "%m-%d %H:%M:%S.%f",
    "%Y%m%d-%H:%M:%S:%f",
    "%m.%d %H:%M:%S",
    "%Y-%m-%d-%H.%M.%S.%f",
    "%d.%m.%Y %H:%M:%S",
)
"""The times of :data:`FORMATS` (and BGL's second one), for a pattern without format."""


def detect_format(lines: Sequence[str], mtime: float) -> LineFormat | None:
    """The format of :data:`FORMATS` that dates most of the first
    :data:`SAMPLE_LINES` non-blank lines, or ``None`` when none dates any."""
    sample = [x for x in lines[: SAMPLE_LINES * 2] if x.strip()][:SAMPLE_LINES]
    best, hits = None, 0
    for fmt in FORMATS:
        n = sum(1 for x in sample if fmt.parse(x, mtime)[0] is not None)
        if n > hits:
            best, hits = fmt, n
    return best


def _auto(text: str, year: int) -> float | None:
    """ISO 8601 or epoch, else one of the times of :data:`_KNOWN`."""
    t = _iso(text, year)
    return t if t is not None else _KNOWN(text.strip(), year)


def spec_format(pattern: str | None, fmt: str | None) -> LineFormat | None:
    """The format a spec gives, or ``None`` (detect per file).

    * ``pattern`` and ``fmt``: the pattern's ``time`` group parsed with ``fmt``;
    * ``pattern`` only: the group as ISO 8601, epoch, or a :data:`FORMATS` time;
    * ``fmt`` only: the line's first N words, N the number of words of ``fmt``
      (``%Y-%m-%d %H:%M:%S`` -> two), optionally in ``[...]``.

    Both were checked by :func:`~sitemesh.sources.check_spec`.
    """
    if pattern is None and fmt is None:
        return None
    yearless = fmt is None or not any(y in fmt for y in _YEARS)
    convert = strptime(fmt) if fmt is not None else _auto
    if pattern is None:
        assert fmt is not None
        words = len(fmt.split()) or 1
        pattern = r"^\[?(?P<time>" + r"\S+\s+" * (words - 1) + r"[^\s\]]+)\]?(?:\s|$)"
    return LineFormat("spec", re.compile(pattern), convert, yearless)
