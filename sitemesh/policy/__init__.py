"""Policy router and privacy boundary (DESIGN.md section 6).

* PII: :class:`PiiScanner` (Presidio, offline, batched; :func:`find_pii` for one
  text) finds :class:`DetectedEntity` spans;
* classification: :func:`classify` maps entity types to a data class;
* machine data (task kinds in the rules' ``machine_kinds``, telemetry alerts by
  default): :class:`MachineDataScanner` blanks machine tokens
  (:class:`MachineDataMasker`: timestamps, counters, ids, the operator's device
  addresses, log levels, code names) before the scan, finds account names
  (:class:`UserNameRecognizer`, ``USER_NAME``) and scans an alert's inline log lines
  (:func:`task_lines`) without NER;
* policy as code: :class:`Policy` loads a validated, versioned TOML rules file
  (bundled: ``rules/default.toml``) and returns the first matching rule for
  :class:`DecisionFacts`, falling back to ``default-deny-cloud`` (``pin_edge``);
* policy in NATS KV: :class:`PolicyStore` publishes validated rules files to the
  ``sitemesh_policy`` bucket; :class:`LivePolicy` follows it, so every router
  applies the same version and an update applies without a restart;
* :class:`PolicyRouter` puts the three together into a
  :class:`~sitemesh.schemas.PolicyDecision` per task.

Privacy boundary: :class:`Pseudonymizer` swaps entities for typed placeholders
(``<PERSON_1>``) kept in the encrypted :class:`Vault` and restores them in cloud
answers; :class:`EgressGuard` re-scans what leaves (platform fields such as ids are
checked against their :class:`FieldFormat` instead, per message type:
:data:`EGRESS_FIELD_SPECS`; a closed type such as ``cloud_incident.v2`` carries nothing
else, :data:`CLOSED_MESSAGE_TYPES`); :class:`FastScanner` is the
prefiltered, batched analysis behind :class:`PiiScanner`.

The privacy path fails closed: analyzer failures raise
:class:`~sitemesh.errors.PiiAnalyzerError`, a permanent error, so the task is
dead-lettered, never forwarded.
"""

from ._analyzer import LANGUAGE, SPACY_MODEL, build_analyzer, use_bundled_suffix_list
from ._classify import ENTITY_DATA_CLASS, UNKNOWN_ENTITY_DATA_CLASS, classify
from ._complexity import estimate_complexity, task_lines, task_text
from ._devices import NON_SOURCE_NETWORKS, parse_device_networks
from ._egress import UNEXPECTED_FIELD, UNEXPECTED_FORMAT, EgressGuard
from ._fastscan import FastScanner
from ._formats import CLOSED_MESSAGE_TYPES, EGRESS_FIELD_SPECS, FieldFormat
from ._kv import (
    POLICY_BUCKET,
    POLICY_HISTORY,
    POLICY_KEY,
    LivePolicy,
    PolicyRevision,
    PolicyStore,
    policy_key,
)
from ._machine import MachineDataMasker, MachineToken, MachineTokenKind
from ._machinescan import NER_ENTITIES, MachineDataScanner
from ._pii import DEFAULT_ENTITIES, DEFAULT_MIN_SCORES, DetectedEntity, PiiScanner, find_pii
from ._pseudonym import PLACEHOLDER_RE, Pseudonymized, Pseudonymizer, pick_spans, restore
from ._refs import REF_RE, BoundaryRefs
from ._router import PolicyRouter, count_entities, task_kind
from ._rules import (
    DEFAULT_MACHINE_KINDS,
    DEFAULT_RULE,
    DecisionFacts,
    Match,
    Policy,
    Rule,
    RuleMatch,
)
from ._usernames import SYSTEM_ACCOUNTS, USER_NAME, UserNameRecognizer
from ._vault import Vault, generate_vault_key, load_vault_key

__all__ = [
    "CLOSED_MESSAGE_TYPES",
    "DEFAULT_ENTITIES",
    "DEFAULT_MACHINE_KINDS",
    "DEFAULT_MIN_SCORES",
    "DEFAULT_RULE",
    "EGRESS_FIELD_SPECS",
    "ENTITY_DATA_CLASS",
    "LANGUAGE",
    "NER_ENTITIES",
    "NON_SOURCE_NETWORKS",
    "PLACEHOLDER_RE",
    "POLICY_BUCKET",
    "POLICY_HISTORY",
    "POLICY_KEY",
    "REF_RE",
    "SPACY_MODEL",
    "SYSTEM_ACCOUNTS",
    "UNEXPECTED_FIELD",
    "UNEXPECTED_FORMAT",
    "UNKNOWN_ENTITY_DATA_CLASS",
    "USER_NAME",
    "BoundaryRefs",
    "DecisionFacts",
    "DetectedEntity",
    "EgressGuard",
    "FastScanner",
    "FieldFormat",
    "LivePolicy",
    "MachineDataMasker",
    "MachineDataScanner",
    "MachineToken",
    "MachineTokenKind",
    "Match",
    "PiiScanner",
    "Policy",
    "PolicyRevision",
    "PolicyRouter",
    "PolicyStore",
    "Pseudonymized",
    "Pseudonymizer",
    "Rule",
    "RuleMatch",
    "UserNameRecognizer",
    "Vault",
    "build_analyzer",
    "classify",
    "count_entities",
    "estimate_complexity",
    "find_pii",
    "generate_vault_key",
    "load_vault_key",
    "parse_device_networks",
    "pick_spans",
    "policy_key",
    "restore",
    "task_kind",
    "task_lines",
    "task_text",
    "use_bundled_suffix_list",
]
