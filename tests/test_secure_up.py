"""``sitemesh up`` and ``demo --sites`` run every server with per-role identities and TLS.

The fast half checks the pieces: ``nats.creds_dir`` picks a process's identity by site
and role (and names the key when it cannot), :func:`stack_security` makes the creds and
the development PKI once and keeps them (adding a site adds only its own), the
processes' settings and the env files carry paths, never a password or seed.

The slow half starts the stack the way ``sitemesh up`` does (:func:`run_up` on a
temporary state directory, one site) and shows, against the real servers: an
anonymous client is refused on the hub and on the site; the client and leaf ports
require TLS and the leaf link is mutual TLS; a worker identity may not publish a
final answer (the escalation identity may); every worker and the hub's synthesiser
became ready, each connected as its own role's NKey; and a second start (with a new
site) keeps every identity and certificate of the first.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shlex
import socket
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from nats.aio.client import Client
from pydantic import SecretStr
from rich.console import Console
from typer.testing import CliRunner

from sitemesh.bus import HDR_MSG_ID, Subjects, free_port
from sitemesh.cli._app import app
from sitemesh.cli._hybrid import (
    INSECURE_WARNING,
    hub_settings,
    hybrid_stack,
    run_up,
    site_settings,
    stack_security,
    write_env_files,
)
from sitemesh.cli._run import site_roles
from sitemesh.config import BusSettings, NatsSettings, Settings
from sitemesh.console import default_users_file, hash_password, save_user
from sitemesh.errors import ConfigError
from sitemesh.runtime import connect, creds_dir_identity, nats_options, read_workers
from sitemesh.schemas import ENCODER, FinalAnswer, utcnow
from sitemesh.topology import TlsFiles, ensure_dev_certs, generate_creds, load_creds
from tests.conftest import TEST_STREAM_BYTES, assert_eventually

pytestmark = pytest.mark.timeout(120)

SEED = re.compile(r"SU[A-Z2-7]{56}")
PASSWORD = re.compile(r'password:\s*"([^"]+)"')
SITE = "eu1"


# -- nats.creds_dir -----------------------------------------------------------------------


def test_creds_dir_gives_each_role_its_own_identity(tmp_path: Path) -> None:
    bundle = generate_creds(tmp_path / "creds", [SITE])
    base = Settings(site=SITE, nats=NatsSettings(creds_dir=tmp_path / "creds"))
    assert base.nats.has_identity  # workers skip provisioning: the provisioner did it
    for role in ("planner", "operator", "client"):
        got = creds_dir_identity(base, role).nats.nkey_seed_file
        assert got == bundle.get(SITE, role).seed_file
    hub = base.model_copy(update={"site": "hub"})
    assert (
        creds_dir_identity(hub, "synthesiser").nats.nkey_seed_file
        == bundle.get("hub", "synthesiser").seed_file
    )
    own = tmp_path / "own.nk"
    pinned = base.model_copy(update={"nats": base.nats.model_copy(update={"nkey_seed_file": own})})
    assert creds_dir_identity(pinned, "planner") is pinned  # an explicit seed wins


def test_creds_dir_errors_name_the_key(tmp_path: Path) -> None:
    generate_creds(tmp_path / "creds", [SITE])
    base = Settings(site=SITE, nats=NatsSettings(creds_dir=tmp_path / "creds"))
    with pytest.raises(ConfigError) as err:
        creds_dir_identity(base, "sentiment")  # a role without an identity
    assert err.value.key == "nats.creds_dir"
    assert "'sentiment'" in str(err.value)
    assert "'eu1'" in str(err.value)
    with pytest.raises(ConfigError) as err:
        creds_dir_identity(base.model_copy(update={"site": "us1"}), "planner")
    assert err.value.key == "nats.creds_dir"
    assert "'us1'" in str(err.value)
    empty = base.model_copy(update={"nats": NatsSettings(creds_dir=tmp_path / "nothing-here")})
    with pytest.raises(ConfigError) as err:
        creds_dir_identity(empty, "planner")
    assert err.value.key == "nats.creds_dir"
    assert "identities.json" in str(err.value)
    with pytest.raises(ConfigError) as err:  # never an anonymous connection by mistake
        nats_options(base.nats, "planner")
    assert err.value.key == "nats.creds_dir"


def test_creds_dir_round_trips_through_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings(nats=NatsSettings(creds_dir=tmp_path / "creds"))
    env = s.to_env()
    assert env["SITEMESH_NATS_CREDS_DIR"] == str(tmp_path / "creds")
    monkeypatch.setenv("SITEMESH_NATS_CREDS_DIR", str(tmp_path / "creds"))
    assert Settings().nats.creds_dir == tmp_path / "creds"


# -- stack_security, process settings, env files ------------------------------------------


def _keys(creds: Path) -> dict[tuple[str, str, str], str]:
    return {(i.account, i.site, i.role): i.public_key for i in load_creds(creds).identities}


def _pems(certs: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(certs.glob("*.pem"))}


def test_stack_security_is_made_once_and_kept(tmp_path: Path) -> None:
    first = stack_security(tmp_path, [SITE])
    creds, certs = tmp_path / "creds", tmp_path / "certs"
    assert first.creds is not None
    assert first.creds.directory == creds
    keys, pems = _keys(creds), _pems(certs)
    assert {"ca.pem", "server-hub.pem", "client-eu1.pem", "leaf-eu1.pem"} <= set(pems)
    for seed in creds.rglob("*.nk"):
        assert seed.stat().st_mode & 0o777 == 0o600
    for key in certs.glob("*-key.pem"):
        assert key.stat().st_mode & 0o777 == 0o600
    stack_security(tmp_path, [SITE])
    assert _keys(creds) == keys
    assert _pems(certs) == pems  # not re-issued
    again = stack_security(tmp_path, [SITE, "us1"], roles=["sentiment"])
    grown = _keys(creds)
    assert {k: v for k, v in grown.items() if k in keys} == keys
    assert ("SITE", "us1", "planner") in grown
    assert ("SITE", "eu1", "sentiment") in grown
    after = _pems(certs)
    assert {k: v for k, v in after.items() if k in pems} == pems
    assert {"server-us1.pem", "client-us1.pem", "leaf-us1.pem"} <= set(after)
    assert set(again.client_tls) == {"hub", SITE, "us1"}
    # certificates expiring within the window (30 days left < 31) are re-issued by the
    # same CA (365 days left: kept)
    ensure_dev_certs(certs, [SITE, "us1"], renew_within_s=31 * 24 * 3600.0)
    renewed = _pems(certs)
    assert renewed["ca.pem"] == pems["ca.pem"]
    assert renewed["leaf-eu1.pem"] != pems["leaf-eu1.pem"]
    assert renewed["server-hub.pem"] != pems["server-hub.pem"]
    with pytest.raises(ConfigError) as err:  # the CA itself expiring: a clear error
        ensure_dev_certs(certs, [SITE], renew_within_s=10 * 365 * 24 * 3600.0)
    assert err.value.key == "certs.ca"


def test_processes_get_paths_and_no_inherited_identity(tmp_path: Path) -> None:
    security = stack_security(tmp_path / "topology", [SITE])
    base = Settings(
        state_dir=tmp_path,
        nats=NatsSettings(nkey_seed_file=tmp_path / "mine.nk", nkey_seed=SecretStr("x")),
    )
    site = site_settings(base, SITE, "nats://127.0.0.1:1", security=security)
    hub = hub_settings(base, "nats://127.0.0.1:2", security=security)
    for s, server in ((site, SITE), (hub, "hub")):
        assert s.nats.nkey_seed_file is None
        assert s.nats.nkey_seed is None
        assert s.nats.creds_dir == tmp_path / "topology" / "creds"
        assert s.nats.tls_cert_file == security.client_tls[server].cert_file
    files = write_env_files({"hub": hub, SITE: site}, tmp_path / "env")
    text = files[SITE].read_text()
    env = dict(line.split("=", 1) for line in shlex.split(text))
    assert env["SITEMESH_NATS_URL"] == "nats://127.0.0.1:1"
    assert env["SITEMESH_NATS_CREDS_DIR"] == str(tmp_path / "topology" / "creds")
    assert env["SITEMESH_NATS_TLS_CA_FILE"] == str(security.client_tls[SITE].ca_file)
    assert env["SITEMESH_NATS_TLS_KEY_FILE"] == str(security.client_tls[SITE].key_file)
    assert "SEED" not in text
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o600


def test_up_and_hybrid_demo_offer_insecure() -> None:
    runner = CliRunner()
    for args in (["up", "--help"], ["demo", "--help"]):
        done = runner.invoke(app, args, env={"COLUMNS": "300"})
        assert done.exit_code == 0, done.output
        assert "--insecure" in done.output


# -- the stack, started as `sitemesh up` starts it -----------------------------------------


@dataclass
class Up:
    """A running ``run_up`` and what it printed and wrote."""

    state: Path
    out: io.StringIO
    stop: asyncio.Event
    task: asyncio.Task[int]

    @property
    def text(self) -> str:
        return self.out.getvalue()

    @property
    def topology(self) -> Path:
        return self.state / "topology"

    def env(self, server: str) -> dict[str, str]:
        text = (self.topology / "env" / f"{server}.env").read_text()
        return dict(line.split("=", 1) for line in shlex.split(text))

    def settings(self, server: str) -> Settings:
        """What a command gets after ``set -a; . <server>.env; set +a``."""
        env = self.env(server)
        return Settings(
            site=env["SITEMESH_SITE"],
            state_dir=Path(env["SITEMESH_STATE_DIR"]),
            nats=NatsSettings(
                url=env["SITEMESH_NATS_URL"],
                creds_dir=Path(env["SITEMESH_NATS_CREDS_DIR"]),
                tls_ca_file=Path(env["SITEMESH_NATS_TLS_CA_FILE"]),
                tls_cert_file=Path(env["SITEMESH_NATS_TLS_CERT_FILE"]),
                tls_key_file=Path(env["SITEMESH_NATS_TLS_KEY_FILE"]),
            ),
        )

    def tls(self, server: str) -> Any:
        s = self.settings(server).nats
        assert s.tls_ca_file
        assert s.tls_cert_file
        assert s.tls_key_file
        return TlsFiles(
            ca_file=s.tls_ca_file, cert_file=s.tls_cert_file, key_file=s.tls_key_file
        ).client_context()

    def address(self, server: str) -> tuple[str, int]:
        host, port = self.env(server)["SITEMESH_NATS_URL"].removeprefix("nats://").split(":")
        return host, int(port)

    def monitor(self, server: str) -> str:
        conf = "hub.conf" if server == "hub" else f"site-{server}.conf"
        text = (self.topology / "conf" / conf).read_text()
        found = re.search(r'^http: "([^"]+)"', text, re.M)
        assert found, conf
        return f"http://{found.group(1)}"


def _stack_settings(state: Path) -> Settings:
    return Settings(
        state_dir=state,
        bus=BusSettings(ack_wait_s=10, max_bytes=TEST_STREAM_BYTES, graceful_timeout_s=10),
    )


@pytest.fixture(scope="module")
async def up(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Up]:
    state = tmp_path_factory.mktemp("secure-up")
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None, force_terminal=False)
    stop = asyncio.Event()
    save_user(default_users_file(state), "ada", "admin", hash_password(CONSOLE_PASSWORD, n=2**14))
    task = asyncio.create_task(
        run_up(_stack_settings(state), console, [SITE], stop=stop, console_port=free_port())
    )
    running = Up(state, out, stop, task)

    async def started() -> bool:
        if task.done():
            task.result()  # raises what stopped it
            raise AssertionError(f"run_up ended early: {running.text[-3000:]}")
        return "Ctrl-C to stop" in running.text

    try:
        await assert_eventually(started, timeout_s=400, interval_s=0.5,
                                msg="sitemesh up was not ready")  # fmt: skip
        yield running
    finally:
        stop.set()
        await asyncio.wait_for(task, 120)


CONSOLE_PASSWORD = "console-pass-1"




def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as resp:  # our own http:// URL
        return json.loads(resp.read())


def _server_info(host: str, port: int) -> dict[str, Any]:
    """The INFO line a nats-server sends first on any port (before any TLS)."""
    with socket.create_connection((host, port), timeout=5) as sock:
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    line = data.split(b"\r\n", 1)[0].decode()
    assert line.startswith("INFO "), line
    info: dict[str, Any] = json.loads(line[5:])
    return info


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_up_prints_where_things_are_and_no_secret(up: Up) -> None:
    text = up.text
    creds, certs = up.topology / "creds", up.topology / "certs"
    assert f"identities: {creds}" in text
    assert f"certificates: {certs}" in text
    assert "set -a; . " in text
    assert "SITEMESH_NATS_CREDS_DIR" in text
    assert "ready" in text
    assert INSECURE_WARNING not in text
    for server in ("hub", SITE):
        assert str(up.topology / "env" / f"{server}.env") in text
        path = up.topology / "env" / f"{server}.env"
        assert path.stat().st_mode & 0o777 == 0o600
        assert "@" not in up.env(server)["SITEMESH_NATS_URL"]  # no userinfo
    for line in text.splitlines():
        if line.startswith(("hub ", "site ")):
            assert re.search(r"nats://127\.0\.0\.1:\d+ ", line), line
    passwords = {pw for conf in (up.topology / "conf").glob("*.conf")
                 for pw in PASSWORD.findall(conf.read_text())}  # fmt: skip
    assert passwords, "positive control: the shared admin passwords are in the configs"
    env_text = "".join(p.read_text() for p in (up.topology / "env").glob("*.env"))
    for blob in (text, env_text):
        assert not [pw for pw in passwords if pw in blob]
        assert SEED.search(blob) is None
    seeds = list(creds.rglob("*.nk"))
    assert seeds
    assert all(s.stat().st_mode & 0o777 == 0o600 for s in seeds)


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("server", ["hub", SITE])
async def test_anonymous_and_plain_clients_are_refused(up: Up, server: str) -> None:
    host, port = up.address(server)
    info = _server_info(host, port)
    assert info["auth_required"] is True
    assert info["tls_required"] is True  # a plain-TCP client is refused
    said: list[str] = []
    for _ in range(5):  # the reset may beat the -ERR under load: one try must say why
        errors = _Errors()
        with pytest.raises(Exception) as refused:  # noqa: PT011  # nats-py raises several kinds
            await nats.connect(
                servers=[f"nats://{host}:{port}"], name="anonymous", tls=up.tls(server),
                allow_reconnect=False, connect_timeout=3, error_cb=errors.on_error,
            )  # fmt: skip
        said.append(str(refused.value))
        while not errors.queue.empty():
            said.append(str(errors.queue.get_nowait()))
        if any("Authorization Violation" in s for s in said):
            break
    assert any("Authorization Violation" in s for s in said), said
    role = "synthesiser" if server == "hub" else "planner"  # positive control
    nc = await connect(up.settings(server), role, name="pytest-identity")
    assert nc.is_connected
    await nc.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_the_leaf_link_is_mutual_tls(up: Up) -> None:
    hub = up.monitor("hub")
    varz = _get(f"{hub}/varz")
    assert varz["leaf"]["tls_required"] is True
    assert varz["leaf"]["tls_verify"] is True
    info = _server_info("127.0.0.1", int(varz["leaf"]["port"]))
    assert info["tls_required"] is True  # a plain-TCP leaf connection is refused
    conns = _get(f"{hub}/connz?auth=1")["connections"]
    (leaf,) = [c for c in conns if c.get("authorized_user") == f"leaf-{SITE}"]
    assert leaf["tls_version"] in ("1.2", "1.3")
    assert [p["subject"] for p in leaf["tls_peer_certs"]] == [f"CN=leaf-{SITE}"]
    assert {lf["name"] for lf in _get(f"{hub}/leafz")["leafs"]} == {f"site-{SITE}"}


class _Errors:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Exception] = asyncio.Queue()

    async def on_error(self, exc: Exception) -> None:
        self.queue.put_nowait(exc)

    async def violation(self) -> str:
        while True:
            err = await asyncio.wait_for(self.queue.get(), 5)
            if "permissions violation" in str(err).lower():
                return str(err).lower()


async def _as_role(up: Up, role: str, errors: _Errors) -> Client:
    """Connect as ``role`` exactly as the stack's processes pick their identity."""
    s = creds_dir_identity(up.settings(SITE), role)
    assert s.nats.nkey_seed_file == load_creds(up.topology / "creds").get(SITE, role).seed_file
    return await nats.connect(
        servers=[s.nats.url or ""], name=f"pytest-{role}", error_cb=errors.on_error,
        allow_reconnect=False, connect_timeout=3, **nats_options(s.nats, role),
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_worker_identity_cannot_publish_a_final_answer(up: Up) -> None:
    subjects = Subjects(SITE)
    task_id = f"t-{uuid.uuid4().hex}"
    answer = ENCODER.encode(
        FinalAnswer(task_id=task_id, site=SITE, outcome="resolved",
                    customer_message="forged", submitted_at=utcnow())
    )  # fmt: skip
    errors = _Errors()
    planner = await _as_role(up, "planner", errors)
    try:
        await planner.publish(subjects.answer(task_id, "default"), answer)
        await planner.flush()
        text = await errors.violation()
        assert "publish" in text
        assert subjects.answer(task_id, "default").lower() in text
        ack = await planner.jetstream(timeout=5).publish(  # its own event: allowed
            subjects.event(task_id, "planner"), b"{}", headers={HDR_MSG_ID: uuid.uuid4().hex}
        )
        assert ack.seq > 0
    finally:
        await planner.close()
    esc = await _as_role(up, "escalation", _Errors())
    try:  # positive control: the final role may (create-only, as the runtime does)
        ack = await esc.jetstream(timeout=5).publish(
            subjects.answer(task_id, "default"), answer,
            headers={"Nats-Expected-Last-Subject-Sequence": "0"},
        )  # fmt: skip
        assert ack.seq > 0
    finally:
        await esc.close()


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_every_process_is_ready_as_its_own_role(up: Up) -> None:
    keys = {(i.site, i.role): i.public_key for i in load_creds(up.topology / "creds").identities}
    op = await connect(up.settings(SITE), "operator", name="pytest-operator")
    try:
        ready = {r.role for r in await read_workers(op.jetstream(), SITE) if r.state == "ready"}
    finally:
        await op.close()
    assert set(site_roles(1)) <= ready, ready
    hub_op = await connect(up.settings("hub"), "operator", name="pytest-hub-operator")
    try:
        hub_ready = {r.role for r in await read_workers(hub_op.jetstream(), "hub")}
    finally:
        await hub_op.close()
    assert "synthesiser" in hub_ready
    # the server says who each process is: its own role's NKey
    conns = _get(f"{up.monitor(SITE)}/connz?auth=1&limit=1000")["connections"]
    seen: dict[str, str] = {}
    for c in conns:
        m = re.fullmatch(rf"sitemesh-{SITE}-(\w+)-\d+", c.get("name", ""))
        if m:
            seen[m.group(1)] = c.get("authorized_user", "")
            assert c["authorized_user"] == keys[(SITE, m.group(1))], c["name"]
            assert c.get("tls_version"), c["name"]
    assert set(site_roles(1)) <= set(seen), seen
    relay = [c for c in conns if c.get("name") == f"inbox-relay@{SITE}"]
    assert [c["authorized_user"] for c in relay] == [keys[(SITE, "relay")]]
    hub_conns = _get(f"{up.monitor('hub')}/connz?auth=1")["connections"]
    cloud = [c["authorized_user"] for c in hub_conns if c.get("name") == "sitemesh-cloud"]
    assert cloud == [keys[("hub", "synthesiser")]]


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_up_serves_each_sites_console_with_the_hub_link(up: Up) -> None:
    """``up --console PORT``: the site's console runs once everything is ready, needs a
    login, and its health page shows the site's leaf connection to the hub."""
    import httpx

    pattern = rf"console {SITE}\s+(http://127\.0\.0\.1:\d+)/"  # printed once it answers

    async def printed() -> bool:
        return re.search(pattern, up.text) is not None

    await assert_eventually(printed, timeout_s=180, msg="no console line: " + up.text[-2000:])
    match = re.search(pattern, up.text)
    assert match
    base = match.group(1)
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        assert (await http.get("/health")).status_code == 401
        r = await http.post("/login", data={"username": "ada", "password": CONSOLE_PASSWORD})
        assert r.status_code == 303, r.text
        page = (await http.get("/health")).text
    assert 'id="leafnodes"' in page
    assert "EGRESS" in page  # the leaf remote binds the site's egress account to the hub
    assert "no leaf node connection" not in page


@pytest.mark.slow
@pytest.mark.timeout(600)
async def test_a_second_start_keeps_every_identity_and_certificate(up: Up) -> None:
    """Runs last: stops the module's stack and starts it again, with a second site."""
    creds, certs = up.topology / "creds", up.topology / "certs"
    keys, pems = _keys(creds), _pems(certs)
    old_planner = load_creds(creds).get(SITE, "planner").seed_file.read_text()
    up.stop.set()
    assert await asyncio.wait_for(up.task, 120) == 0
    stop = asyncio.Event()
    stop.set()  # no waiting for the workers: the servers and identities are the point
    out = io.StringIO()
    console = Console(file=out, width=400, color_system=None, force_terminal=False)
    async with hybrid_stack(_stack_settings(up.state), [SITE, "us1"], console,
                            stop=stop) as stack:  # fmt: skip
        grown = _keys(creds)
        assert {k: v for k, v in grown.items() if k in keys} == keys
        assert ("SITE", "us1", "planner") in grown
        after = _pems(certs)
        assert {k: v for k, v in after.items() if k in pems} == pems
        assert load_creds(creds).get(SITE, "planner").seed_file.read_text() == old_planner
        nc = await connect(stack.sites[SITE], "planner", name="pytest-second-start")
        assert nc.is_connected  # the first start's seed, accepted by the new servers
        await nc.close()
        nc = await connect(stack.sites["us1"], "operator", name="pytest-us1")
        await nc.close()
        assert stack.topo.leaf_connected("us1")
