"""Policy router and privacy boundary (DESIGN.md section 6).

* PII: :class:`PiiScanner` (Presidio, offline, batched; :func:`find_pii` for one
  text) finds :class:`DetectedEntity` spans;
* classification: :func:`classify` maps entity types to a data class;
* policy as code: :class:`Policy` loads a validated, versioned TOML rules file
  (bundled: ``rules/default.toml``) and returns the first matching rule for
  :class:`DecisionFacts`, falling back to ``default-deny-cloud`` (``pin_edge``);
* :class:`PolicyRouter` puts the three together into a
  :class:`~sitemesh.schemas.PolicyDecision` per task.

The privacy path fails closed: analyzer failures raise
:class:`~sitemesh.errors.PiiAnalyzerError`, a permanent error, so the task is
dead-lettered, never forwarded.
"""

from ._analyzer import LANGUAGE, SPACY_MODEL, build_analyzer, use_bundled_suffix_list
from ._classify import ENTITY_DATA_CLASS, UNKNOWN_ENTITY_DATA_CLASS, classify
from ._complexity import estimate_complexity, task_text
from ._pii import DEFAULT_ENTITIES, DEFAULT_MIN_SCORES, DetectedEntity, PiiScanner, find_pii
from ._router import PolicyRouter, count_entities, task_kind
from ._rules import DEFAULT_RULE, DecisionFacts, Match, Policy, Rule, RuleMatch

__all__ = [
    "DEFAULT_ENTITIES",
    "DEFAULT_MIN_SCORES",
    "DEFAULT_RULE",
    "ENTITY_DATA_CLASS",
    "LANGUAGE",
    "SPACY_MODEL",
    "UNKNOWN_ENTITY_DATA_CLASS",
    "DecisionFacts",
    "DetectedEntity",
    "Match",
    "PiiScanner",
    "Policy",
    "PolicyRouter",
    "Rule",
    "RuleMatch",
    "build_analyzer",
    "classify",
    "count_entities",
    "estimate_complexity",
    "find_pii",
    "task_kind",
    "task_text",
    "use_bundled_suffix_list",
]
