"""What ``sitemesh up`` prints names where secrets are kept, never a secret itself.

:func:`sitemesh.cli._hybrid._print_up` on a resolved topology, without starting a
server (``tests/test_secure_up.py`` and ``tests/test_no_secrets_in_logs.py`` run the
whole stack): with ``--insecure`` the processes' URLs carry the shared per-account
passwords, and ``up`` must print the env files that hold them instead; with
identities it prints the creds and certs directories, never a seed.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from rich.console import Console

from sitemesh.cli._hybrid import (
    HUB_SITE,
    HybridStack,
    _print_up,
    hub_settings,
    site_settings,
    stack_security,
)
from sitemesh.config import Settings
from sitemesh.topology import TopologySpec, credentials_url

SITES = ["eu1", "us1"]
SEED = re.compile(r"SU[A-Z2-7]{56}")


@dataclass
class _Topo:
    """The part of a running :class:`~sitemesh.topology.Topology` ``_print_up`` reads."""

    spec: TopologySpec


def _printed(stack: HybridStack, settings: Settings) -> str:
    out = io.StringIO()
    _print_up(Console(file=out, width=400, color_system=None), stack, settings)
    return out.getvalue()


def test_insecure_up_prints_where_the_passwords_are_not_them(tmp_path: Path) -> None:
    spec = TopologySpec.for_sites(SITES, tmp_path / "topology").resolve()
    base = Settings(state_dir=tmp_path)
    hub = hub_settings(base, credentials_url(spec.hub.host, spec.hub.client_port, spec.hub.cloud))
    sites = {
        s.name: site_settings(base, s.name, credentials_url(s.host, s.client_port, s.site))
        for s in spec.sites
    }
    stack = HybridStack(topo=_Topo(spec), sites=sites, hub=hub, ready_s=1.5)  # type: ignore[arg-type]
    text = _printed(stack, base)

    users = [spec.hub.cloud, *(s.site for s in spec.sites)]
    passwords = [c.password.get_secret_value() for c in users if c is not None]
    assert len(passwords) == 1 + len(SITES)
    urls = "".join(s.nats.url or "" for s in (hub, *sites.values()))
    assert all(pw in urls for pw in passwords)  # positive control: the URLs hold them
    for pw in passwords:
        assert pw not in text, "up printed a shared password"
    assert "@" not in text
    env_dir = spec.state_dir / "env"
    for server in (HUB_SITE, *SITES):
        path = env_dir / f"{server}.env"
        assert f"credentials in {path}" in text  # where they are kept instead
        assert path.stat().st_mode & 0o777 == 0o600
    assert any(pw in (env_dir / "hub.env").read_text() for pw in passwords)
    assert "ready in 1.5 s" in text


@pytest.mark.timeout(120)
def test_secure_up_prints_directories_not_seeds(tmp_path: Path) -> None:
    topology = tmp_path / "topology"
    security = stack_security(topology, SITES)
    spec = TopologySpec.for_sites(SITES, topology).resolve()
    base = Settings(state_dir=tmp_path)
    hub = hub_settings(
        base, credentials_url(spec.hub.host, spec.hub.client_port, None), security=security
    )
    sites = {
        s.name: site_settings(base, s.name, credentials_url(s.host, s.client_port, None),
                              security=security)
        for s in spec.sites
    }  # fmt: skip
    stack = HybridStack(topo=_Topo(spec), sites=sites, hub=hub, security=security)  # type: ignore[arg-type]
    text = _printed(stack, base)
    seeds = [p.read_text().strip() for p in (topology / "creds").rglob("*.nk")]
    assert seeds  # positive control
    assert not SEED.search(text)
    assert not [s for s in seeds if s in text]
    assert f"identities: {topology / 'creds'}" in text
    assert f"certificates: {topology / 'certs'}" in text
    assert "ready" not in text  # ready_s None: stopped before that
