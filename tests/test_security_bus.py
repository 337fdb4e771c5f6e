"""Least privilege and TLS, enforced by real nats-servers from the generated configs.

One hub and two sites (eu1, us1) run for the whole module with ``sitemesh certs``
(a development CA, mutual TLS on every client port and on the leaf link) and
``sitemesh creds`` (one NKey identity per role, permissions from the subject map).
Each role connects as a worker would (its seed, its ``_INBOX.<role>`` prefix, a
client certificate) and does its job; then what it must not do is refused by the
server, which we observe as the server's permissions-violation error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import urllib.request
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import StreamConfig

from sitemesh.bus import Subjects, find_nats_server, pending_kv, provision
from sitemesh.bus._subjects import CLOUD_IN
from sitemesh.cloud_node._run import provision_cloud
from sitemesh.config import BusSettings
from sitemesh.errors import BusConnectionError
from sitemesh.policy import PolicyStore
from sitemesh.policy._kv import _bundled_text
from sitemesh.topology import (
    Security,
    Topology,
    TopologySpec,
    client_options,
    connect_as,
    generate_creds,
    generate_dev_certs,
    generate_dev_pki,
)
from tests.conftest import assert_eventually

pytestmark = pytest.mark.timeout(90)

BUS = BusSettings(max_bytes=4 * 1024 * 1024, duplicate_window_s=120, ack_wait_s=2)
SITES = ["eu1", "us1"]
EU1 = Subjects("eu1")


class Session:
    """A client logged in as one identity, with the server's async errors collected."""

    def __init__(self, nc: Client, errors: asyncio.Queue[Exception]) -> None:
        self.nc = nc
        self.js = nc.jetstream(timeout=2)
        self.errors = errors

    async def violation(self, timeout_s: float = 3.0) -> str:
        """The next permissions violation the server reported (lower case)."""
        while True:
            err = await asyncio.wait_for(self.errors.get(), timeout_s)
            if "permissions violation" in str(err).lower():
                return str(err).lower()

    async def denied_publish(self, subject: str) -> None:
        await self.nc.publish(subject, b"x")
        await self.nc.flush()
        text = await self.violation()
        assert "publish" in text
        assert subject.lower() in text

    async def denied_subscribe(self, subject: str) -> None:
        await self.nc.subscribe(subject)
        await self.nc.flush()
        text = await self.violation()
        assert "subscription" in text
        assert subject.lower() in text


@pytest.fixture(scope="module")
async def topo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Topology]:
    """Hub + eu1 + us1 with TLS and per-role identities; site and hub streams provisioned."""
    root = tmp_path_factory.mktemp("secure")
    generate_dev_certs(root / "certs", SITES)
    generate_creds(root / "creds", SITES)
    security = Security.from_dirs(SITES, certs_dir=root / "certs", creds_dir=root / "creds")
    spec = TopologySpec.for_sites(SITES, root / "topology")
    async with Topology(
        spec, binary=find_nats_server(None), bus=BUS, security=security, stalled_after_s=1.0
    ) as t:
        for site in SITES:
            prov = await t.connect_identity(site, "provisioner")
            await provision(prov.jetstream(), Subjects(site), BUS)  # the buckets too
        hub = await t.connect_identity("hub", "provisioner")
        await provision_cloud(hub.jetstream(), BUS)
        yield t


async def login(topo: Topology, server: str, role: str, *, tls: Any = "default") -> Session:
    """Connect as ``role``'s identity on ``server`` collecting async errors."""
    assert topo.security is not None
    assert topo.security.creds is not None
    ident = topo.security.creds.get(server, role)
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(exc: Exception) -> None:
        errors.put_nowait(exc)

    if server == "hub":
        host, port = topo.spec.hub.host, topo.spec.hub.client_port
    else:
        host, port = topo.spec.site(server).host, topo.spec.site(server).client_port
    ctx = topo.security.tls_context(server) if tls == "default" else tls
    nc = await nats.connect(
        servers=[f"nats://{host}:{port}"],
        name=f"pytest-{role}@{server}",
        error_cb=on_error,
        allow_reconnect=False,
        connect_timeout=2,
        tls=ctx,
        **client_options(role=role, seed_file=ident.seed_file),  # type: ignore[arg-type]
    )
    topo._clients.append(nc)
    return Session(nc, errors)


async def feed(topo: Topology, site: str, subject: str) -> str:
    """Publish one message on ``subject`` as the site's operator; returns its payload."""
    op = await login(topo, site, "operator")
    data = uuid.uuid4().hex
    await op.js.publish(subject, data.encode(), headers={"Nats-Msg-Id": data})
    return data


async def pull_one(s: Session, stream: str, durable: str, expected: str) -> None:
    """Pull from ``durable`` until ``expected`` arrives; ack everything pulled."""
    await s.js.consumer_info(stream, durable)
    sub = await s.js.pull_subscribe_bind(durable, stream)
    seen: list[str] = []
    for _ in range(20):
        try:
            msgs = await sub.fetch(10, timeout=1)
        except NatsTimeoutError:
            continue
        for m in msgs:
            seen.append(m.data.decode())
            await m.ack()
        if expected in seen:
            break
    await s.nc.flush()
    assert expected in seen
    await sub.unsubscribe()


# -- each role can do its job ------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "outputs"),
    [
        ("router", ["work.retriever", "work.planner", "event", "dlq.router", "dlq.planner"]),
        ("retriever", ["work.diagnostics", "event", "dlq.retriever"]),
        ("diagnostics", ["work.planner", "event", "dlq.diagnostics"]),
        ("planner", ["work.validator", "event", "dlq.planner"]),
        ("validator", ["work.escalation", "event", "dlq.validator"]),
        ("escalation", ["out.escalation", "event", "answer", "dlq.escalation"]),
    ],
)
async def test_worker_role_pulls_its_consumer_and_publishes_its_outputs(
    topo: Topology, role: str, outputs: list[str]
) -> None:
    stream, durable, _ = EU1.consumer_for(role)
    subject = EU1.task("ticket") if role == "router" else EU1.work(role)
    data = await feed(topo, "eu1", subject)
    s = await login(topo, "eu1", role)
    await pull_one(s, stream, durable, data)
    tid = uuid.uuid4().hex
    for out in outputs:
        kind, _, arg = out.partition(".")
        if kind == "event":  # its own events only (sm.v1.event.<site>.*.<role>)
            subj = EU1.event(tid, role)
        elif kind == "answer":  # the final answer: the escalation role alone
            subj = EU1.answer(tid, "default")
        else:
            subj = {"work": EU1.work, "dlq": EU1.dlq, "out": EU1.out}[kind](arg)
        ack = await s.js.publish(subj, b"{}", headers={"Nats-Msg-Id": f"{tid}:{out}"})
        assert ack.seq > 0
    assert s.errors.empty()


async def test_router_reads_and_follows_the_policy_bucket(topo: Topology) -> None:
    s = await login(topo, "eu1", "router")
    store = PolicyStore(s.js)
    live = await store.live("eu1").start()  # seeds the provisioned bucket, then watches
    try:
        version = await store.publish(_bundled_text(), site="eu1")
        await live.wait_for_version(version)
    finally:
        await live.shutdown()
    assert s.errors.empty()
    # only the provisioning creates buckets
    await s.denied_publish("$JS.API.STREAM.CREATE.KV_sitemesh_policy")
    await s.denied_publish("$JS.API.STREAM.CREATE.KV_sitemesh_policy_other")


async def test_escalation_cannot_create_its_pending_bucket(topo: Topology) -> None:
    s = await login(topo, "eu1", "escalation")
    await s.denied_publish("$JS.API.STREAM.CREATE.KV_sm_pending_eu1")


async def test_router_sweeps_exhausted_messages(topo: Topology) -> None:
    """The max-deliveries sweeper: advisories consumer, the original message, any DLQ."""
    data = await feed(topo, "eu1", EU1.work("planner"))
    s = await login(topo, "eu1", "router")
    await s.js.consumer_info(EU1.advisories_stream, "deadletter")
    last = await login(topo, "eu1", "operator")
    seq = (await last.js.get_last_msg(EU1.work_stream, EU1.work("planner"))).seq
    assert seq is not None
    msg = await s.js.get_msg(EU1.work_stream, seq)
    assert msg.data == data.encode()
    ack = await s.js.publish(EU1.dlq("planner"), b"{}")
    assert ack.stream == EU1.dlq_stream
    assert s.errors.empty()


async def test_router_reads_the_work_streams_fill_and_nothing_more(topo: Topology) -> None:
    """AdmissionGate: the work stream's info (its fill), not the others', no purge."""
    s = await login(topo, "eu1", "router")
    info = await s.js.stream_info(EU1.work_stream)
    assert info.config.name == EU1.work_stream
    await s.denied_publish("$JS.API.STREAM.INFO." + EU1.events_stream)
    await s.denied_publish("$JS.API.STREAM.PURGE." + EU1.work_stream)


async def test_escalation_uses_pending_bucket_and_inbox(topo: Topology) -> None:
    s = await login(topo, "eu1", "escalation")
    kv = await pending_kv(s.js, "eu1")
    await kv.put("t1", b"draft")
    assert (await kv.get("t1")).value == b"draft"
    relay = await login(topo, "eu1", "relay")  # EGRESS: the relay republishes answers
    answer = uuid.uuid4().hex
    ack = await relay.js.publish(EU1.inbox(answer), answer.encode())
    assert ack.stream == EU1.inbox_stream
    # the provisioning (provision_inbox) made the inbox consumer; escalation binds it
    await pull_one(s, EU1.inbox_stream, "inbox", answer)
    assert s.errors.empty()
    assert relay.errors.empty()
    # and may not create (or re-create) one: only provisioning creates consumers
    await s.denied_publish(f"$JS.API.CONSUMER.CREATE.{EU1.inbox_stream}.inbox")
    await s.denied_publish(f"$JS.API.CONSUMER.DURABLE.CREATE.{EU1.inbox_stream}.inbox")


async def test_recorder_reads_events_and_dead_letters(topo: Topology) -> None:
    ev = await feed(topo, "eu1", EU1.event(uuid.uuid4().hex, "router"))
    dl = await feed(topo, "eu1", EU1.dlq("planner"))
    s = await login(topo, "eu1", "recorder")
    await pull_one(s, EU1.events_stream, "recorder", ev)
    await pull_one(s, EU1.dlq_stream, "recorder", dl)
    await s.denied_publish(EU1.event("x", "recorder"))


async def test_client_submits_tasks_and_reads_answers(topo: Topology) -> None:
    s = await login(topo, "eu1", "client")
    sub = await s.nc.subscribe(EU1.all_answers)
    ack = await s.js.publish(EU1.task("ticket"), b"{}")
    assert ack.stream == EU1.tasks_stream
    await sub.unsubscribe()
    await s.denied_publish("$JS.API.STREAM.INFO." + EU1.tasks_stream)
    await s.denied_subscribe(EU1.all_events)  # other events: not a client's business


async def test_operator_is_broad_inside_the_site_but_never_publishes_the_outbox(
    topo: Topology,
) -> None:
    s = await login(topo, "eu1", "operator")
    info = await s.js.stream_info(EU1.tasks_stream)
    assert info.config.name == EU1.tasks_stream
    await s.denied_publish(EU1.out("escalation"))
    # nor subscribe there: that interest would let a push consumer it creates
    # (deliver_subject on the outbox) copy a stream into the outbox
    await s.denied_subscribe(EU1.all_out)


async def test_provisioner_creates_streams_but_moves_no_data(topo: Topology) -> None:
    s = await login(topo, "eu1", "provisioner")
    name = f"T{uuid.uuid4().hex[:8]}"
    await s.js.add_stream(StreamConfig(name=name, subjects=[f"x.{name}"], max_bytes=1024 * 1024))
    await s.denied_publish(EU1.task("ticket"))
    await s.denied_subscribe(EU1.all_tasks)


async def test_cloud_synthesiser_pulls_cloud_in_and_answers(topo: Topology) -> None:
    esc = await login(topo, "eu1", "escalation")
    incident = uuid.uuid4().hex
    await esc.js.publish(
        EU1.out("escalation"), incident.encode(), headers={"Nats-Msg-Id": incident}
    )
    s = await login(topo, "hub", "synthesiser")
    await pull_one(s, CLOUD_IN, "synthesiser", incident)
    ack = await s.js.publish(EU1.inbox(incident), b"{}")
    assert ack.stream == "CLOUD_OUT"
    op = await login(topo, "eu1", "operator")

    async def relayed() -> bool:  # CLOUD_OUT -> INBOX_LANDING -> relay identity -> INBOX
        try:
            await op.js.get_last_msg(EU1.inbox_stream, EU1.inbox(incident))
        except nats.js.errors.NotFoundError:
            return False
        return True

    await assert_eventually(relayed, 15)
    await s.js.stream_info(CLOUD_IN)  # restarting stalled sources reads it
    await s.denied_publish("$JS.API.STREAM.DELETE." + CLOUD_IN)
    await s.denied_publish(EU1.out("escalation"))


async def test_relay_moves_answers_only(topo: Topology) -> None:
    s = await login(topo, "eu1", "relay")
    await s.js.consumer_info(EU1.inbox_landing_stream, "relay")
    await s.denied_publish(EU1.out("escalation"))
    await s.denied_publish("$JS.API.STREAM.DELETE." + EU1.outbox_stream)


# -- what a role cannot do ----------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        EU1.out("escalation"),  # the outbox: only the privacy path
        EU1.task("x"),  # submitting tasks
        EU1.dlq("router"),  # another role's dead letters
        "$JS.API.CONSUMER.MSG.NEXT." + EU1.work_stream + ".planner",  # the planner's input
        "$JS.API.STREAM.INFO." + EU1.tasks_stream,
        "$JS.API.STREAM.PURGE." + EU1.work_stream,
        "$JS.API.CONSUMER.CREATE." + EU1.tasks_stream,
        "$JS.ACK." + EU1.work_stream + ".planner.1.1.1.1.0",
    ],
)
async def test_retriever_cannot_publish_outside_its_set(topo: Topology, subject: str) -> None:
    s = await login(topo, "eu1", "retriever")
    await s.denied_publish(subject)


@pytest.mark.parametrize("subject", [EU1.all_tasks, EU1.all_work, "_INBOX.>", "_INBOX.router.>"])
async def test_retriever_cannot_subscribe_outside_its_inbox(topo: Topology, subject: str) -> None:
    s = await login(topo, "eu1", "retriever")
    await s.denied_subscribe(subject)


async def test_retriever_cannot_read_another_sites_streams(topo: Topology) -> None:
    us1 = Subjects("us1")
    s = await login(topo, "eu1", "retriever")
    # through the JetStream domain API, from its own site
    await s.denied_publish(f"$JS.us1.API.STREAM.INFO.{us1.tasks_stream}")
    await s.denied_publish(f"$JS.us1.API.CONSUMER.MSG.NEXT.{us1.work_stream}.retriever")
    await s.denied_publish(f"$JS.API.CONSUMER.MSG.NEXT.{us1.work_stream}.retriever")
    # and its key is no user at us1 or at the hub
    assert topo.security is not None
    for server in ("us1", "hub"):
        with pytest.raises((nats.errors.Error, OSError)):
            await _login_with(topo, server, topo.security.creds.get("eu1", "retriever").seed_file)  # type: ignore[union-attr]


async def _login_with(topo: Topology, server: str, seed_file: Path) -> Client:
    assert topo.security is not None
    host_port = (
        (topo.spec.hub.host, topo.spec.hub.client_port)
        if server == "hub"
        else (topo.spec.site(server).host, topo.spec.site(server).client_port)
    )
    nc = await nats.connect(
        servers=[f"nats://{host_port[0]}:{host_port[1]}"],
        allow_reconnect=False,
        max_reconnect_attempts=0,
        connect_timeout=2,
        tls=topo.security.tls_context(server),
        **client_options(role="retriever", seed_file=seed_file),  # type: ignore[arg-type]
    )
    topo._clients.append(nc)
    return nc


# -- who may connect at all ---------------------------------------------------------------


async def test_client_without_credentials_is_refused(topo: Topology) -> None:
    assert topo.security is not None
    s = topo.spec.site("eu1")
    with pytest.raises(BusConnectionError):
        await connect_as(
            s.host,
            s.client_port,
            None,
            name="anon",
            timeout_s=3,
            tls=topo.security.tls_context("eu1"),
        )


async def test_client_with_a_certificate_from_another_ca_is_refused(
    topo: Topology, tmp_path: Path
) -> None:
    assert topo.security is not None
    assert topo.security.creds is not None
    rogue = generate_dev_pki(
        tmp_path / "rogue", servers=[], clients=["client-eu1"], ca_name="rogue"
    )
    ctx = ssl.create_default_context(cafile=str(topo.security.client_tls["eu1"].ca_file))
    files = rogue.files("client-eu1")
    ctx.load_cert_chain(str(files.cert_file), str(files.key_file))
    with pytest.raises((nats.errors.Error, OSError, TimeoutError)):  # valid identity, wrong cert
        await asyncio.wait_for(login(topo, "eu1", "retriever", tls=ctx), 5)


async def test_client_without_a_certificate_or_without_tls_is_refused(topo: Topology) -> None:
    assert topo.security is not None
    no_cert = ssl.create_default_context(cafile=str(topo.security.client_tls["eu1"].ca_file))
    for ctx in (no_cert, None):
        with pytest.raises((nats.errors.Error, OSError, TimeoutError)):
            await asyncio.wait_for(login(topo, "eu1", "retriever", tls=ctx), 5)


# -- the leaf link ------------------------------------------------------------------------


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=2) as resp:  # our own http:// URL
        data: dict[str, Any] = json.loads(resp.read())
    return data


async def test_leaf_links_use_mutual_tls(topo: Topology) -> None:
    hub = topo.spec.hub.monitor_url
    leafs = {leaf["name"] for leaf in _get(f"{hub}/leafz")["leafs"]}
    assert leafs == {"site-eu1", "site-us1"}
    conns = _get(f"{hub}/connz?auth=1")["connections"]
    for site in SITES:
        (leaf,) = [c for c in conns if c.get("authorized_user") == f"leaf-{site}"]
        assert leaf["tls_version"] in ("1.2", "1.3")
        assert leaf["tls_cipher_suite"]
        assert [p["subject"] for p in leaf["tls_peer_certs"]] == [f"CN=leaf-{site}"]
    varz = _get(f"{hub}/varz")
    assert varz["leaf"]["tls_required"] is True
    assert varz["leaf"]["tls_verify"] is True


async def test_outbox_still_crosses_the_secured_link(topo: Topology) -> None:
    esc = await login(topo, "eu1", "escalation")
    cloud = await topo.connect_hub("pytest-cloud")
    before = (await cloud.jetstream().stream_info(CLOUD_IN)).state.messages
    await esc.js.publish(EU1.out("escalation"), b"{}", headers={"Nats-Msg-Id": uuid.uuid4().hex})

    async def arrived() -> bool:
        return (await cloud.jetstream().stream_info(CLOUD_IN)).state.messages > before

    await assert_eventually(arrived, 10)


async def test_no_secret_reaches_the_logs(topo: Topology, caplog: pytest.LogCaptureFixture) -> None:
    """Connecting, working and being refused log no seed, password or private key."""
    assert topo.security is not None
    assert topo.security.creds is not None
    caplog.set_level(logging.DEBUG)
    nc = await topo.connect_identity("eu1", "planner")
    await nc.publish(EU1.out("escalation"), b"x")  # refused: logged by connect_as
    await nc.flush()
    await topo.connect_site("eu1", "pytest-admin")
    await asyncio.sleep(0.2)  # let the async -ERR reach the error callback
    secrets = [i.seed_file.read_text().strip() for i in topo.security.creds.identities]
    for s in topo.spec.sites:
        for c in (s.site, s.egress, s.leaf):
            assert c is not None
            secrets.append(c.password.get_secret_value())
    assert "permissions violation" in caplog.text.lower()
    for secret in secrets:
        assert secret not in caplog.text
