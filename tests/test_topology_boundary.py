"""The site boundary, enforced by real nats-servers: isolation, the JS API hole, store-and-forward.

Every test runs a hub and a leaf site on free ports with temp stores. Hub-side
clients connect as the cloud user in ``CLOUD``, the only hub account a leaf can
reach (leaf users are ``CLOUD`` users; ``SYS`` is never bridged).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import ConsumerConfig
from nats.js.errors import NotFoundError, ServiceUnavailableError

from sitemesh.bus import NatsServer, Subjects, find_nats_server, provision
from sitemesh.config import BusSettings
from sitemesh.topology import (
    CLOUD_IN,
    CLOUD_OUT,
    Topology,
    TopologySpec,
    connect_as,
    render_hub_config,
    render_site_config,
    run_up,
)
from tests.conftest import assert_eventually, stream_messages

pytestmark = pytest.mark.timeout(60)

BUS = BusSettings(max_bytes=4 * 1024 * 1024, duplicate_window_s=120, ack_wait_s=2)
"""Small streams (JetStream reserves max_bytes per stream)."""

EU1 = Subjects("eu1")
REFUSED = (NotFoundError, ServiceUnavailableError, NoRespondersError, NatsTimeoutError)
"""How a refused JetStream API call ends: not found (account split), no responders
or timeout (the leaf filter drops the request)."""

NO_ANSWER = (ServiceUnavailableError, NoRespondersError, NatsTimeoutError)

PII = b"Jane Doe, +44 20 7946 0958, jane.doe@example.com"


@pytest.fixture
async def topo(tmp_path: Path) -> AsyncIterator[Topology]:
    """Hub + site eu1, provisioned, inbox relay running; eu1's site streams provisioned."""
    spec = TopologySpec.for_sites(["eu1"], tmp_path)
    async with Topology(spec, binary=find_nats_server(None), bus=BUS, stalled_after_s=1.0) as t:
        site = await t.connect_site("eu1", "pytest-provision")
        await provision(site.jetstream(), EU1, BUS)
        yield t


async def _hub_tap(hub: Client) -> list[Msg]:
    seen: list[Msg] = []

    async def on_msg(msg: Msg) -> None:
        seen.append(msg)

    await hub.subscribe(">", cb=on_msg)
    await hub.flush()
    return seen


async def test_only_outbox_crosses_the_leaf(topo: Topology) -> None:
    hub = await topo.connect_hub("pytest-hub-tap")
    seen = await _hub_tap(hub)
    site = await topo.connect_site("eu1", "pytest-site")
    sjs = site.jetstream()
    # the interest of the hub's `>` reaches the site before anything is published
    await assert_eventually(lambda: topo.leaf_connected("eu1"))
    await asyncio.sleep(0.2)  # subscription propagation over the leaf (no event to await)

    await site.publish(EU1.work("retriever"), PII)
    await site.publish(EU1.task("x"), PII)
    await site.publish("anything.at.all", PII)
    await sjs.publish(EU1.work("retriever"), PII, headers={"Nats-Msg-Id": "w1"})
    await sjs.publish(EU1.task("support_ticket"), PII, headers={"Nats-Msg-Id": "t1"})
    await site.publish(EU1.event("t1", "router"), PII)
    await site.publish(EU1.inbox("t1"), PII)  # raw inbox traffic never goes out either
    ack = await sjs.publish(EU1.out("escalation"), b"anonymised", headers={"Nats-Msg-Id": "o1"})
    assert (ack.stream, ack.domain) == (EU1.outbox_stream, "eu1")
    await site.flush()

    def outbox_seen() -> bool:
        return any(m.subject == EU1.out("escalation") for m in seen)

    await assert_eventually(outbox_seen, 5, msg="positive control: the outbox event")
    hjs = hub.jetstream()
    await assert_eventually(
        lambda: stream_messages(hjs, CLOUD_IN, EU1.all_out), 5, msg="sourced into CLOUD_IN"
    )
    await asyncio.sleep(0.3)  # anything still in flight would arrive now
    leaked = [m.subject for m in seen if PII in m.data]
    assert leaked == []
    subjects = {m.subject for m in seen}
    assert not {s for s in subjects if s.startswith("sm.v1.") and ".out." not in s}
    assert "anything.at.all" not in subjects


async def test_hub_cannot_reach_site_jetstream(topo: Topology) -> None:
    site = await topo.connect_site("eu1", "pytest-site")
    await site.jetstream().publish(EU1.task("support_ticket"), PII, headers={"Nats-Msg-Id": "t"})
    await site.jetstream().publish(EU1.out("escalation"), b"anon", headers={"Nats-Msg-Id": "o"})
    hub = await topo.connect_hub("pytest-hub")
    remote = hub.jetstream(domain="eu1", timeout=1.0)

    for stream in (EU1.tasks_stream, EU1.work_stream, EU1.inbox_stream):
        with pytest.raises(REFUSED):
            await remote.stream_info(stream)
        with pytest.raises(REFUSED):
            await remote.add_consumer(stream, ConsumerConfig(name="steal"))
    with pytest.raises(REFUSED):
        await remote.get_msg(EU1.tasks_stream, seq=1)
    info = await remote.stream_info(EU1.outbox_stream)  # visible: the hub sources it
    assert info.state.messages == 1
    with pytest.raises(NO_ANSWER):  # the leaf filter: read-only
        await remote.purge_stream(EU1.outbox_stream)


def _plain_leaf_site_config(spec: TopologySpec, account: str) -> str:
    """eu1's config with a leaf remote bound to ``account`` and no deny lists."""
    s = spec.site("eu1")
    assert s.leaf is not None
    url = f"nats-leaf://{s.leaf.user}:{s.leaf.password.get_secret_value()}@127.0.0.1:"
    url += str(spec.hub.leafnode_port)
    return render_site_config(spec, "eu1", leaf=False) + (
        f'leafnodes: {{ remotes: [ {{ url: "{url}", account: "{account}" }} ] }}\n'
    )


@pytest.mark.parametrize(
    ("leaf_account", "hub_reads_tasks"),
    [("SITE", True), ("EGRESS", False)],
    ids=["plain-leaf-on-SITE-leaks", "account-split-alone-closes"],
)
async def test_account_split_is_what_closes_the_hole(
    tmp_path: Path, leaf_account: str, hub_reads_tasks: bool
) -> None:
    """Control: without the leaf filter, a leaf bound to SITE exposes TASKS to the hub.

    With the same (unfiltered) hub, binding EGRESS instead makes TASKS "stream not
    found"; so the isolation test above is known to be able to fail.
    """
    spec = TopologySpec.for_sites(["eu1"], tmp_path).resolve()
    hub_spec, eu1 = spec.hub, spec.site("eu1")
    assert hub_spec.store_dir is not None
    assert eu1.store_dir is not None
    (tmp_path / "hub.conf").write_text(render_hub_config(spec, leaf_filter=False))
    (tmp_path / "eu1.conf").write_text(_plain_leaf_site_config(spec, leaf_account))
    binary = find_nats_server(None)
    async with (
        NatsServer(hub_spec.store_dir, binary=binary, port=hub_spec.client_port,
                   config=tmp_path / "hub.conf"),
        NatsServer(eu1.store_dir, binary=binary, port=eu1.client_port,
                   config=tmp_path / "eu1.conf"),
    ):  # fmt: skip
        site = await connect_as("127.0.0.1", eu1.client_port, eu1.site, name="site")
        hub = await connect_as("127.0.0.1", hub_spec.client_port, hub_spec.cloud, name="hub")
        try:
            await provision(site.jetstream(), EU1, BUS)
            await site.jetstream().publish(EU1.task("support_ticket"), PII)
            remote = hub.jetstream(domain="eu1", timeout=2.0)

            async def read_task() -> bytes | None:
                try:
                    return (await remote.get_msg(EU1.tasks_stream, seq=1)).data
                except REFUSED:
                    return None

            if hub_reads_tasks:
                assert await assert_eventually(read_task, 10) == PII  # the hole, reproduced
            else:
                await assert_eventually(  # the leaf is up and JS answers: "not found"
                    lambda: _domain_answers(remote, EU1.tasks_stream), 10
                )
                assert await read_task() is None
        finally:
            await site.close()
            await hub.close()


async def _domain_answers(js: object, stream: str) -> bool:
    try:
        await js.stream_info(stream)  # type: ignore[attr-defined]
    except NotFoundError:
        return True
    except NO_ANSWER:
        return False
    return False


async def test_outbox_is_stored_and_forwarded_while_hub_is_down(topo: Topology) -> None:
    site = await topo.connect_site("eu1", "pytest-site")
    sjs = site.jetstream()
    hub = await topo.connect_hub("pytest-hub")
    before = [f"before-{i}" for i in range(3)]
    for mid in before:
        await sjs.publish(EU1.out("escalation"), mid.encode(), headers={"Nats-Msg-Id": mid})
    hjs = hub.jetstream()
    await assert_eventually(lambda: _count(stream_messages(hjs, CLOUD_IN, EU1.all_out), 3), 10)

    await topo.stop_hub()
    during = [f"during-{uuid.uuid4().hex[:6]}-{i}" for i in range(20)]
    for mid in during:  # the site keeps working: PubAcks come from its own OUTBOX
        ack = await sjs.publish(EU1.out("escalation"), mid.encode(), headers={"Nats-Msg-Id": mid})
        assert ack.stream == EU1.outbox_stream
    # a retried publish while down is a duplicate, not a second copy
    dup = await sjs.publish(EU1.out("escalation"), b"x", headers={"Nats-Msg-Id": during[0]})
    assert dup.duplicate
    with pytest.raises(NotFoundError):  # workers cannot see (or purge) the outbox
        await sjs.stream_info(EU1.outbox_stream)
    egress = (await topo.connect_egress("eu1", "pytest-egress")).jetstream()
    assert (await egress.stream_info(EU1.outbox_stream)).state.messages == 23

    await topo.start_hub()
    await assert_eventually(lambda: _count(stream_messages(hjs, CLOUD_IN, EU1.all_out), 23), 15)
    got = [m.data.decode() for m in await stream_messages(hjs, CLOUD_IN, EU1.all_out)]
    assert got == before + during  # each exactly once, in order


async def _count(msgs: object, n: int) -> bool:
    return len(await msgs) >= n  # type: ignore[arg-type]


async def test_inbox_is_stored_and_forwarded_while_link_is_down(topo: Topology) -> None:
    hub = await topo.connect_hub("pytest-cloud")
    hjs = hub.jetstream()
    site = await topo.connect_site("eu1", "pytest-site")
    sjs = site.jetstream()
    await hjs.publish(EU1.inbox("t0"), b"answer-0", headers={"Nats-Msg-Id": "a0"})
    await hjs.publish("sm.v1.in.us1.t0", b"not for eu1", headers={"Nats-Msg-Id": "u0"})
    await assert_eventually(
        lambda: _count(stream_messages(sjs, EU1.inbox_stream, EU1.all_in), 1), 10
    )

    await topo.stop_leaf("eu1")  # the link (and the whole site server) is down
    answers = {f"a{i}": f"answer-{i}".encode() for i in range(1, 21)}
    for mid, data in answers.items():  # cloud agents keep answering
        ack = await hjs.publish(EU1.inbox(f"t{mid}"), data, headers={"Nats-Msg-Id": mid})
        assert ack.stream == CLOUD_OUT
    await topo.start_leaf("eu1")

    await assert_eventually(
        lambda: _count(stream_messages(sjs, EU1.inbox_stream, EU1.all_in), 21), 20
    )
    await asyncio.sleep(0.5)  # a duplicate would land now
    msgs = await stream_messages(sjs, EU1.inbox_stream, EU1.all_in)
    ids = [(m.headers or {}).get("Nats-Msg-Id") for m in msgs]
    assert ids == ["a0", *answers]  # exactly once each, in order; none for us1
    assert [m.data for m in msgs[1:]] == list(answers.values())
    relay = topo.relays["eu1"]
    assert relay.relayed >= 21


async def test_two_sites_see_only_their_own_slice(tmp_path: Path) -> None:
    spec = TopologySpec.for_sites(["eu1", "us1"], tmp_path)
    us1 = Subjects("us1")
    async with Topology(spec, bus=BUS, stalled_after_s=1.0) as topo:
        for name, subj in (("eu1", EU1), ("us1", us1)):
            site = await topo.connect_site(name, "pytest-site")
            await site.jetstream().publish(subj.out("escalation"), name.encode())
        hub = await topo.connect_hub("pytest-cloud")
        hjs = hub.jetstream()
        await assert_eventually(lambda: _count(stream_messages(hjs, CLOUD_IN, "sm.v1.out.>"), 2))
        got = sorted(m.data for m in await stream_messages(hjs, CLOUD_IN, "sm.v1.out.>"))
        assert got == [b"eu1", b"us1"]

        await hjs.publish(us1.inbox("t1"), b"for us1", headers={"Nats-Msg-Id": "u1"})
        await hjs.publish(EU1.inbox("t1"), b"for eu1", headers={"Nats-Msg-Id": "e1"})
        us1_site = (await topo.connect_site("us1", "pytest-us1")).jetstream()
        eu1_site = (await topo.connect_site("eu1", "pytest-eu1")).jetstream()
        await assert_eventually(lambda: stream_messages(us1_site, us1.inbox_stream, ">"))
        await assert_eventually(lambda: stream_messages(eu1_site, EU1.inbox_stream, ">"))
        assert [m.data for m in await stream_messages(us1_site, us1.inbox_stream, ">")] == [
            b"for us1"
        ]
        assert [m.data for m in await stream_messages(eu1_site, EU1.inbox_stream, ">")] == [
            b"for eu1"
        ]

        # a (compromised) site cannot read another site's answers from CLOUD_OUT
        egress = await topo.connect_egress("eu1", "pytest-egress")
        hub_from_eu1 = egress.jetstream(domain="hub", timeout=1.0)
        with pytest.raises(REFUSED):
            await hub_from_eu1.add_consumer(
                CLOUD_OUT, ConsumerConfig(name="peek", filter_subject=us1.all_in)
            )
        with pytest.raises(REFUSED):
            await hub_from_eu1.stream_info(CLOUD_IN)


async def test_run_up_prints_urls_and_stops(tmp_path: Path) -> None:
    lines: list[str] = []

    class Console:
        def print(self, *objects: object) -> None:
            lines.append(" ".join(map(str, objects)))

    stop = asyncio.Event()
    task = asyncio.create_task(run_up(["eu1", "us1"], tmp_path, Console(), stop=stop))
    await assert_eventually(lambda: any("configs:" in line for line in lines), 20)
    text = "\n".join(lines)
    assert "hub " in text
    assert "site eu1 (workers" in text
    assert "site us1 (inbox relay" in text
    stop.set()
    await asyncio.wait_for(task, 20)
    hub_conf = (tmp_path / "topology" / "conf" / "hub.conf").read_text()
    passwords = re.findall(r'password: "([^"]+)"', hub_conf)
    assert passwords  # positive control: the passwords are in the (0600) config
    assert not [pw for pw in passwords if pw in text], "run_up printed a password"
