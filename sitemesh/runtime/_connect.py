"""One way to reach NATS: settings + a role in, a connection with the role's identity out."""

from __future__ import annotations

import os

from nats.aio.client import Client

from .. import bus
from ..config import Settings
from ..errors import ConfigError
from ._identity import nats_options


def creds_dir_identity(settings: Settings, role: str) -> Settings:
    """``settings`` with the seed file of ``role`` at ``settings.site`` from
    ``nats.creds_dir`` when that is set and no seed is; else unchanged.

    How the processes of ``sitemesh up`` (and an operator who sourced one of its env
    files) connect: every process gets the same ``SITEMESH_NATS_CREDS_DIR`` and picks
    its own role's identity from it; the hub's processes have site ``hub``.

    Args:
        settings: ``nats.creds_dir``, ``nats.nkey_seed_file``/``nkey_seed``, ``site``.
        role: the role about to connect (``planner``, ``operator``, ``client``...).

    Returns:
        The settings, with ``nats.nkey_seed_file`` set when it was picked here.

    Raises:
        ConfigError: key ``nats.creds_dir``: the directory has no manifest (not a
            ``sitemesh creds`` directory) or no identity for ``role`` at this site.
    """
    nats = settings.nats
    if nats.creds_dir is None or nats.nkey_seed_file is not None or nats.nkey_seed is not None:
        return settings
    from ..topology import load_creds

    directory = nats.creds_dir
    try:
        bundle = load_creds(directory)
    except ConfigError as exc:
        raise ConfigError("nats.creds_dir", str(exc).split(": ", 1)[-1]) from None
    try:
        seed = bundle.get(settings.site, role).seed_file
    except KeyError:
        known = sorted({i.site for i in bundle.identities})
        raise ConfigError(
            "nats.creds_dir",
            f"{directory} has no identity for role {role!r} at site {settings.site!r} "
            f"(it has sites {known}); run `sitemesh creds --site {settings.site} --role "
            f"{role} --out {directory}` and restart the servers that use it",
        ) from None
    return settings.model_copy(update={"nats": nats.model_copy(update={"nkey_seed_file": seed})})


def embedded_identity(settings: Settings, role: str, url: str) -> Settings:
    """``settings`` with ``role``'s seed file when ``url`` is this state directory's
    authenticated embedded server and no identity is configured; else unchanged.

    ``sitemesh edge`` and ``sitemesh demo`` start the embedded server with per-role
    identities under ``<state_dir>/creds`` (:func:`sitemesh.bus.embedded_creds`), so a
    command run against it (``sitemesh publish`` as ``client``, ``dlq``, ``policy``...
    as ``operator``) needs no ``SITEMESH_NATS_NKEY_SEED_FILE``.

    Raises:
        ConfigError: the server is authenticated but has no identity for ``role`` at
            this site (key ``nats.nkey_seed_file``).
    """
    if settings.nats.has_identity:
        return settings
    creds = bus.embedded_creds(settings.state_dir, url)
    if creds is None:
        return settings
    from ..topology import load_creds

    try:
        seed = load_creds(creds).get(settings.site, role).seed_file
    except KeyError:
        raise ConfigError(
            "nats.nkey_seed_file",
            f"the embedded server at {bus.redact_url(url)} admits only its identities, and "
            f"{creds} has none for role {role!r} at site {settings.site!r} (restart "
            f"`sitemesh edge --site {settings.site}`, or run `sitemesh creds --site "
            f"{settings.site} --role {role} --out {creds}` and restart it)",
        ) from None
    return settings.model_copy(
        update={"nats": settings.nats.model_copy(update={"nkey_seed_file": seed})}
    )


async def connect(
    settings: Settings, role: str, *, url: str | None = None, name: str | None = None
) -> Client:
    """Connect as ``role``, with the identity and TLS material ``settings.nats`` names.

    Every sitemesh process and CLI command connects through here, so a secured site
    (``sitemesh creds``/``certs``) works the same for workers and operators. With
    ``nats.creds_dir`` set and no seed, ``role``'s identity at ``settings.site`` from
    that directory is used (:func:`creds_dir_identity`); with no identity configured at
    all and the target being this state directory's authenticated embedded server,
    ``role``'s identity from ``<state_dir>/creds`` (:func:`embedded_identity`).

    Args:
        settings: ``nats.url`` (unless ``url``), identity and TLS files, timeouts.
        role: the role the identity is for (``retriever``, ``router``, ``operator``,
            ``client``...): it picks the ``_INBOX.<role>`` reply prefix the role's
            permissions allow.
        url: connect here instead of ``settings.nats.url`` (the embedded server).
        name: the client name shown by the server; default
            ``sitemesh-<site>-<role>-<pid>``.

    Returns:
        A connected client; close it with ``await nc.drain()``.

    Raises:
        ConfigError: no URL, or the identity/TLS settings are incomplete or unreadable
            (``nats.creds_dir`` without an identity for ``role`` at this site).
        BusConnectionError: not connected within ``nats.connect_timeout_s`` seconds.
    """
    target = url or settings.nats.url
    if not target:
        raise ConfigError(
            "nats.url",
            "no NATS server to join: set SITEMESH_NATS_URL (or run `sitemesh edge`, "
            "which starts the embedded server and its workers together)",
        )
    settings = creds_dir_identity(settings, role)
    settings = embedded_identity(settings, role, target)
    return await bus.connect(
        target,
        name=name or f"sitemesh-{settings.site}-{role}-{os.getpid()}",
        timeout_s=settings.nats.connect_timeout_s,
        options=nats_options(settings.nats, role),
    )
