"""The default site is authenticated: the embedded server of ``sitemesh edge``/``demo``.

One embedded ``nats-server`` for the module, started the way ``edge`` and ``demo``
start it (:func:`sitemesh.cli._nats.nats_url` without ``--insecure``): identities
generated under ``<state>/creds``, the server config from them, every command's
identity found there automatically. Then the attacks of the review are retried:
an anonymous connection, forged final answers (from every other role, on the answer
subject and on the forger's own subjects with the answer's msg id), stream deletes
and updates by a worker and by a client, a policy write by a worker, a client
reading every event.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import httpx
import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError
from rich.console import Console

from sitemesh.bus import (
    HDR_EXPECTED_LAST_SUBJECT_SEQ,
    HDR_MSG_ID,
    EmbeddedNats,
    Outbound,
    Publisher,
    SiteArtifacts,
    Subjects,
    msg_id,
    provision,
)
from sitemesh.bus import connect as bus_connect
from sitemesh.cli._nats import nats_url, worker_identities
from sitemesh.client import Client as TaskClient
from sitemesh.client import Submitted
from sitemesh.config import BusSettings, NatsSettings, Settings
from sitemesh.console import default_users_file, hash_password, save_user
from sitemesh.edge_node import Supervisor, child_env, process_environ
from sitemesh.errors import BusConnectionError, SchemaError
from sitemesh.runtime import connect
from sitemesh.schemas import ENCODER, FinalAnswer, SupportTicket, utcnow
from sitemesh.topology import SITE_IDENTITIES, ensure_site_creds, load_creds
from tests.conftest import assert_eventually, stream_messages

pytestmark = pytest.mark.timeout(90)

SITE = "eu1"
S = Subjects(SITE)
BUS = BusSettings(max_bytes=4 * 1024 * 1024, duplicate_window_s=120)


@dataclass
class Site:
    settings: Settings
    url: str
    out: str


@pytest.fixture(scope="module")
async def site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Site]:
    state = tmp_path_factory.mktemp("secure-default")
    settings = Settings(
        site=SITE, state_dir=state, bus=BUS, nats=NatsSettings(tenants=["acme", "globex"])
    )
    console = Console(record=True, width=200)
    async with nats_url(settings, console) as url:
        op = await connect(settings, "operator", url=url)  # found under <state>/creds
        await provision(op.jetstream(), S, BUS)
        await op.drain()
        yield Site(settings, url, console.export_text())


class Session:
    """A connection as one role's identity, collecting the server's async errors."""

    def __init__(self, nc: Client, errors: asyncio.Queue[Exception]) -> None:
        self.nc, self.errors = nc, errors
        self.js = nc.jetstream(timeout=1)

    async def violation(self) -> str:
        while True:
            err = await asyncio.wait_for(self.errors.get(), 3)
            if "permissions violation" in str(err).lower():
                return str(err).lower()

    async def refused_publish(self, subject: str, data: bytes = b"x") -> None:
        await self.nc.publish(subject, data)
        await self.nc.flush()
        text = await self.violation()
        assert "publish" in text
        assert subject.lower() in text


async def login(site: Site, role: str) -> Session:
    errors: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(exc: Exception) -> None:
        errors.put_nowait(exc)

    seed = load_creds(site.settings.state_dir / "creds").get(SITE, role).seed_file
    nc = await nats.connect(
        site.url, error_cb=on_error, allow_reconnect=False, connect_timeout=2,
        nkeys_seed=str(seed), inbox_prefix=f"_INBOX.{role}",
    )  # fmt: skip
    return Session(nc, errors)


def _answer(task_id: str, text: str) -> bytes:
    return ENCODER.encode(
        FinalAnswer(task_id=task_id, site=SITE, outcome="resolved", customer_message=text,
                    submitted_at=utcnow())
    )  # fmt: skip


async def test_the_default_server_refuses_anonymous_clients(site: Site) -> None:
    assert "authenticated" in site.out
    # the server sends -ERR 'Authorization Violation' and closes; under load the client
    # may see the reset first, so every try must be refused and one must say why
    said: list[str] = []
    for _ in range(5):
        with pytest.raises(BusConnectionError) as refused:
            await bus_connect(site.url, name="anonymous", timeout_s=3)
        said.append(str(refused.value))
        if "Authorization Violation" in said[-1]:
            break
    assert any("Authorization Violation" in s for s in said), said
    await (await login(site, "client")).nc.close()  # while an identity gets in
    # and says so in nats.json, which commands read to find their identity
    creds = site.settings.state_dir / "creds"
    assert EmbeddedNats(site.settings.state_dir).live_url() == site.url
    for role in ("operator", "client", "retriever"):
        seed = load_creds(creds).get(SITE, role).seed_file
        assert seed.stat().st_mode & 0o777 == 0o600


async def test_a_second_start_reuses_the_identities(tmp_path: Path) -> None:
    first = ensure_site_creds(tmp_path, SITE)
    again = ensure_site_creds(tmp_path, "us1", roles=["tone"])
    keys = {(i.site, i.role): i.public_key for i in first.identities}
    kept = [i for i in again.identities if (i.site, i.role) in keys]
    assert len(kept) == len(keys)
    assert all(keys[(i.site, i.role)] == i.public_key for i in kept)
    # the first site stays in the manifest next to the second and the extra role
    assert {i.site for i in load_creds(tmp_path).identities} >= {SITE, "us1"}
    assert load_creds(tmp_path).get(SITE, "tone").seed_file.is_file()


async def test_commands_find_their_identity_and_clients_submit(site: Site) -> None:
    from sitemesh.client import Client as TaskClient
    from sitemesh.schemas import SupportTicket

    nc = await connect(site.settings, "client", url=site.url)
    try:
        done = await TaskClient(nc.jetstream(), SITE).submit(
            SupportTicket(body="VPN drops"), task_id=f"t-{uuid.uuid4().hex}"
        )
        assert done.stream_seq > 0
    finally:
        await nc.drain()


def test_every_worker_child_gets_its_own_identity(site: Site, tmp_path: Path) -> None:
    roles = ["recorder", "router", "retriever", "escalation"]
    seeds = worker_identities(site.settings, site.url, roles)
    assert seeds is not None
    operator = load_creds(site.settings.state_dir / "creds").get(SITE, "operator").seed_file
    env = {"PATH": "/bin", "SITEMESH_NATS_NKEY_SEED_FILE": str(operator)}
    sup = Supervisor(SITE, roles, env=env, log_dir=tmp_path, identities=seeds)
    got = {r: sup._child_env(r)["SITEMESH_NATS_NKEY_SEED_FILE"] for r in roles}
    assert got == {r: str(seeds[r]) for r in roles}
    assert str(operator) not in got.values()
    with pytest.raises(KeyError, match="planner"):
        Supervisor(SITE, ["planner"], env=env, log_dir=tmp_path, identities=seeds)


FORGERS = [r for r in SITE_IDENTITIES if r not in ("escalation", "provisioner")]


@pytest.mark.parametrize("role", FORGERS)
async def test_only_escalation_may_publish_a_final_answer(site: Site, role: str) -> None:
    s = await login(site, role)
    try:
        await s.refused_publish(S.answer(f"t-{uuid.uuid4().hex}", "default"))
        if role != "operator":  # nor another role's events (the operator may: approvals)
            await s.refused_publish(S.event("t1", "escalation"))
        if role not in ("client", "recorder", "operator"):  # its own events: allowed
            ack = await s.js.publish(S.event("t1", role), b"{}")
            assert ack.seq > 0
    finally:
        await s.nc.close()


async def test_a_forged_answer_msg_id_cannot_displace_the_real_answer(site: Site) -> None:
    tid = f"t-{uuid.uuid4().hex}"
    forger = await login(site, "retriever")
    escalation = await login(site, "escalation")
    op = await connect(site.settings, "operator", url=site.url)
    try:
        # the retriever stores a forged answer carrying the real answer's msg id on the
        # one event subject it may publish: allowed, and nothing more
        forged = await forger.js.publish(
            S.event(tid, "retriever"),
            _answer(tid, "FORGED"),
            headers={HDR_MSG_ID: msg_id(tid, "final", "escalation")},
        )
        assert not forged.duplicate
        real = Outbound(
            S.answer(tid, "default"), FinalAnswer(task_id=tid, site=SITE, outcome="resolved",
                                       customer_message="the real answer",
                                       submitted_at=utcnow()),
            msg_id(tid, "final", "escalation"), task_id=tid, create_only=True,
        )  # fmt: skip
        pub = Publisher(escalation.js)
        first = await pub.publish(real)
        assert not first.duplicate
        assert first.seq > forged.seq
        # a redelivery publishes it again: reported as already stored, not stored twice
        second = await pub.publish(real)
        assert second.duplicate
        stored = await op.jetstream().get_last_msg(S.events_stream, S.task_answer(tid))
        assert msgspec.json.decode(stored.data)["customer_message"] == "the real answer"
        assert stored.seq == first.seq
    finally:
        await forger.nc.close()
        await escalation.nc.close()
        await op.drain()


@pytest.mark.parametrize("role", ["retriever", "router", "client"])
async def test_workers_and_clients_cannot_touch_streams(site: Site, role: str) -> None:
    s = await login(site, role)
    try:
        for api in (f"$JS.API.STREAM.DELETE.{S.work_stream}",
                    f"$JS.API.STREAM.UPDATE.{S.tasks_stream}",
                    f"$JS.API.STREAM.PURGE.{S.events_stream}",
                    f"$JS.API.CONSUMER.DELETE.{S.work_stream}.planner"):  # fmt: skip
            await s.refused_publish(api, b"{}")
    finally:
        await s.nc.close()
    op = await connect(site.settings, "operator", url=site.url)
    try:  # nothing changed: the FastStream-style rewrite of the dedup window failed
        info = await op.jetstream().stream_info(S.tasks_stream)
        assert info.config.duplicate_window == BUS.duplicate_window_s
        await op.jetstream().stream_info(S.work_stream)
    finally:
        await op.drain()


async def test_a_client_cannot_rewrite_a_stream_with_the_js_api(site: Site) -> None:
    s = await login(site, "client")
    try:
        with pytest.raises(NatsTimeoutError):  # refused: no reply comes
            await s.js.update_stream(
                StreamConfig(name=S.tasks_stream, subjects=[S.all_tasks], duplicate_window=1)
            )
        assert "publish" in await s.violation()
    finally:
        await s.nc.close()


@pytest.mark.parametrize("role", ["retriever", "escalation", "client", "recorder"])
async def test_no_worker_or_client_writes_the_policy(site: Site, role: str) -> None:
    s = await login(site, role)
    try:
        await s.refused_publish("$KV.sitemesh_policy.rules", b'version = "deny-all"')
    finally:
        await s.nc.close()


async def test_a_client_reads_answers_but_no_other_event(site: Site) -> None:
    s = await login(site, "client")
    try:
        await s.nc.subscribe(S.all_events)
        await s.nc.flush()
        assert "subscription" in await s.violation()
        sub = await s.nc.subscribe(S.all_answers)
        await s.nc.flush()
        assert s.errors.empty()
        await sub.unsubscribe()
    finally:
        await s.nc.close()


async def _publish_answer(site: Site, task_id: str, tenant: str, text: str) -> None:
    """Publish ``task_id``'s answer for ``tenant`` as the escalation role would."""
    esc = await login(site, "escalation")
    try:
        answer = FinalAnswer(task_id=task_id, site=SITE, tenant=tenant, outcome="resolved",
                             customer_message=text, submitted_at=utcnow())  # fmt: skip
        await esc.js.publish(
            S.answer(task_id, tenant), ENCODER.encode(answer),
            headers={HDR_EXPECTED_LAST_SUBJECT_SEQ: "0"},
        )  # fmt: skip
    finally:
        await esc.nc.close()


async def test_a_tenant_client_submits_and_reads_only_its_own_tenant(site: Site) -> None:
    """``client-acme`` (from ``nats.tenants``): its own task subjects and answers, live
    and stored; another tenant's, the all-tenant ones and every API are refused."""
    mine, theirs = f"acme-{uuid.uuid4().hex[:8]}", f"globex-{uuid.uuid4().hex[:8]}"
    s = await login(site, "client-acme")
    try:
        client = TaskClient(s.js, SITE, tenant="acme")
        ticket = SupportTicket(task_id=mine, body="VPN drops", submitted_at=utcnow())
        sent = await client.submit(ticket)
        assert sent.subject == S.task("support_ticket", "acme")
        await _publish_answer(site, mine, "acme", "reseat the cable")
        await _publish_answer(site, theirs, "globex", "globex's secret")
        outcome = await client.wait(sent, timeout_s=10)  # stored answer, by direct get
        assert outcome.status == "answered"
        assert outcome.answer is not None
        assert outcome.answer.customer_message == "reseat the cable"
        assert s.errors.empty()
        # another tenant's answer, stored or live, and every tenant's answers: refused
        theirs_get = f"$JS.API.DIRECT.GET.{S.events_stream}.{S.answer(theirs, 'globex')}"
        await s.refused_publish(theirs_get)
        for subject in (S.answers_of("globex"), S.all_answers, S.all_events):
            await s.nc.subscribe(subject)
            await s.nc.flush()
            text = await s.violation()
            assert "subscription" in text
            assert subject.lower() in text
        # another tenant's task subjects, the all-tenant ones, and the JetStream API
        await s.refused_publish(S.task("support_ticket", "globex"))
        await s.refused_publish(S.task("support_ticket"))
        await s.refused_publish(f"$JS.API.STREAM.INFO.{S.events_stream}")
        await s.refused_publish(f"$JS.API.STREAM.MSG.GET.{S.events_stream}")
        await s.refused_publish(f"$JS.API.CONSUMER.CREATE.{S.events_stream}")
    finally:
        await s.nc.close()


async def test_a_tenant_client_waits_for_an_answer_published_later(site: Site) -> None:
    tid = f"acme-{uuid.uuid4().hex[:8]}"
    s = await login(site, "client-acme")
    try:
        client = TaskClient(s.js, SITE, tenant="acme")
        sent = Submitted(task_id=tid, subject=S.task("support_ticket", "acme"), stream_seq=1,
                         duplicate=False)  # fmt: skip
        waiting = asyncio.ensure_future(client.wait(sent, timeout_s=10))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await _publish_answer(site, tid, "acme", "live")
        outcome = await waiting
        assert outcome.answer is not None
        assert outcome.answer.customer_message == "live"
        with pytest.raises(TimeoutError, match="tenant 'acme' has no answer"):
            await client.wait(
                Submitted(task_id="never", subject=sent.subject, stream_seq=2, duplicate=False),
                timeout_s=0.5,
            )
    finally:
        await s.nc.close()


async def test_a_tenant_client_refuses_a_task_of_another_tenant(site: Site) -> None:
    s = await login(site, "client-acme")
    try:
        client = TaskClient(s.js, SITE, tenant="acme")
        ticket = SupportTicket(task_id="x-1", tenant="globex", body="hi", submitted_at=utcnow())
        with pytest.raises(SchemaError, match="tenant 'acme' only") as err:
            await client.submit(ticket)
        assert err.value.field == "$.tenant"
    finally:
        await s.nc.close()


async def test_insecure_runs_an_open_server_and_says_so(tmp_path: Path) -> None:
    settings = Settings(site=SITE, state_dir=tmp_path)
    console = Console(record=True, width=200)
    async with nats_url(settings, console, insecure=True) as url:
        nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
        await nc.close()
        assert worker_identities(settings, url, ["router"]) is None
    assert "WITHOUT authentication" in console.export_text()
    assert not (tmp_path / "creds").exists()


# -- the real command ------------------------------------------------------------------


def _free_ports(n: int) -> int:
    """The first of ``n`` consecutive free local ports."""
    for _ in range(50):
        first = random.randint(20_000, 60_000)
        socks = []
        try:
            for port in range(first, first + n):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports")


async def _edge_ready(
    tmp_path: Path, env: dict[str, str], *args: str
) -> tuple[asyncio.subprocess.Process, BinaryIO, str]:
    """``sitemesh edge ARGS`` logging to ``tmp_path/edge.log``, once it printed ready:
    the process, its open log and the log's text so far."""
    log = (tmp_path / "edge.log").open("wb")
    edge = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sitemesh", "edge", *args, env=env, stdout=log, stderr=log,
    )  # fmt: skip
    text = ""

    async def ready() -> bool:
        nonlocal text
        text = (tmp_path / "edge.log").read_text(errors="replace")
        assert edge.returncode is None, text
        return " ready in " in text

    try:
        await assert_eventually(ready, 200, interval_s=0.5, msg="edge not ready")
    except BaseException:
        await _stop_edge(edge, log)
        raise
    return edge, log, text


async def _stop_edge(edge: asyncio.subprocess.Process, log: BinaryIO) -> None:
    edge.send_signal(signal.SIGTERM)
    await asyncio.wait_for(edge.wait(), 90)
    log.close()


async def _publish_ticket(env: dict[str, str], tmp_path: Path, task_id: str) -> None:
    """``sitemesh publish`` of one real-looking ticket, without any identity setting."""
    ticket = tmp_path / "t.jsonl"
    ticket.write_text(
        json.dumps({"type": "support_ticket.v1", "task_id": task_id, "channel": "email",
                    "body": "The VPN client disconnects every ten minutes."}) + "\n"
    )  # fmt: skip
    code, out = await _cli(env, "publish", str(ticket))
    assert code == 0, out


async def _await_answer(js: JetStreamContext, task_id: str) -> None:
    async def answered() -> bool:
        try:
            await js.get_last_msg(S.events_stream, S.task_answer(task_id))
        except NotFoundError:
            return False
        return True

    await assert_eventually(answered, 120, interval_s=0.5, msg="no answer")


async def _cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sitemesh", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sitemesh_edge_runs_every_worker_as_its_own_role(tmp_path: Path) -> None:
    """``sitemesh edge`` started the default way; ``publish`` and ``dlq list`` without
    any identity setting; the answer comes back (only escalation could publish it).
    With tenants configured, ``publish --tenant acme`` submits as ``client-acme``, which
    reads its answer and cannot read another tenant's."""
    settings = Settings(
        site=SITE, state_dir=tmp_path / "state", nats=NatsSettings(tenants=["acme", "globex"])
    )
    env = child_env(process_environ(), settings.to_env()) | {"COLUMNS": "400", "NO_COLOR": "1"}
    edge, log, text = await _edge_ready(tmp_path, env)
    try:
        assert "authenticated" in text
        assert "--insecure" not in text
        # each child's identity is its own role's seed file, never the operator's
        pids = {int(p): role for role, ps in re.findall(r"(\w+)=\[([\d, ]+)\]", text)
                for p in ps.split(", ")}  # fmt: skip
        assert {"router", "escalation", "recorder"} <= set(pids.values())
        for pid, role in pids.items():
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            seeds = [e for e in environ if e.startswith(b"SITEMESH_NATS_NKEY_SEED")]
            assert seeds == [f"SITEMESH_NATS_NKEY_SEED_FILE={tmp_path}/state/creds/{SITE}/"
                             f"{role}.nk".encode()], (role, seeds)  # fmt: skip
        tid = f"sec-{uuid.uuid4().hex[:8]}"
        await _publish_ticket(env, tmp_path, tid)
        url = EmbeddedNats(settings.state_dir).live_url()
        assert url is not None
        op = await connect(settings, "operator", url=url)
        try:
            await _await_answer(op.jetstream(), tid)
        finally:
            await op.drain()
        mine = f"acme-{uuid.uuid4().hex[:8]}"
        ticket = tmp_path / "t.jsonl"
        ticket.write_text(
            json.dumps({"type": "support_ticket.v1", "task_id": mine, "channel": "email",
                        "body": "My invoice shows a double charge."}) + "\n"
        )  # fmt: skip
        code, out = await _cli(env, "publish", "--tenant", "acme", str(ticket))
        assert code == 0, out
        acme = await connect(settings, "client-acme", url=url)
        globex = await connect(settings, "client-globex", url=url)
        try:
            sent = Submitted(task_id=mine, subject=S.task("support_ticket", "acme"),
                             stream_seq=0, duplicate=False)  # fmt: skip
            scoped = TaskClient(acme.jetstream(), SITE, tenant="acme")
            outcome = await scoped.wait(sent, timeout_s=120)
            assert outcome.status == "answered"
            assert outcome.answer is not None
            assert outcome.answer.tenant == "acme"
            with pytest.raises(NatsTimeoutError):  # refused: no reply comes
                await globex.jetstream(timeout=1).get_last_msg(
                    S.events_stream, S.answer(mine, "acme"), direct=True
                )
        finally:
            await acme.drain()
            await globex.drain()
        code, out = await _cli(env, "publish", "--tenant", "a.b", str(ticket))
        assert code != 0
        assert "--tenant: tenant 'a.b' cannot have a client identity" in out
        assert "Traceback" not in out
        code, out = await _cli(env, "dlq", "list")
        assert code == 0, out
    finally:
        await _stop_edge(edge, log)
    assert edge.returncode == 0, (tmp_path / "edge.log").read_text(errors="replace")[-3000:]


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_sitemesh_edge_colocate_keeps_each_role_its_own_identity(tmp_path: Path) -> None:
    """``sitemesh edge --colocate``: one process runs every agent role, each role on
    its own connection with its own identity (the process is given triage's seed and
    finds the others next to it). Only escalation may publish the final answer and
    each role only its own step events, so an answer shows every role kept its own
    permissions; the work stream holds only the router's item (the 4 steps after
    triage were handed over in memory)."""
    settings = Settings(site=SITE, state_dir=tmp_path / "state")
    base = _free_ports(4)
    save_user(default_users_file(settings.state_dir), "ada", "approver",
              hash_password("console-pass-1", n=2**14))  # fmt: skip
    env = child_env(process_environ(), settings.to_env()) | {
        "COLUMNS": "400", "NO_COLOR": "1", "SITEMESH_HEALTH_PORT": str(base),
    }  # fmt: skip
    edge, log, text = await _edge_ready(tmp_path, env, "--colocate", "--console", str(base + 3))
    try:
        pids = {role: int(p) for role, p in re.findall(r"(\w+)=\[(\d+)\]", text)}
        assert pids["triage"] == pids["planner"] == pids["escalation"] != pids["router"]
        environ = Path(f"/proc/{pids['escalation']}/environ").read_bytes().split(b"\0")
        seeds = [e for e in environ if e.startswith(b"SITEMESH_NATS_NKEY_SEED")]
        assert seeds == [f"SITEMESH_NATS_NKEY_SEED_FILE={tmp_path}/state/creds/{SITE}/"
                         "triage.nk".encode()]  # fmt: skip
        # each process its own port, printed once ready: probes and metrics
        urls = dict(re.findall(r"([\w+]+)-1 (http://127\.0\.0\.1:\d+)/metrics", text))
        assert urls == {
            "recorder": f"http://127.0.0.1:{base}", "router": f"http://127.0.0.1:{base + 1}",
            "triage+retriever+planner+validator+escalation+diagnostics":
                f"http://127.0.0.1:{base + 2}",
        }, text  # fmt: skip
        async with httpx.AsyncClient(timeout=5) as http:
            for url in urls.values():
                assert (await http.get(f"{url}/readyz")).status_code == 200
            agents = (await http.get(f"http://127.0.0.1:{base + 2}/metrics")).text
        for role in ("triage", "escalation"):  # one endpoint, each role's own series
            assert f'sitemesh_role="{role}"' in agents
        tid = f"col-{uuid.uuid4().hex[:8]}"
        await _publish_ticket(env, tmp_path, tid)
        url = EmbeddedNats(settings.state_dir).live_url()
        assert url is not None
        op = await connect(settings, "operator", url=url)
        try:
            js = op.jetstream()
            await _await_answer(js, tid)
            events = await stream_messages(js, S.events_stream, S.task_events(tid))
            producers = [m.subject.split(".")[5] for m in events]  # <site>.<task>.<producer>
            assert producers == ["router", "router", "triage", "retriever", "planner",
                                 "validator", "escalation", "final"]  # fmt: skip
            work = await stream_messages(js, S.work_stream, f"{S.prefix}.work.{SITE}.>")
            assert [m.subject for m in work] == [S.work("triage")]
        finally:
            await op.drain()
        # --console: the console runs as the site's operator on the authenticated server
        console_url = f"http://127.0.0.1:{base + 3}"

        async def console_printed() -> bool:
            return f"console: {console_url}/" in (tmp_path / "edge.log").read_text()

        await assert_eventually(console_printed, 120, interval_s=0.5, msg="no console line")
        async with httpx.AsyncClient(base_url=console_url, timeout=10) as http:
            assert (await http.get("/api/tasks")).status_code == 401
            r = await http.post("/login", data={"username": "ada", "password": "console-pass-1"})
            assert r.status_code == 303
            task = (await http.get(f"/api/tasks/{tid}")).json()
            assert task["task"]["status"] == "answered"
            health = (await http.get("/health")).text
            assert "NATS unreachable" not in health
            assert ">router<" in health
    finally:
        await _stop_edge(edge, log)
    text = (tmp_path / "edge.log").read_text(errors="replace")
    assert edge.returncode == 0, text[-3000:]
    agents = next(p for p in (tmp_path / "state" / "logs").iterdir() if "+" in p.name)
    assert "handed over in memory" in agents.read_text()


@pytest.mark.parametrize("role", ["retriever", "triage", "diagnostics"])
async def test_a_worker_lists_the_site_artifacts_as_itself(site: Site, role: str) -> None:
    """What the retriever, triage and diagnostics do when an artifact changes (``sitemesh
    kb add``, ``telemetry add``): list the artifact store. nats-py looks its stream up
    with ``STREAM.NAMES``; without that permission ``make demo``'s workers failed."""
    op = await connect(site.settings, "operator", url=site.url)
    try:
        await SiteArtifacts.open(op.jetstream(), SITE, create=True)
    finally:
        await op.drain()
    s = await login(site, role)
    try:
        store = await SiteArtifacts.open(s.js, SITE)
        assert await store.list("kb") == []
        assert s.errors.empty()
    finally:
        await s.nc.close()
