"""PII detection: a thin, batched, fail-closed front over Presidio's analyzer."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..errors import PiiAnalyzerError
from ._analyzer import LANGUAGE, build_analyzer
from ._fastscan import FastScanner

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult

    from ..config import PolicySettings

__all__ = ["DEFAULT_ENTITIES", "DEFAULT_MIN_SCORES", "DetectedEntity", "PiiScanner", "find_pii"]

DEFAULT_ENTITIES: frozenset[str] = frozenset(
    {
        # direct identifiers (GDPR Art. 4(1): name, contact details, online identifiers)
        "PERSON",
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "IP_ADDRESS",
        "URL",
        "LOCATION",
        "US_DRIVER_LICENSE",
        # financial and government identifiers (PCI DSS card data, national ids)
        "CREDIT_CARD",
        "IBAN_CODE",
        "US_BANK_NUMBER",
        "US_SSN",
        "US_ITIN",
        "US_PASSPORT",
        "CRYPTO",
        # health (GDPR Art. 9 special category)
        "MEDICAL_LICENSE",
        "UK_NHS",
    }
)
"""Entity types scanned for by default.

Left out on purpose, because in support tickets and network alerts they are mostly
noise and never raise the data class on their own: ``DATE_TIME`` (every alert has
timestamps), ``ORGANIZATION`` (product and vendor names; Presidio's own default
configuration ignores it for its false positives), ``NRP`` (mostly nationalities in
spaCy's small model), ``MAC_ADDRESS`` and ``UUID`` (device and request ids in
telemetry), ``AGE``. Pass ``entities=`` to scan for them anyway.
"""

DEFAULT_MIN_SCORES: Mapping[str, float] = MappingProxyType({"PHONE_NUMBER": 0.4})
"""Per-type score floors that take precedence over ``min_score`` when lower.

Presidio's ``PhoneRecognizer`` gives every number that libphonenumber parses the
constant score 0.4 (``PhoneRecognizer.SCORE``), raised only when a context word
such as "phone" is nearby; with the global floor of 0.5 it found 6 of 32 phone
numbers in the first 600 presidio-research records, at 0.4 it finds 16.
"""


@dataclass(frozen=True, slots=True)
class DetectedEntity:
    """One PII entity found in a text. Holds offsets, never the value itself."""

    entity_type: str
    """Presidio entity type, e.g. ``"PERSON"``."""
    start: int
    """Offset of the first character, in characters (``str`` indices)."""
    end: int
    """Offset one past the last character (exclusive), in characters."""
    score: float
    """Presidio's confidence, 0..1."""


def _overlaps(a: RecognizerResult, b: RecognizerResult) -> bool:
    return a.start < b.end and b.start < a.end


def _is_noise(text: str, r: RecognizerResult, emails: list[RecognizerResult]) -> bool:
    """Detections that are artefacts, not PII.

    * a URL inside an e-mail address: Presidio reports the address's domain as a
      URL as well; the e-mail itself is detected;
    * a PERSON containing a digit: spaCy's small model tags host names such as
      ``leaf7`` or ``spine02`` as people in network alerts; none of the 857 PERSON
      labels in the presidio-research corpus contains a digit.
    """
    if r.entity_type == "URL":
        return any(_overlaps(r, e) for e in emails)
    if r.entity_type == "PERSON":
        return any(c.isdigit() for c in text[r.start : r.end])
    return False


class PiiScanner:
    """Finds PII in free text with Presidio, batching texts through spaCy's ``pipe``.

    Args:
        analyzer: the Presidio engine; ``None``: the process-wide one from
            :func:`sitemesh.policy.build_analyzer` (loaded on first use).
        entities: entity types to look for; ``None``: :data:`DEFAULT_ENTITIES`.
            Only the recognizers serving these types run.
        min_score: lowest Presidio score (0..1) that counts as a detection
            (``PolicySettings.min_score``). Presidio's "very weak" patterns
            (driver licence, bank number, passport: 0.01-0.05) fall below the
            default 0.5 unless context words raise them.
        min_scores: per-type floors used instead of ``min_score`` when lower;
            ``None``: :data:`DEFAULT_MIN_SCORES`.
        batch_size: texts per spaCy ``pipe`` batch in :meth:`scan_many` (128 was
            the fastest of 16-1000 for ~85-character texts with the ``sm`` model).
        fast: analyse with :class:`~sitemesh.policy.FastScanner` (prefiltered
            recognizers, NER-only spaCy, lemmas only where context can decide,
            a result cache; same types and spans, about 2-3x faster);
            ``False``: one ``AnalyzerEngine.analyze`` call per text.
        cache_size: texts whose results the fast path keeps (LRU); 0: none.

    Raises:
        ValueError: ``min_score`` is outside 0..1 or ``entities`` is empty.
    """

    def __init__(
        self,
        analyzer: AnalyzerEngine | None = None,
        *,
        entities: Iterable[str] | None = None,
        min_score: float = 0.5,
        min_scores: Mapping[str, float] | None = None,
        batch_size: int = 128,
        fast: bool = True,
        cache_size: int = 4096,
    ) -> None:
        floors = DEFAULT_MIN_SCORES if min_scores is None else min_scores
        for name, value in {"min_score": min_score, **floors}.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"score floor {name} must be within 0..1, got {value}")
        self._analyzer = analyzer
        self._entities = sorted(DEFAULT_ENTITIES if entities is None else set(entities))
        if not self._entities:
            raise ValueError("entities must name at least one entity type")
        self._min_score = min_score
        self._floors = {e: min(min_score, floors.get(e, min_score)) for e in self._entities}
        self._threshold = min(self._floors.values())
        self._batch_size = max(1, batch_size)
        self._fast = fast
        self._cache_size = cache_size
        self._fastscan: FastScanner | None = None

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> PiiScanner:
        """A scanner with the default entity set and ``settings.min_score``."""
        return cls(min_score=settings.min_score)

    @property
    def entities(self) -> frozenset[str]:
        """The entity types this scanner looks for."""
        return frozenset(self._entities)

    @property
    def min_score(self) -> float:
        """The lowest score that counts as a detection (0..1)."""
        return self._min_score

    def score_floor(self, entity_type: str) -> float:
        """The lowest score (0..1) that counts as a detection of ``entity_type``."""
        return self._floors.get(entity_type, self._min_score)

    @property
    def analyzer(self) -> AnalyzerEngine:
        """The Presidio engine (built on first access).

        Raises:
            PiiAnalyzerError: the engine could not be loaded.
        """
        if self._analyzer is None:
            self._analyzer = build_analyzer()
        return self._analyzer

    def load(self) -> None:
        """Build the analyzer now, so the first scan does not pay for it (~2 s).

        Raises:
            PiiAnalyzerError: the engine could not be loaded.
        """
        _ = self.analyzer

    def scan(self, text: str) -> list[DetectedEntity]:
        """Detect PII in one text.

        Args:
            text: the text to scan; may be empty.

        Returns:
            Entities ordered by start offset.

        Raises:
            PiiAnalyzerError: Presidio or spaCy failed (fail closed: the caller must
                not forward the text).
        """
        return self.scan_many([text])[0]

    def scan_many(self, texts: Sequence[str]) -> list[list[DetectedEntity]]:
        """Detect PII in many texts; one spaCy ``pipe`` pass instead of one call each.

        Args:
            texts: the texts to scan; empty strings are skipped (no entities).

        Returns:
            One list per input text, in input order, each ordered by start offset.

        Raises:
            PiiAnalyzerError: Presidio or spaCy failed on any text (the whole batch
                fails: the caller dead-letters it).
        """
        out: list[list[DetectedEntity]] = [[] for _ in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        if not todo:
            return out
        analyzer = self.analyzer
        if self._fast:
            return self._scan_fast(texts, todo, out)
        try:
            artifacts = analyzer.nlp_engine.process_batch(
                [texts[i] for i in todo], language=LANGUAGE, batch_size=self._batch_size
            )
            for i, (text, nlp_artifacts) in zip(todo, artifacts, strict=True):
                results = analyzer.analyze(
                    text=text,
                    language=LANGUAGE,
                    entities=self._entities,
                    score_threshold=self._threshold,
                    nlp_artifacts=nlp_artifacts,
                )
                out[i] = self._convert(text, results)
        except PiiAnalyzerError:
            raise
        except Exception as exc:
            # The exception text may quote the input: keep it only as __cause__.
            raise PiiAnalyzerError(
                f"PII analysis failed ({type(exc).__name__}); the task stays on site"
            ) from exc
        return out

    def _scan_fast(
        self, texts: Sequence[str], todo: list[int], out: list[list[DetectedEntity]]
    ) -> list[list[DetectedEntity]]:
        try:
            if self._fastscan is None:
                self._fastscan = FastScanner(
                    self.analyzer,
                    self._entities,
                    self._floors,
                    batch_size=self._batch_size,
                    cache_size=self._cache_size,
                )
            results = self._fastscan.analyze_many([texts[i] for i in todo])
            for i, found in zip(todo, results, strict=True):
                out[i] = self._convert(texts[i], found)
        except PiiAnalyzerError:
            raise
        except Exception as exc:
            # The exception text may quote the input: keep it only as __cause__.
            raise PiiAnalyzerError(
                f"PII analysis failed ({type(exc).__name__}); the task stays on site"
            ) from exc
        return out

    def _convert(self, text: str, results: list[RecognizerResult]) -> list[DetectedEntity]:
        return to_entities(text, results, self._floors)


def to_entities(
    text: str, results: Iterable[RecognizerResult], floors: Mapping[str, float]
) -> list[DetectedEntity]:
    """Presidio results of ``text`` at or above their type's floor, minus artefacts.

    Args:
        text: the analysed text.
        results: Presidio's results for it.
        floors: entity type -> lowest score (0..1); a type not in it is dropped.

    Returns:
        Entities ordered by start offset, end offset and type.
    """
    kept = [r for r in results if r.score >= floors.get(r.entity_type, 1.1)]
    emails = [r for r in kept if r.entity_type == "EMAIL_ADDRESS"]
    kept = [r for r in kept if not _is_noise(text, r, emails)]
    kept.sort(key=lambda r: (r.start, r.end, r.entity_type))
    return [DetectedEntity(r.entity_type, r.start, r.end, float(r.score)) for r in kept]


@functools.cache
def _default_scanner() -> PiiScanner:
    return PiiScanner()


def find_pii(text: str) -> list[DetectedEntity]:
    """Detect PII in ``text`` with the default entity set and a 0.5 score floor.

    A convenience for agents that check their own output (the validator scans
    customer-facing answers); routers use a :class:`PiiScanner` built from settings.

    Args:
        text: the text to check.

    Returns:
        Entities ordered by start offset; empty when none was found.

    Raises:
        PiiAnalyzerError: the analyzer failed (treat the text as containing PII).
    """
    return _default_scanner().scan(text)
