"""Launching a hub and its sites on this machine: ``Topology`` and ``run_up``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import ssl
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import quote

import nats.errors
from nats.aio.client import Client

from ..bus import CLOUD_IN, NatsServer, ServerBinary, Subjects, find_nats_server, redact_url
from ..config import BusSettings
from ..errors import BusConnectionError, NatsServerError
from ._config import render_hub_config, render_site_config
from ._creds import Security, client_options
from ._egress import InboxRelay, provision_hub, provision_site_egress, restart_stalled_sources
from ._model import Credentials, SiteSpec, TopologySpec

log = logging.getLogger("sitemesh.topology")


def credentials_url(host: str, port: int, creds: Credentials | None) -> str:
    """``nats://user:password@host:port`` (credentials percent-encoded, RFC 3986).

    nats-py passes URL credentials through without decoding, so a password with
    URL-reserved characters needs the ``user``/``password`` connect options instead;
    generated passwords are URL-safe.
    """
    if creds is None:
        return f"nats://{host}:{port}"
    user = quote(creds.user, safe="")
    password = quote(creds.password.get_secret_value(), safe="")
    return f"nats://{user}:{password}@{host}:{port}"


async def connect_as(
    host: str,
    port: int,
    creds: Credentials | None,
    *,
    name: str,
    timeout_s: float = 5.0,
    tls: ssl.SSLContext | None = None,
    options: dict[str, object] | None = None,
) -> Client:
    """Connect with ``creds`` passed as connect options (any password works).

    Same reconnect behaviour as :func:`sitemesh.bus.connect` (reconnect forever,
    every 0.5 s); use this rather than a URL when a password may hold characters
    that are reserved in URLs.

    Args:
        host: server address.
        port: client port.
        creds: user and password; ``None`` with ``options`` carrying an NKey seed,
            or to connect anonymously (refused by every sitemesh server).
        name: client name shown by the server.
        timeout_s: seconds allowed for the first connection.
        tls: client TLS context (:meth:`TlsFiles.client_context`).
        options: more nats-py connect options, e.g. :func:`client_options`'s
            ``nkeys_seed_str`` and ``inbox_prefix``.

    Raises:
        BusConnectionError: not connected within ``timeout_s`` seconds.
    """
    url = f"nats://{host}:{port}"
    nc = Client()
    try:
        await asyncio.wait_for(
            nc.connect(
                servers=[url],
                name=name,
                user=creds.user if creds else None,
                password=creds.password.get_secret_value() if creds else None,
                connect_timeout=max(1, min(int(timeout_s), 2)),
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,  # type: ignore[arg-type]  # nats-py annotates int
                pending_size=8 * 1024 * 1024,
                error_cb=_log_error,
                tls=tls,
                **(options or {}),  # type: ignore[arg-type]
            ),
            timeout_s,
        )
    except (TimeoutError, OSError, nats.errors.Error) as exc:
        with contextlib.suppress(Exception):
            await nc.close()
        raise BusConnectionError(url, f"{type(exc).__name__}: {exc} (after {timeout_s}s)") from exc
    return nc


async def _log_error(exc: Exception) -> None:
    log.warning("nats: %s", redact_url(str(exc)))


def _leafz(monitor_url: str, timeout_s: float = 1.0) -> dict[str, Any]:
    with urllib.request.urlopen(f"{monitor_url}/leafz", timeout=timeout_s) as resp:  # noqa: S310  # our own http:// URL
        data: dict[str, Any] = json.loads(resp.read())
    return data


class Topology:
    """A hub ``nats-server`` and one leaf ``nats-server`` per site, provisioned.

    ``async with Topology(spec) as topo:`` renders the configs into
    ``<state_dir>/conf``, starts the hub then every site, waits until each site's
    leaf connection is up (``/leafz`` of the hub's monitoring port), provisions
    the hub (:func:`provision_hub`) and each site's boundary streams
    (:func:`provision_site_egress`), and starts one :class:`InboxRelay` per site
    (``relays=False`` to run them elsewhere). Exit stops relays, sites, hub.

    Site workers still provision their own streams with
    :func:`sitemesh.bus.provision` on :meth:`site_url`.

    Args:
        spec: the topology; resolved here (free ports, generated credentials).
        binary: the ``nats-server`` to run; ``None``: :func:`find_nats_server`.
        bus: stream limits for the boundary streams; ``None``: defaults.
        relays: run an inbox relay per site in this process.
        stalled_after_s: seconds of silence after which a relay restarts its landing
            stream's source (see :func:`restart_stalled_sources`).
        ready_timeout_s: seconds to wait for each server and each leaf connection.
        security: per-role identities and TLS (``sitemesh creds`` / ``sitemesh
            certs``); ``None``: shared account users, no TLS.
    """

    def __init__(
        self,
        spec: TopologySpec,
        *,
        binary: ServerBinary | None = None,
        bus: BusSettings | None = None,
        relays: bool = True,
        stalled_after_s: float = 10.0,
        ready_timeout_s: float = 15.0,
        security: Security | None = None,
    ) -> None:
        self.spec = spec.resolve()
        self.security = security
        self.binary = binary or find_nats_server(None)
        self.bus = bus or BusSettings()
        self.ready_timeout_s = ready_timeout_s
        self.conf_dir = self.spec.state_dir / "conf"
        self._with_relays = relays
        self.stalled_after_s = stalled_after_s
        self.relays: dict[str, InboxRelay] = {}
        self._relay_tasks: dict[str, asyncio.Task[None]] = {}
        self._clients: list[Client] = []
        hub = self.spec.hub
        assert hub.store_dir is not None  # resolved
        self.hub = NatsServer(
            hub.store_dir,
            binary=self.binary,
            port=hub.client_port,
            host=hub.host,
            config=self.conf_dir / "hub.conf",
            ready_timeout_s=ready_timeout_s,
        )
        self.sites: dict[str, NatsServer] = {}
        for s in self.spec.sites:
            assert s.store_dir is not None
            self.sites[s.name] = NatsServer(
                s.store_dir,
                binary=self.binary,
                port=s.client_port,
                host=s.host,
                config=self.conf_dir / f"site-{s.name}.conf",
                ready_timeout_s=ready_timeout_s,
            )

    # -- URLs -------------------------------------------------------------------------
    @property
    def hub_url(self) -> str:
        """URL for cloud agents (``CLOUD`` account, with credentials)."""
        h = self.spec.hub
        return credentials_url(h.host, h.client_port, h.cloud)

    def site_url(self, site: str) -> str:
        """URL for site ``site``'s workers and operators (``SITE`` account)."""
        s = self.spec.site(site)
        return credentials_url(s.host, s.client_port, s.site)

    def egress_url(self, site: str) -> str:
        """URL of site ``site``'s ``EGRESS`` account (the inbox relay only)."""
        s = self.spec.site(site)
        return credentials_url(s.host, s.client_port, s.egress)

    # -- lifecycle --------------------------------------------------------------------
    def write_configs(self) -> None:
        """Render every server's config into :attr:`conf_dir` (mode 0600: passwords)."""
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        sec = self.security
        files = {"hub.conf": render_hub_config(self.spec, security=sec)}
        for s in self.spec.sites:
            files[f"site-{s.name}.conf"] = render_site_config(self.spec, s.name, security=sec)
        for name, text in files.items():
            path = self.conf_dir / name
            path.touch(mode=0o600, exist_ok=True)
            path.chmod(0o600)
            path.write_text(text)

    def leaf_connected(self, site: str) -> bool:
        """Whether the hub reports site ``site``'s leaf connection (``/leafz``)."""
        try:
            leafs = _leafz(self.spec.hub.monitor_url).get("leafs") or []
        except OSError:
            return False
        return any(leaf.get("name") == f"site-{site}" for leaf in leafs)

    async def wait_leaf(self, site: str, timeout_s: float | None = None) -> None:
        """Wait until site ``site``'s leaf connection is established.

        Raises:
            NatsServerError: not connected within ``timeout_s`` seconds
                (default ``ready_timeout_s``); names the site log.
        """
        timeout_s = self.ready_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while not await asyncio.to_thread(self.leaf_connected, site):
            if time.monotonic() > deadline:
                raise NatsServerError(
                    f"site {site}: no leaf connection to the hub after {timeout_s}s "
                    f"(see {self.sites[site].log_path})"
                )
            await asyncio.sleep(0.05)

    async def connect_hub(self, name: str) -> Client:
        """A client of the hub's ``CLOUD`` account (closed on :meth:`shutdown`)."""
        h = self.spec.hub
        return await self._client(h.host, h.client_port, h.cloud, name, "hub")

    async def connect_site(self, site: str, name: str) -> Client:
        """A client of site ``site``'s ``SITE`` account (closed on :meth:`shutdown`)."""
        s = self.spec.site(site)
        return await self._client(s.host, s.client_port, s.site, name, site)

    async def connect_egress(self, site: str, name: str) -> Client:
        """A client of site ``site``'s ``EGRESS`` account (closed on :meth:`shutdown`)."""
        s = self.spec.site(site)
        return await self._client(s.host, s.client_port, s.egress, name, site)

    async def connect_identity(self, server: str, role: str, *, name: str | None = None) -> Client:
        """A client logged in as ``role``'s NKey identity on ``server`` (a site or ``"hub"``).

        Uses the identity's inbox prefix and the server's client certificate, as a
        worker process would (closed on :meth:`shutdown`).

        Raises:
            KeyError: no security/creds, or no such identity.
            BusConnectionError: refused or unreachable.
        """
        if self.security is None or self.security.creds is None:
            raise KeyError("this topology has no per-role identities (security.creds)")
        ident = self.security.creds.get(server, role)
        options = client_options(role=role, seed_file=ident.seed_file)
        if server == "hub":
            host, port = self.spec.hub.host, self.spec.hub.client_port
        else:
            s = self.spec.site(server)
            host, port = s.host, s.client_port
        nc = await connect_as(
            host,
            port,
            None,
            name=name or f"{role}@{server}",
            timeout_s=self.ready_timeout_s,
            tls=self._tls(server),
            options=options,
        )
        self._clients.append(nc)
        return nc

    def _tls(self, server: str) -> ssl.SSLContext | None:
        return None if self.security is None else self.security.tls_context(server)

    async def _client(
        self, host: str, port: int, creds: Credentials | None, name: str, server: str
    ) -> Client:
        nc = await connect_as(
            host, port, creds, name=name, timeout_s=self.ready_timeout_s, tls=self._tls(server)
        )
        self._clients.append(nc)
        return nc

    async def provision(self) -> None:
        """Provision the hub and every site's boundary streams (idempotent)."""
        hub_nc = await self.connect_hub("topology-provision@hub")
        await provision_hub(hub_nc.jetstream(), [s.name for s in self.spec.sites], self.bus)
        for s in self.spec.sites:
            await self._provision_site(s)

    async def _provision_site(self, s: SiteSpec) -> None:
        egress = await self.connect_egress(s.name, f"topology-provision@{s.name}")
        site = await self.connect_site(s.name, f"topology-provision@{s.name}")
        await provision_site_egress(
            egress.jetstream(), site.jetstream(), Subjects(s.name), self.bus
        )

    async def start(self) -> None:
        """Write configs, start hub and sites, wait for leafs, provision, start relays.

        Raises:
            NatsServerError: a server did not start or a leaf did not connect.
        """
        self.write_configs()
        try:
            await self.hub.start()
            await asyncio.gather(*(srv.start() for srv in self.sites.values()))
            await asyncio.gather(*(self.wait_leaf(name) for name in self.sites))
            await self.provision()
            if self._with_relays:
                for name in self.sites:
                    await self.start_relay(name)
        except BaseException:
            await self.shutdown()
            raise

    async def start_relay(self, site: str) -> InboxRelay:
        """Start site ``site``'s inbox relay in this process (no-op if running).

        With per-role identities (``security.creds``) it logs in as the ``relay``
        identity of ``EGRESS``, else as the shared ``egress`` user.
        """
        if site in self.relays:
            return self.relays[site]
        if self.security is not None and self.security.creds is not None:
            nc = await self.connect_identity(site, "relay", name=f"inbox-relay@{site}")
        else:
            nc = await self.connect_egress(site, f"inbox-relay@{site}")
        relay = self.relays[site] = InboxRelay(
            nc, Subjects(site), stalled_after_s=self.stalled_after_s
        )
        self._relay_tasks[site] = asyncio.create_task(relay.run(), name=f"inbox-relay-{site}")
        return relay

    async def shutdown(self) -> None:
        """Stop relays, close clients, stop sites then the hub. Safe to call twice."""
        for relay in self.relays.values():
            await relay.shutdown()
        for task in self._relay_tasks.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.relays.clear()
        self._relay_tasks.clear()
        clients, self._clients = self._clients, []
        for nc in clients:
            with contextlib.suppress(Exception):
                await nc.close()
        await asyncio.gather(*(srv.shutdown() for srv in self.sites.values()))
        await self.hub.shutdown()

    # -- cutting the link (tests, drills) -------------------------------------------
    async def stop_hub(self) -> None:
        """Stop the hub server (sites keep running and queue their outbox)."""
        await self.hub.shutdown()

    async def start_hub(self, *, wait_leafs: bool = True) -> None:
        """Start the hub again on the same ports and store; wait for every leaf.

        Raises:
            NatsServerError: the hub did not start or a leaf did not reconnect.
        """
        await self.hub.start()
        if wait_leafs:
            await asyncio.gather(*(self.wait_leaf(name) for name in self.sites))
            await self.resume_sources()

    async def resume_sources(self, grace_s: float = 2.0) -> list[str]:
        """Restart CLOUD_IN's sources that are still silent ``grace_s`` seconds from now.

        After a hub restart the server would otherwise retry them only after its
        backoff (see :func:`restart_stalled_sources`). The cloud node should do the
        same periodically.

        Returns:
            The restarted sources.
        """
        nc = await self.connect_hub("topology-resume@hub")
        js = nc.jetstream()
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            info = await js.stream_info(CLOUD_IN)
            if all(s.active is not None and s.active >= 0 for s in info.sources or []):
                return []
            await asyncio.sleep(0.1)
        return await restart_stalled_sources(js, CLOUD_IN, stalled_after_s=grace_s)

    async def restart_hub(self) -> None:
        """:meth:`stop_hub` then :meth:`start_hub`."""
        await self.stop_hub()
        await self.start_hub()

    async def stop_leaf(self, site: str) -> None:
        """Stop site ``site``'s server (its link and its local service go down)."""
        await self.sites[site].shutdown()

    async def start_leaf(self, site: str) -> None:
        """Start site ``site``'s server again (same port and store); wait for its leaf.

        The site's inbox relay restarts a stalled landing source by itself within
        its ``stalled_after_s``; the hub's CLOUD_IN sources resume via
        :meth:`resume_sources`.
        """
        await self.sites[site].start()
        await self.wait_leaf(site)
        await self.resume_sources()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


def _user(creds: Credentials | None) -> str:
    return creds.user if creds is not None else "(none)"


class Console(Protocol):
    """What :func:`run_up` prints with (``rich.console.Console`` fits)."""

    def print(self, *objects: Any) -> None: ...


async def run_up(
    sites: list[str],
    state_dir: Path,
    console: Console,
    *,
    stop: asyncio.Event | None = None,
) -> None:
    """Start a hub and ``sites`` on loopback, print their URLs, run until SIGINT/SIGTERM.

    The hub's store is ``<state_dir>/topology/hub``, each site's
    ``<state_dir>/topology/sites/<site>``; ports are free ones; credentials are
    generated per run. The URLs are printed without them: the users and passwords
    are in the rendered configs (``<state_dir>/topology/conf``, mode 0600), and
    :attr:`Topology.hub_url` / :meth:`Topology.site_url` give URLs that carry them.

    Args:
        sites: site names, e.g. ``["eu1", "us1"]``.
        state_dir: the sitemesh state directory.
        console: where the URLs go.
        stop: also stop when this event is set (embedding, tests).

    Raises:
        NatsServerError: a server did not start or a leaf did not connect.
    """
    spec = TopologySpec.for_sites(sites, Path(state_dir) / "topology")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with Topology(spec) as topo:
            console.print(f"nats-server {topo.binary.version_str} ({topo.binary.origin})")
            h = topo.spec.hub
            console.print(
                f"hub   (cloud agents, domain hub): {credentials_url(h.host, h.client_port, None)}"
                f"  user {_user(h.cloud)}"
            )
            for s in topo.spec.sites:
                url = credentials_url(s.host, s.client_port, None)
                console.print(f"site {s.name} (workers, SITE account): {url}  user {_user(s.site)}")
                console.print(
                    f"site {s.name} (inbox relay, EGRESS):   {url}  user {_user(s.egress)}"
                )
            console.print(f"configs: {topo.conf_dir}  (passwords there, mode 0600; Ctrl-C to stop)")
            await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
