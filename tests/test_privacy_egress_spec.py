"""Egress guard field specs: platform fields are format-checked (fail closed), not read
by NER; a closed message type (``cloud_incident.v2``) carries nothing else; content of
other message types is scanned as before; message types without a spec are scanned whole."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sitemesh.agents import ALLOWED_ACTIONS, default_kb, diagnosis_ref
from sitemesh.errors import EgressBlocked, PiiAnalyzerError
from sitemesh.policy import (
    CLOSED_MESSAGE_TYPES,
    DEFAULT_RULE,
    EGRESS_FIELD_SPECS,
    UNEXPECTED_FIELD,
    UNEXPECTED_FORMAT,
    BoundaryRefs,
    DetectedEntity,
    EgressGuard,
    FieldFormat,
    PiiScanner,
    Policy,
    build_analyzer,
)
from sitemesh.schemas import (
    ALL_REASON_CODES,
    CloudIncident,
    IncidentFinding,
    IncidentResolution,
    IncidentStep,
    IncidentTriage,
)

KEY = bytes(range(32))
REF = BoundaryRefs(KEY).ref("eu1", "ho-gl-508")
CASE = "case#" + BoundaryRefs(KEY).ref("eu1", "passage\x00support-cases\x00x#1")
TAG = "cloud_incident.v2"
SPEC = EGRESS_FIELD_SPECS[TAG]
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
        "placeholders": ["<PERSON_1>", "<EMAIL_ADDRESS_1>"],
        "steps": [
            IncidentStep(
                n=1,
                action="check_status",
                grounding=[f"{RUNBOOK}#diagnosis", diagnosis_ref(1), CASE, "card_arrival#faq"],
                placeholders=["<PERSON_1>"],
            )
        ],
        "findings": [
            IncidentFinding(
                kind="interface_down",
                device="leaf7",
                interface="HundredGigE0/0/0/10",
                at=datetime(2019, 5, 19, 7, 23, tzinfo=UTC),
                severity="major",
            )
        ],
        "runbook": RUNBOOK,
        "reasons": ["low_retrieval_confidence", "major_finding:interface_down"],
        "triage": IncidentTriage(label="card_arrival", label_set="banking77", urgency=1,
                                 language="en"),
        "resolution": IncidentResolution(kb="support-cases", doc_kind="case", doc=CASE,
                                         intent="card_arrival"),
    }  # fmt: skip
    return CloudIncident(**{**base, **changes})


def tree(**changes: Any) -> dict[str, Any]:
    """The incident's JSON tree, for values its Struct would not take."""
    out: dict[str, Any] = msgspec.to_builtins(incident(**changes))
    return out


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


def test_the_incident_is_closed_and_every_field_is_in_the_spec() -> None:
    assert TAG in CLOSED_MESSAGE_TYPES
    full = incident()
    paths = set()

    def walk(node: Any, shape: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{shape}.{k}")
        elif isinstance(node, list):
            for v in node:
                walk(v, f"{shape}[*]")
        else:
            paths.add(shape)

    walk(msgspec.to_builtins(full), "$")
    assert paths == set(SPEC), "every field of a full incident has a format, and no more"


@pytest.mark.parametrize(
    ("place", "value"),
    [
        ("note", "mail ada@example.org"),
        ("text", "support_ticket received; identifiers on file: <PERSON_1>"),
        ("description", "Check the pods."),
        ("evidence", "oper-status down since 10:02"),
    ],
)
def test_a_field_the_closed_spec_does_not_name_blocks(
    guard: EgressGuard, place: str, value: str
) -> None:
    """Prose has no place in the incident: even clean prose blocks, at the top level,
    in a step or in a finding."""
    t = tree()
    if place == "description":
        t["steps"][0]["description"] = value
        path = "$.steps[0]{key#4}"
    elif place == "evidence":
        t["findings"][0]["evidence"] = value
        path = "$.findings[0]{key#5}"
    else:
        t[place] = value
        path = f"${{key#{len(t) - 1}}}"  # a key is never printed: it could be a value
    found = guard.findings(t)
    assert found == [(path, UNEXPECTED_FIELD)]
    with pytest.raises(EgressBlocked) as info:
        guard.check(t)
    assert value not in str(info.value)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t.update(steps="check everything"),  # a string where a list belongs
        lambda t: t.update(triage="card_arrival"),  # a string where an object belongs
        lambda t: t["steps"].append("Call Maria Garcia"),  # a string where a step belongs
        lambda t: t.update(findings={"0": {"kind": "cpu_high"}}),  # an object for a list
        lambda t: t.update(reasons=5551234567),  # a number where a list belongs
    ],
)
def test_a_container_of_the_wrong_shape_blocks(guard: EgressGuard, mutate: Any) -> None:
    t = tree()
    mutate(t)
    assert any(kind == UNEXPECTED_FIELD for _, kind in guard.findings(t))


def test_empty_and_null_containers_pass(guard: EgressGuard) -> None:
    t = tree(steps=[], findings=[], reasons=[], placeholders=[], triage=None, resolution=None,
             runbook=None)  # fmt: skip
    assert guard.findings(t) == []
    t["triage"] = None
    t["resolution"] = None
    assert guard.findings(t) == []


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
        ({"reasons": ["maria gonzalez called"]}, "$.reasons[0]", UNEXPECTED_FORMAT),
        ({"reasons": ["low retrieval confidence 0.12 < 0.30"]}, "$.reasons[0]",
         UNEXPECTED_FORMAT),
        ({"reasons": ["major_finding:maria"]}, "$.reasons[0]", UNEXPECTED_FORMAT),
        ({"triage": IncidentTriage(label="my name is maria")}, "$.triage.label",
         UNEXPECTED_FORMAT),
        ({"triage": IncidentTriage(label="x", label_set="Maria Gonzalez")},
         "$.triage.label_set", UNEXPECTED_FORMAT),
        ({"triage": IncidentTriage(label="x", language="maria")}, "$.triage.language",
         UNEXPECTED_FORMAT),
        ({"triage": IncidentTriage(label="4111111111111111")}, "$.triage.label", "CREDIT_CARD"),
        ({"resolution": IncidentResolution(kb="Maria's notes", doc_kind="faq", doc="x")},
         "$.resolution.kb", UNEXPECTED_FORMAT),
        ({"resolution": IncidentResolution(kb="faq", doc_kind="faq", doc="maria@outlook.com")},
         "$.resolution.doc", UNEXPECTED_FORMAT),
        ({"resolution": IncidentResolution(kb="faq", doc_kind="faq", doc="x",
                                           intent="Maria Gonzalez")},
         "$.resolution.intent", UNEXPECTED_FORMAT),
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


def test_step_finding_triage_and_resolution_fields_are_checked(guard: EgressGuard) -> None:
    bad_step = IncidentStep(n=1, action="call Maria", grounding=["Maria Garcia"],
                            placeholders=["Maria"])  # fmt: skip
    found = guard.findings(incident(steps=[bad_step]))
    assert ("$.steps[0].action", UNEXPECTED_FORMAT) in found
    assert ("$.steps[0].grounding[0]", UNEXPECTED_FORMAT) in found
    assert ("$.steps[0].placeholders[0]", UNEXPECTED_FORMAT) in found
    t = tree()
    t["steps"][0]["n"] = "one"
    t["findings"][0]["severity"] = "Maria"
    t["findings"][0]["interface"] = "ada@example.org"
    t["findings"][0]["device"] = "maria gonzalez"
    t["triage"]["urgency"] = 5551234567
    t["resolution"]["doc_kind"] = "diary"
    found = guard.findings(t)
    for path in ("$.steps[0].n", "$.findings[0].severity", "$.findings[0].interface",
                 "$.findings[0].device", "$.triage.urgency", "$.resolution.doc_kind"):
        assert (path, UNEXPECTED_FORMAT) in found, path  # fmt: skip


@pytest.mark.parametrize(("path", "value"), [("n", 0), ("n", 1000), ("n", True)])
def test_step_numbers_are_small_positive_integers(
    guard: EgressGuard, path: str, value: Any
) -> None:
    t = tree()
    t["steps"][0][path] = value
    assert ("$.steps[0].n", UNEXPECTED_FORMAT) in guard.findings(t)


def test_a_container_in_a_platform_field_blocks(guard: EgressGuard) -> None:
    t = tree()
    t["task_id"] = {"name": "Maria Garcia"}
    assert ("$.task_id", UNEXPECTED_FORMAT) in guard.findings(t)


def test_every_reason_code_and_only_those_pass() -> None:
    fmt = SPEC["$.reasons[*]"]
    assert all(fmt.accepts(code) for code in ALL_REASON_CODES)
    for prose in ("other ", "Other", "low retrieval confidence", "major_finding:", "no_plan\n"):
        assert not fmt.accepts(prose), prose


def test_placeholders_pass(guard: EgressGuard) -> None:
    step = IncidentStep(n=1, action="contact_customer", grounding=[f"{RUNBOOK}#mitigation"],
                        placeholders=["<PERSON_1>", "<EMAIL_ADDRESS_1>", "<CREDIT_CARD_1>"])
    finding = IncidentFinding(kind="log_pattern", device="<PERSON_2>", interface="<IP_ADDRESS_1>")
    guard.check(incident(steps=[step], findings=[finding]))  # fmt: skip


def test_a_message_type_without_a_spec_is_scanned_whole(guard: EgressGuard) -> None:
    assert guard.spec_for("other.v1") == {}
    assert not guard.is_closed("other.v1")
    payload = {"type": "other.v1", "runbook": "ada@example.org", "task_id": "t-1"}
    assert guard.findings(payload) == [("$.runbook", "EMAIL_ADDRESS")]
    same = {**payload, "type": TAG}
    assert ("$.runbook", UNEXPECTED_FORMAT) in guard.findings(same)


def test_an_old_incident_type_has_no_spec_and_is_scanned_whole(guard: EgressGuard) -> None:
    """``cloud_incident.v1`` is no longer produced; if one were, every string of it is
    content (nothing is exempt from the scan)."""
    old = {"type": "cloud_incident.v1", "task_id": REF, "text": "call ada@example.org"}
    assert guard.findings(old) == [("$.text", "EMAIL_ADDRESS")]


def test_content_of_open_message_types_is_still_scanned(scanner: PiiScanner) -> None:
    spec = {"$.code": FieldFormat(name="code", regex=re.compile(r"[A-Z]{3}-[0-9]{2}"))}
    guard = EgressGuard(scanner, specs={**EGRESS_FIELD_SPECS, "audit.v1": spec})
    found = guard.findings({"type": "audit.v1", "code": "ABC-12",
                            "note": "customer 4454 7945 1139 0933 asked for a refund",
                            "more": {"who": "reply to bob@example.com"}})  # fmt: skip
    assert ("$.note", "CREDIT_CARD") in found
    assert ("$.more.who", "EMAIL_ADDRESS") in found


def test_closed_types_need_a_spec(scanner: PiiScanner) -> None:
    with pytest.raises(ValueError, match="closed message types without a field spec"):
        EgressGuard(scanner, specs={}, closed=[TAG])
    # scanning everything (no specs) opens the incident too: every string is content
    assert not EgressGuard(scanner, specs={}).is_closed(TAG)


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


def _note(text: str) -> dict[str, str]:
    """A message of a type without a spec: all content."""
    return {"type": "note.v1", "text": text}


def test_an_ner_reading_of_a_placeholder_alone_does_not_block() -> None:
    text = "Set it to '<IP_ADDRESS_1>:10249' for all IPv4 interfaces."
    with_name = "Ask <PERSON_1> Smith to check."
    guard = EgressGuard(Stub([(text, "LOCATION", "IP_ADDRESS_1>:10249"),
                              (with_name, "PERSON", "PERSON_1> Smith"),
                              (text, "PHONE_NUMBER", "1>:10249")]))  # fmt: skip
    assert guard.findings(_note(text)) == [("$.text", "PHONE_NUMBER")]
    assert guard.findings(_note(with_name)) == [("$.text", "PERSON")]


def test_runbook_vocabulary_excuses_only_ner_types_made_of_its_words() -> None:
    text = "Correlate with <PERSON_1>: ceph osd df tree; then tell Ubul Kovacs at ada@example.org"
    found = [(text, "LOCATION", "Correlate"), (text, "PERSON", "Ubul Kovacs"),
             (text, "EMAIL_ADDRESS", "ada@example.org")]  # fmt: skip
    words = EgressGuard.vocabulary_of(["Correlate with the OSD tree: `ceph osd df tree`.", "ada"])
    assert "Correlate" in words
    off = EgressGuard(Stub(found)).findings(_note(text))
    on = EgressGuard(Stub(found), vocabulary=words).findings(_note(text))
    path = "$.text"
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
    assert SPEC["$.forwarded_at"].accepts(tree(findings=[])["forwarded_at"])


def _fields(cls: type[msgspec.Struct]) -> Mapping[str, Any]:
    return {f.name: f for f in msgspec.structs.fields(cls)}


def test_spec_paths_name_real_fields_and_the_docs_list_them() -> None:
    owners: dict[str, type[msgspec.Struct]] = {
        "$": CloudIncident,
        "$.steps[*]": IncidentStep,
        "$.findings[*]": IncidentFinding,
        "$.triage": IncidentTriage,
        "$.resolution": IncidentResolution,
    }
    for path in SPEC:
        if path == "$.type":
            continue
        parent, _, name = path.removesuffix("[*]").rpartition(".")
        assert name in _fields(owners[parent]), path
    doc = (Path(__file__).parent.parent / "docs" / "privacy.md").read_text(encoding="utf-8")
    for path in SPEC:
        assert f"`{path}`" in doc, f"docs/privacy.md does not list {path}"
