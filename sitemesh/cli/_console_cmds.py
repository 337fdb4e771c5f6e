"""``sitemesh console`` (serve the operator console) and ``sitemesh console-user``
(add, update or remove a console user)."""

from __future__ import annotations

import getpass
import ipaddress
import os
import secrets
from pathlib import Path
from typing import Final

from rich.console import Console
from rich.text import Text

from ..bus import redact_url
from ..config import Settings
from ..console import (
    ROLES,
    create_app,
    default_users_file,
    hash_password,
    load_users,
    save_user,
)
from ..errors import SitemeshError
from ._nats import running_nats_url

SECRET_FILE: Final = "console-secret"  # noqa: S105 - a file name, not a secret
"""Under ``<state_dir>``: the key that signs session cookies (0600, made on first start),
so a restart keeps people logged in."""


def _secret(state_dir: Path) -> str:
    path = state_dir / SECRET_FILE
    if path.exists():
        return path.read_text("utf-8").strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


async def run_console(
    settings: Settings, console: Console, *, host: str, port: int, users_file: Path | None,
    monitor_url: str | None = None,
) -> int:
    """Serve the console until stopped (Ctrl-C / SIGTERM).

    Raises:
        ConsoleConfigError: the users file is missing or invalid.
    """
    import uvicorn

    path = users_file or default_users_file(settings.state_dir)
    load_users(path)  # a bad file is a one-line error before anything starts
    url = running_nats_url(settings)
    app = create_app(settings, users_file=path, nats_url=url, monitor_url=monitor_url,
                     secret_key=_secret(settings.state_dir))  # fmt: skip
    if not _loopback(host):
        console.print(
            Text(f"warning: serving on {host}, not loopback: put it behind TLS (a reverse "
                 "proxy) before anyone logs in over a network", style="yellow")
        )  # fmt: skip
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="on"))  # fmt: skip
    nats_line = redact_url(url) if url else "no NATS server running (database pages only)"
    console.print(Text(f"console for site {settings.site} at http://{host}:{port}/ "
                       f"(users {path}; NATS {nats_line})"))  # fmt: skip
    await server.serve()
    return 0


def edit_user(
    settings: Settings,
    console: Console,
    name: str,
    role: str,
    users_file: Path | None,
    *,
    remove: bool = False,
) -> int:
    """Add/update a user (asks for the password twice; ``SITEMESH_CONSOLE_PASSWORD``
    instead, for scripts) or remove one. Returns the exit code (2: bad role or
    passwords that differ)."""
    path = users_file or default_users_file(settings.state_dir)
    if remove:
        save_user(path, name, None, None)
        console.print(Text(f"removed console user {name} from {path}"))
        return 0
    if role not in ROLES:
        raise SitemeshError(f"--role: expected one of {', '.join(ROLES)}, got {role!r}")
    password = os.environ.get("SITEMESH_CONSOLE_PASSWORD")
    if password is None:
        password = getpass.getpass(f"password for {name}: ")
        if getpass.getpass("again: ") != password:
            raise SitemeshError("the two passwords differ; nothing changed")
    if len(password) < 8:
        raise SitemeshError("password: expected at least 8 characters")
    save_user(path, name, next(r for r in ROLES if r == role), hash_password(password))
    console.print(Text(f"console user {name} ({role}) saved in {path}"))
    return 0
