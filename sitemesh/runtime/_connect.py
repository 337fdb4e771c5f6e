"""One way to reach NATS: settings + a role in, a connection with the role's identity out."""

from __future__ import annotations

import os

from nats.aio.client import Client

from .. import bus
from ..config import Settings
from ..errors import ConfigError
from ._identity import nats_options


async def connect(
    settings: Settings, role: str, *, url: str | None = None, name: str | None = None
) -> Client:
    """Connect as ``role``, with the identity and TLS material ``settings.nats`` names.

    Every sitemesh process and CLI command connects through here, so a secured site
    (``sitemesh creds``/``certs``) works the same for workers and operators.

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
        ConfigError: no URL, or the identity/TLS settings are incomplete or unreadable.
        BusConnectionError: not connected within ``nats.connect_timeout_s`` seconds.
    """
    target = url or settings.nats.url
    if not target:
        raise ConfigError(
            "nats.url",
            "no NATS server to join: set SITEMESH_NATS_URL (or run `sitemesh edge`, "
            "which starts the embedded server and its workers together)",
        )
    return await bus.connect(
        target,
        name=name or f"sitemesh-{settings.site}-{role}-{os.getpid()}",
        timeout_s=settings.nats.connect_timeout_s,
        options=nats_options(settings.nats, role),
    )
