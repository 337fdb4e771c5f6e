"""Workflows: the TOML document, its checks, conditions and the next-step walk."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from sitemesh.agents import AgentSpec, Registry, import_agent
from sitemesh.errors import AgentError, NoWorkflow, WorkflowError
from sitemesh.policy import Policy
from sitemesh.schemas import (
    Envelope,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    TelemetryAlert,
    WorkItem,
)
from sitemesh.workflows import (
    Advance,
    Workflows,
    check_workflows,
    first_step,
    new_item,
    next_step,
    parse_condition,
)
from tests._agents import Tone

NOW = datetime(2026, 12, 1, tzinfo=UTC)
PATHS = ("tests._agents:ToneAgent", "tests._agents:length", "tests._agents:CloudOnly")


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(PATHS)


def doc(steps: str, *, kinds: str = '["support_ticket"]') -> str:
    return f'version = "t1"\n[[workflow]]\nname = "w"\nkinds = {kinds}\n{steps}'


def step(name: str, role: str, extra: str = "") -> str:
    return f'[[workflow.step]]\nname = "{name}"\nrole = "{role}"\n{extra}\n'


FINAL = step("decide", "escalation")


def item(text: str = "the router is down", action: str = "pin_edge", **extra: str) -> WorkItem:
    decision = PolicyDecision(
        task_id="t1", action=action, rule_id="r1", policy_version="p1",  # type: ignore[arg-type]
        data_class="internal",
    )  # fmt: skip
    env = Envelope(task_id="t1", site="eu1", kind="support_ticket", submitted_at=NOW,
                   accepted_at=NOW)  # fmt: skip
    wf = Workflows.from_toml(extra.get("toml", doc(step("tone", "tone") + FINAL)))
    return new_item(env, SupportTicket(body=text), decision, wf)


def walked(adv: Advance) -> tuple[str | None, list[str]]:
    """``(next step, skipped steps)`` of a walk."""
    return (adv.step.name if adv.step else None), [k.step.name for k in adv.skipped]


def test_bundled_workflows_validate_against_the_installed_agents(registry: Registry) -> None:
    bundled = Workflows.load()
    check_workflows(bundled, registry, Policy.load())
    assert [w.name for w in bundled.workflows] == ["support", "alert"]
    assert bundled.for_kind("telemetry_alert") is not None
    assert "diagnostics" not in [s.role for s in bundled.for_kind("support_ticket").steps]
    assert len(bundled.version) == 16


def test_version_is_a_content_hash_not_the_text() -> None:
    a = Workflows.from_toml(doc(FINAL))
    b = Workflows.from_toml("# a comment\n" + doc(FINAL))
    c = Workflows.from_toml(doc(step("r", "retriever") + FINAL))
    assert a.version == b.version != c.version
    assert all(w.version == a.version for w in a.workflows)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (doc(step("r", "retriever") + step("r", "planner") + FINAL), "step 'r': duplicate step"),
        (doc(step("a", "retriever", 'jumps = [{ when = "true", to = "a" }]') + FINAL),
         "jumping to 'a' would make a cycle"),
        (doc(step("a", "retriever") + step("b", "planner", 'jumps = [{ when = "true", to = "a" }]')
             + FINAL), "step 'b' jumps[0]: jumping to 'a' would make a cycle"),
        (doc(step("a", "retriever", 'jumps = [{ when = "true", to = "zz" }]') + FINAL),
         "unknown step 'zz'"),
        (doc(step("a", "retriever", 'when = "later.x > 1"') + FINAL),
         "reads 'later', which is not an earlier step"),
        (doc(step("a", "retriever", 'when = "len(task.body) > 3"') + FINAL),
         "uses Call, which conditions do not allow"),
        (doc(step("a", "retriever", 'when = "task.body >"') + FINAL), "is not a valid condition"),
        (doc(step("a", "retriever") + step("decide", "escalation", 'when = "true"')),
         "the last step cannot have `when`"),
        (doc(FINAL, kinds='["ticket"]'), "unknown task kind 'ticket'"),
        (doc(step("a", "retriever", "zone = 'moon'") + FINAL), "workflow 'w' step[0] ('a')"),
        ('version = "x"\n[[workflow]]\nname = "w"\nkinds = ["support_ticket"]\nstep = []',
         "workflow[0] ('w')"),
        ("version = 1", "Expected `str`"),
        ("[[workflow]", "not valid TOML"),
    ],
)
def test_malformed_workflows_are_refused_naming_what_is_wrong(text: str, needle: str) -> None:
    with pytest.raises(WorkflowError) as info:
        Workflows.from_toml(text, source="bad.toml")
    assert needle in str(info.value)
    assert str(info.value).startswith("bad.toml")


@pytest.mark.parametrize(
    ("steps", "needle"),
    [
        (step("a", "retreiver") + FINAL, "step 'a': unknown role 'retreiver'; installed roles"),
        (step("a", "retriever"), "the last step must produce a final answer"),
        (step("a", "retriever", "zone = 'cloud'") + FINAL,
         "role 'retriever' runs only in ['edge'], not in zone 'cloud'"),
        (step("a", "cloudy") + FINAL, "role 'cloudy' runs only in ['cloud'], not in zone 'edge'"),
        (step("t", "tone", 'jumps = [{ when = "t.lable == \'urgent\'", to = "decide" }]') + FINAL,
         "reads t.lable, but Tone has no field 'lable'"),
        (step("r", "retriever") + step("p", "planner", 'when = "r.confidense > 0.3"') + FINAL,
         "RetrievalResult has no field 'confidense'"),
    ],
)
def test_registry_checks_name_the_step_and_field(
    registry: Registry, steps: str, needle: str
) -> None:
    with pytest.raises(WorkflowError, match="workflow 'w' step") as info:
        check_workflows(Workflows.from_toml(doc(steps)), registry)
    assert needle in str(info.value)


def test_a_role_must_take_the_workflows_kinds(registry: Registry) -> None:
    text = doc(step("t", "tone") + FINAL, kinds='["telemetry_alert"]')
    with pytest.raises(WorkflowError, match=r"role 'tone' takes .*support_ticket.v1.*not kind"):
        check_workflows(Workflows.from_toml(text), registry)


def test_a_cloud_step_the_policy_never_allows_is_refused(registry: Registry) -> None:
    text = doc(step("c", "cloudy", "zone = 'cloud'") + FINAL, kinds='["telemetry_alert"]')
    wf = Workflows.from_toml(text)
    check_workflows(wf, registry)  # without a policy: fine
    with pytest.raises(WorkflowError, match="zone 'cloud' is forbidden: the policy keeps every "
                                            "telemetry_alert task on site"):  # fmt: skip
        check_workflows(wf, registry, Policy.load())  # bundled rule telemetry-on-site
    tickets = Workflows.from_toml(doc(step("c", "cloudy", "zone = 'cloud'") + FINAL))
    check_workflows(tickets, registry, Policy.load())  # some tickets may leave


def test_policy_may_leave_site_reads_the_rules_in_order() -> None:
    policy = Policy.load()
    assert not policy.may_leave_site("telemetry_alert")
    assert policy.may_leave_site("support_ticket")
    deny_all = Policy.from_toml(
        'version = "x"\n[[rule]]\nid = "all"\ndescription = "d"\naction = "pin_edge"\n'
    )
    assert not deny_all.may_leave_site("support_ticket")


def test_conditions_are_evaluated_without_eval() -> None:
    c = parse_condition(
        "t.label == 'urgent' and (t.exclamations >= 2 or task.tenant in ['a', 'b'])",
        known=["t"], where="x",
    )  # fmt: skip
    assert c.names == {"t", "task"}
    assert c.evaluate({"t": {"label": "urgent", "exclamations": 3}, "task": {}})
    assert not c.evaluate({"t": {"label": "calm", "exclamations": 3}, "task": {}})
    # a skipped step is None: an ordering comparison is false, not an error
    assert not parse_condition("t.exclamations > 1", known=["t"], where="x").evaluate({})
    assert parse_condition("t == null", known=["t"], where="x").evaluate({})
    with pytest.raises(WorkflowError, match="uses Lambda"):
        parse_condition("lambda: 1", known=[], where="x")
    with pytest.raises(WorkflowError, match="uses Call"):
        parse_condition("__import__('os').system('true')", known=[], where="x")


def test_when_skips_and_jumps_continue_further_on() -> None:
    toml = doc(
        step("tone", "tone", 'jumps = [{ when = "tone.label == \'urgent\'", to = "decide" }]')
        + step("retrieve", "retriever")
        + step("plan", "planner", 'when = "retrieve.confidence >= 0.3"')
        + FINAL
    )
    calm = item("where is my bill", toml=toml)
    assert walked(first_step(calm)) == ("tone", [])
    calm = calm.with_output("tone", Tone(label="calm", exclamations=0))
    assert walked(next_step(calm, "tone")) == ("retrieve", [])
    low = calm.with_output("retrieve", RetrievalResult(task_id="t1", query="q", confidence=0.1))
    nxt = next_step(low, "retrieve")
    assert walked(nxt) == ("decide", ["plan"])
    assert nxt.skipped[0].reason == "when 'retrieve.confidence >= 0.3' is false"
    urgent = item("down!! now!!", toml=toml).with_output(
        "tone", Tone(label="urgent", exclamations=4)
    )
    assert walked(next_step(urgent, "tone")) == ("decide", ["retrieve", "plan"])


def test_cloud_steps_run_only_for_tasks_the_policy_lets_out() -> None:
    toml = doc(step("ask", "cloudy", "zone = 'cloud'") + FINAL)
    pinned = first_step(item(toml=toml, action="pin_edge"))
    assert walked(pinned) == ("decide", ["ask"])
    assert "policy pin_edge (rule r1) keeps the task on site" in pinned.skipped[0].reason
    assert walked(first_step(item(toml=toml, action="allow_cloud"))) == ("ask", [])


def test_outputs_are_keyed_by_step_and_found_by_type() -> None:
    it = item().with_output("tone", Tone(label="calm", exclamations=0))
    assert it.output("tone", Tone) == Tone(label="calm", exclamations=0)
    assert it.output(Tone) == Tone(label="calm", exclamations=0)
    assert it.output(RetrievalResult) is None
    assert it.output("tone", RetrievalResult) is None
    assert it.outputs["tone"].role == "tone"
    wire = msgspec.json.decode(msgspec.json.encode(it), type=WorkItem)
    assert wire == it
    assert wire.output(Tone) == it.output(Tone)


def test_new_item_needs_a_workflow_for_the_kind() -> None:
    env = Envelope(task_id="t", site="eu1", kind="telemetry_alert", submitted_at=NOW,
                   accepted_at=NOW)  # fmt: skip
    alert = TelemetryAlert(device="leaf7", window_start=NOW, window_end=NOW.replace(hour=1))
    decision = PolicyDecision(task_id="t", action="pin_edge", rule_id="r", policy_version="p",
                              data_class="internal")  # fmt: skip
    with pytest.raises(NoWorkflow):
        new_item(env, alert, decision, Workflows.from_toml(doc(FINAL)))


def test_registry_loads_entry_points_and_import_paths(registry: Registry) -> None:
    assert {"retriever", "diagnostics", "planner", "validator", "escalation"} <= set(registry)
    assert registry["retriever"].origin.endswith("entry point retriever")
    assert registry["tone"].origin == "import path tests._agents:ToneAgent"
    assert registry["length"].output.__name__ == "Length"  # the @agent function form
    assert registry["escalation"].final
    assert not registry["tone"].final
    schemas = registry["tone"].schemas()
    assert "label" in str(schemas["output"])
    assert "body" in str(schemas["input"])
    with pytest.raises(AgentError, match="unknown role 'nope'; installed"):
        registry.spec("nope")


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("tests._agents", "expected module:Class"),
        ("tests._nowhere:X", "cannot import 'tests._nowhere'"),
        ("tests._agents:Missing", "has no 'Missing'"),
        ("tests._agents:NotAnAgent", "is not a subclass of sitemesh.agents.Agent"),
        ("tests._agents:BadOutput", "output must be a msgspec Struct type"),
    ],
)
def test_bad_import_paths_say_why(path: str, needle: str) -> None:
    with pytest.raises(AgentError, match="import path") as info:
        import_agent(path)
    assert needle in str(info.value)


def test_two_agents_cannot_claim_one_role() -> None:
    tone = import_agent("tests._agents:ToneAgent")
    other = AgentSpec("tone", import_agent("tests._agents:length").cls, "somewhere")
    with pytest.raises(AgentError, match="role 'tone' is registered twice"):
        Registry([tone, other])
