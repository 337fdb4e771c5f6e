"""The policy in NATS KV: publish, read, refuse invalid files, live updates, history.

Every test uses its own bucket (``sitemesh_policy`` is the production name).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from nats.js import JetStreamContext

from sitemesh.errors import PolicyError
from sitemesh.policy import (
    POLICY_BUCKET,
    POLICY_KEY,
    DecisionFacts,
    DetectedEntity,
    LivePolicy,
    Policy,
    PolicyRouter,
    PolicyStore,
    policy_key,
)
from sitemesh.schemas import SupportTicket
from tests.conftest import assert_eventually

V1 = """
version = "kv-1"

[[rule]]
id = "cards-on-site"
description = "cards stay"
action = "pin_edge"
match = { data_classes = ["restricted"] }
"""

V2 = """
version = "kv-2"

[[rule]]
id = "internal-to-cloud"
description = "internal content may use the cloud"
action = "allow_cloud"
match = { data_classes = ["internal"] }
"""

INVALID = """
version = "kv-bad"

[[rule]]
id = "ok"
description = "fine"
action = "pin_edge"

[[rule]]
id = "typo"
description = "wrong action"
action = "cloud"
"""

INTERNAL = DecisionFacts(kind="support_ticket", data_class="internal")


@pytest.fixture
async def store(js: JetStreamContext) -> AsyncIterator[PolicyStore]:
    s = PolicyStore(js, bucket="policy_" + uuid.uuid4().hex[:8])
    yield s
    await js.delete_key_value(s.bucket)


async def test_publish_then_current_has_the_same_version(store: PolicyStore) -> None:
    version = await store.publish(V1)
    assert version == Policy.from_toml(V1).version
    current = await store.current()
    assert current.version == version
    assert current.label == "kv-1"
    assert current.source == f"{store.bucket}/{POLICY_KEY}@1"
    # the stored value is the text as published, comments and all
    entry = await (await store.kv()).get(POLICY_KEY)
    assert entry.value == V1.encode()


async def test_empty_bucket_is_seeded_with_the_bundled_rules(store: PolicyStore) -> None:
    assert (await store.current()).version == Policy.load().version
    assert await store.seed() is False  # already there: not overwritten
    await store.publish(V1)
    assert await store.seed() is False
    assert (await store.current()).label == "kv-1"


async def test_invalid_policy_is_refused_naming_rule_and_field(store: PolicyStore) -> None:
    await store.publish(V1)
    with pytest.raises(PolicyError) as info:
        await store.publish(INVALID)
    message = str(info.value)
    assert "rule[1] (id='typo')" in message
    assert "$.action" in message
    assert (await store.current()).label == "kv-1"  # nothing stored
    assert [r.label for r in await store.history()] == ["kv-1"]


async def test_site_override_takes_precedence(store: PolicyStore) -> None:
    await store.publish(V1)
    v2 = await store.publish(V2, site="eu1")
    assert policy_key("eu1") == "rules.eu1"
    assert (await store.current(site="eu1")).version == v2
    assert (await store.current(site="us2")).label == "kv-1"
    assert (await store.current()).label == "kv-1"
    await store.remove_override("eu1")
    assert (await store.current(site="eu1")).label == "kv-1"


async def test_two_live_policies_follow_an_update(store: PolicyStore) -> None:
    v1 = await store.publish(V1)
    async with store.live() as a, LivePolicy(store, site="eu1") as b:
        assert a.version == b.version == v1
        assert a().decide(INTERNAL).rule_id == "default-deny-cloud"
        seen: list[str] = []
        a.on_change(lambda p: seen.append(p.version))

        v2 = await store.publish(V2)
        await assert_eventually(lambda: a.version == b.version == v2, timeout_s=5)
        assert a().decide(INTERNAL).action == "allow_cloud"
        assert seen == [v2]
        assert a.revision == 2

        # an override for eu1 only
        v3 = await store.publish(V1.replace("kv-1", "kv-3"), site="eu1")
        await b.wait_for_version(v3, timeout_s=5)
        assert a.version == v2

        # deleting the override falls back to the global rules
        await store.remove_override("eu1")
        await b.wait_for_version(v2, timeout_s=5)


async def test_live_policy_keeps_the_last_valid_policy(store: PolicyStore) -> None:
    v1 = await store.publish(V1)
    async with store.live() as live:
        kv = await store.kv()
        await kv.put(POLICY_KEY, INVALID.encode())  # around publish(): not validated
        await assert_eventually(lambda: live.last_error is not None, timeout_s=5)
        assert "rule[1] (id='typo')" in (live.last_error or "")
        assert live.version == v1
        v2 = await store.publish(V2)
        await live.wait_for_version(v2, timeout_s=5)
        assert live.last_error is None
        # a reader that is not live refuses the invalid text outright
        await kv.put(POLICY_KEY, INVALID.encode())
        with pytest.raises(PolicyError, match="typo"):
            await store.current()


async def test_deleting_rules_falls_back_to_the_bundled_default(store: PolicyStore) -> None:
    await store.publish(V1)
    async with store.live() as live:
        await (await store.kv()).delete(POLICY_KEY)
        await live.wait_for_version(Policy.load().version, timeout_s=5)


async def test_history_is_kept(store: PolicyStore) -> None:
    versions = []
    for n in range(7):
        versions.append(await store.publish(V1.replace("kv-1", f"kv-1.{n}")))
    history = await store.history()
    assert [r.version for r in history] == versions
    assert [r.revision for r in history] == list(range(1, 8))
    assert [r.label for r in history][-1] == "kv-1.6"
    assert all(r.key == POLICY_KEY and r.created is not None for r in history)
    assert await store.history(site="nowhere") == []
    status = await (await store.kv()).status()
    assert status.history >= 5


async def test_an_earlier_version_is_found_in_the_history(store: PolicyStore) -> None:
    first = await store.publish(V1)
    site_only = await store.publish(V2, site="eu1")
    await store.publish(V1.replace("kv-1", "kv-1.later"))
    found = await store.find(first, site="eu1")
    assert found is not None
    assert (found.version, found.label) == (first, "kv-1")
    in_override = await store.find(site_only, site="eu1")
    assert in_override is not None
    assert in_override.label == "kv-2"
    assert await store.find(site_only) is None  # only the site's override holds it
    assert await store.find("0" * 16, site="eu1") is None


class _NoPii:
    """A scanner stand-in: finds nothing (the router test covers Presidio)."""

    def load(self) -> None:
        pass

    def scan(self, text: str) -> list[DetectedEntity]:
        return []

    def scan_many(self, texts: list[str]) -> list[list[DetectedEntity]]:
        return [[] for _ in texts]


async def test_router_follows_a_live_policy(store: PolicyStore) -> None:
    live = store.live()
    with pytest.raises(RuntimeError, match="not started"):
        live()
    await live.start()
    try:
        router = PolicyRouter(live.policy, _NoPii(), policy_source=live)  # type: ignore[arg-type]
        ticket = SupportTicket(body="How do I reset my router?")
        first = router.decide(ticket, "t-1")
        assert (first.rule_id, first.policy_version) == ("internal-on-site", live.version)
        v2 = await store.publish(V2)
        await live.wait_for_version(v2, timeout_s=5)
        second, third = router.decide_many([(ticket, "t-2"), (ticket, "t-3")])
        assert (second.action, second.policy_version) == ("allow_cloud", v2)
        assert third.policy_version == v2
        assert router.policy is live.policy
    finally:
        await live.shutdown()
        await live.shutdown()  # safe twice
    await live.run()  # returns at once after shutdown
    assert live.version == v2  # the last policy stays readable


def test_defaults() -> None:
    assert POLICY_BUCKET == "sitemesh_policy"
    assert POLICY_KEY == "rules"
    with pytest.raises(ValueError, match="5-64"):
        PolicyStore(None, history=2)  # type: ignore[arg-type]
