"""Triage of support tickets: intent or category, urgency and language, offline.

The :class:`~sitemesh.agents.TriageAgent` (role ``triage``, first step of the
``support`` workflow) reads each ticket with the model of its tenant's label set:

* label sets (:func:`bundled_label_sets`): ``banking77`` (77 intents, tenants
  ``bank*``) and ``endava`` (IT help-desk categories and urgency, tenants ``it*``,
  ``helpdesk*``, ``endava*``), plus those a site publishes with ``sitemesh triage
  train --publish`` (artifact ``triage/<name>``), which take precedence;
* the classifier (:func:`train_model`): word and character TF-IDF, logistic
  regression, temperature-scaled confidence; trained once and cached on disk
  (:class:`ModelCache`, ``$SITEMESH_CACHE_DIR/triage/``);
* the held-out split (:func:`held_out`): the same 1 in 5 examples everywhere, never
  trained on by the bundled models;
* language (:func:`detect_language`, py3langid) and urgency (:func:`resolve_urgency`).

See ``docs/triage.md``.
"""

from __future__ import annotations

from ._cache import CACHE_DIR_ENV, ModelCache, default_cache_dir, model_key, warm_cache
from ._examples import (
    Example,
    ExampleFile,
    ExamplesError,
    examples_digest,
    examples_to_jsonl,
    parse_examples_jsonl,
    read_examples_csv,
)
from ._labelsets import (
    ARTIFACT_KIND,
    DATA_DIR,
    LabelSet,
    LabelSetSource,
    artifact_meta,
    artifact_name,
    banking77_examples,
    bundled_label_sets,
    check_name,
    endava_examples,
    parse_tenants,
    published_label_set,
)
from ._language import MIN_CONFIDENCE, MIN_LETTERS, detect_language
from ._metrics import (
    ECE_BINS,
    Evaluation,
    accuracy,
    evaluate,
    expected_calibration_error,
    macro_f1,
    top_confusions,
)
from ._model import (
    CODE_VERSION,
    DEFAULT_CONFIG,
    ClassifierConfig,
    Prediction,
    Progress,
    TriageModel,
    fit_temperature,
    train_model,
)
from ._text import HELD_OUT_SHARE, held_out, normalise, split_digest, ticket_text
from ._triager import ALTERNATIVES, Route, Triager
from ._urgency import DEFAULT_URGENCY, URGENCY_RULES, UrgencySource, resolve_urgency

__all__ = [
    "ALTERNATIVES",
    "ARTIFACT_KIND",
    "CACHE_DIR_ENV",
    "CODE_VERSION",
    "DATA_DIR",
    "DEFAULT_CONFIG",
    "DEFAULT_URGENCY",
    "ECE_BINS",
    "HELD_OUT_SHARE",
    "MIN_CONFIDENCE",
    "MIN_LETTERS",
    "URGENCY_RULES",
    "ClassifierConfig",
    "Evaluation",
    "Example",
    "ExampleFile",
    "ExamplesError",
    "LabelSet",
    "LabelSetSource",
    "ModelCache",
    "Prediction",
    "Progress",
    "Route",
    "TriageModel",
    "Triager",
    "UrgencySource",
    "accuracy",
    "artifact_meta",
    "artifact_name",
    "banking77_examples",
    "bundled_label_sets",
    "check_name",
    "default_cache_dir",
    "detect_language",
    "endava_examples",
    "evaluate",
    "examples_digest",
    "examples_to_jsonl",
    "expected_calibration_error",
    "fit_temperature",
    "held_out",
    "macro_f1",
    "model_key",
    "normalise",
    "parse_examples_jsonl",
    "parse_tenants",
    "published_label_set",
    "read_examples_csv",
    "resolve_urgency",
    "split_digest",
    "ticket_text",
    "top_confusions",
    "train_model",
    "warm_cache",
]
