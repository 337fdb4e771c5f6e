"""The topology description: one hub and its sites, with ports, stores and credentials.

One model serves ``sitemesh up`` (launch everything on this machine), the config
renderer (:mod:`._config`) and deployment files (``compose/``). Load it from TOML
with :meth:`TopologySpec.from_toml` or build it with :meth:`TopologySpec.for_sites`;
:meth:`TopologySpec.resolve` fills in what was left open (port ``0`` -> a free
port, missing credentials -> random ones, missing store dirs -> under the state
directory), so a resolved spec renders to the exact same config every time.

Example TOML::

    state_dir = ".sitemesh/topology"

    [hub]
    client_port = 4333
    leafnode_port = 7422

    [[sites]]
    name = "eu1"

    [[sites]]
    name = "us1"
    client_port = 4334
"""

from __future__ import annotations

import secrets
import tomllib
from pathlib import Path
from typing import Annotated, Any, Final, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from ..bus import free_port

HUB_DOMAIN: Final = "hub"
"""JetStream domain of the hub (``$JS.hub.API``); sites use their own name."""

SITE_NAME: Final = r"^[a-z][a-z0-9]{0,15}$"
"""Site names: a subject token and a JetStream domain (same rule as ``Settings.site``)."""

_USER: Final = r"^[A-Za-z0-9_.@-]{1,64}$"

Port = Annotated[int, Field(ge=0, le=65535)]
"""A TCP port; ``0`` means "pick a free one at launch" (:meth:`TopologySpec.resolve`)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Credentials(_Model):
    """A user name and password of one NATS account user.

    The password may contain any character; the renderer escapes it for the
    server config and the leaf remote URL.
    """

    user: str = Field(pattern=_USER)
    """User name (letters, digits, ``_ . @ -``)."""
    password: SecretStr
    """Password (never logged; ``SecretStr`` hides it in reprs)."""

    @classmethod
    def generate(cls, user: str) -> Credentials:
        """Credentials for ``user`` with a random 32-byte URL-safe password."""
        return cls(user=user, password=SecretStr(secrets.token_urlsafe(32)))


class HubSpec(_Model):
    """The cloud hub's ``nats-server``.

    Accounts: ``CLOUD`` (cloud agents, JetStream domain ``hub``, streams
    ``CLOUD_IN``/``CLOUD_OUT``). Each site's leaf connection authenticates as that
    site's :attr:`SiteSpec.leaf` user in ``CLOUD``, whose permissions allow only
    that site's outbox/inbox and the JetStream subjects sourcing needs.
    """

    name: str = "hub"
    """Server name (``server_name``)."""
    host: str = "127.0.0.1"
    """Address every listener of the hub binds."""
    client_port: Port = 0
    """Port for cloud agents and operators."""
    leafnode_port: Port = 0
    """Port the sites' leaf remotes dial."""
    monitor_port: Port = 0
    """HTTP monitoring port (``/varz``, ``/leafz``, ``/jsz``)."""
    store_dir: Path | None = None
    """JetStream store; ``None``: ``<state_dir>/hub``."""
    cloud: Credentials | None = None
    """The cloud agents' user in ``CLOUD``; ``None``: generated (user ``cloud``)."""

    @property
    def domain(self) -> str:
        """The hub's JetStream domain, always :data:`HUB_DOMAIN`."""
        return HUB_DOMAIN

    @property
    def client_url(self) -> str:
        """``nats://host:client_port`` (no credentials)."""
        return f"nats://{self.host}:{self.client_port}"

    @property
    def leafnode_url(self) -> str:
        """``nats-leaf://host:leafnode_port`` (no credentials)."""
        return f"nats-leaf://{self.host}:{self.leafnode_port}"

    @property
    def monitor_url(self) -> str:
        """``http://host:monitor_port``."""
        return f"http://{self.host}:{self.monitor_port}"


class SiteSpec(_Model):
    """One site's ``nats-server`` (a leaf node of the hub).

    Accounts: ``SITE`` (workers and operators; every site stream) and ``EGRESS``
    (the outbox and the inbox landing stream only; the one account the leaf
    remote binds).
    """

    name: str = Field(pattern=SITE_NAME)
    """Site name: subject token and JetStream domain."""
    host: str = "127.0.0.1"
    """Address the site's listeners bind."""
    client_port: Port = 0
    """Client port (both accounts; the user decides the account)."""
    monitor_port: Port = 0
    """HTTP monitoring port."""
    store_dir: Path | None = None
    """JetStream store; ``None``: ``<state_dir>/sites/<name>``."""
    site: Credentials | None = None
    """User in ``SITE`` (workers); ``None``: generated (user ``site``)."""
    egress: Credentials | None = None
    """User in ``EGRESS`` (the inbox relay); ``None``: generated (user ``egress``)."""
    leaf: Credentials | None = None
    """User in the hub's ``CLOUD`` the leaf remote logs in as; ``None``: generated
    (user ``leaf-<name>``)."""

    @property
    def domain(self) -> str:
        """The site's JetStream domain (its name)."""
        return self.name

    @property
    def monitor_url(self) -> str:
        """``http://host:monitor_port``."""
        return f"http://{self.host}:{self.monitor_port}"


class TopologySpec(_Model):
    """A hub and its sites.

    Raises:
        pydantic.ValidationError: duplicate site names, a site named like the hub
            domain, or any invalid field.
    """

    hub: HubSpec = HubSpec()
    """The cloud hub."""
    sites: tuple[SiteSpec, ...] = Field(default=(), min_length=1)
    """The sites; each one a leaf node of the hub."""
    state_dir: Path = Path(".sitemesh/topology")
    """Parent of default store dirs, rendered configs and logs."""

    @model_validator(mode="after")
    def _unique_sites(self) -> Self:
        names = [s.name for s in self.sites]
        if len(set(names)) != len(names):
            raise ValueError(f"site names must be unique: {names}")
        if HUB_DOMAIN in names:
            raise ValueError(f"{HUB_DOMAIN!r} is the hub's JetStream domain, not a site name")
        return self

    @classmethod
    def for_sites(cls, names: list[str], state_dir: Path) -> TopologySpec:
        """A loopback topology with default ports (``0``) for ``names``."""
        return cls(sites=tuple(SiteSpec(name=n) for n in names), state_dir=Path(state_dir))

    @classmethod
    def from_toml(cls, path: Path) -> TopologySpec:
        """Load a topology from a TOML file (see the module docstring).

        Raises:
            OSError: unreadable file.
            tomllib.TOMLDecodeError: not TOML.
            pydantic.ValidationError: not a valid topology.
        """
        with Path(path).open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
        return cls.model_validate(data)

    def site(self, name: str) -> SiteSpec:
        """The site named ``name``.

        Raises:
            KeyError: no such site.
        """
        for s in self.sites:
            if s.name == name:
                return s
        raise KeyError(name)

    def _ports(self) -> list[int]:
        h = self.hub
        out = [h.client_port, h.leafnode_port, h.monitor_port]
        for s in self.sites:
            out += [s.client_port, s.monitor_port]
        return out

    def resolve(self) -> TopologySpec:
        """A copy with every port, credential and store dir filled in.

        Ports ``0`` become free ports on the listener's host (free a moment ago:
        start the servers soon after). Fields already set are kept, so resolving
        a resolved spec returns an equal spec.
        """

        taken = {p for p in self._ports() if p}

        def port(p: int, host: str) -> int:
            if p:  # explicit ports are kept as given
                return p
            while True:  # distinct free ports
                p = free_port(host)
                if p not in taken:
                    taken.add(p)
                    return p

        hub = self.hub
        hub = hub.model_copy(
            update={
                "client_port": port(hub.client_port, hub.host),
                "leafnode_port": port(hub.leafnode_port, hub.host),
                "monitor_port": port(hub.monitor_port, hub.host),
                "store_dir": hub.store_dir or self.state_dir / "hub",
                "cloud": hub.cloud or Credentials.generate("cloud"),
            }
        )
        sites = tuple(
            s.model_copy(
                update={
                    "client_port": port(s.client_port, s.host),
                    "monitor_port": port(s.monitor_port, s.host),
                    "store_dir": s.store_dir or self.state_dir / "sites" / s.name,
                    "site": s.site or Credentials.generate("site"),
                    "egress": s.egress or Credentials.generate("egress"),
                    "leaf": s.leaf or Credentials.generate(f"leaf-{s.name}"),
                }
            )
            for s in self.sites
        )
        return self.model_copy(update={"hub": hub, "sites": sites})
