"""Every operator command on a site secured with per-role credentials (``sitemesh creds``).

A hub and site ``eu1`` run from the generated configs (one NKey user per role, the
permissions of :mod:`sitemesh.topology._permissions`; no shared user is given to any
process). The provisioner identity provisions the site; each worker runs as its own
process (``sitemesh worker ROLE``) with its role's seed file; tasks go in through
``sitemesh publish`` as the ``client`` identity. Then each operator command runs
through the real CLI (``python -m sitemesh``) with ``SITEMESH_NATS_URL`` and the
``operator`` seed file, and must do its job. Positive control: the same commands
without an identity are refused by the server.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from typer.testing import CliRunner

from sitemesh.bus import Subjects, find_nats_server, provision
from sitemesh.cli import app
from sitemesh.config import BusSettings, DbSettings, NatsSettings, Settings, TelemetrySettings
from sitemesh.edge_node import Supervisor, child_env, process_environ, provision_task_registry
from sitemesh.runtime import connect, provision_tool_health, provision_workers
from sitemesh.state import Store, list_approvals, migrate
from sitemesh.topology import Security, Topology, TopologySpec, load_creds
from tests.conftest import TEST_STREAM_BYTES, assert_eventually

pytestmark = pytest.mark.timeout(240)
slow = pytest.mark.slow

SITE = "eu1"
ROLES = (
    "recorder", "router", "triage", "retriever", "diagnostics", "planner", "validator",
    "escalation",
)
MALFORMED = Path(__file__).resolve().parents[1] / "examples" / "data" / "malformed"

POLICY = """\
version = "operator-creds.1"
public_kinds = []

[[rule]]
id = "bank-needs-approval"
description = "the bank's tickets wait for a person"
action = "require_approval"
match = { kinds = ["support_ticket"], tenants = ["OpsBank"] }

[[rule]]
id = "everything-else-on-site"
description = "the rest is answered on site"
action = "pin_edge"
match = { data_classes = ["public", "internal", "confidential", "restricted"] }
"""

TICKETS = [
    {"type": "support_ticket.v1", "task_id": "ops-ok-1", "tenant": "Acme", "channel": "email",
     "body": "The VPN client disconnects every ten minutes since the last update."},
    {"type": "support_ticket.v1", "task_id": "ops-ok-2", "tenant": "Acme", "channel": "email",
     "body": "Printer on floor 3 shows a paper jam although the tray is empty."},
    {"type": "support_ticket.v1", "task_id": "ops-bank-1", "tenant": "OpsBank",
     "channel": "email", "body": "Online banking login page times out for all branch staff."},
    {"type": "support_ticket.v1", "task_id": "ops-bank-2", "tenant": "OpsBank",
     "channel": "email", "body": "Statement export to CSV fails with an empty file."},
]  # fmt: skip


@dataclass
class SecureSite:
    """The running site: settings without identity, the creds directory, a CLI runner."""

    settings: Settings
    creds: Path
    tmp: Path
    sups: list[Supervisor] = field(default_factory=list)

    def seed(self, role: str) -> Path:
        return load_creds(self.creds).get(SITE, role).seed_file

    def as_role(self, role: str | None) -> Settings:
        """The site's settings with ``role``'s seed file (``None``: no identity)."""
        seed = None if role is None else self.seed(role)
        return self.settings.model_copy(
            update={"nats": self.settings.nats.model_copy(update={"nkey_seed_file": seed})}
        )

    async def cli(self, *args: str, role: str | None = "operator") -> tuple[int, str]:
        """``sitemesh ARGS`` as an operator runs it; returns exit code and stdout+stderr."""
        env = child_env(process_environ(), self.as_role(role).to_env())
        env |= {"COLUMNS": "250", "NO_COLOR": "1"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sitemesh", *args, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 150)
        assert proc.returncode is not None
        return proc.returncode, out.decode()

    async def ok(self, *args: str, role: str | None = "operator") -> str:
        code, out = await self.cli(*args, role=role)
        assert code == 0, f"sitemesh {' '.join(args)} exited {code}:\n{out}"
        return out


def _shows(out: str, *parts: str) -> None:
    """Assert that a command's output contains every one of ``parts``."""
    missing = [p for p in parts if p not in out]
    assert not missing, f"{missing} not in:\n{out}"


async def _ready(js: JetStreamContext, subjects: Subjects) -> bool:
    wanted = [subjects.consumer_for(r)[:2] for r in ROLES if r != "recorder"]
    wanted.append((subjects.events_stream, "recorder"))
    for stream, durable in wanted:
        info = await js.consumer_info(stream, durable)
        if not info.num_waiting:
            return False
    return True


@pytest.fixture(scope="module")
async def secure_site(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SecureSite]:
    tmp = tmp_path_factory.mktemp("opcreds")
    creds = tmp / "creds"
    result = CliRunner().invoke(app, ["creds", "--site", SITE, "--out", str(creds)])
    assert result.exit_code == 0, result.output
    bus = BusSettings(
        ack_wait_s=30, max_deliver=5, backoff_base_s=0.1, backoff_max_s=1,
        graceful_timeout_s=10, max_bytes=TEST_STREAM_BYTES, duplicate_window_s=120,
    )  # fmt: skip
    security = Security.from_dirs([SITE], certs_dir=None, creds_dir=creds)
    spec = TopologySpec.for_sites([SITE], tmp / "topology")
    async with Topology(spec, binary=find_nats_server(None), bus=bus, security=security) as topo:
        s = topo.spec.site(SITE)
        settings = Settings(
            site=SITE,
            state_dir=tmp / "state",
            nats=NatsSettings(url=f"nats://{s.host}:{s.client_port}"),
            db=DbSettings(url=f"sqlite+aiosqlite:///{tmp / 'state.db'}"),
            bus=bus,
        )
        site = SecureSite(settings, creds, tmp)
        prov = await connect(site.as_role("provisioner"), "provisioner", name="provision")
        await provision(prov.jetstream(), Subjects(SITE), bus)
        await provision_workers(prov.jetstream(), SITE)  # the registry `status` reads
        await provision_tool_health(prov.jetstream(), SITE)  # what `tools health` reads
        await provision_task_registry(prov.jetstream(), SITE, bus)  # the router's task ids
        await prov.drain()
        await migrate(settings.db_url)
        # the policy is in the bucket before the router starts, so it applies to every task
        (tmp / "policy.toml").write_text(POLICY)
        out = await site.ok("policy", str(tmp / "policy.toml"))
        assert "published policy" in out
        for role in ROLES:
            # spans on the workers' stdout, so every message carries a traceparent header
            traced = site.as_role(role).model_copy(
                update={"telemetry": TelemetrySettings(exporter="console")}
            )
            site.sups.append(
                Supervisor(
                    SITE,
                    [role],
                    env=child_env(process_environ(), traced.to_env()),
                    log_dir=tmp / "logs",
                    graceful_timeout_s=30,  # exit after "stopped" can lag under load
                )
            )
        op = await connect(site.as_role("operator"), "operator", name="pytest-operator")
        try:
            for sup in site.sups:
                await sup.start()
            await assert_eventually(
                lambda: _ready(op.jetstream(), Subjects(SITE)), 150, interval_s=0.2,
                msg=f"workers not ready; logs in {tmp / 'logs'}",
            )  # fmt: skip
            await _submit(site)
            await _settled(site, op)
            yield site
        finally:
            await op.drain()
            codes = [await sup.stop() for sup in site.sups]
    assert all(c == 0 for sup_codes in codes for c in sup_codes.values()), codes


async def _submit(site: SecureSite) -> None:
    tickets = site.tmp / "tickets.jsonl"
    tickets.write_text("".join(json.dumps(t) + "\n" for t in TICKETS))
    out = await site.ok("publish", str(tickets), role="client")
    assert all(t["task_id"] in out for t in TICKETS), out
    bad = await site.ok(
        "publish", str(MALFORMED / "bad_json.json"), "--raw", "support_ticket",
        "--task-id-prefix", "ops-", role="client",
    )  # fmt: skip
    assert "ops-bad_json" in bad, bad


async def _settled(site: SecureSite, op: Client) -> None:
    """Wait until the recorder has every outcome: 2 answers, 2 parked, 1 dead letter."""
    async with Store(site.settings.db_url) as store:

        async def done() -> bool:
            views = [await store.get_task(t) for t in ("ops-ok-1", "ops-ok-2")]
            pending = await list_approvals(store, "pending")
            dead = await store.get_task("ops-bad_json")
            return (
                all(v is not None and v.task.status == "answered" for v in views)
                and {a.task_id for a in pending} == {"ops-bank-1", "ops-bank-2"}
                and dead is not None
                and bool(dead.dead_letters)
            )

        await assert_eventually(done, 90, interval_s=0.2, msg=f"logs in {site.tmp / 'logs'}")


def test_creds_and_certs_take_site_as_documented(tmp_path: Path) -> None:
    """``sitemesh certs --site eu1 --site us1`` (docs/security.md) and ``--sites a,b``."""
    runner = CliRunner()
    for args in (["--site", "eu1", "--site", "us1"], ["--sites", "eu1,us1"]):
        out = tmp_path / "-".join(args)
        result = runner.invoke(app, ["certs", *args, "--out", str(out / "certs")])
        assert result.exit_code == 0, result.output
        assert (out / "certs" / "server-us1.pem").is_file()
        assert (out / "certs" / "leaf-eu1.pem").is_file()
        result = runner.invoke(app, ["creds", *args, "--out", str(out / "creds")])
        assert result.exit_code == 0, result.output
        bundle = load_creds(out / "creds")
        assert {i.site for i in bundle.identities} == {"hub", "eu1", "us1"}


@slow
async def test_without_identity_the_server_refuses(secure_site: SecureSite) -> None:
    code, out = await secure_site.cli("policy", role=None)
    assert code == 2, out
    assert "authorization violation" in out.lower(), out
    code, out = await secure_site.cli("dlq", "list", role=None)
    assert code == 2, out
    assert "authorization violation" in out.lower(), out


@slow
async def test_policy_and_workflows(secure_site: SecureSite) -> None:
    out = await secure_site.ok("policy")
    assert "operator-creds.1" in out, out
    _shows(out, "bank-needs-approval", "require_approval")
    out = await secure_site.ok("workflows")
    _shows(out, "support_ticket", "retriever")


@slow
async def test_status_and_trace(secure_site: SecureSite) -> None:
    out = await secure_site.ok("status")
    _shows(out, "ops-ok-1", "dead letter")
    # its NATS part (ready workers, queued work per role) reads the site as the operator
    assert "unreachable" not in out, out
    assert "cannot read NATS" not in out, out
    assert re.search(r"retriever\s+│\s+WORK_eu1\s+│\s+1\s", out), out  # one ready worker
    out = await secure_site.ok("status", role=None)
    assert "unreachable" in out, out
    out = await secure_site.ok("trace", "ops-ok-1")
    _shows(out, "task ops-ok-1", "answered")
    assert "policy: pin_edge by rule everything-else-on-site" in out, out
    # the task's events were read from EVENTS_eu1 too: the trace id is in their headers
    assert re.search(r"trace [0-9a-f]{32}", out), out
    # without an identity the database part still shows, but NATS refuses the rest
    out = await secure_site.ok("trace", "ops-ok-1", role=None)
    assert "task ops-ok-1" in out, out
    assert not re.search(r"trace [0-9a-f]{32}", out), out


@slow
async def test_dlq_list_show_redrive(secure_site: SecureSite) -> None:
    out = await secure_site.ok("dlq", "list")
    _shows(out, "ops-bad_json", "SchemaError")
    out = await secure_site.ok("dlq", "show", "ops-bad_json")
    _shows(out, "dead letter", "SchemaError")
    shown = re.search(r"dead letter (\d+)", out)
    assert shown, out
    seq = shown.group(1)
    out = await secure_site.ok("dlq", "redrive", seq)
    assert f"redriven dead letter {seq} onto sm.v1.task.eu1.support_ticket" in out, out
    # exactly once: the same dead letter again publishes nothing (the redriven copy
    # is still malformed, so the router dead-letters it anew under the next sequence)
    out = await secure_site.ok("dlq", "redrive", seq)
    _shows(out, f"dead letter {seq} was already redriven", "nothing published")


@slow
async def test_tools_health(secure_site: SecureSite) -> None:
    """The workers may publish their tool health in the provisioned bucket (their own
    keys only); the operator reads it."""
    out = await secure_site.ok("tools", "health")
    assert "tools health failed" not in out, out
    assert "tool health of site eu1" in out or "no tool calls reported at site eu1" in out, out
    code, out = await secure_site.cli("tools", "health", role=None)
    assert code == 2, out
    assert "authorization violation" in out.lower(), out


@slow
async def test_replay_reproduces_a_task(secure_site: SecureSite) -> None:
    code, out = await secure_site.cli("replay", "--task", "ops-ok-1")
    assert code == 0, out
    _shows(out, "1 match", "0 differ")


@slow
async def test_approvals_approve_and_reject(secure_site: SecureSite) -> None:
    out = await secure_site.ok("approvals")
    _shows(out, "ops-bank-1", "ops-bank-2")
    out = await secure_site.ok("approve", "ops-bank-1", "--by", "alice", "--reason", "checked")
    _shows(out, "approved", "ops-bank-1")
    out = await secure_site.ok("reject", "ops-bank-2", "--by", "bob", "--reason", "no")
    _shows(out, "rejected", "ops-bank-2")
    async with Store(secure_site.settings.db_url) as store:

        async def ended() -> bool:
            a, r = await store.get_task("ops-bank-1"), await store.get_task("ops-bank-2")
            return (
                a is not None and a.task.status == "answered"
                and r is not None and r.task.status == "failed"
            )  # fmt: skip

        await assert_eventually(ended, 60, interval_s=0.2)
    out = await secure_site.ok("approvals", "--status", "all")
    _shows(out, "alice", "bob")
