"""PolicyRouter: decisions are complete, carry no entity values, and fail closed."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from presidio_analyzer import AnalyzerEngine

from sitemesh.config import PolicySettings
from sitemesh.errors import PiiAnalyzerError
from sitemesh.policy import FastScanner, PiiScanner, Policy, PolicyRouter, build_analyzer
from sitemesh.schemas import PolicyDecision, SupportTicket, TelemetryAlert, encode

CORPUS = Path(__file__).parent / "data" / "pii-presidio" / "synth_dataset_v2.json"

# Labels whose values must never appear in a decision (DATE_TIME, TITLE... are
# left out: short generic values such as "2020" or "Mr." occur in any JSON).
_SENSITIVE = {
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "STREET_ADDRESS",
    "US_DRIVER_LICENSE",
}


@pytest.fixture(scope="session")
def analyzer() -> AnalyzerEngine:
    return build_analyzer()


@pytest.fixture(scope="session")
def router(analyzer: AnalyzerEngine) -> PolicyRouter:
    return PolicyRouter(Policy.load(), PiiScanner(analyzer))


@pytest.fixture(scope="session")
def corpus_tickets() -> list[tuple[dict[str, Any], SupportTicket]]:
    with CORPUS.open(encoding="utf-8") as f:
        records = json.load(f)[::15]  # 100 records
    return [
        (r, SupportTicket(body=r["full_text"], source=f"presidio-research:{i}"))
        for i, r in enumerate(records)
    ]


def _alert(summary: str) -> TelemetryAlert:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    return TelemetryAlert(
        device="leaf7",
        window_start=start,
        window_end=start + timedelta(minutes=10),
        metric="bfd.session_state",
        summary=summary,
        severity="major",
    )


def test_decision_fields_are_filled(router: PolicyRouter) -> None:
    ticket = SupportTicket(
        customer="Jane Doe",
        title="double charge",
        body="My card 4111 1111 1111 1111 was charged twice, mail me at jane@example.com",
    )
    decision = router.decide(ticket, "t-1")
    assert isinstance(decision, PolicyDecision)
    assert decision.task_id == "t-1"
    assert decision.action == "pin_edge"
    assert decision.rule_id == "restricted-stays-on-site"
    assert decision.data_class == "restricted"
    assert decision.policy_version == router.policy.version
    counts = {c.entity_type: (c.count, c.max_score) for c in decision.entities}
    assert counts["CREDIT_CARD"] == (1, 1.0)
    assert counts["EMAIL_ADDRESS"] == (1, 1.0)
    assert counts["PERSON"][0] >= 1
    assert decision.reasons[0] == router.policy.rules[0].description
    assert "data_class restricted in [restricted]" in decision.reasons
    assert 0.0 < decision.analyzer_ms < 5000


def test_pii_free_ticket_is_internal(router: PolicyRouter) -> None:
    decision = router.decide(SupportTicket(body="How do I reset my router?"), "t-2")
    assert (decision.data_class, decision.rule_id, decision.entities) == (
        "internal",
        "internal-on-site",
        [],
    )


def test_telemetry_stays_on_site(router: PolicyRouter) -> None:
    decision = router.decide(_alert("BFD session down on leaf7 HundredGigE0/0/0/10"), "a-1")
    assert decision.data_class == "internal"  # "leaf7" is not a person
    assert (decision.rule_id, decision.action) == ("telemetry-on-site", "pin_edge")


def test_public_kinds_make_pii_free_content_public(analyzer: AnalyzerEngine) -> None:
    policy = Policy.from_toml('version = "t"\npublic_kinds = ["telemetry_alert"]\n')
    router = PolicyRouter(policy, PiiScanner(analyzer))
    assert router.decide(_alert("BFD session down"), "a-2").data_class == "public"
    with_ip = router.decide(_alert("BFD down towards subscriber 192.0.2.17"), "a-3")
    assert with_ip.data_class == "confidential"


def test_tenant_tier_and_backend_health_reach_the_rules(analyzer: AnalyzerEngine) -> None:
    policy = Policy.from_toml(
        'version = "t"\n'
        '[[rule]]\nid = "down"\ndescription = "d"\naction = "require_approval"\n'
        "match = { backend_healthy = false }\n"
        '[[rule]]\nid = "gold"\ndescription = "g"\naction = "deny"\n'
        'match = { tenant_tiers = ["gold"] }\n'
    )
    healthy = [True]
    router = PolicyRouter(
        policy,
        PiiScanner(analyzer),
        tenant_tiers={"acme": "gold"},
        backend_healthy=lambda: healthy[0],
    )
    assert router.decide(SupportTicket(tenant="acme", body="hi"), "t").rule_id == "gold"
    assert router.decide(SupportTicket(body="hi"), "t").rule_id == "default-deny-cloud"
    healthy[0] = False
    assert router.decide(SupportTicket(body="hi"), "t").action == "require_approval"


def test_decide_many_matches_decide(
    router: PolicyRouter, corpus_tickets: list[tuple[dict[str, Any], SupportTicket]]
) -> None:
    items = [(ticket, f"c-{i}") for i, (_, ticket) in enumerate(corpus_tickets[:25])]
    batched = router.decide_many(items)
    assert [d.task_id for d in batched] == [task_id for _, task_id in items]
    for (ticket, task_id), many in zip(items, batched, strict=True):
        one = router.decide(ticket, task_id)
        assert (one.rule_id, one.data_class, one.entities, one.reasons) == (
            many.rule_id,
            many.data_class,
            many.entities,
            many.reasons,
        )
    assert router.decide_many([]) == []


def test_decisions_never_contain_entity_values(
    router: PolicyRouter, corpus_tickets: list[tuple[dict[str, Any], SupportTicket]]
) -> None:
    decisions = router.decide_many([(t, f"c-{i}") for i, (_, t) in enumerate(corpus_tickets)])
    checked = 0
    for (record, _), decision in zip(corpus_tickets, decisions, strict=True):
        wire = encode(decision).decode()
        for span in record["spans"]:
            value = span["entity_value"].strip()
            if span["entity_type"] in _SENSITIVE and len(value) >= 5:
                assert value not in wire, (span["entity_type"], decision.rule_id)
                checked += 1
    assert checked >= 100
    assert {d.data_class for d in decisions} >= {"confidential", "restricted"}


def test_analyzer_failure_propagates(router: PolicyRouter, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> object:
        raise RuntimeError("spaCy died")

    monkeypatch.setattr(router.scanner.analyzer, "analyze", boom)
    monkeypatch.setattr(FastScanner, "analyze_many", boom)  # PiiScanner's default path
    with pytest.raises(PiiAnalyzerError):
        router.decide(SupportTicket(body="call John on 555-0100"), "t-3")
    with pytest.raises(PiiAnalyzerError):
        router.decide_many([(SupportTicket(body="hello"), "t-4")])


def test_from_settings(tmp_path: Path) -> None:
    rules = tmp_path / "rules.toml"
    rules.write_text('version = "custom"\n', encoding="utf-8")
    router = PolicyRouter.from_settings(PolicySettings(rules_file=rules, min_score=0.7))
    assert router.policy.label == "custom"
    assert router.scanner.min_score == 0.7
    assert PolicyRouter.from_settings(PolicySettings()).policy.version == Policy.load().version
