"""``sitemesh creds`` and ``sitemesh certs``: per-role NATS identities and a development CA.

Plain functions returning the exit code; the typer app only wires them up
(``raise typer.Exit(creds_cmd(settings.state_dir, ["eu1"], console))``). They print
paths, public keys and the permission table, never a seed or a private key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.table import Table

from ..errors import SitemeshError
from ..topology import generate_creds, generate_dev_certs, permission_table, tenant_client

EXIT_OK: Final = 0
EXIT_ERROR: Final = 2


def creds_dir(state_dir: Path) -> Path:
    """Default creds directory: ``<state_dir>/creds``."""
    return Path(state_dir) / "creds"


def certs_dir(state_dir: Path) -> Path:
    """Default certificate directory: ``<state_dir>/certs``."""
    return Path(state_dir) / "certs"


def creds_cmd(
    state_dir: Path,
    sites: Sequence[str],
    console: Console,
    *,
    out_dir: Path | None = None,
    rotate: bool = False,
    show_permissions: bool = False,
    roles: Sequence[str] = (),
    tenants: Sequence[str] = (),
) -> int:
    """``sitemesh creds --site eu1 --site us1 [--role R] [--tenant T] [--rotate]
    [--show-permissions]``.

    Writes one NKey seed per identity (mode 0600) and ``identities.json`` (public
    keys); existing seeds are kept unless ``rotate``. Restart the servers after a
    rotation (``sitemesh up`` re-renders their configs).

    Args:
        state_dir: the sitemesh state directory.
        sites: site names.
        console: output.
        out_dir: the creds directory; ``None``: ``<state_dir>/creds``.
        rotate: replace every seed.
        show_permissions: also print each identity's allowed subjects.
        roles: extra agent roles to create identities for (``--role``).
        tenants: tenants that get a client identity of their own (``--tenant``,
            ``client-<tenant>``).

    Returns:
        The exit code.
    """
    directory = out_dir or creds_dir(state_dir)
    try:
        clients = [tenant_client(t) for t in dict.fromkeys(tenants)]
        bundle = generate_creds(directory, list(sites), rotate=rotate, roles=[*roles, *clients])
    except (SitemeshError, OSError, ValueError) as exc:
        console.print(f"[red]creds: {exc}[/red]")
        return EXIT_ERROR
    table = Table("account", "server", "role", "public key", "seed file")
    for i in bundle.identities:
        table.add_row(i.account, i.site, i.role, i.public_key, str(i.seed_file))
    console.print(table)
    if show_permissions:
        for site in sites:
            for name, perms in permission_table(site, [*roles, *clients]).items():
                console.print(f"[bold]{site} {name}[/bold]")
                console.print(f"  publish:   {', '.join(perms.publish)}")
                if perms.deny_publish:
                    console.print(f"  deny pub:  {', '.join(perms.deny_publish)}")
                console.print(f"  subscribe: {', '.join(perms.subscribe)}")
    console.print(
        f"identities in {directory}; a process picks one with "
        "SITEMESH_NATS_NKEY_SEED_FILE=<seed file>"
    )
    return EXIT_OK


def certs_cmd(
    state_dir: Path,
    sites: Sequence[str],
    console: Console,
    *,
    out_dir: Path | None = None,
    hosts: Sequence[str] | None = None,
    days: int = 30,
) -> int:
    """``sitemesh certs --site eu1 [--host nats.example.internal] [--days 30]``.

    Development only: a local CA and the server, client and leaf certificates of
    the hub and ``sites``. Production points the TLS settings at real certificates.

    Args:
        state_dir: the sitemesh state directory.
        sites: site names.
        console: output.
        out_dir: the certificate directory; ``None``: ``<state_dir>/certs``.
        hosts: SANs of the server certificates; ``None``: ``127.0.0.1``, ``localhost``.
        days: validity of the issued certificates, in days.

    Returns:
        The exit code.
    """
    directory = out_dir or certs_dir(state_dir)
    try:
        pki = generate_dev_certs(directory, list(sites), hosts=hosts, days=days)
    except (SitemeshError, OSError, ValueError) as exc:
        console.print(f"[red]certs: {exc}[/red]")
        return EXIT_ERROR
    console.print(f"development CA: {pki.ca_file}")
    for name in ["hub", *sites]:
        console.print(
            f"  {name}: server {pki.files(f'server-{name}').cert_file.name}, "
            f"clients {pki.files(f'client-{name}').cert_file.name}"
        )
    for site in sites:
        console.print(f"  {site} leaf link: {pki.files(f'leaf-{site}').cert_file.name}")
    console.print("[yellow]development certificates: do not use in production[/yellow]")
    return EXIT_OK
