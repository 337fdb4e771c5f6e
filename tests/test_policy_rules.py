"""Rules file: schema validation, version hash, first-match order, fail-closed default.

None of these tests loads Presidio.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sitemesh.errors import PolicyError
from sitemesh.policy import (
    DEFAULT_RULE,
    DecisionFacts,
    Policy,
    RuleMatch,
    classify,
    estimate_complexity,
)
from sitemesh.schemas import SupportTicket, TelemetryAlert

TWO_RULES = """
version = "test-1"

[[rule]]
id = "cards-denied"
description = "no card data at all"
action = "deny"
match = { entity_types_any = ["CREDIT_CARD"] }

[[rule]]
id = "internal-to-cloud"
description = "internal content may go to the cloud"
action = "allow_cloud"
match = { data_classes = ["internal", "public"], kinds = ["support_ticket"] }
"""

# The same rules: other comments, whitespace, key order, table syntax, set order.
TWO_RULES_REFORMATTED = """
# reformatted copy
version = 'test-1'
[[rule]]
  action = "deny"
  id = "cards-denied"
  description = "no card data at all"
  [rule.match]
  entity_types_any = [ "CREDIT_CARD" ]   # one type
[[rule]]
  id = "internal-to-cloud"
  action = "allow_cloud"
  description = "internal content may go to the cloud"
  match.kinds = ["support_ticket"]
  match.data_classes = ["public", "internal"]
"""


def facts(**overrides: object) -> DecisionFacts:
    values: dict[str, object] = {"kind": "support_ticket", "data_class": "internal"}
    values.update(overrides)
    return DecisionFacts(**values)  # type: ignore[arg-type]


def rules_with(rule: str, *, before: str = "") -> str:
    ok = '[[rule]]\nid = "ok"\ndescription = "fine"\naction = "pin_edge"\n\n'
    return f'version = "t"\n{before}\n{ok}[[rule]]\n{rule}\n'


# --- loading ---------------------------------------------------------------------------


def test_bundled_rules_load() -> None:
    policy = Policy.load()
    assert policy.label
    assert re.fullmatch(r"[0-9a-f]{16}", policy.version)
    ids = [rule.id for rule in policy.rules]
    assert len(set(ids)) == len(ids)
    assert ids[0] == "restricted-stays-on-site"
    assert {rule.action for rule in policy.rules} == {
        "pin_edge",
        "allow_cloud",
        "deny",
        "require_approval",
    }
    assert all(rule.description for rule in policy.rules)


# The hybrid default (rules/default.toml): (facts, expected rule, expected action).
SIMPLE, COMPLEX, HARDEST = 0.2, 0.65, 0.9
BUNDLED_CASES = [
    pytest.param(
        {"data_class": "restricted", "complexity": HARDEST, "tenant_tier": "regulated"},
        "restricted-stays-on-site",
        "pin_edge",
        id="restricted-always-on-site",
    ),
    pytest.param(
        {"kind": "telemetry_alert", "data_class": "restricted"},
        "restricted-stays-on-site",
        "pin_edge",
        id="restricted-alert",
    ),
    pytest.param(
        {"data_class": "restricted", "tenant_tier": "suspended"},
        "restricted-stays-on-site",
        "pin_edge",
        id="restricted-beats-deny",
    ),
    pytest.param(
        {"tenant_tier": "suspended", "complexity": COMPLEX},
        "suspended-tenant-denied",
        "deny",
        id="suspended-tenant",
    ),
    pytest.param(
        {"kind": "telemetry_alert", "complexity": HARDEST},
        "telemetry-on-site",
        "pin_edge",
        id="telemetry",
    ),
    pytest.param(
        {"complexity": HARDEST, "data_class": "confidential", "latency_budget_ms": 1500.0},
        "tight-latency-on-site",
        "pin_edge",
        id="tight-latency",
    ),
    pytest.param(
        {"tenant_tier": "regulated", "complexity": COMPLEX},
        "regulated-tenant-needs-approval",
        "require_approval",
        id="regulated-complex",
    ),
    pytest.param(
        {"tenant_tier": "regulated", "complexity": SIMPLE, "data_class": "confidential"},
        "confidential-stays-on-site",
        "pin_edge",
        id="regulated-simple-stays",
    ),
    pytest.param(
        {"data_class": "confidential", "complexity": HARDEST},
        "confidential-complex-needs-approval",
        "require_approval",
        id="confidential-hardest",
    ),
    pytest.param(
        {"data_class": "confidential", "complexity": COMPLEX},
        "complex-ticket-to-cloud",
        "allow_cloud",
        id="confidential-complex",
    ),
    pytest.param(
        {"data_class": "internal", "complexity": HARDEST, "latency_budget_ms": 30_000.0},
        "complex-ticket-to-cloud",
        "allow_cloud",
        id="internal-hardest",
    ),
    pytest.param(
        {"data_class": "confidential", "complexity": COMPLEX, "backend_healthy": False},
        "confidential-stays-on-site",
        "pin_edge",
        id="backend-down-confidential",
    ),
    pytest.param(
        {"data_class": "internal", "complexity": COMPLEX, "backend_healthy": False},
        "internal-on-site",
        "pin_edge",
        id="backend-down-internal",
    ),
    pytest.param(
        {"data_class": "confidential", "complexity": SIMPLE},
        "confidential-stays-on-site",
        "pin_edge",
        id="confidential-simple",
    ),
    pytest.param(
        {"data_class": "internal", "complexity": SIMPLE},
        "internal-on-site",
        "pin_edge",
        id="internal-simple",
    ),
    pytest.param(
        {"data_class": "public", "complexity": SIMPLE},
        "internal-on-site",
        "pin_edge",
        id="public-simple",
    ),
]


@pytest.mark.parametrize(("overrides", "rule_id", "action"), BUNDLED_CASES)
def test_bundled_rules_decide(overrides: dict[str, object], rule_id: str, action: str) -> None:
    decision = Policy.load().decide(facts(**overrides))
    assert (decision.rule_id, decision.action) == (rule_id, action), decision.reasons


def test_bundled_rules_never_send_restricted_or_telemetry_to_the_cloud() -> None:
    policy = Policy.load()
    grid = itertools.product(
        ("support_ticket", "telemetry_alert"),
        ("public", "internal", "confidential", "restricted"),
        ("standard", "premium", "regulated", "suspended"),
        (0.0, 0.59, 0.6, 0.79, 0.8, 1.0),
        (True, False),
    )
    for kind, data_class, tier, complexity, healthy in grid:
        f = facts(
            kind=kind,
            data_class=data_class,
            tenant_tier=tier,
            complexity=complexity,
            backend_healthy=healthy,
        )
        action = policy.decide(f).action
        if data_class == "restricted" or kind == "telemetry_alert":
            assert action in ("pin_edge", "deny"), f
        if tier == "regulated":
            assert action != "allow_cloud", f
        if action == "allow_cloud":
            assert healthy, f
            assert complexity >= 0.6, f


def test_deny_list_of_named_tenants() -> None:
    policy = Policy.from_toml(
        'version = "t"\n[[rule]]\nid = "blocked"\ndescription = "contract ended"\n'
        'action = "deny"\nmatch = { tenants = ["acme", "globex"] }\n'
    )
    hit = policy.decide(facts(tenant="globex"))
    assert (hit.rule_id, hit.action) == ("blocked", "deny")
    assert hit.reasons == ("contract ended", "tenant globex in the rule's tenant list")
    assert policy.decide(facts(tenant="initech")).rule_id == DEFAULT_RULE.id
    assert policy.decide(facts()).rule_id == DEFAULT_RULE.id


def test_editing_the_bundled_file_changes_the_version() -> None:
    text = (Path(__file__).parents[1] / "sitemesh/policy/rules/default.toml").read_text()
    base = Policy.from_toml(text)
    assert base.version == Policy.load().version
    raised = text.replace("min_complexity = 0.8", "min_complexity = 0.85", 1)
    assert raised != text
    assert Policy.from_toml(raised).version != base.version
    commented = "# a comment\n" + text
    assert Policy.from_toml(commented).version == base.version


def test_load_from_path_equals_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(TWO_RULES, encoding="utf-8")
    loaded = Policy.load(path)
    assert loaded.version == Policy.from_toml(TWO_RULES).version
    assert loaded.source == str(path)


def test_load_missing_file_is_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read rules file"):
        Policy.load(tmp_path / "nope.toml")


# --- validation errors name the rule and the field -------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        pytest.param(
            'id = "x"\ndescription = "d"\naction = "cloud"',
            "rule[1] (id='x'): Invalid enum value 'cloud' - at `$.action`",
            id="unknown-action",
        ),
        pytest.param(
            'id = "x"\ndescription = "d"\naction = "deny"\nmatch = { colour = ["red"] }',
            "rule[1] (id='x'): Object contains unknown field `colour` - at `$.match`",
            id="unknown-match-key",
        ),
        pytest.param(
            'id = "x"\ndescription = "d"\naction = "deny"\nprority = 3',
            "rule[1] (id='x'): Object contains unknown field `prority`",
            id="unknown-rule-key",
        ),
        pytest.param(
            'id = "x"\ndescription = "d"\naction = "deny"\nmatch = { data_classes = "secret" }',
            "rule[1] (id='x'): Expected `array`, got `str` - at `$.match.data_classes`",
            id="wrong-type",
        ),
        pytest.param(
            'id = "x"\ndescription = "d"\naction = "deny"\nmatch = { data_classes = ["secret"] }',
            "rule[1] (id='x'): Invalid enum value 'secret' - at `$.match.data_classes[0]`",
            id="unknown-data-class",
        ),
        pytest.param(
            'id = "x"\ndescription = "d"\naction = "deny"\nmatch = { min_complexity = 1.5 }',
            "rule[1] (id='x'): Expected `float` <= 1.0 - at `$.match.min_complexity`",
            id="out-of-range",
        ),
        pytest.param(
            'id = "x"\ndescription = "d"\naction = "deny"\n'
            "match = { min_complexity = 0.8, max_complexity = 0.2 }",
            "rule[1] (id='x'): min_complexity is greater than max_complexity - at `$.match`",
            id="empty-complexity-range",
        ),
        pytest.param(
            'description = "d"\naction = "deny"',
            "rule[1]: Object missing required field `id`",
            id="missing-id",
        ),
        pytest.param(
            'id = "Bad Id"\ndescription = "d"\naction = "deny"',
            "rule[1] (id='Bad Id'): Expected `str` matching regex",
            id="bad-id",
        ),
        pytest.param(
            'id = "ok"\ndescription = "d"\naction = "deny"',
            "rule[1] (id='ok'): duplicate rule id - at `$.id`",
            id="duplicate-id",
        ),
        pytest.param(
            'id = "default-deny-cloud"\ndescription = "d"\naction = "deny"',
            "rule[1] (id='default-deny-cloud'): the id is reserved",
            id="reserved-id",
        ),
    ],
)
def test_invalid_rule_names_rule_and_field(rule: str, expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_toml(rules_with(rule))
    assert str(info.value).startswith(expected), str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('version = "t"\n[[rule]\n', "<rules>: not valid TOML", id="syntax"),
        pytest.param(
            "[[rule]]\nid = 'a'\n", "Object missing required field `version`", id="no-ver"
        ),
        pytest.param('version = "t"\n[[rules]]\n', "unknown field `rules`", id="top-level-key"),
        pytest.param('version = "t"\npublic_kinds = "x"\n', "at `$.public_kinds`", id="type"),
    ],
)
def test_invalid_file_is_policy_error(text: str, expected: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(expected)):
        Policy.from_toml(text)


def test_policy_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="rule\\[0\\]"):
        Policy.from_toml('version = "t"\n[[rule]]\nid = "a"\ndescription = "d"\naction = 1\n')


# --- version ---------------------------------------------------------------------------


def test_version_is_stable_under_reformatting() -> None:
    assert Policy.from_toml(TWO_RULES).version == Policy.from_toml(TWO_RULES_REFORMATTED).version


@pytest.mark.parametrize(
    ("old", "new"),
    [
        pytest.param('action = "deny"', 'action = "require_approval"', id="action"),
        pytest.param("no card data at all", "no card data", id="description"),
        pytest.param('["CREDIT_CARD"]', '["CREDIT_CARD", "IBAN_CODE"]', id="condition"),
        pytest.param('version = "test-1"', 'version = "test-2"', id="label"),
    ],
)
def test_version_changes_when_a_rule_changes(old: str, new: str) -> None:
    assert old in TWO_RULES
    changed = TWO_RULES.replace(old, new, 1)
    assert Policy.from_toml(changed).version != Policy.from_toml(TWO_RULES).version


def test_version_changes_when_rules_are_reordered() -> None:
    first, second = TWO_RULES.split("[[rule]]")[1:]
    swapped = 'version = "test-1"\n[[rule]]' + second + "[[rule]]" + first
    assert [r.id for r in Policy.from_toml(swapped).rules] == ["internal-to-cloud", "cards-denied"]
    assert Policy.from_toml(swapped).version != Policy.from_toml(TWO_RULES).version


# --- matching --------------------------------------------------------------------------


def test_first_matching_rule_wins() -> None:
    policy = Policy.from_toml(TWO_RULES)
    # Both rules match an internal ticket that mentions a card type: the first decides.
    both = facts(entity_types=frozenset({"CREDIT_CARD"}))
    assert policy.decide(both) == RuleMatch(
        "cards-denied", "deny", ("no card data at all", "detected [CREDIT_CARD]")
    )
    assert policy.decide(facts()).rule_id == "internal-to-cloud"


def test_no_match_falls_back_to_fail_closed_default() -> None:
    policy = Policy.from_toml(TWO_RULES)
    decision = policy.decide(facts(data_class="confidential"))
    assert decision.rule_id == DEFAULT_RULE.id == "default-deny-cloud"
    assert decision.action == "pin_edge"
    assert decision.reasons == (DEFAULT_RULE.description,)


def test_empty_rules_file_pins_everything_to_the_edge() -> None:
    policy = Policy.from_toml('version = "empty"\n')
    assert policy.rules == ()
    assert policy.decide(facts(data_class="public")).action == "pin_edge"


def test_empty_match_matches_everything() -> None:
    policy = Policy.from_toml(
        'version = "t"\n[[rule]]\nid = "all"\ndescription = "everything"\naction = "deny"\n'
    )
    assert policy.decide(facts(data_class="restricted", backend_healthy=False)).rule_id == "all"


@pytest.mark.parametrize(
    ("condition", "matching", "not_matching"),
    [
        ('kinds = ["telemetry_alert"]', {"kind": "telemetry_alert"}, {}),
        ('data_classes = ["restricted"]', {"data_class": "restricted"}, {}),
        (
            'entity_types_any = ["US_SSN", "IBAN_CODE"]',
            {"entity_types": frozenset({"PERSON", "IBAN_CODE"})},
            {"entity_types": frozenset({"PERSON"})},
        ),
        ('tenant_tiers = ["premium"]', {"tenant_tier": "premium"}, {}),
        ("max_latency_budget_ms = 500", {"latency_budget_ms": 500.0}, {"latency_budget_ms": 501}),
        ("max_latency_budget_ms = 500", {"latency_budget_ms": 20.0}, {"latency_budget_ms": None}),
        ("min_complexity = 0.6", {"complexity": 0.6}, {"complexity": 0.59}),
        ("max_complexity = 0.3", {"complexity": 0.3}, {"complexity": 0.31}),
        ('tenants = ["acme"]', {"tenant": "acme"}, {"tenant": "other"}),
        ("backend_healthy = false", {"backend_healthy": False}, {"backend_healthy": True}),
    ],
)
def test_each_condition(
    condition: str, matching: dict[str, object], not_matching: dict[str, object]
) -> None:
    policy = Policy.from_toml(
        f'version = "t"\n[[rule]]\nid = "r"\ndescription = "d"\naction = "allow_cloud"\n'
        f"match = {{ {condition} }}\n"
    )
    hit = policy.decide(facts(**matching))
    assert (hit.rule_id, hit.action) == ("r", "allow_cloud")
    assert len(hit.reasons) == 2  # description + the condition that held
    assert policy.decide(facts(**not_matching)).rule_id == DEFAULT_RULE.id


# --- classification and complexity (pure functions) ------------------------------------


@pytest.mark.parametrize(
    ("types", "public", "expected"),
    [
        ((), False, "internal"),
        ((), True, "public"),
        (("DATE_TIME", "ORGANIZATION"), True, "public"),
        (("PERSON",), True, "confidential"),
        (("EMAIL_ADDRESS", "PHONE_NUMBER"), False, "confidential"),
        (("PERSON", "CREDIT_CARD"), False, "restricted"),
        (("IBAN_CODE",), False, "restricted"),
        (("US_SSN",), False, "restricted"),
        (("SOME_CUSTOM_RECOGNIZER",), False, "confidential"),
    ],
)
def test_classify_table(types: tuple[str, ...], public: bool, expected: str) -> None:
    assert classify(types, public=public) == expected


def _ticket(body: str, title: str = "") -> SupportTicket:
    return SupportTicket(body=body, title=title)


def test_complexity_orders_simple_below_hard() -> None:
    simple = estimate_complexity(_ticket("How do I reset my router?"))
    hard = estimate_complexity(
        _ticket(
            "Since the upgrade leaf7, leaf8 and spine-02 drop BGP sessions to 10.0.0.1 "
            "every hour. Is this the known bug? Should we roll back? Which logs do you need? "
            + "Details follow. "
            * 60
        )
    )
    assert 0.0 <= simple < 0.2
    assert 0.6 < hard <= 1.0


def test_complexity_of_alerts_grows_with_severity() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    scores = [
        estimate_complexity(
            TelemetryAlert(
                device="leaf7",
                window_start=now,
                window_end=now + timedelta(minutes=5),
                severity=sev,
                summary="BFD down",
            )
        )
        for sev in ("info", "minor", "major", "critical")
    ]
    assert scores == sorted(scores)
    assert len(set(scores)) == 4
    assert all(0.0 <= s <= 1.0 for s in scores)
