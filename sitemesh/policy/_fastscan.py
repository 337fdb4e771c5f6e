"""The fast privacy path: Presidio's recognizers, minus the work that cannot change the result.

``AnalyzerEngine.analyze`` runs, per text, the whole spaCy pipeline and every
recognizer of every requested entity, then context enhancement. For the same
detections (types and spans) most of that can be skipped (DESIGN.md section 6:
the privacy path is the pipeline's likely bottleneck):

* **cache**: identical texts (within a batch and across batches, LRU) are
  analysed once;
* **prefilters**: a pattern recognizer runs only if the text holds the
  characters every one of its patterns needs (no digit: no card, SSN, IBAN,
  phone, IP...; no ``@``: no e-mail; no dot before a letter: no URL); the
  phone recognizer skips regions whose shortest valid number is longer than
  every candidate in the text, and candidates too short for the region; pattern
  recognizers whose best score (context words included) stays under the floor
  never run. Recognizers not in :data:`PREFILTERS` (custom ones) always run;
* **NER only where it is read**: spaCy runs as ``nlp.pipe`` over the batch with
  only the ``ner`` component (it has its own embedding layer in the ``sm``
  pipeline; a ``tok2vec`` it listens to is kept), which is all
  :class:`SpacyRecognizer` reads;
* **lemmas only where they decide**: context words (Presidio's
  ``LemmaContextAwareEnhancer``: +0.35, at least 0.4) need lemmas, i.e. the
  pipeline Presidio would run. They are computed only for texts with a
  pattern result below its score floor that context could lift above it, e.g. a
  DEA number (0.4) near "medical". A result already above its floor is reported
  with its pattern score (Presidio would report it raised by context).

Per-text results equal ``analyze(text, entities=..., score_threshold=...)``
followed by the scanner's per-type floors, up to the score of results that
pass without context; ``tests/test_privacy_corpus.py`` checks this on the
corpus and ``bench/pii.py`` measures the speed.
"""

from __future__ import annotations

import functools
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import phonenumbers
import phonenumbers.phonenumbermatcher
from phonenumbers import PhoneMetadata
from phonenumbers.phonenumberutil import SUPPORTED_REGIONS, country_code_for_region
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import PhoneRecognizer, SpacyRecognizer

from ._analyzer import LANGUAGE

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine

__all__ = ["PREFILTERS", "FastScanner", "Prefilter"]


_DIGIT: Final = re.compile(r"\d")
_DOT_LETTER: Final = re.compile(r"\.[^\W\d_]")
"""A dot followed by a letter (any script: ``(?i)[a-z]`` also matches e.g. U+212A)."""

Prefilter = Callable[[str, int], bool]
"""``(text, number of decimal digits in it) -> may the recognizer match?``"""


def _digits(n: int) -> Prefilter:
    return lambda _text, digits: digits >= n


PREFILTERS: Final[Mapping[str, Prefilter]] = {
    # Presidio recognizer class -> a necessary condition for any of its patterns to match.
    "CreditCardRecognizer": _digits(12),  # 4+3+3+3 digits at least
    "UsLicenseRecognizer": _digits(1),  # every pattern holds [0-9]
    "CryptoRecognizer": _digits(1),  # bitcoin: starts 1, 3 or bc1
    "UsPassportRecognizer": _digits(8),  # [0-9]{9} or [A-Z][0-9]{8}
    "EmailRecognizer": lambda text, _digits: "@" in text,
    "UsItinRecognizer": _digits(9),
    "UsSsnRecognizer": _digits(9),
    "MedicalLicenseRecognizer": _digits(7),  # DEA: 2 letters + 7 digits
    "UrlRecognizer": lambda text, _digits: _DOT_LETTER.search(text) is not None,  # ".tld"
    "UsBankRecognizer": _digits(8),  # [0-9]{8,17}
    # IPv4 has 4+ digits; every IPv6 form, "::" included, has 2+ colons
    "IpRecognizer": lambda text, digits: digits >= 4 or text.count(":") >= 2,
    "NhsRecognizer": _digits(10),
    "IbanRecognizer": _digits(2),  # check digits
}
"""Cheap necessary conditions per recognizer class (read off Presidio 2.2's patterns).

``PhoneRecognizer`` is handled per region by :class:`_PhoneRegions` instead."""

_PLUS_CHARS: Final = ("+", "\uff0b")
"""libphonenumber's ``PLUS_CHARS``: a leading plus makes the number international."""


def _min_valid_digits(region: str) -> int:
    """Fewest digits of a number valid in ``region`` (its shortest possible length).

    A candidate is checked only after libphonenumber strips the extension and
    a leading national or international prefix, which only add digits.
    """
    meta = PhoneMetadata.metadata_for_region(region)
    if meta is None or meta.general_desc is None:
        return 0
    lengths = [n for n in (meta.general_desc.possible_length or ()) if n > 0]
    return min(lengths, default=0)


@functools.cache
def _min_international_digits() -> int:
    """Fewest digits of any valid number written with its country code (6 today)."""
    return min(
        len(str(country_code_for_region(r))) + _min_valid_digits(r)
        for r in SUPPORTED_REGIONS
        if _min_valid_digits(r) > 0
    )


# The matcher's own candidate pattern: every match lies inside one of its matches.
# A future phonenumbers without it: fall back to the text's digit count.
_PHONE_CANDIDATE: re.Pattern[str] | None = getattr(
    phonenumbers.phonenumbermatcher, "_PATTERN", None
)


def _weight(candidate: str) -> int:
    """Digits a candidate can yield: its digits, plus letters (vanity numbers, ``x``)."""
    return sum(c.isalnum() for c in candidate)


def _candidate_digits(text: str, digits: int) -> tuple[int, int]:
    """Most digits in one phone candidate of ``text``: ``(any candidate, one with a plus)``."""
    if _PHONE_CANDIDATE is None:
        return digits, digits if any(p in text for p in _PLUS_CHARS) else 0
    plain = plus = 0
    for m in _PHONE_CANDIDATE.finditer(text):
        candidate = m.group()
        n = _weight(candidate)
        plain = max(plain, n)
        if any(p in candidate for p in _PLUS_CHARS):
            plus = max(plus, n)
    return plain, plus


class _BoundedMatcher(phonenumbers.PhoneNumberMatcher):
    """libphonenumber's matcher that rejects candidates too short for its region unparsed."""

    def __init__(self, text: str, region: str, leniency: int, bound: int, bound_plus: int):
        super().__init__(text, region, leniency=leniency)
        self._bound = bound
        self._bound_plus = bound_plus

    def _parse_and_verify(self, candidate: str, offset: int) -> Any:
        plus = any(p in candidate for p in _PLUS_CHARS)
        if _weight(candidate) < (self._bound_plus if plus else self._bound):
            return None
        return super()._parse_and_verify(candidate, offset)


class _PhoneRegions:
    """``PhoneRecognizer.analyze``, skipping regions whose numbers cannot fit the text.

    libphonenumber's matcher (leniency ``VALID``) reports only numbers valid for the
    region, or international ones: a number valid in region R has at least R's
    shortest possible length in digits written nationally, or country code +
    national number (at least :func:`_min_international_digits`, plus one or more
    digits of an international dialling prefix when there is no ``+``). A region
    whose bound exceeds the digits of every candidate the matcher would try (its own
    candidate pattern, found once per text) cannot match.
    """

    def __init__(self, recognizer: PhoneRecognizer) -> None:
        self.recognizer = recognizer
        intl = _min_international_digits()
        self._bounds = [
            (
                region,
                min(_min_valid_digits(region) or intl, intl + 1),
                min(_min_valid_digits(region) or intl, intl),
            )
            for region in recognizer.supported_regions
        ]
        self.min_digits = min((b for _, _, b in self._bounds), default=0)

    def analyze(self, text: str, digits: int) -> list[RecognizerResult]:
        plain, plus = _candidate_digits(text, digits)
        rec = self.recognizer
        results: list[RecognizerResult] = []
        for region, bound, bound_plus in self._bounds:
            if plain < bound and plus < bound_plus:
                continue
            matcher = _BoundedMatcher(text, region, int(rec.leniency or 0), bound, bound_plus)
            for match in matcher:
                results.append(rec._get_recognizer_result(match, text, region, None))  # type: ignore[no-untyped-call]
        return EntityRecognizer.remove_duplicates(results)


def _ner_pipes(nlp: Any) -> list[str]:
    """``ner`` and, if its model listens to one, the shared embedding pipes before it."""
    if "ner" not in nlp.pipe_names:
        return []
    listens = any(node.name.endswith("listener") for node in nlp.get_pipe("ner").model.walk())
    shared = ("tok2vec", "transformer")
    return [p for p in nlp.pipe_names if p == "ner" or (listens and p in shared)]


class FastScanner:
    """Batched Presidio analysis that skips recognizers, pipes and texts it can.

    Args:
        analyzer: the engine whose recognizers, NLP engine and context enhancer
            are used (from :func:`sitemesh.policy.build_analyzer`).
        entities: entity types to report.
        floors: per-type lowest score (0..1) that counts as a detection.
        batch_size: texts per ``nlp.pipe`` batch.
        cache_size: texts whose results are kept (LRU); 0 disables the cache. The
            cache holds texts in process memory, on the site.
        ner: run spaCy's NER (``SpacyRecognizer``: PERSON, LOCATION...); ``False``:
            pattern recognizers only, and no spaCy pipe at all (so no context words
            either: each pattern keeps its own score).

    The scanner is not thread-safe (neither is spaCy).
    """

    def __init__(
        self,
        analyzer: AnalyzerEngine,
        entities: Iterable[str],
        floors: Mapping[str, float],
        *,
        batch_size: int = 32,
        cache_size: int = 4096,
        ner: bool = True,
    ) -> None:
        self._analyzer = analyzer
        self._entities = sorted(entities)
        self._floors = dict(floors)
        self._threshold = min(self._floors.values())
        self._batch_size = max(1, batch_size)
        self._cache: OrderedDict[str, list[RecognizerResult]] = OrderedDict()
        self._cache_size = max(0, cache_size)
        recognizers = analyzer.registry.get_recognizers(language=LANGUAGE, entities=self._entities)
        self._recognizers: list[EntityRecognizer] = recognizers
        self._context_factor = float(
            getattr(analyzer.context_aware_enhancer, "context_similarity_factor", 0.35)
        )
        self._context_min = float(
            getattr(analyzer.context_aware_enhancer, "min_score_with_context_similarity", 0.4)
        )
        self._patterns: list[tuple[EntityRecognizer, list[str], Prefilter | None]] = []
        self._ner: list[tuple[EntityRecognizer, list[str]]] = []
        self._phones: list[_PhoneRegions] = []
        for r in recognizers:
            wanted = [e for e in r.supported_entities if e in self._floors]
            if isinstance(r, SpacyRecognizer):
                if ner:
                    self._ner.append((r, wanted))
            elif not self._can_report(r, wanted):
                continue  # every pattern stays below its floor, context or not
            elif type(r) is PhoneRecognizer:
                self._phones.append(_PhoneRegions(r))
            else:
                known = type(r).__module__.startswith("presidio_analyzer.")
                prefilter = PREFILTERS.get(type(r).__name__) if known else None
                self._patterns.append((r, wanted, prefilter))
        nlp = analyzer.nlp_engine.nlp[LANGUAGE]  # type: ignore[attr-defined]
        self._nlp: Any = nlp
        self._ner_pipes = _ner_pipes(nlp)
        self._lemma_pipes = list(nlp.pipe_names)  # what Presidio's process_batch runs

    def _can_report(self, recognizer: EntityRecognizer, wanted: list[str]) -> bool:
        """False only for pattern recognizers whose best score cannot reach any floor.

        ``validate_result`` may raise a score to 1.0 (Luhn, IBAN checksums), so only
        recognizers that keep ``PatternRecognizer``'s (which validates nothing) are
        judged: their best score is a pattern's score, raised by context words.
        """
        if not isinstance(recognizer, PatternRecognizer) or not getattr(
            recognizer, "patterns", None
        ):
            return True
        if type(recognizer).validate_result is not PatternRecognizer.validate_result:
            return True
        patterns: list[Pattern] = getattr(recognizer, "patterns", [])
        best = max(p.score for p in patterns)
        if recognizer.context:
            best = min(1.0, max(best + self._context_factor, self._context_min, best))
        return any(best >= self._floors.get(e, 1.1) for e in wanted)

    def clear_cache(self) -> None:
        """Forget cached results (e.g. after the recognizers changed)."""
        self._cache.clear()

    def analyze_many(self, texts: Sequence[str]) -> list[list[RecognizerResult]]:
        """Presidio results per text, above the lowest floor, de-duplicated.

        Args:
            texts: texts to analyse; identical texts are analysed once.

        Returns:
            One list of ``RecognizerResult`` per input text (shared objects for
            identical texts: do not mutate them).

        Raises:
            Exception: whatever Presidio or spaCy raise; the caller wraps it (fail
                closed).
        """
        out: list[list[RecognizerResult] | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                out[i] = hit
            else:
                todo.setdefault(text, []).append(i)
        if todo:
            for text, results in zip(todo, self._analyze_unique(list(todo)), strict=True):
                for i in todo[text]:
                    out[i] = results
                if self._cache_size:
                    self._cache[text] = results
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return [r if r is not None else [] for r in out]

    def _could_lift(self, result: RecognizerResult, recognizer: EntityRecognizer) -> bool:
        """Whether context words could raise ``result`` from below its floor to it."""
        floor = self._floors.get(result.entity_type, 1.1)
        if result.score >= floor or not recognizer.context:
            return False
        lifted = max(result.score + self._context_factor, self._context_min)
        return min(lifted, 1.0) >= floor

    def _analyze_unique(self, texts: list[str]) -> list[list[RecognizerResult]]:
        raw: list[list[RecognizerResult]] = []
        needs_lemmas: list[bool] = []
        used: list[list[EntityRecognizer]] = []
        for text in texts:
            digits = len(_DIGIT.findall(text))
            results: list[RecognizerResult] = []
            recs: list[EntityRecognizer] = []
            lemmas = False
            for recognizer, wanted, prefilter in self._patterns:
                if prefilter is not None and not prefilter(text, digits):
                    continue
                found = recognizer.analyze(text=text, entities=wanted, nlp_artifacts=None)  # type: ignore[arg-type]
                if not found:
                    continue
                recs.append(recognizer)
                _tag(found, recognizer)
                results.extend(found)
                lemmas = lemmas or any(self._could_lift(r, recognizer) for r in found)
            for phone in self._phones:
                if digits < phone.min_digits:
                    continue
                found = phone.analyze(text, digits)
                if found:
                    recs.append(phone.recognizer)
                    _tag(found, phone.recognizer)
                    results.extend(found)
                    lemmas = lemmas or any(self._could_lift(r, phone.recognizer) for r in found)
            raw.append(results)
            needs_lemmas.append(lemmas)
            used.append(recs)
        artifacts = self._nlp_artifacts(texts, needs_lemmas)
        out: list[list[RecognizerResult]] = []
        for text, results, lemmas, recs, nlp_artifacts in zip(
            texts, raw, needs_lemmas, used, artifacts, strict=True
        ):
            if nlp_artifacts is not None:
                for recognizer, wanted in self._ner:
                    found = recognizer.analyze(
                        text=text, entities=wanted, nlp_artifacts=nlp_artifacts
                    )
                    if found:
                        _tag(found, recognizer)
                        results.extend(found)
                        recs.append(recognizer)
                if lemmas:
                    results = self._analyzer._enhance_using_context(
                        text, results, nlp_artifacts, recs, None
                    )
            results = [r for r in results if r.score >= self._threshold]
            out.append(EntityRecognizer.remove_duplicates(results))
        return out

    def _nlp_artifacts(
        self, texts: list[str], needs_lemmas: list[bool]
    ) -> list[NlpArtifacts | None]:
        """spaCy artifacts: NER only, or the lemma pipes too where needed; None: no letters."""
        out: list[NlpArtifacts | None] = [None] * len(texts)
        if not self._ner:
            return out
        engine = self._analyzer.nlp_engine
        for want_lemmas, pipes in ((False, self._ner_pipes), (True, self._lemma_pipes)):
            idx = [
                i
                for i, text in enumerate(texts)
                if needs_lemmas[i] == want_lemmas and any(c.isalpha() for c in text)
            ]
            if not idx:
                continue
            # ``disable=`` skips components for this call only; ``select_pipes`` would
            # change the shared pipeline under any other caller.
            skip = [p for p in self._nlp.pipe_names if p not in pipes]
            docs = self._nlp.pipe(
                [texts[i] for i in idx], batch_size=self._batch_size, disable=skip
            )
            for i, doc in zip(idx, docs, strict=True):
                out[i] = _artifacts(engine, doc, lemmas=want_lemmas)
        return out


def _artifacts(engine: Any, doc: Any, *, lemmas: bool) -> NlpArtifacts:
    """Presidio's artifacts of ``doc``; without lemmas (and keywords) when not needed.

    ``SpacyNlpEngine._doc_to_nlp_artifact`` also lists lemmas and derives context
    keywords from them (a stop-word lookup per token); :class:`SpacyRecognizer`
    reads only entities and scores, so texts without context decisions skip that.
    """
    if lemmas:
        return engine._doc_to_nlp_artifact(doc, LANGUAGE)  # type: ignore[no-any-return]
    entities, scores = engine._get_updated_entities(
        engine._get_entities(doc), engine._get_scores_for_entities(doc)
    )
    return NlpArtifacts(
        entities=entities,
        tokens=doc,
        tokens_indices=[],
        lemmas=[],
        nlp_engine=engine,
        language=LANGUAGE,
        scores=scores,
    )


def _tag(results: list[RecognizerResult], recognizer: EntityRecognizer) -> None:
    """Record the recognizer on each result, as ``AnalyzerEngine.analyze`` does."""
    for r in results:
        meta = r.recognition_metadata
        if meta is None:
            r.recognition_metadata = meta = {}
        name: str = getattr(recognizer, "name", type(recognizer).__name__)
        meta.setdefault(RecognizerResult.RECOGNIZER_NAME_KEY, name)
        meta.setdefault(RecognizerResult.RECOGNIZER_IDENTIFIER_KEY, recognizer.id)
