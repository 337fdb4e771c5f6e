"""Topology model and nats-server config rendering (deterministic, escaped, accepted)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest
from pydantic import SecretStr, ValidationError

import sitemesh.topology as topology
from sitemesh.bus import NatsServer, find_nats_server
from sitemesh.topology import (
    Credentials,
    SiteSpec,
    Topology,
    TopologySpec,
    leaf_remote_url,
    render_hub_config,
    render_site_config,
)
from tests.conftest import assert_eventually

NASTY = "p\"a\\ss $HOME #x @:/?%20 'q' {}[]\tz"
"""A password with every character that could break a config or a URL."""


def test_public_api() -> None:
    assert set(topology.__all__) == {
        "ALL_IN", "ALL_OUT", "CLOUD_ACCOUNT", "CLOUD_IN", "CLOUD_OUT", "EGRESS_ACCOUNT",
        "HUB_DOMAIN", "RELAY", "SITE_ACCOUNT", "SYSTEM_ACCOUNT", "Credentials", "HubSpec",
        "InboxRelay", "SiteSpec", "Topology", "TopologySpec", "connect_as", "credentials_url",
        "hub_stream_configs", "js_api", "leaf_permissions", "leaf_remote_url",
        "provision_egress", "provision_hub", "provision_inbox", "provision_site_egress",
        "render_hub_config", "render_site_config",
        "restart_stalled_sources", "run_up", "site_egress_stream_configs",
        # least privilege and TLS (docs/security.md)
        "EGRESS_IDENTITIES", "HUB_IDENTITIES", "SITE_IDENTITIES", "CredsBundle", "DevPki",
        "Identity", "Permissions", "Security", "TlsFiles", "client_options",
        "egress_permissions", "generate_creds", "generate_dev_certs", "generate_dev_pki",
        "hub_permissions", "inbox_prefix", "load_creds", "permission_table", "read_seed",
        "site_permissions",
        # a client identity per tenant (docs/security.md, "Clients per tenant")
        "TENANT_CLIENT_PREFIX", "client_tenant", "tenant_client",
        # the authenticated embedded server (docs/security.md)
        "FINAL_ROLES", "ensure_site_creds", "render_embedded_config",
        # the secured `sitemesh up` (docs/security.md)
        "ensure_dev_certs",
    }  # fmt: skip
    for name in topology.__all__:
        assert getattr(topology, name) is not None


def test_resolve_fills_ports_credentials_and_stores(tmp_path: Path) -> None:
    spec = TopologySpec.for_sites(["eu1", "us1"], tmp_path).resolve()
    ports = [spec.hub.client_port, spec.hub.leafnode_port, spec.hub.monitor_port]
    ports += [p for s in spec.sites for p in (s.client_port, s.monitor_port)]
    assert 0 not in ports
    assert 4222 not in ports
    assert len(set(ports)) == len(ports)
    assert spec.site("eu1").store_dir == tmp_path / "sites" / "eu1"
    assert spec.hub.cloud is not None
    assert spec.site("us1").leaf is not None
    assert spec.site("us1").leaf.user == "leaf-us1"
    assert spec.resolve() == spec  # resolving is idempotent


def test_spec_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="unique"):
        TopologySpec.for_sites(["eu1", "eu1"], tmp_path)
    with pytest.raises(ValidationError, match="hub"):
        TopologySpec.for_sites(["hub"], tmp_path)
    with pytest.raises(ValidationError):
        SiteSpec(name="EU.1")
    with pytest.raises(ValidationError):
        TopologySpec(sites=())


def test_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "topology.toml"
    path.write_text(
        f'state_dir = "{tmp_path}"\n'
        "[hub]\nclient_port = 14333\nleafnode_port = 17422\n"
        '[hub.cloud]\nuser = "agents"\npassword = "s3cret"\n'
        '[[sites]]\nname = "eu1"\n'
        '[[sites]]\nname = "us1"\nclient_port = 14334\n'
    )
    spec = TopologySpec.from_toml(path)
    assert spec.hub.client_port == 14333
    assert spec.hub.cloud == Credentials(user="agents", password=SecretStr("s3cret"))
    assert [s.name for s in spec.sites] == ["eu1", "us1"]
    resolved = spec.resolve()
    assert resolved.hub.leafnode_port == 17422
    assert resolved.site("us1").client_port == 14334
    assert resolved.site("eu1").client_port not in (0, 14333, 14334, 17422)


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    spec = TopologySpec.for_sites(["eu1", "us1"], tmp_path).resolve()
    assert render_hub_config(spec) == render_hub_config(spec)
    assert render_site_config(spec, "eu1") == render_site_config(spec, "eu1")
    again = TopologySpec.model_validate(spec.model_dump())  # e.g. reloaded from disk
    assert render_hub_config(again) == render_hub_config(spec)


def test_rendering_shape(tmp_path: Path) -> None:
    spec = TopologySpec.for_sites(["eu1"], tmp_path).resolve()
    site = render_site_config(spec, "eu1")
    assert 'domain: "eu1"' in site
    assert 'account: "EGRESS"\n      deny_imports' in site  # the remote binds EGRESS
    assert site.count("leafnodes") == 1
    assert "leafnodes" not in render_site_config(spec, "eu1", leaf=False)
    hub = render_hub_config(spec)
    assert 'domain: "hub"' in hub
    assert '"$JS.eu1.API.CONSUMER.CREATE.OUTBOX_eu1"' in hub
    assert "$JS.eu1.API.>" not in hub  # never the whole API of the site's domain
    assert "permissions" not in render_hub_config(spec, leaf_filter=False)


def test_unresolved_spec_is_refused(tmp_path: Path) -> None:
    spec = TopologySpec.for_sites(["eu1"], tmp_path)
    with pytest.raises(ValueError, match="resolve"):
        render_hub_config(spec)
    with pytest.raises(ValueError, match="resolve"):
        render_site_config(spec, "eu1")


def test_credentials_are_escaped(tmp_path: Path) -> None:
    nasty = Credentials(user="leaf-eu1", password=SecretStr(NASTY))
    spec = TopologySpec(
        sites=(SiteSpec(name="eu1", leaf=nasty, site=nasty.model_copy(update={"user": "s"})),),
        state_dir=tmp_path,
    ).resolve()
    text = render_site_config(spec, "eu1")
    assert NASTY not in text  # never raw: quotes and backslashes are escaped
    assert '"p\\"a\\\\ss $HOME #x @:/?%20 \'q\' {}[]\\tz"' in text
    url = leaf_remote_url(spec.hub, nasty)
    assert url.startswith("nats-leaf://leaf-eu1:p%22a%5Css%20%24HOME%20%23x%20%40%3A%2F%3F%2520")
    assert url.endswith(f"@127.0.0.1:{spec.hub.leafnode_port}")


async def test_servers_accept_escaped_credentials(tmp_path: Path) -> None:
    """The real server parses the escaped password; the leaf logs in with the URL's."""
    nasty = Credentials(user="leaf-eu1", password=SecretStr(NASTY))
    spec = TopologySpec(
        sites=(SiteSpec(name="eu1", leaf=nasty, site=nasty.model_copy(update={"user": "s"})),),
        state_dir=tmp_path,
    )
    async with Topology(spec, binary=find_nats_server(None), relays=False) as topo:
        assert topo.leaf_connected("eu1")
        s = topo.spec.site("eu1")
        nc = await nats.connect(
            f"nats://{s.host}:{s.client_port}", user="s", password=NASTY, connect_timeout=2
        )
        await nc.close()


async def test_config_files_are_private(tmp_path: Path) -> None:
    topo = Topology(TopologySpec.for_sites(["eu1"], tmp_path), binary=find_nats_server(None))
    topo.write_configs()
    for path in topo.conf_dir.iterdir():
        assert path.stat().st_mode & 0o077 == 0, path


async def test_hub_restart_keeps_ports_and_store(tmp_path: Path) -> None:
    async with Topology(TopologySpec.for_sites(["eu1"], tmp_path), relays=False) as topo:
        port = topo.hub.port
        await topo.stop_hub()
        await assert_eventually(lambda: not topo.leaf_connected("eu1"), 5)
        await topo.start_hub()
        assert topo.hub.port == port
        assert topo.leaf_connected("eu1")


async def test_leaf_to_unknown_hub_fails_cleanly(tmp_path: Path) -> None:
    """A site without the hub still serves locally (standalone config)."""
    spec = TopologySpec.for_sites(["eu1"], tmp_path).resolve()
    conf = tmp_path / "eu1.conf"
    conf.write_text(render_site_config(spec, "eu1"))  # the hub is not running
    s = spec.site("eu1")
    assert s.store_dir is not None
    async with NatsServer(s.store_dir, port=s.client_port, config=conf) as srv:
        assert s.site is not None
        nc = await nats.connect(
            srv.client_url, user=s.site.user, password=s.site.password.get_secret_value()
        )
        js = nc.jetstream()
        await js.add_stream(name="TASKS_eu1", subjects=["sm.v1.task.eu1.>"], max_bytes=1 << 20)
        ack = await asyncio.wait_for(js.publish("sm.v1.task.eu1.x", b"{}"), 5)
        assert ack.domain == "eu1"
        await nc.close()
