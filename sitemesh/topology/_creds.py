"""Per-role NATS identities (``sitemesh creds``) and how a process connects with one.

Each identity is an NKey user (nats-server docs, "NKeys"): an Ed25519 key pair
whose *public* key (``U...``) goes into the server configuration together with
the role's permissions (:mod:`._permissions`), and whose *seed* (``SU...``) stays
with the process, in a file of mode 0600. Authentication is a signature over the
server's nonce, so no secret is ever in a server config, a URL or a log line.

Layout under the creds directory (``<state_dir>/creds``)::

    identities.json            public keys only (rendered into server configs)
    <site>/<role>.nk           seeds of the SITE account identities
    <site>/egress-relay.nk     seed of the EGRESS inbox relay
    hub/<role>.nk              seeds of the hub's CLOUD identities

A process picks its identity with ``SITEMESH_NATS_NKEY_SEED_FILE`` (a path) or
``SITEMESH_NATS_NKEY_SEED`` (the seed itself) and, with TLS, the certificate
paths; :func:`client_options` turns those settings into nats-py connect options
and fails early with a :class:`~sitemesh.errors.ConfigError` naming the key.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import SecretStr

from ..errors import ConfigError
from ._permissions import (
    EGRESS_IDENTITIES,
    HUB_IDENTITIES,
    HUB_SITE,
    SITE_IDENTITIES,
    Permissions,
    egress_permissions,
    hub_permissions,
    inbox_prefix,
    site_permissions,
)
from ._tls import DevPki, TlsFiles, generate_dev_pki, valid_for_s

MANIFEST: Final = "identities.json"
"""Public part of the creds directory: account, site, role and public key per identity."""

SEED_KEY: Final = "nats.nkey_seed"
SEED_FILE_KEY: Final = "nats.nkey_seed_file"


def _nkeys() -> Any:
    try:
        import nkeys
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "nats.nkey_seed", "NKey identities need the `nkeys` package (pip install nkeys)"
        ) from exc
    return nkeys


def new_user_seed() -> SecretStr:
    """A fresh NKey user seed (``SU...``), from 32 bytes of ``secrets.token_bytes``."""
    nk = _nkeys()
    return SecretStr(nk.encode_seed(secrets.token_bytes(32), nk.PREFIX_BYTE_USER).decode())


def public_key(seed: SecretStr) -> str:
    """The public key (``U...``) of user seed ``seed``.

    Raises:
        ConfigError: ``seed`` is not a valid NKey user seed (the seed is not echoed).
    """
    nk = _nkeys()
    try:
        kp = nk.from_seed(bytearray(seed.get_secret_value().strip().encode()))
        pub: str = kp.public_key.decode()
    except Exception as exc:
        raise ConfigError(SEED_KEY, f"not a valid NKey user seed ({type(exc).__name__})") from None
    if not pub.startswith("U"):
        raise ConfigError(SEED_KEY, "not an NKey *user* seed (it must start with 'SU')")
    return pub


@dataclass(frozen=True, slots=True)
class Identity:
    """One process identity: who it is, what it may do, where its seed lives.

    Attributes:
        account: ``SITE``, ``EGRESS`` or ``CLOUD``.
        site: the site, or ``"hub"`` for the hub's identities.
        role: the role (:data:`SITE_IDENTITIES`, :data:`EGRESS_IDENTITIES`,
            :data:`HUB_IDENTITIES`).
        public_key: the NKey public key (``U...``); not secret.
        seed_file: the seed's file (mode 0600); secret.
    """

    account: str
    site: str
    role: str
    public_key: str
    seed_file: Path

    @property
    def permissions(self) -> Permissions:
        """The role's permissions (derived from the subject map, never stored)."""
        if self.account == "EGRESS":
            return egress_permissions(self.site, self.role)
        if self.account == "CLOUD":
            return hub_permissions(self.role)
        return site_permissions(self.site, self.role)

    @property
    def inbox_prefix(self) -> str:
        """The reply-inbox prefix the process must connect with."""
        return inbox_prefix(self.role)

    def user_block(self) -> dict[str, object]:
        """The nats-server ``users`` entry: public key and permissions."""
        return {"nkey": self.public_key, "permissions": self.permissions.to_conf()}


@dataclass(frozen=True, slots=True)
class CredsBundle:
    """All identities of a topology (public part; seeds stay in their files)."""

    directory: Path
    identities: tuple[Identity, ...]

    def of(self, server: str, account: str) -> list[Identity]:
        """The identities of ``account`` on server ``server`` (a site or ``"hub"``)."""
        return [i for i in self.identities if i.site == server and i.account == account]

    def get(self, server: str, role: str, account: str | None = None) -> Identity:
        """The identity of ``role`` on ``server``; ``account`` defaults to the role's.

        Raises:
            KeyError: no such identity (run ``sitemesh creds`` for that site).
        """
        if account is None:
            account = (
                "CLOUD"
                if server == HUB_SITE
                else ("EGRESS" if role in EGRESS_IDENTITIES else "SITE")
            )
        for i in self.identities:
            if (i.site, i.role, i.account) == (server, role, account):
                return i
        raise KeyError(f"no identity {account}/{role} for {server} in {self.directory}")


def _plan(sites: Iterable[str], roles: Iterable[str] = ()) -> list[tuple[str, str, str, str]]:
    """``(account, server, role, seed path relative to the creds dir)`` of every identity."""
    out = [("CLOUD", HUB_SITE, r, f"{HUB_SITE}/{r}.nk") for r in HUB_IDENTITIES]
    site_roles = tuple(dict.fromkeys((*SITE_IDENTITIES, *roles)))
    for site in sites:
        out += [("SITE", site, r, f"{site}/{r}.nk") for r in site_roles]
        out += [("EGRESS", site, r, f"{site}/egress-{r}.nk") for r in EGRESS_IDENTITIES]
    return out


def _write_secret(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    path.chmod(0o600)


def generate_creds(
    directory: Path, sites: Sequence[str], *, rotate: bool = False, roles: Sequence[str] = ()
) -> CredsBundle:
    """Create the NKey identities of the hub and of ``sites`` (``sitemesh creds``).

    Existing seeds are kept (so re-running after adding a site changes nothing
    else) unless ``rotate``; the manifest is rewritten from the seeds on disk.

    Args:
        directory: the creds directory (created mode 0700).
        sites: site names.
        rotate: replace every seed with a new one.
        roles: agent roles besides the installed ones (:data:`SITE_IDENTITIES`), e.g.
            one registered by import path; each gets an agent's permissions.

    Returns:
        The bundle; render it into the server configs with :class:`Security`.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    manifest: list[dict[str, str]] = []
    identities: list[Identity] = []
    for account, server, role, rel in _plan(sites, roles):
        path = directory / rel
        if rotate or not path.is_file():
            _write_secret(path, new_user_seed().get_secret_value())
        pub = public_key(read_seed(seed_file=path))
        identities.append(Identity(account, server, role, pub, path))
        manifest.append(
            {"account": account, "site": server, "role": role, "public_key": pub, "seed": rel}
        )
    # atomically: processes of a running site read it while a command adds a site
    tmp = directory / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(directory / MANIFEST)
    return CredsBundle(directory, tuple(identities))


def ensure_site_creds(directory: Path, site: str, *, roles: Sequence[str] = ()) -> CredsBundle:
    """The identities of ``site`` in ``directory``, created on first use and reused.

    What ``sitemesh edge`` / ``sitemesh demo`` run before starting the embedded server:
    :func:`generate_creds` for ``site`` and ``roles``, keeping every site and extra
    role the directory already has (so a second site on the same state directory
    does not drop the first from the manifest). Existing seeds are never replaced.

    Args:
        directory: the creds directory (``<state_dir>/creds``).
        site: the site name.
        roles: agent roles besides the installed ones (``--agent`` import paths).

    Returns:
        The bundle.
    """
    sites, extra = [site], list(roles)
    if (Path(directory) / MANIFEST).is_file():
        with contextlib.suppress(ConfigError):  # malformed: rewritten from the seeds
            old = load_creds(directory).identities
            sites = [*(i.site for i in old if i.account == "SITE"), site]
            extra = [*(i.role for i in old if i.account == "SITE"), *roles]
    known = set(SITE_IDENTITIES)
    return generate_creds(
        directory,
        list(dict.fromkeys(sites)),
        roles=[r for r in dict.fromkeys(extra) if r not in known],
    )


def load_creds(directory: Path) -> CredsBundle:
    """Load the public part of a creds directory (reads no seed).

    Raises:
        ConfigError: no manifest (run ``sitemesh creds``) or a malformed one.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    try:
        rows = json.loads(path.read_text())
        ids = tuple(
            Identity(r["account"], r["site"], r["role"], r["public_key"], directory / r["seed"])
            for r in rows
        )
    except FileNotFoundError:
        raise ConfigError(
            "creds_dir", f"no {MANIFEST} in {directory}; run `sitemesh creds`"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError("creds_dir", f"{path} is malformed: {exc!r}") from None
    return CredsBundle(directory, ids)


def read_seed(*, seed: SecretStr | None = None, seed_file: Path | None = None) -> SecretStr:
    """The NKey seed from the environment value or its file, validated.

    Args:
        seed: the seed itself (``SITEMESH_NATS_NKEY_SEED``).
        seed_file: a file holding it (``SITEMESH_NATS_NKEY_SEED_FILE``); preferred.

    Returns:
        The seed (a ``SecretStr``: never printed by reprs or logs).

    Raises:
        ConfigError: neither is set, the file is missing/unreadable or readable by
            others, or the seed is invalid; the message names the key, never the seed.
    """
    if seed_file is not None:
        path = Path(seed_file)
        try:
            mode = path.stat().st_mode
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(SEED_FILE_KEY, f"cannot read {path}: {exc.strerror}") from None
        if mode & 0o077:
            raise ConfigError(
                SEED_FILE_KEY,
                f"{path} is accessible by group/others (mode {mode & 0o777:o}); chmod 600 it",
            )
        value = SecretStr(text)
        key = SEED_FILE_KEY
    elif seed is not None:
        value, key = seed, SEED_KEY
    else:
        raise ConfigError(
            SEED_FILE_KEY,
            "no NATS identity: set SITEMESH_NATS_NKEY_SEED_FILE (or SITEMESH_NATS_NKEY_SEED)",
        )
    try:
        public_key(value)
    except ConfigError as exc:
        raise ConfigError(key, str(exc).split(": ", 1)[1]) from None
    return value


def client_options(
    *,
    role: str | None = None,
    seed: SecretStr | None = None,
    seed_file: Path | None = None,
    tls: TlsFiles | None = None,
) -> dict[str, object]:
    """nats-py ``connect(**options)`` for one identity, validated before connecting.

    Args:
        role: the identity's role; sets ``inbox_prefix`` to ``_INBOX.<role>``, the
            only inbox its permissions allow. ``None``: no per-role prefix.
        seed: the NKey seed (from the environment).
        seed_file: the NKey seed's file (mode 0600).
        tls: client certificate, key and CA; ``None``: no TLS.

    Returns:
        ``{"nkeys_seed_str": ..., "inbox_prefix": ..., "tls": SSLContext}`` as set.
        The dict holds the seed: never log it.

    Raises:
        ConfigError: a setting is missing or wrong; names the key.
    """
    out: dict[str, object] = {}
    if seed is not None or seed_file is not None:
        out["nkeys_seed_str"] = read_seed(seed=seed, seed_file=seed_file).get_secret_value()
    if role is not None:
        out["inbox_prefix"] = inbox_prefix(role)
    if tls is not None:
        out["tls"] = tls.client_context()
    return out


@dataclass(frozen=True, slots=True)
class Security:
    """What secures a topology: per-role identities and TLS material per server.

    Servers are named ``"hub"`` or by site. Pass it to
    :func:`~sitemesh.topology.render_hub_config` / ``render_site_config`` and
    :class:`~sitemesh.topology.Topology`.

    Attributes:
        creds: the identities; ``None``: only the shared account users.
        server_tls: server certificate per server (client port, and the hub's leaf port).
        client_tls: a client certificate per server, for processes connecting to it
            (required when ``verify_clients``).
        leaf_tls: per site, the client certificate its leaf remote presents.
        verify_clients: require client certificates (mutual TLS) on every listener.
    """

    creds: CredsBundle | None = None
    server_tls: Mapping[str, TlsFiles] = field(default_factory=dict)
    client_tls: Mapping[str, TlsFiles] = field(default_factory=dict)
    leaf_tls: Mapping[str, TlsFiles] = field(default_factory=dict)
    verify_clients: bool = True

    @classmethod
    def from_dirs(
        cls, sites: Sequence[str], *, certs_dir: Path | None, creds_dir: Path | None
    ) -> Security:
        """Load what ``sitemesh certs`` and ``sitemesh creds`` wrote, checking every file.

        Raises:
            ConfigError: a file is missing; names it.
        """
        creds = load_creds(creds_dir) if creds_dir is not None else None
        if certs_dir is None:
            return cls(creds=creds)
        pki = DevPki(Path(certs_dir))
        servers = [HUB_SITE, *sites]
        return cls(
            creds=creds,
            server_tls={s: pki.files(f"server-{s}").check(f"certs.server-{s}") for s in servers},
            client_tls={s: pki.files(f"client-{s}").check(f"certs.client-{s}") for s in servers},
            leaf_tls={s: pki.files(f"leaf-{s}").check(f"certs.leaf-{s}") for s in sites},
        )

    def tls_context(self, server: str) -> Any:
        """The client ``ssl.SSLContext`` for ``server``, or ``None`` without TLS."""
        files = self.client_tls.get(server)
        return None if files is None else files.client_context()


def generate_dev_certs(
    directory: Path, sites: Sequence[str], *, hosts: Sequence[str] | None = None, days: int = 30
) -> DevPki:
    """``sitemesh certs``: a development CA with every certificate a topology needs.

    ``server-hub``, ``server-<site>`` (SANs ``hosts``), ``client-hub``,
    ``client-<site>`` (processes connecting to that server) and ``leaf-<site>``
    (the site's leaf link to the hub).
    """
    servers = [f"server-{s}" for s in (HUB_SITE, *sites)]
    clients = [f"client-{s}" for s in (HUB_SITE, *sites)] + [f"leaf-{s}" for s in sites]
    kwargs: dict[str, Any] = {} if hosts is None else {"hosts": tuple(hosts)}
    return generate_dev_pki(directory, servers=servers, clients=clients, days=days, **kwargs)


RENEW_WITHIN_S: Final = 24 * 3600.0
"""A kept development certificate valid for less than this many seconds is re-issued."""


def ensure_dev_certs(
    directory: Path,
    sites: Sequence[str],
    *,
    days: int = 30,
    renew_within_s: float = RENEW_WITHIN_S,
) -> DevPki:
    """The development PKI of a hub and ``sites``, made on first use and kept after.

    What ``sitemesh up`` and ``sitemesh demo --sites`` run before starting their
    servers. Unlike :func:`generate_dev_certs`, which re-issues every certificate, a
    certificate whose PEM and key files exist and that stays valid for more than
    ``renew_within_s`` seconds is kept (the same files on every start); a missing one
    (a site added since) or an expiring one is issued by the directory's CA. Without a
    CA (first start, or its key is gone) a new CA is made and every certificate
    issued. Same names and profiles as :func:`generate_dev_certs` (SANs
    :data:`~sitemesh.topology._tls.DEV_HOSTS`).

    Args:
        directory: the certs directory (``<state_dir>/topology/certs``).
        sites: site names.
        days: validity of newly issued certificates, in days.
        renew_within_s: re-issue a certificate expiring within this many seconds.

    Returns:
        The PKI.

    Raises:
        ConfigError: key ``certs.ca``: the CA expires within ``renew_within_s`` seconds
            (remove the directory to make a new one) or its key is not an EC key.
    """
    directory = Path(directory)
    pki = DevPki(directory)
    servers = [f"server-{s}" for s in (HUB_SITE, *sites)]
    clients = [f"client-{s}" for s in (HUB_SITE, *sites)] + [f"leaf-{s}" for s in sites]
    have_ca = pki.ca_file.is_file() and (directory / "ca-key.pem").is_file()
    if have_ca:
        left = valid_for_s(pki.ca_file)
        if left is None or left < renew_within_s:
            raise ConfigError(
                "certs.ca",
                f"the development CA {pki.ca_file} is expired, expiring or unreadable; "
                f"remove {directory} and start again to make a new CA and certificates",
            )

    def missing(names: list[str]) -> list[str]:
        if not have_ca:
            return names
        out = []
        for name in names:
            files = pki.files(name)
            left = valid_for_s(files.cert_file)
            if left is None or left < renew_within_s or not files.key_file.is_file():
                out.append(name)
        return out

    new_servers, new_clients = missing(servers), missing(clients)
    if new_servers or new_clients or not have_ca:
        generate_dev_pki(directory, servers=new_servers, clients=new_clients, days=days)
    return pki
