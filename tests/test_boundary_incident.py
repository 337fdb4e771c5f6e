"""The incident builder and the forwarder without a broker: what an escalated task
becomes when it leaves its site (structured fields only), and the reason-code
vocabulary it uses."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from sitemesh.bus import MsgContext, Subjects
from sitemesh.edge_node import CloudForwarder, build_incident, pseudonymized_texts
from sitemesh.edge_node._incident import ACTION_NOT_ALLOWED
from sitemesh.errors import EgressBlocked
from sitemesh.policy import BoundaryRefs, EgressGuard, PiiScanner, Pseudonymizer
from sitemesh.schemas import (
    ALL_REASON_CODES,
    REASON_CODES,
    REASON_DETAILS,
    CloudIncident,
    Diagnosis,
    Envelope,
    FinalAnswer,
    Finding,
    Passage,
    Plan,
    PlanStep,
    PolicyDecision,
    Resolution,
    RetrievalResult,
    SupportTicket,
    TelemetryAlert,
    Triage,
    ValidationReport,
    WorkItem,
    describe_reason,
    is_reason_code,
    reason_code,
    reason_codes,
)
from tests._items import work_item
from tests.test_boundary_e2e import digits_of, leaked_values

KEY = bytes(range(32))
REFS = BoundaryRefs(KEY)
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
RUNBOOK = "prometheus/etcd/etcdMembersDown"
CASE_DOC = "maria-gonzalez-cases"
CASE_PASSAGE = f"{CASE_DOC}#maria-gonzalez-0417"
FAQ_PASSAGE = "card_arrival#faq"
ECHO = "Hi, I am maria gonzalez, maria[at]outlook[dot]com, card 4111.1111.1111.1111"
ADVERSARIAL = Path(__file__).parent / "data" / "adversarial_pii.jsonl"


def passage(pid: str, *, kind: str = "runbook", kb: str = "runbooks", text: str = "") -> Passage:
    doc = pid.split("#", 1)[0]
    return Passage(passage_id=pid, doc_id=doc, title="t", section="s", text=text, source="x",
                   score=3.0, kb=kb, doc_kind=kind)  # type: ignore[arg-type]  # fmt: skip


RETRIEVAL = RetrievalResult(
    task_id="t-1",
    query="q",
    passages=[
        passage(f"{RUNBOOK}#mitigation"),
        passage(CASE_PASSAGE, kind="case", kb="support-cases",
                text="Maria Gonzalez (maria.gonzalez@example.com) could not activate her card"),
        passage(FAQ_PASSAGE, kind="faq", kb="banking-faq"),
    ],
    confidence=0.12,
)  # fmt: skip


def ticket_item(
    *, plan: Plan | None = None, triage: Triage | None = None, **outputs: Any
) -> WorkItem:
    env = Envelope(task_id="maria.garcia-7", site="eu1", kind="support_ticket",
                   data_class="confidential", submitted_at=T0, accepted_at=T0)
    decision = PolicyDecision(task_id="maria.garcia-7", action="allow_cloud",
                              rule_id="every-ticket-to-cloud", policy_version="3f2a9c0d",
                              data_class="confidential")
    task = SupportTicket(task_id="maria.garcia-7", title="card", body=ECHO, customer="mgonz88",
                         urgency=0)
    plan = plan or Plan(
        task_id="maria.garcia-7",
        runbook=RUNBOOK,
        steps=[
            PlanStep(n=1, action="contact_customer", description=f"Reply to: {ECHO}",
                     grounding=[f"{RUNBOOK}#mitigation", CASE_PASSAGE, FAQ_PASSAGE]),
            PlanStep(n=2, action="escalate", description="Hand it over (maria gonzalez).",
                     grounding=["not-retrieved/doc#x", "Maria Gonzalez", "diagnosis#1"]),
        ],
    )  # fmt: skip
    return work_item(env, task, decision, triage, RETRIEVAL, plan,
                     ValidationReport(task_id="maria.garcia-7", ok=True), **outputs)


def answer_of(item: WorkItem, **changes: Any) -> FinalAnswer:
    base: dict[str, Any] = {
        "task_id": item.envelope.task_id,
        "site": "eu1",
        "outcome": "escalate",
        "reasons": ["ticket urgency 0 (critical)", "low retrieval confidence 0.12 < 0.30",
                    "maria gonzalez asked twice"],
        "submitted_at": T0,
    }  # fmt: skip
    return FinalAnswer(**{**base, **changes})


def anon_of(item: WorkItem) -> dict[str, str]:
    """What a pseudonymiser might make of the texts (placeholders where it found something)."""
    texts = pseudonymized_texts(item)
    return {k: v.replace("maria gonzalez", "<PERSON_1>").replace("mgonz88", "<CUSTOMER_ID_1>")
            for k, v in texts.items()}  # fmt: skip


PLACEHOLDERS = ("<PERSON_1>", "<CUSTOMER_ID_1>")


def build(item: WorkItem, answer: FinalAnswer | None = None) -> CloudIncident:
    return build_incident(item, answer or answer_of(item), ref=REFS.ref("eu1", "x"), refs=REFS,
                          anon=anon_of(item), placeholders=PLACEHOLDERS)  # fmt: skip


def test_steps_are_actions_and_vouched_for_ids_only() -> None:
    incident = build(ticket_item())
    one, two = incident.steps
    assert (one.n, one.action, two.n, two.action) == (1, "contact_customer", 2, "escalate")
    case_ref = one.grounding[1]
    assert one.grounding == [f"{RUNBOOK}#mitigation", case_ref, FAQ_PASSAGE]
    assert re.fullmatch(r"case#r[a-z2-7]{26}", case_ref)
    # not retrieved, not an id, a finding the item does not have: left out
    assert two.grounding == []
    assert one.placeholders == ["<PERSON_1>"]
    assert two.placeholders == ["<PERSON_1>"]
    wire = msgspec.json.encode(incident).decode()
    for raw in ("maria", "Maria", "4111", "outlook", "Reply to", "Hand it over", CASE_DOC,
                "maria.garcia", "mgonz88"):
        assert raw not in wire, raw  # fmt: skip


def test_case_references_are_opaque_stable_and_site_keyed() -> None:
    item = ticket_item()
    a, b = build(item), build(item)
    assert a.steps[0].grounding[1] == b.steps[0].grounding[1]
    other = BoundaryRefs(bytes(reversed(range(32))))
    c = build_incident(item, answer_of(item), ref="r" + "a" * 26, refs=other, anon=anon_of(item),
                       placeholders=PLACEHOLDERS)  # fmt: skip
    assert c.steps[0].grounding[1] != a.steps[0].grounding[1]


def test_reasons_become_codes() -> None:
    incident = build(ticket_item())
    assert incident.reasons == ["critical_urgency", "low_retrieval_confidence", "other"]


def test_runbook_only_when_it_is_a_retrieved_document() -> None:
    assert build(ticket_item()).runbook == RUNBOOK
    for runbook in (ECHO, "prometheus/other/NotRetrieved", CASE_DOC):
        plan = Plan(task_id="t", runbook=runbook,
                    steps=[PlanStep(n=1, action="escalate", description="x")])
        assert build(ticket_item(plan=plan)).runbook is None, runbook


def test_triage_label_travels_as_tokens() -> None:
    triage = Triage(task_id="t", label="card_arrival", label_set="banking77", confidence=0.41,
                    urgency=1, language="en")  # fmt: skip
    got = build(ticket_item(triage=triage)).triage
    assert got is not None
    assert (got.label, got.label_set, got.urgency, got.language) == (
        "card_arrival", "banking77", 1, "en")
    odd = Triage(task_id="t", label="card_arrival", label_set="Maria's set", language="english")
    got = build(ticket_item(triage=odd)).triage
    assert got is not None
    assert (got.label_set, got.language) == (None, "und")
    for label in ("", "Card Arrival", "my name is maria"):
        assert build(ticket_item(triage=Triage(task_id="t", label=label))).triage is None


def test_resolution_doc_id_travels_a_case_only_as_a_reference() -> None:
    item = ticket_item()
    faq = Resolution(kb="banking-faq", doc_id="card_arrival", confidence=0.7, doc_kind="faq",
                     intent="card_arrival", url="https://help.example.com/?u=maria")
    got = build(item, answer_of(item, resolution=faq)).resolution
    assert got is not None
    assert (got.kb, got.doc_kind, got.doc, got.intent) == (
        "banking-faq", "faq", "card_arrival", "card_arrival")
    case = Resolution(kb="support-cases", doc_id=CASE_DOC, confidence=0.4, doc_kind="case",
                      intent="Card not working?")
    got = build(item, answer_of(item, resolution=case)).resolution
    assert got is not None
    assert re.fullmatch(r"case#r[a-z2-7]{26}", got.doc)
    assert got.intent is None  # not a token
    odd = Resolution(kb="Maria's notes", doc_id="x", confidence=0.4)
    assert build(item, answer_of(item, resolution=odd)).resolution is None
    wire = msgspec.json.encode(build(item, answer_of(item, resolution=faq))).decode()
    assert "help.example.com" not in wire  # the URL stays on the site


def test_findings_keep_kind_severity_time_and_safe_device_names() -> None:
    diagnosis = Diagnosis(task_id="t", findings=[
        Finding(kind="interface_down", device="leaf7", interface="HundredGigE0/0/0/10",
                at=T0, evidence="Maria Gonzalez unplugged it at 10:02", severity="major"),
        Finding(kind="cpu_high", device="maria gonzalez laptop", evidence="x"),
        Finding(kind="log_pattern", device="host 10.1.2.3 of maria", evidence="y"),
    ])  # fmt: skip
    item = ticket_item(diagnose=diagnosis)
    anon = anon_of(item) | {"device.1": "<DEVICE_1>", "device.2": "host <IP_ADDRESS_1>"}
    incident = build_incident(item, answer_of(item), ref="r" + "a" * 26, refs=REFS, anon=anon,
                              placeholders=(*PLACEHOLDERS, "<DEVICE_1>"))  # fmt: skip
    first, second, third = incident.findings
    assert (first.kind, first.device, first.interface, first.at, first.severity) == (
        "interface_down", "leaf7", "HundredGigE0/0/0/10", T0, "major")
    assert second.device == "<DEVICE_1>"  # detected whole: its placeholder
    assert third.device is None  # partly detected, no safe format: nothing
    assert "<DEVICE_1>" in incident.placeholders
    # the step grounded in diagnosis#1 keeps it now that there is a finding
    assert "diagnosis#1" in incident.steps[1].grounding
    assert "unplugged" not in msgspec.json.encode(incident).decode()


def test_an_action_outside_the_allow_list_blocks() -> None:
    plan = Plan(task_id="t", steps=[PlanStep(n=1, action="call_maria", description="x")])
    with pytest.raises(EgressBlocked) as info:
        build(ticket_item(plan=plan))
    assert info.value.findings == [("$.steps[0].action", ACTION_NOT_ALLOWED)]


def test_pseudonymised_texts_name_every_text_that_holds_identifiers() -> None:
    texts = pseudonymized_texts(ticket_item())
    assert set(texts) == {"customer", "text", "step.0", "step.1"}
    assert texts["customer"] == "mgonz88"
    assert ECHO in texts["text"]


# --- the forwarder with a real pseudonymiser and guard, no broker ----------------------


class FakeKV:
    def __init__(self) -> None:
        self.puts: dict[str, bytes] = {}

    async def put(self, key: str, value: bytes) -> int:
        self.puts[key] = value
        return 1


@pytest.fixture(scope="module")
def scanner() -> PiiScanner:
    return PiiScanner()


CTX = MsgContext(subject="sm.v1.work.eu1.escalation", headers={}, stream="WORK_eu1",
                 stream_seq=1, num_delivered=1, site="eu1", role="escalation", worker="w",
                 data=b"")  # fmt: skip


def _digits_of(value: str) -> str:
    return re.sub(r"\D", "", value)


async def test_the_forwarder_sends_no_ticket_value_of_the_adversarial_set(
    scanner: PiiScanner,
) -> None:
    """The 30 adversarial tickets, echoed into every step by a planner, through the real
    pseudonymiser and egress guard: the incident passes the guard and holds none of the
    values (nor their digits)."""
    rows = [json.loads(line) for line in ADVERSARIAL.read_text("utf-8").splitlines()]
    forwarder = CloudForwarder(Subjects("eu1"), Pseudonymizer(scanner), EgressGuard(scanner),
                               FakeKV(), REFS)  # type: ignore[arg-type]  # fmt: skip
    wires = []
    for i, row in enumerate(rows):
        plan = Plan(task_id="t", runbook=row["text"][:200], steps=[
            PlanStep(n=1, action="contact_customer", description=row["text"][:240],
                     grounding=[f"{RUNBOOK}#mitigation", CASE_PASSAGE]),
            PlanStep(n=2, action="gather_details", description=f"Ask: {row['text'][:200]}",
                     grounding=[row["text"][:40]]),
        ])  # fmt: skip
        item = ticket_item(plan=plan)
        item = msgspec.structs.replace(
            item, task=msgspec.structs.replace(item.task, body=row["text"], task_id=f"adv-{i}"),
            envelope=msgspec.structs.replace(item.envelope, task_id=f"adv-{i}"),
        )
        answer = answer_of(item, reasons=[f"customer said: {row['text']}", "major alert"])
        out = await forwarder(item, answer, CTX)
        assert out is not None
        incident = out[1].payload
        assert isinstance(incident, CloudIncident)
        assert incident.reasons == ["other", "major_alert"]
        wires.append(msgspec.json.encode(incident).decode())
    everything = "\n".join(wires)
    leaks = [(row["id"], v) for row in rows for v in row["values"]
             if v.lower() in everything.lower()
             or (len(_digits_of(v)) >= 7 and _digits_of(v) in _digits_of(everything))]
    assert leaks == []  # fmt: skip


async def test_the_forwarder_answers_on_site_when_not_escalated(scanner: PiiScanner) -> None:
    forwarder = CloudForwarder(Subjects("eu1"), Pseudonymizer(scanner), EgressGuard(scanner),
                               FakeKV(), REFS)  # type: ignore[arg-type]  # fmt: skip
    item = ticket_item()
    assert await forwarder(item, answer_of(item, outcome="resolved"), CTX) is None


async def test_a_telemetry_alert_crosses_with_its_device(scanner: PiiScanner) -> None:
    env = Envelope(task_id="alert-leaf7-2", site="eu1", kind="telemetry_alert",
                   submitted_at=T0, accepted_at=T0)
    decision = PolicyDecision(task_id="alert-leaf7-2", action="allow_cloud", rule_id="r",
                              policy_version="0a", data_class="internal")
    alert = TelemetryAlert(task_id="alert-leaf7-2", device="leaf7", window_start=T0,
                           window_end=T0.replace(minute=20), metric="bfd.summary.down_count",
                           severity="major",
                           summary="leaf7: BFD down, call Maria Gonzalez on +1 212 555 0199")
    diagnosis = Diagnosis(task_id="alert-leaf7-2", findings=[
        Finding(kind="bfd_session_down", device="leaf7", interface="Bundle-Ether1",
                evidence="down_count 0 -> 2", severity="major", at=T0)])
    plan = Plan(task_id="alert-leaf7-2", runbook=RUNBOOK, steps=[
        PlanStep(n=1, action="check_status", description="Confirm BFD on leaf7",
                 grounding=["diagnosis#1"])])
    item = work_item(env, alert, decision, RETRIEVAL, diagnosis, plan)  # fmt: skip
    forwarder = CloudForwarder(Subjects("eu1"), Pseudonymizer(scanner), EgressGuard(scanner),
                               FakeKV(), REFS)  # type: ignore[arg-type]  # fmt: skip
    answer = FinalAnswer(task_id="alert-leaf7-2", site="eu1", outcome="escalate",
                         reasons=["major finding: bfd_session_down", "major alert"],
                         submitted_at=T0)  # fmt: skip
    out = await forwarder(item, answer, CTX)
    assert out is not None
    incident = out[1].payload
    assert isinstance(incident, CloudIncident)
    (finding,) = incident.findings
    assert (finding.device, finding.interface) == ("leaf7", "Bundle-Ether1")
    assert incident.steps[0].grounding == ["diagnosis#1"]
    assert incident.reasons == ["major_finding:bfd_session_down", "major_alert"]
    wire = msgspec.json.encode(incident).decode()
    # the phone number's parts, not "555" alone: the incident's own timestamps
    # (fractions of a second) may hold those digits
    for raw in ("Maria", "555 0199", "5550199", "212 555", "down_count"):
        assert raw not in wire


# --- the reason-code vocabulary -------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "codes"),
    [
        ("ticket urgency 0 (critical)", ["critical_urgency"]),
        ("triage urgency 0 (critical, model)", ["critical_urgency"]),
        ("low retrieval confidence 0.12 < 0.30", ["low_retrieval_confidence"]),
        ("low knowledge confidence 0.41 < 0.80 (no triage label to confirm it)",
         ["low_knowledge_confidence"]),
        ("no knowledge-base answer for this ticket", ["no_knowledge_match"]),
        ("no retrieval result", ["no_retrieval"]),
        ("triage uncertain: card_arrival 0.42 < 0.60", ["triage_uncertain"]),
        ("triage (banking77 card_arrival 0.71) and knowledge (intent lost_card) disagree",
         ["knowledge_triage_disagree"]),
        ("major finding: interface_down", ["major_finding:interface_down"]),
        ("critical finding: something_new", ["critical_finding:other"]),
        ("critical alert", ["critical_alert"]),
        ("validation failed: pii, unknown_grounding",
         ["validation_failed:pii", "validation_failed:unknown_grounding"]),
        ("validation failed: maria_gonzalez", ["validation_failed:other"]),
        ("no plan was produced", ["no_plan"]),
        ("plan was not validated", ["plan_not_validated"]),
        ("major_finding:cpu_high", ["major_finding:cpu_high"]),
        ("the customer maria gonzalez is angry", ["other"]),
        ("", ["other"]),
    ],
)  # fmt: skip
def test_reasons_map_to_codes_tolerantly(reason: str, codes: list[str]) -> None:
    assert reason_codes([reason]) == codes
    assert all(is_reason_code(c) for c in codes)


def test_reason_codes_are_deduplicated_in_order() -> None:
    got = reason_codes(["critical alert", "ticket urgency 0 (critical)", "critical alert"])
    assert got == ["critical_alert", "critical_urgency"]


def test_agents_can_emit_codes_directly() -> None:
    assert reason_code("major_finding", "interface_down") == "major_finding:interface_down"
    assert reason_code("validation_failed", "brand_new_check") == "validation_failed:other"
    assert reason_code("critical_urgency", "ignored") == "critical_urgency"
    with pytest.raises(ValueError, match="unknown reason code"):
        reason_code("maria_called")


def test_every_code_has_a_sentence_without_placeholders_left() -> None:
    assert set(REASON_DETAILS) <= set(REASON_CODES)
    assert not any(base in ALL_REASON_CODES for base in REASON_DETAILS)
    for code in ALL_REASON_CODES:
        sentence = describe_reason(code)
        assert sentence.endswith("."), code
        assert "{" not in sentence, code
    assert describe_reason("major_finding:interface_down") == (
        "Diagnostics found a major interface down condition.")
    assert describe_reason("not a code") == REASON_CODES["other"]


# --- the hub-side leak check the end-to-end tests use ---------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("4111.1111.1111.1111", 'x {"a":"4111 1111 1111 1111"} y'),
        ("4111.1111.1111.1111", "card4111111111111111."),
        ("five five five, one two three four", "call 555-1234 now"),
        ("oh seven seven double nine, four five six, eight one two", "07799 456812"),
        ("+44·20·7946·0018", "tel:+442079460018"),
        ("maria[at]outlook[dot]com", "MARIA[AT]OUTLOOK[DOT]COM"),
        ("DE89 3704 0044 0532 0130 00", "iban=DE89370400440532013000"),
    ],
)
def test_the_leak_check_finds_a_value_in_any_separator_form(value: str, text: str) -> None:
    assert leaked_values([value], text) == [value]


def test_the_leak_check_ignores_short_digit_runs_and_other_numbers() -> None:
    assert digits_of("14th of march 1987") == "141987"
    assert leaked_values(["14th of march 1987"], "2026-03-14T19:87") == []  # < 7 digits
    assert leaked_values(["4111.1111.1111.1111"], "41111111111111112") == []  # longer number
    assert digits_of("my name is maria") == ""
