"""The machine-aware PII scan: for task kinds that carry logs and telemetry.

Two paths, both over text whose machine tokens are blanked
(:class:`~sitemesh.policy.MachineDataMasker`), both adding account names
(:class:`~sitemesh.policy.UserNameRecognizer`):

* **prose** (:meth:`MachineDataScanner.scan_many`: an alert's ``summary``, which a
  person may have written): the scanner's full entity set, spaCy's NER included;
* **log lines** (:meth:`MachineDataScanner.scan_lines`: an alert's inline ``logs`` and
  its samples' label values): Presidio's pattern recognizers only, no NER. Log lines
  are no prose: on the loghub samples spaCy's small model tags class names, log levels,
  dates and host names (``DisplayPowerController``, ``INFO``, ``Sat Jun``, ``node-115``)
  as PERSON or LOCATION; a person's name in a log line comes with a keyword the
  user-name recognizer reads (``for user bob``); and NER is the slow part of a scan:
  an alert of 5,000 lines (the schema's maximum) takes about 1.5 s this way and 20 s
  with NER on two cores (``bench/pii_logs.py``). E-mail, IP, phone, card, IBAN and the
  other pattern types are found as in prose; context words, which need spaCy's
  lemmas, do not raise pattern scores here.

On both paths a detection's shape is checked against what such a value looks like when
a person writes it, because a log is full of numbers that pass Presidio's checks by
chance:

* a phone number (libphonenumber's constant 0.4) must be written as one (ITU-T E.123:
  a ``+`` or ``00`` prefix, a parenthesised area code, or three or more digit groups)
  or follow a phone keyword (``phone``, ``tel``, ``sms``, ``cli``...), and not sit
  inside a word or an IP address;
* a card number must be contiguous or in a card layout (4-4-4-4, Amex 4-6-5, Diners
  4-6-4); Presidio's Luhn check still applies;
* an NHS number must be written 3-3-4 (as the NHS displays it) or follow a health
  keyword (``nhs=``, ``patient``), and not be the national part of a ``+1 ...`` number;
* a URL that Presidio cut inside a word (``hadoop-metrics2.pro`` of
  ``hadoop-metrics2.properties``) is not one;
* in prose, a PERSON, LOCATION or NRP span shaped like code (``_=[]{}<>$/\\|@#%;:``,
  ``lowerCamel``, three or more capitalised humps) or like a device (one token with a
  digit: ``eth0``) is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Final

from ..errors import PiiAnalyzerError
from ._devices import IpNetwork
from ._fastscan import FastScanner
from ._machine import MachineDataMasker
from ._pii import DetectedEntity, PiiScanner, to_entities
from ._usernames import USER_NAME, UserNameRecognizer

if TYPE_CHECKING:
    from presidio_analyzer import RecognizerResult

    from ..config import PolicySettings

__all__ = ["NER_ENTITIES", "MachineDataScanner"]

NER_ENTITIES: Final[frozenset[str]] = frozenset(
    {"PERSON", "LOCATION", "NRP", "ORGANIZATION", "DATE_TIME"}
)
"""Types only spaCy's NER reports; not looked for in log lines."""

_PHONE_WORDS: Final = re.compile(
    # "cli": calling line identity (ITU-T Q.731.3); "calling": RADIUS Calling-Station-Id
    # (RFC 2865 section 5.31); "ani": automatic number identification
    r"phone|tel|mobile|cell|call|fax|sms|msisdn|whatsapp|contact|dial|\bcli\b|\bani\b",
    re.IGNORECASE,
)
_PHONE_WINDOW: Final = 32
"""Characters before a phone candidate searched for a phone keyword."""
_E123: Final = re.compile(r"(?:\+|00)\d.*|.*\(\d{1,5}\).*|\d{1,5}(?:[ .-]\d{1,5}){2,}")
_CARD_LAYOUTS: Final = frozenset(
    {(4, 4, 4, 4), (4, 4, 4, 4, 3), (4, 6, 5), (4, 6, 4), (4, 4, 4, 1), (4, 4, 4, 2), (4, 4, 4, 3)}
)
_NHS_WORDS: Final = re.compile(r"nhs|patient|health|chi\b", re.IGNORECASE)
_INTERNATIONAL: Final = re.compile(r"\+\d{1,3}[ .-]?$")
_CODE_CHARS: Final = re.compile(r"[_=\[\]{}<>$/\\|@#%;:]")
_CAMEL: Final = re.compile(r"\b[a-z]+[A-Z]\w*|\b(?:[A-Z][a-z0-9]+){3,}")
_WORDISH: Final = re.compile(r"[\w.-]")
_DEVICE: Final = re.compile(r"[A-Za-z][\w./-]*\d[\w./-]*")
"""One token of letters and digits: an interface or host name (``eth0``, ``leaf7``)."""


def _groups(value: str) -> tuple[int, ...]:
    return tuple(len(g) for g in re.split(r"[ -]", value) if g)


def _inside_word(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is part of a longer token with letters (a host name)."""
    i = start
    while i > 0 and _WORDISH.match(text[i - 1]):
        i -= 1
    j = end
    while j < len(text) and _WORDISH.match(text[j]):
        j += 1
    return any(c.isalpha() for c in text[i:start] + text[end:j])


def _plausible(
    text: str, r: RecognizerResult, ips: Sequence[RecognizerResult], *, prose: bool
) -> bool:
    """Whether a detection in machine data looks like the value a person would write."""
    value = text[r.start : r.end]
    match r.entity_type:
        case "PHONE_NUMBER":
            if any(r.start < ip.end and ip.start < r.end for ip in ips):
                return False
            if _inside_word(text, r.start, r.end):
                return False
            before = text[max(0, r.start - _PHONE_WINDOW) : r.start]
            return _E123.fullmatch(value.strip()) is not None or bool(_PHONE_WORDS.search(before))
        case "CREDIT_CARD":
            groups = _groups(value)
            return len(groups) == 1 or groups in _CARD_LAYOUTS
        case "URL":
            # cut inside a word: Presidio's TLD list matched a prefix of a longer name
            # ("hadoop-metrics2.pro" of "hadoop-metrics2.properties")
            return not (value[-1:].isalnum() and r.end < len(text) and text[r.end].isalnum())
        case "UK_NHS":
            before = text[max(0, r.start - _PHONE_WINDOW) : r.start]
            if _INTERNATIONAL.search(before):
                return False  # the national part of "+1 650 555 0100"
            return _groups(value) == (3, 3, 4) or bool(_NHS_WORDS.search(before))
        case "PERSON" | "LOCATION" | "NRP" if prose:
            return not (
                _CODE_CHARS.search(value) or _CAMEL.search(value) or _DEVICE.fullmatch(value)
            )
    return True


class MachineDataScanner:
    """PII scan for text that mixes machine data and personal data (logs, alerts).

    Shares the analyzer, entity set and score floors of a :class:`PiiScanner`; adds
    ``USER_NAME`` (:class:`~sitemesh.policy.UserNameRecognizer`) and masks machine
    tokens first (:class:`~sitemesh.policy.MachineDataMasker`). Not thread-safe (spaCy
    is not). Detections carry offsets into the text as given, never values.

    Args:
        scanner: the scanner whose analyzer, entities and floors are used; ``None``:
            a :class:`PiiScanner` with its defaults.
        device_networks: the operator's device networks (CIDR strings or networks):
            their addresses are machine data (``PolicySettings.device_networks``).
        system_accounts: account names never reported as ``USER_NAME``; ``None``:
            :data:`~sitemesh.policy.SYSTEM_ACCOUNTS`.
        cache_size: texts per path whose results are kept (LRU, after masking, so
            lines that differ only in their timestamps share one entry); 0: none.

    Raises:
        ValueError: a device network does not parse.
    """

    def __init__(
        self,
        scanner: PiiScanner | None = None,
        *,
        device_networks: Iterable[str | IpNetwork] = (),
        system_accounts: Iterable[str] | None = None,
        cache_size: int = 4096,
    ) -> None:
        self.scanner = scanner if scanner is not None else PiiScanner()
        """The scanner whose analyzer, entities and floors are used."""
        self.user_names = UserNameRecognizer(system_accounts)
        """The user-name recognizer."""
        self.masker = MachineDataMasker(device_networks, user_names=self.user_names)
        """The machine-token masker."""
        self._cache_size = cache_size
        self._paths: dict[bool, FastScanner] = {}

    @classmethod
    def from_settings(
        cls, settings: PolicySettings, scanner: PiiScanner | None = None
    ) -> MachineDataScanner:
        """A scanner with ``settings.device_networks`` over ``scanner`` (``None``:
        :meth:`PiiScanner.from_settings`)."""
        base = scanner if scanner is not None else PiiScanner.from_settings(settings)
        return cls(base, device_networks=settings.device_networks)

    @property
    def entities(self) -> frozenset[str]:
        """Types reported on the prose path: the scanner's and ``USER_NAME``."""
        return self.scanner.entities | {USER_NAME}

    @property
    def line_entities(self) -> frozenset[str]:
        """Types reported in log lines: :attr:`entities` without :data:`NER_ENTITIES`."""
        return self.entities - NER_ENTITIES

    def load(self) -> None:
        """Build the analyzer now (see :meth:`PiiScanner.load`).

        Raises:
            PiiAnalyzerError: the engine could not be loaded.
        """
        self.scanner.load()

    def scan(self, text: str) -> list[DetectedEntity]:
        """:meth:`scan_many` of one text."""
        return self.scan_many([text])[0]

    def scan_many(self, texts: Sequence[str]) -> list[list[DetectedEntity]]:
        """Scan prose that may quote machine data (an alert's summary), NER included.

        Args:
            texts: the texts; empty ones have no entities.

        Returns:
            One list per text, in order, each sorted by start offset (offsets into
            the text as given).

        Raises:
            PiiAnalyzerError: the analyzer failed on any text (fail closed).
        """
        return self._scan(texts, prose=True)

    def scan_lines(self, lines: Sequence[str]) -> list[list[DetectedEntity]]:
        """Scan log lines (or label values) with pattern recognizers only, no NER.

        Args:
            lines: one log line each (a longer text works, it is not split).

        Returns:
            One list per line, in order, each sorted by start offset.

        Raises:
            PiiAnalyzerError: the analyzer failed on any line (fail closed).
        """
        return self._scan(lines, prose=False)

    def _fast(self, prose: bool) -> FastScanner:
        fast = self._paths.get(prose)
        if fast is None:
            base = self.scanner
            fast = FastScanner(
                base.analyzer,
                sorted(base.entities),
                self._floors(),
                batch_size=base._batch_size,
                cache_size=self._cache_size,
                ner=prose,
            )
            self._paths[prose] = fast
        return fast

    def _floors(self) -> Mapping[str, float]:
        return {t: self.scanner.score_floor(t) for t in self.entities}

    def _scan(self, texts: Sequence[str], *, prose: bool) -> list[list[DetectedEntity]]:
        out: list[list[DetectedEntity]] = [[] for _ in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if not todo:
            return out
        try:
            fast = self._fast(prose)
            floors = self._floors()
            masked = [self.masker.mask(texts[i]) for i in todo]
            user_floor = floors[USER_NAME]
            for i, found in zip(todo, fast.analyze_many(masked), strict=True):
                text = texts[i]
                ips = [r for r in found if r.entity_type == "IP_ADDRESS"]
                kept = [r for r in found if _plausible(text, r, ips, prose=prose)]
                entities = to_entities(text, kept, floors)
                entities.extend(
                    DetectedEntity(r.entity_type, r.start, r.end, float(r.score))
                    for r in self.user_names.results(text)
                    if r.score >= user_floor
                )
                entities.sort(key=lambda e: (e.start, e.end, e.entity_type))
                out[i] = entities
        except PiiAnalyzerError:
            raise
        except Exception as exc:
            # The exception text may quote the input: keep it only as __cause__.
            raise PiiAnalyzerError(
                f"PII analysis of machine data failed ({type(exc).__name__}); "
                "the task stays on site"
            ) from exc
        return out
