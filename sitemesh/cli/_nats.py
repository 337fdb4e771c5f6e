"""Which NATS server a command talks to: the configured URL or the embedded one.

The embedded server is authenticated by default: on first start the per-role NKey
identities of the site are generated under ``<state_dir>/creds`` (as ``sitemesh
creds`` does; seeds mode 0600, reused on later starts) and the server runs with
:func:`sitemesh.topology.render_embedded_config` (``<state_dir>/nats-server.conf``):
each identity may do only its role's job, and a connection without one is refused.
``--insecure`` (``edge``, ``demo``, ``up``) runs it open instead, with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Final

from rich.console import Console

from ..bus import EmbeddedNats, embedded_creds
from ..config import Settings
from ..errors import ConfigError, NatsServerError
from ._secure_cmds import creds_dir

log = logging.getLogger("sitemesh.cli")

EMBEDDED_CONFIG: Final = "nats-server.conf"
"""The embedded server's configuration file, under the state directory."""

INSECURE_WARNING: Final = (
    "[bold yellow]warning:[/bold yellow] --insecure: the embedded nats-server accepts "
    "connections WITHOUT authentication. Any local process can read every task, forge "
    "answers, rewrite the policy and delete streams. Use it only on a machine you alone use."
)


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def _secured(settings: Settings, roles: Sequence[str]) -> tuple[Path, Path]:
    """Create (or reuse) the site's identities and render the server config."""
    from ..topology import ensure_site_creds, render_embedded_config, tenant_client

    state = settings.state_dir.resolve()
    tenants = [tenant_client(t) for t in settings.nats.tenants]
    bundle = ensure_site_creds(creds_dir(state), settings.site, roles=[*roles, *tenants])
    config = state / EMBEDDED_CONFIG
    _write_private(config, render_embedded_config(bundle))
    return config, bundle.directory


@contextlib.asynccontextmanager
async def nats_url(
    settings: Settings,
    console: Console,
    *,
    insecure: bool = False,
    roles: Sequence[str] = (),
) -> AsyncIterator[str]:
    """Yield the NATS URL to use.

    With ``SITEMESH_NATS_URL`` set, that URL. Otherwise the embedded server under
    ``<state_dir>``: reused when one is already running there, else started (and
    stopped again on exit), authenticated with the site's per-role identities unless
    ``insecure``. Says which binary runs and why it was chosen.

    Args:
        settings: ``nats.url``, ``nats.server_bin``, ``state_dir``, ``site``.
        console: where the notes go.
        insecure: start the embedded server without authentication (prints a warning).
        roles: agent roles besides the installed ones that need an identity
            (``--agent`` import paths).

    Raises:
        NatsServerError: no usable ``nats-server`` binary, or it failed to start.
    """
    if settings.nats.url:
        yield settings.nats.url
        return
    embedded = EmbeddedNats(settings.state_dir, settings.nats.server_bin)
    if embedded.live_url() is None:
        config = creds = None
        if not insecure:
            config, creds = _secured(settings, roles)
        embedded = EmbeddedNats(
            settings.state_dir, settings.nats.server_bin, config=config, creds_dir=creds
        )
    async with embedded:
        if embedded.server is not None:
            b = embedded.server.binary
            console.print(
                f"[dim]started nats-server v{b.version_str} ({b.origin}: {b.path}) "
                f"at {embedded.url}, store {settings.state_dir / 'nats'}[/dim]"
            )
            if embedded.creds_dir is not None:
                console.print(
                    f"[dim]authenticated: one identity per role in {embedded.creds_dir} "
                    "(seeds mode 0600); commands against it pick theirs from there[/dim]"
                )
        else:
            console.print(
                f"[dim]using the embedded nats-server already running at {embedded.url}[/dim]"
            )
        if embedded.creds_dir is None:
            if insecure:
                console.print(INSECURE_WARNING)
            elif embedded.server is None:
                console.print(
                    "[yellow]the embedded nats-server running there is unauthenticated "
                    "(started with --insecure); stop it to run this site secured[/yellow]"
                )
        if not embedded.owner:
            yield embedded.url
            return

        def restarting(code: int, n: int) -> None:
            log.error("embedded nats-server exited with %s; restarting it (restart %d)", code, n)
            console.print(
                f"[bold red]the embedded nats-server exited with {code}[/bold red]; "
                f"restarting it on the same port and store (restart {n}); "
                f"its log: {settings.state_dir / 'nats' / 'nats-server.log.1'}"
            )

        watchdog = asyncio.create_task(embedded.watch(restarting), name="nats-watchdog")
        try:
            yield embedded.url
        finally:
            watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError, NatsServerError):
                await watchdog


def running_nats_url(settings: Settings) -> str | None:
    """The NATS URL to *inspect*: ``SITEMESH_NATS_URL``, else the embedded server if
    one is running under ``<state_dir>``; ``None`` otherwise (nothing is started)."""
    if settings.nats.url:
        return settings.nats.url
    return EmbeddedNats(settings.state_dir, settings.nats.server_bin).live_url()


def worker_identities(
    settings: Settings, url: str, roles: Sequence[str]
) -> Mapping[str, Path] | None:
    """The seed file of each role in ``roles`` for the site's worker processes.

    Each child gets its own role's identity, never the operator's: from the
    authenticated embedded server's creds directory, or, when this command itself
    runs with an identity (``SITEMESH_NATS_NKEY_SEED_FILE`` on a secured external
    server), from ``nats.creds_dir`` or else ``<state_dir>/creds`` (``sitemesh creds``).

    Returns:
        ``{role: seed file}``, or ``None`` for an open server (no identities).

    Raises:
        ConfigError: the server needs identities but some role has none (key
            ``nats.nkey_seed_file``, naming the role and the directory).
    """
    from ..topology import load_creds

    directory = embedded_creds(settings.state_dir, url)
    if directory is None and not settings.nats.has_identity:
        return None
    directory = directory or settings.nats.creds_dir or creds_dir(settings.state_dir.resolve())
    try:
        bundle = load_creds(directory)
    except ConfigError as exc:
        raise ConfigError(
            "nats.nkey_seed_file",
            f"each worker needs its own identity, and there are none: {exc} (run `sitemesh "
            f"creds --site {settings.site}`)",
        ) from None
    out: dict[str, Path] = {}
    for role in dict.fromkeys(roles):
        try:
            out[role] = bundle.get(settings.site, role).seed_file
        except KeyError:
            raise ConfigError(
                "nats.nkey_seed_file",
                f"no identity for role {role!r} at site {settings.site!r} in {directory} "
                f"(run `sitemesh creds --site {settings.site} --role {role}`)",
            ) from None
    return out


async def ensure_streams(settings: Settings, url: str) -> None:
    """Provision the site's streams as ``operator`` (idempotent).

    What ``publish`` and ``watch`` do before submitting when they run without an
    identity of their own, so tasks are stored even before ``sitemesh edge`` starts
    (their ``client`` identity may not create streams).
    """
    from ..bus import Subjects, provision
    from ..runtime import connect

    nc = await connect(settings, "operator", url=url, name="sitemesh-provision")
    try:
        await provision(nc.jetstream(), Subjects(settings.site), settings.bus)
    finally:
        await nc.drain()
