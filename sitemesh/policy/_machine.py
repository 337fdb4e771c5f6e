"""Machine tokens: the parts of a log line or an alert that describe machines, not people.

Presidio reads numbers by their digits: a 13-digit epoch in milliseconds passes the
Luhn check one time in ten (a "credit card"), a 10-digit epoch passes the NHS
modulus-11 check one time in eleven, and libphonenumber takes ``081109 203615`` for
a phone number. On the loghub 2k-line samples every system had lines classed
``restricted`` or ``confidential`` by such tokens alone (``bench/pii_logs.py``).

:class:`MachineDataMasker` finds the tokens whose *shape* says what they are
(timestamps, counters, ids, device addresses, log levels, code names) and blanks
them out, keeping every offset, before the text is scanned. It never blanks what
could be personal data: e-mail addresses, user names, international phone numbers,
IBAN-shaped values and IP addresses outside the operator's device networks are
protected first, and a token overlapping one of them is left as it is.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import tldextract

from ._devices import NON_SOURCE_NETWORKS, IpNetwork, parse_device_networks
from ._usernames import UserNameRecognizer

__all__ = ["MachineDataMasker", "MachineToken", "MachineTokenKind"]

MachineTokenKind = Literal["timestamp", "counter", "id", "device_ip", "level", "code"]
"""What a blanked token is:

* ``timestamp``: ISO 8601 / RFC 3339 date-times and dates, RFC 3164 syslog stamps
  (``Jun 14 15:16:01``, ``[Sun Dec 04 04:47:44 2005]``), ``2015-10-18 18:01:47,978``,
  ``HH:MM:SS.fff``, compact stamps at the start of a line (``081109 203615``,
  ``20171223-22:15:29:606``), epoch seconds and milliseconds (2001-09-09 .. 2033-05-18:
  10 or 13 digits starting with ``1``, which no NANP number or card number does);
* ``counter``: a number as a ``key=value`` / ``key: value`` value (``pid=8123``,
  ``bytes=1048576``; not under a personal key such as ``phone``), in square or angle
  brackets (``sshd[24200]``, ``<0>``), or with a unit (``1682 bytes``, ``1.64 KB``);
* ``id``: hexadecimal (``0x7f3a...``, UUIDs, 8+ hex digits with letters and digits),
  ids joined by underscores (``blk_-1608999687919862906``,
  ``appattempt_1445144423722_0020_000001``), ``node-246``, Microsoft KB article
  numbers (``KB3086255``), versions (``v2``, ``version 0.0.0.6``);
* ``device_ip``: an IP address in the operator's device networks, or one that can
  never be a client's source address (RFC 6890: ``0.0.0.0/8``, loopback, multicast,
  ``240.0.0.0/4`` including ``255.255.255.255``, ``::``, ``::1``, ``ff00::/8``);
* ``level``: log levels (``INFO``, ``WARN``, ``[error]``, ``Info``: RFC 5424 severities,
  log4j and java.util.logging levels) and syslog priorities (``<14>``);
* ``code``: dotted names that cannot be host names: a label with ``_`` or ``$``
  (RFC 1123 host names have letters, digits and hyphens only), no public suffix
  (``org.apache.hadoop.MRAppMaster``; the Public Suffix List snapshot bundled with
  ``tldextract``), a reverse-DNS package (``com.apple.Safari``), or a file name after a
  path separator (``/etc/httpd/workers2.properties``).
"""


@dataclass(frozen=True, slots=True)
class MachineToken:
    """One blanked token. Holds offsets, never the value itself."""

    start: int
    """Offset of the first character, in characters (``str`` indices)."""
    end: int
    """Offset one past the last character (exclusive), in characters."""
    kind: MachineTokenKind
    """What the token is."""


# --- timestamps -------------------------------------------------------------------------

_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_WEEKDAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?,?"
_TIME = r"(?:[01]?\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:[.,:]\d{1,9})?"
_TZ = r"(?:Z|[ ]?[+-](?:[01]\d|2[0-3]):?[0-5]\d|[ ](?:UTC|GMT))?"
_DATE = (
    r"(?:\d{4}[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])"  # 2015-10-18, 2016/9/27
    r"|(?:0?[1-9]|[12]\d|3[01])[/.](?:0?[1-9]|1[0-2])[/.]\d{2,4}"  # 18/10/2015, 17.06.09
    r"|\d{2}/(?:0?[1-9]|1[0-2])/\d{2}"  # 17/06/09 (Spark: yy/mm/dd)
    r"|(?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01]))"  # 03-17, 10.30 (month-day)
)
_B = r"(?<![\w.:+-])"
"""Left boundary: not inside a word, a number, a dotted or a colon-separated token."""
_E = r"(?![\w:]|\.\d)"
"""Right boundary."""

_TIMESTAMPS: Final[tuple[re.Pattern[str], ...]] = (
    # date [T _:] time [tz] [year]: ISO 8601, log4j's comma millis, Windows CBS "2016/9/27:"
    re.compile(_B + _DATE + r"(?:[T_:]|[ ]{1,2})" + _TIME + _TZ + r"(?:[ ]\d{4})?" + _E),
    # RFC 3164 / ctime: "Jun 14 15:16:01", "Sun Dec 04 04:47:44 2005", "Nov 9 12:01:01"
    re.compile(
        r"\b(?:"
        + _WEEKDAY
        + r"[ ]+)?"
        + _MONTH
        + r"[ ]+\d{1,2}(?:,?[ ]+\d{4})?[ ]+"
        + _TIME
        + _TZ
        + r"(?:[ ]+\d{4})?"
        + _E
    ),
    # dates alone: ISO dates and yyyy.mm.dd (Thunderbird "2005.11.09")
    re.compile(_B + r"\d{4}[-/.](?:0[1-9]|1[0-2])[-/.](?:0[1-9]|[12]\d|3[01])" + _E),
    # times alone: HH:MM:SS(.fff)
    re.compile(_B + _TIME + _TZ + _E),
    # epoch seconds (optionally with a fraction) and milliseconds, 2001-09-09 .. 2033-05-18
    re.compile(r"(?<![\w.+-])1\d{9}(?:\.\d{1,6})?" + _E),
    re.compile(r"(?<![\w.+-])1\d{12}" + _E),
)

_COMPACT_AT_START: Final = re.compile(
    # at the start of a line: "081109 203615" (yymmdd hhmmss), "20171223-22:15:29:606"
    r"^(?P<d>\d{6}|\d{8})[ T-](?P<t>\d{6}|\d{1,2}:\d{1,2}:\d{1,2})(?:[:.,]\d{1,6})?(?!\w)",
    re.MULTILINE,
)


def _compact_is_a_time(m: re.Match[str]) -> bool:
    d, t = m["d"], m["t"]
    month, day = (int(d[2:4]), int(d[4:6])) if len(d) == 6 else (int(d[4:6]), int(d[6:8]))
    h, mi, sec = (
        (int(x) for x in t.split(":")) if ":" in t else (int(t[:2]), int(t[2:4]), int(t[4:]))
    )
    return 1 <= month <= 12 and 1 <= day <= 31 and h < 24 and mi < 60 and sec <= 60


# --- counters ---------------------------------------------------------------------------

_KEY_VALUE: Final = re.compile(
    r"(?P<k>\b[A-Za-z_][\w.-]{0,63})\"?(?:=|[ ]?:[ ]?)\"?(?P<n>-?\d{1,12}(?:\.\d+)?)(?!\w|\.\d)"
)
_PERSONAL_KEY: Final = re.compile(
    r"phone|tel|mobile|cell|msisdn|fax|sms|card|^cc|pan\b|^pan|acct|account|iban|bban|ssn"
    r"|nhs|passport|licen[cs]e|^dl$|dob|birth|zip|post|user|usr|login|owner|name|mail|contact"
    r"|customer|client|subscriber|imsi|imei|person|patient|member",
    re.IGNORECASE,
)
"""Keys whose number may be personal data: such a value is never blanked."""
_BRACKETED: Final = re.compile(r"\[-?\d{1,12}\]|<\d{1,12}>")
_QUANTITY: Final = re.compile(
    _B + r"\d{1,12}(?:\.\d+)?[ ]?(?:%|(?:[KMGTP]i?B|[kKMG]?bps|bytes?|pps|ms|us|µs|ns"
    r"|secs?|seconds?|mins?|minutes?|hours?|s|B)\b)"
)

# --- ids ----------------------------------------------------------------------------------

_IDS: Final[tuple[re.Pattern[str], ...]] = (
    re.compile(r"\b0[xX][0-9a-fA-F]+\b"),
    re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"),
    # 8+ hex digits with a letter and a digit (request ids, hashes); not a DEA number
    # (two capitals and seven digits)
    re.compile(
        r"(?<![\w@.-])(?![A-Z]{2}\d{7}\b)(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)"
        r"[0-9a-fA-F]{8,}(?![\w@])"
    ),
    # joined by underscores, with a digit: blk_-16..., appattempt_1445..._0020_000001
    re.compile(
        r"(?<![\w@.-])(?=[\w-]*\d)[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*"
        r"(?:_-?[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)+(?![\w@-])"
    ),
    # name-number: node-246, cp-1
    re.compile(r"(?<![\w@.-])[A-Za-z]{2,}-\d{1,6}(?![\w@.-])"),
    # Microsoft Knowledge Base article numbers (Windows update logs)
    re.compile(r"\bKB\d{6,7}\b"),
)
_VERSIONS: Final[tuple[re.Pattern[str], ...]] = (
    re.compile(r"(?i)(?<![\w.])(?:v|version[ =:]?)\d+(?:\.\d+)*(?!\w|\.\d)"),
    # Windows component identities: name~public key token~arch~culture~version
    re.compile(r"(?<![\w~.-])[\w.-]+(?:~[\w.-]*){4}(?![\w~])"),
)
"""Versions (``v2``, ``version 0.0.0.6``, ``Package_for_KB2511455~31bf...~amd64~~6.1.1.0``):
an IPv4-shaped value inside one is a version, not an address."""

# --- log levels ---------------------------------------------------------------------------

_LEVELS: Final = re.compile(
    r"\b(?:TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|CRIT|CRITICAL|ALERT|EMERG"
    r"|EMERGENCY|FATAL|SEVERE|CONFIG|FINE|FINER|FINEST|VERBOSE)\b"
    r"|\b(?:Debug|Info|Information|Informational|Notice|Warn|Warning|Error|Critical|Fatal"
    r"|Severe|Emergency|Verbose)\b"
    r"|\[(?i:trace|debug|info|notice|warn|warning|error|crit|critical|alert|emerg|fatal)\]"
)

# --- code names ---------------------------------------------------------------------------

_DOTTED: Final = re.compile(
    # a file name after one path separator (not "//", not "://"), or a free-standing name
    r"(?:(?<![/:\\])(?P<sep>[/\\])|(?<![\w$@/\\-]))"
    r"[A-Za-z_$][\w$-]*(?:\.[\w$-]+)+(?![\w$@-])(?P<key>=)?"
)
_PACKAGE_ROOTS: Final = frozenset(
    {"com", "org", "net", "io", "java", "javax", "jdk", "sun", "android", "androidx", "kotlin"}
)

# --- protected values ---------------------------------------------------------------------

_PROTECTED: Final[tuple[re.Pattern[str], ...]] = (
    re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)*\.[A-Za-z][\w-]*"),  # e-mail addresses
    re.compile(r"\+\d[\d \t().-]{6,}\d"),  # international phone numbers (ITU-T E.123)
    re.compile(r"\b[A-Z]{2}\d{2}(?:[ -]?[A-Z0-9]{4}){2,7}(?:[ -]?[A-Z0-9]{1,3})?\b"),  # IBAN
)

_IPV4: Final = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?!\w|\.\d)"
)
_IPV6: Final = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,8}[0-9A-Fa-f]{0,4}(?![\w:])")


@functools.cache
def _suffixes() -> tldextract.TLDExtract:
    # the snapshot bundled in the wheel: no HTTP fetch, no cache file (as _analyzer does)
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


def _is_code_name(token: str, after_separator: bool) -> bool:
    labels = token.split(".")
    if after_separator or any("_" in x or "$" in x for x in labels):
        return True
    if labels[0].lower() in _PACKAGE_ROOTS and len(labels) >= 3:
        return True
    return not _suffixes()(token).suffix


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


Span = tuple[int, int]


def _overlaps(a: Span, spans: Sequence[Span]) -> bool:
    return any(a[0] < b[1] and b[0] < a[1] for b in spans)


class MachineDataMasker:
    """Finds and blanks machine tokens (see :data:`MachineTokenKind`) in log text.

    Args:
        device_networks: the operator's own networks (CIDR strings or networks); an
            address inside one is a device, not a person's (``PolicySettings
            .device_networks``). Empty: only :data:`NON_SOURCE_NETWORKS` are devices.
        user_names: the recognizer whose names are protected from blanking;
            ``None``: a :class:`~sitemesh.policy.UserNameRecognizer` with its defaults.

    Raises:
        ValueError: a device network does not parse (see :func:`parse_device_networks`).
    """

    def __init__(
        self,
        device_networks: Iterable[str | IpNetwork] = (),
        *,
        user_names: UserNameRecognizer | None = None,
    ) -> None:
        self.device_networks: tuple[IpNetwork, ...] = parse_device_networks(device_networks)
        """The operator's device networks."""
        self._devices = self.device_networks + NON_SOURCE_NETWORKS
        self._users = user_names if user_names is not None else UserNameRecognizer()

    def is_device(self, address: str) -> bool:
        """Whether ``address`` (an IPv4 or IPv6 address) is a device's, not a person's.

        Returns:
            ``True`` inside a device network or :data:`NON_SOURCE_NETWORKS`; ``False``
            otherwise, and for text that is not an address.
        """
        ip = _ip(address)
        return ip is not None and any(ip in net for net in self._devices)

    def tokens(self, text: str) -> list[MachineToken]:
        """The machine tokens of ``text``, sorted, not overlapping each other.

        Args:
            text: one log line, or a longer text (lines separated by ``"\\n"``).

        Returns:
            Tokens; none overlaps a protected value (e-mail address, user name,
            international phone number, IBAN shape, an IP address outside the device
            networks).
        """
        protected: list[Span] = [m.span() for p in _PROTECTED for m in p.finditer(text)]
        protected.extend(self._users.spans(text))
        found: list[tuple[int, int, MachineTokenKind]] = []
        versions = [m.span() for p in _VERSIONS for m in p.finditer(text)]
        for m in (*_IPV4.finditer(text), *_IPV6.finditer(text)):
            start, end = m.span()
            ip = _ip(m.group())
            if ip is None and m.re is _IPV6 and m.group().count(":") >= 3:
                end = start + m.group().rindex(":")  # "0:0:0:0:0:0:0:0:2181": address + port
                ip = _ip(text[start:end])
            if ip is None or _overlaps((start, end), versions):
                continue
            if any(ip in net for net in self._devices):
                found.append((start, end, "device_ip"))
            else:
                protected.append((start, end))
        for p in _TIMESTAMPS:
            found.extend((*m.span(), "timestamp") for m in p.finditer(text))
        found.extend(
            (*m.span(), "timestamp")
            for m in _COMPACT_AT_START.finditer(text)
            if _compact_is_a_time(m)
        )
        for m in _KEY_VALUE.finditer(text):
            if not _PERSONAL_KEY.search(m["k"]):
                found.append((*m.span("n"), "counter"))
        found.extend((*m.span(), "counter") for m in _BRACKETED.finditer(text))
        found.extend((*m.span(), "counter") for m in _QUANTITY.finditer(text))
        for p in _IDS:
            found.extend((*m.span(), "id") for m in p.finditer(text))
        found.extend((start, end, "id") for start, end in versions)
        found.extend((*m.span(), "level") for m in _LEVELS.finditer(text))
        for m in _DOTTED.finditer(text):
            start = m.start() + len(m["sep"] or "")
            end = m.end() - len(m["key"] or "")
            if m["key"] or _is_code_name(text[start:end], bool(m["sep"])):
                found.append((start, end, "code"))
        return _merge([t for t in found if not _overlaps((t[0], t[1]), protected)])

    def mask(self, text: str) -> str:
        """``text`` with every machine token replaced by spaces (same length and offsets).

        Args:
            text: the text.

        Returns:
            The masked text; offsets into it are offsets into ``text``.
        """
        tokens = self.tokens(text)
        if not tokens:
            return text
        chars = list(text)
        for t in tokens:
            chars[t.start : t.end] = " " * (t.end - t.start)
        return "".join(chars)


def _merge(found: list[tuple[int, int, MachineTokenKind]]) -> list[MachineToken]:
    """Union of overlapping tokens; the kind of the one that starts first (then longest)."""
    found.sort(key=lambda t: (t[0], -t[1]))
    out: list[MachineToken] = []
    for start, end, kind in found:
        if start >= end:
            continue
        if out and start < out[-1].end:
            last = out[-1]
            if end > last.end:
                out[-1] = MachineToken(last.start, end, last.kind)
            continue
        out.append(MachineToken(start, end, kind))
    return out
