"""``sitemesh creds`` / ``sitemesh certs`` output, permission sets, config validation and
secret hygiene, without servers (see ``test_security_bus.py`` for the enforcement)."""

from __future__ import annotations

import io
import logging
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from pydantic import SecretStr, ValidationError
from rich.console import Console

from sitemesh.bus import Subjects
from sitemesh.cli._secure_cmds import certs_cmd, creds_cmd
from sitemesh.config import NatsSettings
from sitemesh.errors import ConfigError
from sitemesh.topology import (
    SITE_IDENTITIES,
    Security,
    TlsFiles,
    TopologySpec,
    client_options,
    generate_creds,
    generate_dev_certs,
    load_creds,
    permission_table,
    read_seed,
    render_hub_config,
    render_site_config,
    site_permissions,
    tenant_client,
)

EU1 = Subjects("eu1")


def test_retriever_permissions_are_exactly_its_job() -> None:
    p = site_permissions("eu1", "retriever")
    assert set(p.publish) == {
        "$JS.API.CONSUMER.INFO.WORK_eu1.retriever",
        "$JS.API.CONSUMER.MSG.NEXT.WORK_eu1.retriever",
        "$JS.ACK.WORK_eu1.retriever.>",
        EU1.all_work,  # the next step comes from the task's (live) workflow
        "sm.v1.event.eu1.*.retriever",  # its own events only: never an answer
        EU1.dlq("retriever"),
        # its own record in the worker registry (readiness), nobody else's
        "$JS.API.STREAM.INFO.KV_sitemesh_workers_eu1",
        "$JS.API.DIRECT.GET.KV_sitemesh_workers_eu1.$KV.sitemesh_workers_eu1.retriever.>",
        "$KV.sitemesh_workers_eu1.retriever.>",
        # its own tool health (sitemesh tools health), nobody else's; no bucket create
        "$JS.API.STREAM.INFO.KV_sitemesh_tools_eu1",
        "$JS.API.DIRECT.GET.KV_sitemesh_tools_eu1.$KV.sitemesh_tools_eu1.retriever.>",
        "$KV.sitemesh_tools_eu1.retriever.>",
        # read and watch the site's knowledge bases (sitemesh kb add): no writes;
        # STREAM.NAMES: nats-py's object-store list/watch finds the stream by subject
        "$JS.API.STREAM.NAMES",
        "$JS.API.STREAM.INFO.OBJ_sitemesh_knowledge_eu1",
        "$JS.API.STREAM.MSG.GET.OBJ_sitemesh_knowledge_eu1",
        "$JS.API.DIRECT.GET.OBJ_sitemesh_knowledge_eu1",
        "$JS.API.DIRECT.GET.OBJ_sitemesh_knowledge_eu1.>",
        "$JS.API.CONSUMER.CREATE.OBJ_sitemesh_knowledge_eu1",
        "$JS.API.CONSUMER.CREATE.OBJ_sitemesh_knowledge_eu1.>",
        "$JS.API.CONSUMER.DELETE.OBJ_sitemesh_knowledge_eu1.*",
        "$JS.FC.>",
    }
    assert not any(s.startswith("$O.") for s in p.publish)  # cannot change them
    assert p.subscribe == ("_INBOX.retriever.>",)


def test_only_escalation_publishes_the_outbox_and_nothing_names_another_site() -> None:
    table = permission_table("eu1")
    for name, perms in table.items():
        subjects = [*perms.publish, *perms.subscribe]
        assert not any("us1" in s for s in subjects), name
        crosses = [s for s in perms.publish if s.startswith("sm.v1.out.") or s == "sm.v1.>"]
        if name == "SITE/escalation":
            assert crosses == [EU1.out("escalation")]
        elif name.startswith("SITE/"):
            assert crosses == [], name
    assert EU1.all_out in table["SITE/operator"].deny_publish
    # worker roles never get the stream admin API
    for role in SITE_IDENTITIES[:7]:
        pub = " ".join(site_permissions("eu1", role).publish)
        assert "STREAM.DELETE" not in pub
        assert "STREAM.PURGE" not in pub
        assert "$JS.API.>" not in pub


def test_creds_are_private_stable_and_rotatable(tmp_path: Path) -> None:
    bundle = generate_creds(tmp_path / "creds", ["eu1"])
    assert stat.S_IMODE((tmp_path / "creds").stat().st_mode) == 0o700
    for i in bundle.identities:
        assert stat.S_IMODE(i.seed_file.stat().st_mode) == 0o600
        assert i.public_key.startswith("U")
    again = generate_creds(tmp_path / "creds", ["eu1", "us1"])
    old = {(i.site, i.role): i.public_key for i in bundle.identities}
    assert all(old[(i.site, i.role)] == i.public_key for i in again.identities if i.site != "us1")
    loaded = load_creds(tmp_path / "creds")
    assert loaded.identities == again.identities
    rotated = generate_creds(tmp_path / "creds", ["eu1"], rotate=True)
    assert rotated.get("eu1", "retriever").public_key != old[("eu1", "retriever")]


def test_dev_certificates_have_the_right_names_and_usages(tmp_path: Path) -> None:
    pki = generate_dev_certs(tmp_path / "certs", ["eu1"])
    server = x509.load_pem_x509_certificate(pki.files("server-eu1").cert_file.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    leaf = x509.load_pem_x509_certificate(pki.files("leaf-eu1").cert_file.read_bytes())
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    key = pki.files("leaf-eu1").key_file
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "certs" / "ca-key.pem").stat().st_mode) == 0o600


def test_secure_configs_hold_public_keys_and_tls_but_no_seed(tmp_path: Path) -> None:
    generate_dev_certs(tmp_path / "certs", ["eu1"])
    bundle = generate_creds(tmp_path / "creds", ["eu1"])
    sec = Security.from_dirs(["eu1"], certs_dir=tmp_path / "certs", creds_dir=tmp_path / "creds")
    spec = TopologySpec.for_sites(["eu1"], tmp_path / "topo").resolve()
    site = render_site_config(spec, "eu1", security=sec)
    hub = render_hub_config(spec, security=sec)
    for i in bundle.identities:
        seed = i.seed_file.read_text().strip()
        assert seed not in site
        assert seed not in hub
        assert i.public_key in (hub if i.site == "hub" else site)
    assert site.count("verify: true") == 1  # the client port
    assert hub.count("verify: true") == 2  # client and leafnode ports
    assert "leaf-eu1.pem" in site
    # without security the configs are what they were
    assert "tls" not in render_site_config(spec, "eu1")
    assert "nkey" not in render_hub_config(spec)


def test_missing_identity_names_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        read_seed()
    assert err.value.key == "nats.nkey_seed_file"


def test_unreadable_or_shared_seed_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        read_seed(seed_file=tmp_path / "nope.nk")
    assert err.value.key == "nats.nkey_seed_file"
    assert "nope.nk" in str(err.value)
    bundle = generate_creds(tmp_path / "creds", ["eu1"])
    path = bundle.get("eu1", "planner").seed_file
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        read_seed(seed_file=path)


def test_invalid_seed_is_refused_without_echoing_it() -> None:
    bogus = "SUNOTAVALIDSEEDBUTSECRETANYWAY"
    with pytest.raises(ConfigError) as err:
        read_seed(seed=SecretStr(bogus))
    assert err.value.key == "nats.nkey_seed"
    assert bogus not in str(err.value)


def test_missing_or_wrong_certificates_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        Security.from_dirs(["eu1"], certs_dir=tmp_path / "empty", creds_dir=None)
    assert err.value.key == "certs.server-hub.ca_file"
    pki = generate_dev_certs(tmp_path / "certs", ["eu1"])
    files = pki.files("client-eu1")
    mismatched = TlsFiles(
        ca_file=files.ca_file, cert_file=files.cert_file, key_file=pki.files("leaf-eu1").key_file
    )
    with pytest.raises(ConfigError) as err:
        client_options(tls=mismatched)
    assert err.value.key == "nats.tls_cert_file"
    missing = files.model_copy(update={"ca_file": tmp_path / "no-ca.pem"})
    with pytest.raises(ConfigError) as err:
        client_options(tls=missing)
    assert err.value.key == "nats.tls_ca_file"


def test_commands_and_logs_never_show_a_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    out = io.StringIO()
    console = Console(file=out, width=300)
    assert creds_cmd(tmp_path, ["eu1"], console, show_permissions=True) == 0
    assert certs_cmd(tmp_path, ["eu1"], console) == 0
    sec = Security.from_dirs(["eu1"], certs_dir=tmp_path / "certs", creds_dir=tmp_path / "creds")
    assert sec.creds is not None
    ident = sec.creds.get("eu1", "router")
    opts = client_options(role="router", seed_file=ident.seed_file, tls=sec.client_tls["eu1"])
    assert opts["inbox_prefix"] == "_INBOX.router"
    secrets = [i.seed_file.read_text().strip() for i in sec.creds.identities]
    secrets += [p.read_text() for p in (tmp_path / "certs").glob("*-key.pem")]
    text = out.getvalue() + caplog.text + repr(sec) + repr(read_seed(seed_file=ident.seed_file))
    assert ident.public_key in out.getvalue()
    for secret in secrets:
        assert secret not in text
        for line in secret.splitlines()[1:-1]:  # key material lines of PEM files
            assert line not in text


def test_an_agent_added_by_import_path_gets_an_agents_identity(tmp_path: Path) -> None:
    bundle = generate_creds(tmp_path / "creds", ["eu1"], roles=["tone"])
    tone = bundle.get("eu1", "tone")
    assert tone.seed_file.is_file()
    publish = set(tone.permissions.publish)
    assert "$JS.API.CONSUMER.MSG.NEXT.WORK_eu1.tone" in publish
    assert EU1.all_work in publish
    assert EU1.out("escalation") not in publish
    assert ("SITE", "eu1", "tone") not in {
        (i.account, i.site, i.role) for i in generate_creds(tmp_path / "c2", ["eu1"]).identities
    }


def test_a_tenant_client_is_allowed_its_own_tenant_only() -> None:
    p = site_permissions("eu1", tenant_client("acme"))
    assert set(p.publish) == {
        "sm.v1.task.eu1.acme.*",  # its tenant's tasks (the router checks the body)
        # one stored answer of its tenant: last message of the answer subject
        "$JS.API.DIRECT.GET.EVENTS_eu1.sm.v1.event.eu1.*.final.acme",
    }
    assert p.subscribe == ("_INBOX.client-acme.>", "sm.v1.event.eu1.*.final.acme")
    assert p.deny_publish == ()
    # the all-tenant client keeps every tenant's answers (a gateway)
    assert EU1.all_answers in site_permissions("eu1", "client").subscribe


@pytest.mark.parametrize("tenant", ["a.b", "_x", "", "x" * 65, "a b", "*", ">"])
def test_a_tenant_that_is_not_a_subject_token_gets_no_client(tenant: str) -> None:
    with pytest.raises(ValueError, match="cannot have a client identity"):
        tenant_client(tenant)
    with pytest.raises(ValidationError, match="cannot have a client identity"):
        NatsSettings(tenants=[tenant])


def test_tenant_clients_are_generated_like_extra_roles(tmp_path: Path) -> None:
    bundle = generate_creds(tmp_path / "creds", ["eu1"], roles=[tenant_client("acme")])
    acme = bundle.get("eu1", "client-acme")
    assert stat.S_IMODE(acme.seed_file.stat().st_mode) == 0o600
    assert acme.permissions == site_permissions("eu1", "client-acme")
    assert "SITE/client-acme" in permission_table("eu1", ["client-acme"])


def test_no_worker_role_creates_a_consumer_on_a_data_stream() -> None:
    """Only provisioning creates streams and consumers (the escalation role binds the
    inbox consumer that ``provision_inbox`` made); the exceptions are the ordered
    consumers that watch a KV bucket or the artifact store (``KV_``, ``OBJ_``)."""
    for role in SITE_IDENTITIES:
        if role in ("operator", "provisioner"):
            continue
        creates = [
            p for p in site_permissions("eu1", role).publish
            if "CONSUMER.CREATE" in p or "CONSUMER.DURABLE.CREATE" in p
        ]  # fmt: skip
        assert all(".OBJ_" in p or ".KV_" in p for p in creates), (role, creates)
