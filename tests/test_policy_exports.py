"""Pin the public API of ``sitemesh.policy``."""

from __future__ import annotations

import sitemesh.policy

EXPECTED = {
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
    "POLICY_BUCKET",
    "POLICY_HISTORY",
    "POLICY_KEY",
    "LivePolicy",
    "PolicyRevision",
    "PolicyStore",
    "policy_key",
    "PLACEHOLDER_RE",
    "EgressGuard",
    "FastScanner",
    "Pseudonymized",
    "Pseudonymizer",
    "Vault",
    "generate_vault_key",
    "load_vault_key",
    "pick_spans",
    "restore",
    "REF_RE",
    "BoundaryRefs",
    "EGRESS_FIELD_SPECS",
    "FieldFormat",
    "UNEXPECTED_FORMAT",
    "UNEXPECTED_FIELD",
    "CLOSED_MESSAGE_TYPES",
    "DEFAULT_MACHINE_KINDS",
    "NER_ENTITIES",
    "NON_SOURCE_NETWORKS",
    "SYSTEM_ACCOUNTS",
    "USER_NAME",
    "MachineDataMasker",
    "MachineDataScanner",
    "MachineToken",
    "MachineTokenKind",
    "UserNameRecognizer",
    "parse_device_networks",
    "task_lines",
}


def test_exports() -> None:
    assert set(sitemesh.policy.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(sitemesh.policy, name) is not None


def test_private_modules_stay_private() -> None:
    public = {n for n in dir(sitemesh.policy) if not n.startswith("_")}
    assert public - EXPECTED <= {"annotations"}
