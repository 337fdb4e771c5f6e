"""The triage agent: on work items without a broker, tenant routing, and published
examples loaded and reloaded through a real nats-server."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext

from sitemesh.agents import AgentContext, AgentResources, Registry, TriageAgent
from sitemesh.bus import SiteArtifacts
from sitemesh.errors import PermanentError
from sitemesh.schemas import (
    Envelope,
    PolicyDecision,
    SupportTicket,
    Task,
    TelemetryAlert,
    Triage,
    WorkItem,
    encode,
)
from sitemesh.triage import (
    Example,
    LabelSet,
    ModelCache,
    bundled_label_sets,
    examples_to_jsonl,
    held_out,
)
from sitemesh.workflows import next_step
from tests._items import work_item
from tests.conftest import assert_eventually

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")
INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed", "pin_blocked")


def make_item(task: Task, task_id: str = "t-1") -> WorkItem:
    env = Envelope(task_id=task_id, site="lab", kind="support_ticket", submitted_at=T0,
                   accepted_at=T0)  # fmt: skip
    decision = PolicyDecision(task_id=task_id, action="pin_edge", rule_id="r1",
                              policy_version="0", data_class="internal")  # fmt: skip
    return work_item(env, task, decision)


def ticket(body: str, tenant: str = "bank-eu", **kw: object) -> WorkItem:
    return make_item(SupportTicket(body=body, tenant=tenant, **kw))  # type: ignore[arg-type]


def subset(name: str, labels: tuple[str, ...], per_label: int, *, as_name: str) -> LabelSet:
    """Up to ``per_label`` training examples of each label *and* urgency of a bundled set."""
    full = next(ls for ls in bundled_label_sets() if ls.name == name)
    taken: dict[tuple[str, int | None], int] = defaultdict(int)
    chosen = []
    for e in full.examples:
        key = (e.label, e.urgency)
        if e.label in labels and taken[key] < per_label and not held_out(e.text):
            taken[key] += 1
            chosen.append(e)
    return LabelSet(as_name, full.tenants, tuple(chosen))


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    return ModelCache(tmp_path_factory.mktemp("triage-cache"))


@pytest.fixture(scope="module")
def mini_sets() -> list[LabelSet]:
    """Small stand-ins of the bundled sets, with the bundled tenant globs."""
    sets = [
        subset("banking77", INTENTS, 40, as_name="banking77"),
        subset("endava", ("category_4", "category_5", "category_6"), 25, as_name="endava"),
    ]
    assert sets[1].has_urgency
    return sets


@pytest.fixture
async def agent(cache: ModelCache, mini_sets: list[LabelSet]) -> TriageAgent:
    a = TriageAgent(cache=cache, bundled=mini_sets)
    await a.setup(AgentResources("lab"))
    return a


async def test_the_agent_is_registered_for_support_tickets() -> None:
    spec = Registry.load()["triage"]
    assert spec.output is Triage
    assert spec.accepts == (SupportTicket,)
    item = ticket("my card has not arrived")
    assert item.step == "triage"  # the support workflow starts with triage


async def test_obvious_banking_queries(agent: TriageAgent) -> None:
    cases = {
        "my new card still has not arrived, when does it come?": ("card_arrival", 3, "default"),
        "someone stole my card yesterday": ("lost_or_stolen_card", 1, "rule"),
        "my pin is blocked after three wrong tries": ("pin_blocked", 2, "rule"),
    }
    for body, (label, urgency, source) in cases.items():
        out = await agent.handle(ticket(body), CTX)
        assert (out.label, out.label_set) == (label, "banking77"), body
        assert (out.urgency, out.urgency_source) == (urgency, source)
        assert (out.task_id, out.language) == ("t-1", "en")
        assert 0.0 < out.confidence <= 1.0
        assert len(out.alternatives) == 3
        assert out.model_version == agent.triager.routes[0].model.version
        assert msgspec.json.decode(encode(out), type=Triage) == out


async def test_title_and_body_are_read_and_the_ticket_urgency_wins(agent: TriageAgent) -> None:
    out = await agent.handle(ticket("it was taken from my bag", title="stolen card", urgency=0),
                             CTX)  # fmt: skip
    assert out.label == "lost_or_stolen_card"
    assert (out.urgency, out.urgency_source) == (0, "ticket")


async def test_tenants_route_to_their_label_set(agent: TriageAgent) -> None:
    it = await agent.handle(ticket("outlook cannot connect to the server", tenant="helpdesk-1"),
                            CTX)  # fmt: skip
    assert it.label_set == "endava"
    assert it.label.startswith("category_")
    assert it.urgency_source == "model"
    assert (await agent.handle(ticket("card?", tenant="BANK-x"), CTX)).label_set == "banking77"
    none = await agent.handle(ticket("Wo ist meine Karte? Ich warte seit Wochen.",
                                     tenant="acme"), CTX)  # fmt: skip
    assert (none.label, none.label_set, none.confidence, none.alternatives) == ("", "", 0.0, [])
    assert (none.urgency, none.urgency_source, none.language) == (3, "default", "de")
    assert agent.summarize(none) == "no label set for the tenant, urgency 3, de"


async def test_the_output_is_deterministic(agent: TriageAgent) -> None:
    item = ticket("what exchange rate do you use?")
    assert await agent.handle(item, CTX) == await agent.handle(item, CTX)


async def test_summarize_is_one_line_without_ticket_words(agent: TriageAgent) -> None:
    out = await agent.handle(ticket("someone stole my card at the station"), CTX)
    line = agent.summarize(out)
    assert line == f"lost_or_stolen_card {out.confidence:.2f} (banking77), urgency 1, en"
    assert "station" not in line


async def test_a_telemetry_alert_is_refused(agent: TriageAgent) -> None:
    alert = TelemetryAlert(device="leaf1", window_start=T0, window_end=T0.replace(hour=11))
    with pytest.raises(PermanentError) as info:
        await agent.handle(make_item(alert), CTX)
    assert info.value.field == "$.task.type"


async def test_the_workflow_goes_on_after_triage(agent: TriageAgent) -> None:
    item = ticket("my card has not arrived")
    out = await agent.handle(item, CTX)
    advance = next_step(item.with_output("triage", out), "triage")
    assert advance.step is not None
    assert advance.step.name == "retrieve"


# -- published examples, through a real nats-server --------------------------------------


def acme_examples(labels: tuple[str, str]) -> bytes:
    a, b = labels
    rows = [Example(f"the {w} printer on floor {i} is jammed", a, 1) for i, w in
            enumerate(["red", "blue", "old", "new", "big"] * 4)]  # fmt: skip
    rows += [Example(f"please reset my {w} password number {i}", b, 3) for i, w in
             enumerate(["mail", "vpn", "wifi", "sso", "erp"] * 4)]  # fmt: skip
    return examples_to_jsonl(rows)


@pytest.mark.timeout(300)
async def test_published_examples_are_loaded_then_followed(
    js: JetStreamContext, site: str, cache: ModelCache, mini_sets: list[LabelSet]
) -> None:
    artifacts = await SiteArtifacts.open(js, site, create=True)
    await artifacts.put("triage/acme", acme_examples(("printer", "password")),
                        {"tenants": "acme*,bank-special"})  # fmt: skip
    resources = AgentResources(site, js=js)
    agent = TriageAgent(cache=cache, bundled=mini_sets)
    await agent.setup(resources)
    assert len(resources.followers) == 1

    out = await agent.handle(ticket("the printer is jammed again", tenant="acme-eu"), CTX)
    assert (out.label_set, out.label, out.urgency_source) == ("acme", "printer", "model")
    # a published set takes precedence over a bundled one for the tenants it names
    special = await agent.handle(ticket("reset my password", tenant="bank-special"), CTX)
    assert (special.label_set, special.label) == ("acme", "password")
    assert (await agent.handle(ticket("card?", tenant="bank-eu"), CTX)).label_set == "banking77"

    # follow the bucket the way the runtime does, once its watch is live
    stop = asyncio.Event()
    seen: list[str] = []

    async def changed(name: str) -> None:
        seen.append(name)
        for callback in resources.followers:
            await callback(name)

    follow = asyncio.create_task(artifacts.follow(changed, stop=stop))
    try:

        async def watching() -> bool:
            await artifacts.put("kb/ping", b"x")
            return "kb/ping" in seen

        await assert_eventually(watching, timeout_s=20, interval_s=0.3)
        await artifacts.put("triage/acme", acme_examples(("hardware", "access")),
                            {"tenants": "acme*"})  # fmt: skip

        def relabelled() -> bool:
            route = agent.triager.route("acme-eu")
            return route is not None and route.model.labels == ("access", "hardware")

        await assert_eventually(relabelled, timeout_s=120)
        route = agent.triager.route("bank-special")
        assert route is not None
        assert route.name == "banking77"

        await artifacts.put("triage/broken", b"not json\n", {"tenants": "broken*"})
        await artifacts.delete("triage/acme")
        await assert_eventually(lambda: agent.triager.route("acme-eu") is None, timeout_s=60)
        assert agent.triager.route("broken-1") is None  # logged and skipped
        assert [r.name for r in agent.triager.routes] == ["banking77", "endava"]
    finally:
        stop.set()
        await follow


async def test_a_site_without_a_bucket_serves_the_bundled_sets(
    js: JetStreamContext, site: str, cache: ModelCache, mini_sets: list[LabelSet]
) -> None:
    resources = AgentResources(site, js=js)
    agent = TriageAgent(cache=cache, bundled=mini_sets)
    await agent.setup(resources)
    assert [r.name for r in agent.triager.routes] == ["banking77", "endava"]


# -- the bundled models (slow: trains banking77 in full) -----------------------------------


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_bundled_banking77_on_obvious_queries(tmp_path: Path) -> None:
    agent = TriageAgent(cache=ModelCache(tmp_path), bundled=bundled_label_sets()[:1])
    await agent.setup(AgentResources("lab"))
    cases = {
        "I still have not received my new card, when will it arrive?": "card_arrival",
        "My card was stolen, please block it": "lost_or_stolen_card",
        "There is a payment on my card that I did not make": "card_payment_not_recognised",
        "The ATM kept my card": "card_swallowed",
        "How do I change my PIN?": "change_pin",
        "I want to close my account": "terminate_account",
    }
    for body, label in cases.items():
        out = await agent.handle(ticket(body), CTX)
        assert out.label == label, (body, out)
        assert out.confidence > 0.3
    assert agent.cache.trained == 1
