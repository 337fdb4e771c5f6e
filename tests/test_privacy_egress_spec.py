"""Egress guard field specs: platform fields are format-checked (fail closed), not read
by NER; content is scanned as before; message types without a spec are scanned whole."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sitemesh.agents import ALLOWED_ACTIONS, default_kb, diagnosis_ref
from sitemesh.errors import EgressBlocked, PiiAnalyzerError
from sitemesh.policy import (
    DEFAULT_RULE,
    EGRESS_FIELD_SPECS,
    UNEXPECTED_FORMAT,
    BoundaryRefs,
    DetectedEntity,
    EgressGuard,
    FieldFormat,
    PiiScanner,
    Policy,
    build_analyzer,
)
from sitemesh.schemas import CloudIncident, Finding, PlanStep

KEY = bytes(range(32))
REF = BoundaryRefs(KEY).ref("eu1", "ho-gl-508")
SPEC = EGRESS_FIELD_SPECS["cloud_incident.v1"]
RUNBOOK = "prometheus/kubernetes/KubeProxyDown"


@pytest.fixture(scope="session")
def scanner() -> PiiScanner:
    return PiiScanner(build_analyzer())


@pytest.fixture(scope="session")
def guard(scanner: PiiScanner) -> EgressGuard:
    return EgressGuard(scanner)


def incident(**changes: Any) -> CloudIncident:
    base: dict[str, Any] = {
        "task_id": REF,
        "site": "eu1",
        "kind": "support_ticket",
        "data_class": "confidential",
        "policy_version": "3f2a9c0d1e4b5a67",
        "rule_id": "complex-ticket-to-cloud",
        "text": "support_ticket received by site eu1; identifiers on file: <PERSON_1>",
        "placeholders": ["<PERSON_1>", "<EMAIL_ADDRESS_1>"],
        "steps": [
            PlanStep(
                n=1,
                action="check_status",
                description="Check that kube-proxy pods are running on every node.",
                grounding=[f"{RUNBOOK}#diagnosis", diagnosis_ref(1)],
            )
        ],
        "findings": [
            Finding(
                kind="interface_down",
                device="leaf7",
                interface="HundredGigE0/0/0/10",
                evidence="oper-status down since 10:02",
                severity="major",
            )
        ],
        "runbook": RUNBOOK,
        "reasons": ["low retrieval confidence 0.12 < 0.30"],
    }
    return CloudIncident(**{**base, **changes})


def test_a_clean_incident_passes(guard: EgressGuard) -> None:
    assert guard.findings(incident()) == []


def test_a_reference_that_ner_misreads_passes(scanner: PiiScanner, guard: EgressGuard) -> None:
    # positive control: the caller's id of the issue is read as an entity
    assert scanner.scan("ho-gl-508"), "precondition: NER reads ho-gl-508 as an entity"
    refs = BoundaryRefs(KEY)
    misread = next(
        r for r in (refs.ref("eu1", f"ho-gl-{i}") for i in range(2000)) if scanner.scan(r)
    )
    assert BoundaryRefs.is_ref(misread)
    assert guard.findings(incident(task_id=misread)) == []
    # without a field spec (the guard before) the reference itself blocks
    whole = EgressGuard(scanner, specs={}).findings(incident(task_id=misread))
    assert [p for p, _ in whole] == ["$.task_id"]


@pytest.mark.parametrize(
    "task_id", ["maria-garcia", "ho-gl-508", "JohnSmith-ticket", REF.upper(), REF + "a"]
)
def test_a_task_id_that_is_not_a_reference_blocks(guard: EgressGuard, task_id: str) -> None:
    with pytest.raises(EgressBlocked) as info:
        guard.check(incident(task_id=task_id))
    assert info.value.findings == [("$.task_id", UNEXPECTED_FORMAT)]
    assert task_id not in str(info.value)


def test_a_name_smuggled_into_a_step_description_blocks(guard: EgressGuard) -> None:
    step = PlanStep(
        n=1,
        action="check_status",
        description="Call Maria Garcia before restarting kube-proxy on the node.",
        grounding=[f"{RUNBOOK}#diagnosis"],
    )
    with pytest.raises(EgressBlocked) as info:
        guard.check(incident(steps=[step]))
    assert ("$.steps[0].description", "PERSON") in info.value.findings
    assert "Maria" not in str(info.value)


@pytest.mark.parametrize(
    ("changes", "path", "entity_type"),
    [
        ({"runbook": "John Smith"}, "$.runbook", UNEXPECTED_FORMAT),
        ({"runbook": "ada@example.org"}, "$.runbook", UNEXPECTED_FORMAT),
        ({"runbook": "905-674-3793"}, "$.runbook", UNEXPECTED_FORMAT),
        ({"runbook": "KubeProxyDown"}, "$.runbook", UNEXPECTED_FORMAT),  # one segment
        ({"runbook": "notes/host-106.31.73.20"}, "$.runbook", "IP_ADDRESS"),  # fits, still scanned
        ({"rule_id": "460-89-9847"}, "$.rule_id", UNEXPECTED_FORMAT),
        ({"rule_id": "Maria Garcia"}, "$.rule_id", UNEXPECTED_FORMAT),
        ({"site": "Eu1"}, "$.site", UNEXPECTED_FORMAT),
        ({"kind": "support ticket"}, "$.kind", UNEXPECTED_FORMAT),
        ({"policy_version": "v1 by Ada"}, "$.policy_version", UNEXPECTED_FORMAT),
        ({"policy_version": "4454794511390933"}, "$.policy_version", "CREDIT_CARD"),
        ({"placeholders": ["<PERSON_1>", "Maria"]}, "$.placeholders[1]", UNEXPECTED_FORMAT),
    ],
)
def test_a_platform_field_out_of_format_blocks(
    guard: EgressGuard, changes: dict[str, Any], path: str, entity_type: str
) -> None:
    with pytest.raises(EgressBlocked) as info:
        guard.check(incident(**changes))
    assert (path, entity_type) in info.value.findings
    for value in changes.values():
        assert str(value) not in str(info.value)


def test_step_and_finding_platform_fields_are_checked(guard: EgressGuard) -> None:
    bad_step = PlanStep(
        n=1, action="call Maria", description="Check the pods.", grounding=["Maria Garcia"]
    )
    found = guard.findings(incident(steps=[bad_step]))
    assert ("$.steps[0].action", UNEXPECTED_FORMAT) in found
    assert ("$.steps[0].grounding[0]", UNEXPECTED_FORMAT) in found
    tree = msgspec.to_builtins(incident())
    tree["steps"][0]["n"] = "one"
    tree["findings"][0]["severity"] = "Maria"
    tree["findings"][0]["interface"] = "ada@example.org"
    found = guard.findings(tree)
    assert ("$.steps[0].n", UNEXPECTED_FORMAT) in found
    assert ("$.findings[0].severity", UNEXPECTED_FORMAT) in found
    assert ("$.findings[0].interface", UNEXPECTED_FORMAT) in found


def test_a_container_in_a_platform_field_blocks(guard: EgressGuard) -> None:
    tree = msgspec.to_builtins(incident())
    tree["task_id"] = {"name": "Maria Garcia"}
    assert ("$.task_id", UNEXPECTED_FORMAT) in guard.findings(tree)


def test_content_fields_are_still_scanned(guard: EgressGuard) -> None:
    evidence = Finding(
        kind="log_pattern", device="leaf7", evidence="login failure for ada@example.org"
    )
    found = guard.findings(
        incident(
            text="support_ticket received; reply to bob@example.com",
            reasons=["customer 4454 7945 1139 0933 asked for a refund"],
            findings=[evidence],
        )
    )
    assert ("$.text", "EMAIL_ADDRESS") in found
    assert ("$.reasons[0]", "CREDIT_CARD") in found
    assert ("$.findings[0].evidence", "EMAIL_ADDRESS") in found


def test_an_unknown_field_is_content(guard: EgressGuard) -> None:
    tree = {**msgspec.to_builtins(incident()), "note": "mail ada@example.org"}
    assert guard.findings(tree) == [("$.note", "EMAIL_ADDRESS")]


def test_placeholders_pass(guard: EgressGuard) -> None:
    step = PlanStep(
        n=1,
        action="notify",
        description="Reply to <PERSON_1> at <EMAIL_ADDRESS_1> about <CREDIT_CARD_1>.",
        grounding=[f"{RUNBOOK}#mitigation"],
    )
    guard.check(incident(steps=[step], reasons=["<PERSON_1> escalated twice"]))


def test_a_message_type_without_a_spec_is_scanned_whole(guard: EgressGuard) -> None:
    assert guard.spec_for("other.v1") == {}
    payload = {"type": "other.v1", "runbook": "ada@example.org", "task_id": "t-1"}
    assert guard.findings(payload) == [("$.runbook", "EMAIL_ADDRESS")]
    same = {**payload, "type": "cloud_incident.v1"}
    assert ("$.runbook", UNEXPECTED_FORMAT) in guard.findings(same)


def test_other_message_types_can_declare_their_spec(scanner: PiiScanner) -> None:
    spec = {"$.code": FieldFormat(name="code", regex=re.compile(r"[A-Z]{3}-[0-9]{2}"))}
    guard = EgressGuard(scanner, specs={**EGRESS_FIELD_SPECS, "audit.v1": spec})
    assert guard.findings({"type": "audit.v1", "code": "ABC-12", "note": "ok"}) == []
    assert guard.findings({"type": "audit.v1", "code": "Maria"}) == [("$.code", UNEXPECTED_FORMAT)]
    with pytest.raises(ValueError, match="bad path"):
        EgressGuard(scanner, specs={"audit.v1": {"code": spec["$.code"]}})


def test_scanner_failure_still_fails_closed_with_a_format_finding() -> None:
    class Broken(PiiScanner):
        def scan_many(self, texts: object) -> list[object]:  # type: ignore[override]
            raise RuntimeError("boom")

    with pytest.raises(PiiAnalyzerError):
        EgressGuard(Broken(build_analyzer())).check(incident(task_id="maria-garcia"))


class Stub(PiiScanner):
    """Returns fixed detections: ``(text, entity type, detected substring)``."""

    def __init__(self, found: Sequence[tuple[str, str, str]]) -> None:
        super().__init__(build_analyzer())
        self._found = found

    def scan_many(self, texts: Sequence[str]) -> list[list[DetectedEntity]]:
        out: list[list[DetectedEntity]] = []
        for text in texts:
            hits = []
            for t, kind, sub in self._found:
                if t == text:
                    start = text.index(sub)
                    hits.append(DetectedEntity(kind, start, start + len(sub), 0.85))
            out.append(hits)
        return out


def _step(description: str) -> CloudIncident:
    step = PlanStep(n=1, action="check_status", description=description,
                    grounding=[f"{RUNBOOK}#diagnosis"])  # fmt: skip
    return incident(steps=[step])


def test_an_ner_reading_of_a_placeholder_alone_does_not_block() -> None:
    text = "Set it to '<IP_ADDRESS_1>:10249' for all IPv4 interfaces."
    with_name = "Ask <PERSON_1> Smith to check."
    guard = EgressGuard(Stub([(text, "LOCATION", "IP_ADDRESS_1>:10249"),
                              (with_name, "PERSON", "PERSON_1> Smith"),
                              (text, "PHONE_NUMBER", "1>:10249")]))  # fmt: skip
    assert guard.findings(_step(text)) == [("$.steps[0].description", "PHONE_NUMBER")]
    assert guard.findings(_step(with_name)) == [("$.steps[0].description", "PERSON")]


def test_runbook_vocabulary_excuses_only_ner_types_made_of_its_words() -> None:
    text = "Correlate with <PERSON_1>: ceph osd df tree; then tell Ubul Kovacs at ada@example.org"
    found = [(text, "LOCATION", "Correlate"), (text, "PERSON", "Ubul Kovacs"),
             (text, "EMAIL_ADDRESS", "ada@example.org")]  # fmt: skip
    words = EgressGuard.vocabulary_of(["Correlate with the OSD tree: `ceph osd df tree`.", "ada"])
    assert "Correlate" in words
    off = EgressGuard(Stub(found)).findings(_step(text))
    on = EgressGuard(Stub(found), vocabulary=words).findings(_step(text))
    path = "$.steps[0].description"
    assert off == [(path, "LOCATION"), (path, "PERSON"), (path, "EMAIL_ADDRESS")]
    assert on == [(path, "PERSON"), (path, "EMAIL_ADDRESS")]


def test_the_site_generates_values_in_format() -> None:
    """What the platform itself puts in these fields fits their formats."""
    policy = Policy.load()
    for rule_id in [r.id for r in policy.rules] + [DEFAULT_RULE.id]:
        assert SPEC["$.rule_id"].accepts(rule_id), rule_id
    assert SPEC["$.policy_version"].accepts(policy.version)
    for action in ALLOWED_ACTIONS:
        assert SPEC["$.steps[*].action"].accepts(action), action
    kb = default_kb()
    for section in kb.sections:
        assert SPEC["$.runbook"].accepts(section.doc_id), section.doc_id
        assert SPEC["$.steps[*].grounding[*]"].accepts(section.passage_id), section.passage_id
    tree = msgspec.to_builtins(incident(findings=[]))
    assert SPEC["$.forwarded_at"].accepts(tree["forwarded_at"])


def _fields(cls: type[msgspec.Struct]) -> Mapping[str, Any]:
    return {f.name: f for f in msgspec.structs.fields(cls)}


def test_spec_paths_name_real_fields_and_the_docs_list_them() -> None:
    owners: dict[str, type[msgspec.Struct]] = {
        "$": CloudIncident,
        "$.steps[*]": PlanStep,
        "$.findings[*]": Finding,
    }
    for path in SPEC:
        if path == "$.type":
            continue
        parent, _, name = path.removesuffix("[*]").rpartition(".")
        assert name in _fields(owners[parent]), path
    doc = (Path(__file__).parent.parent / "docs" / "privacy.md").read_text(encoding="utf-8")
    for path in SPEC:
        assert f"`{path}`" in doc, f"docs/privacy.md does not list {path}"
