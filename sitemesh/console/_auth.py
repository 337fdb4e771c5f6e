"""Console users, roles and password hashes.

The users file (TOML, default ``<state_dir>/console-users.toml``, written by
``sitemesh console-user``)::

    [console]
    raw_roles = ["approver", "admin"]        # who may see raw (unmasked) content
    trusted_proxy_header = "X-Forwarded-User" # optional: a reverse proxy logs users in
    trusted_proxies = ["127.0.0.1"]           # ... when the request comes from one of these

    [users.alice]
    role = "admin"
    password = "scrypt$131072$8$1$<salt>$<hash>"

Roles are ordered: ``viewer`` (read, PII masked) < ``approver`` (also approve, reject,
redrive) < ``admin`` (also the audit log). Passwords are stored as scrypt hashes
(RFC 7914, via :func:`hashlib.scrypt`) with the parameters OWASP's Password Storage
Cheat Sheet gives as the minimum (N=2^17, r=8, p=1) and a 16-byte random salt; the
parameters travel with each hash, so raising them later keeps old hashes valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast

from ..errors import SitemeshError

Role = Literal["viewer", "approver", "admin"]
ROLES: Final[tuple[Role, ...]] = ("viewer", "approver", "admin")
"""Console roles, least to most allowed."""

SCRYPT_N: Final = 2**17
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
_MAXMEM: Final = 256 * 1024 * 1024
"""Memory cap for :func:`hashlib.scrypt`: N=2^17, r=8 needs 128 MiB (128 * r * N bytes)."""

USERS_FILE_NAME: Final = "console-users.toml"


class ConsoleConfigError(SitemeshError):
    """The users file is missing or invalid (the message names the file and the field)."""


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``password`` as ``scrypt$N$r$p$<salt b64>$<hash b64>`` (32-byte key).

    Raises:
        ValueError: ``password`` is empty.
    """
    if not password:
        raise ValueError("password must not be empty")
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${n}${r}${p}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches the ``stored`` hash (constant-time compare); ``False``
    for a malformed hash."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(key)
        got = hashlib.scrypt(
            password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
            maxmem=_MAXMEM, dklen=len(want),
        )  # fmt: skip
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


@dataclass(frozen=True, slots=True)
class User:
    """A console user: name, role and password hash (``""``: proxy login only)."""

    name: str
    role: Role
    password_hash: str = ""

    def allows(self, role: Role) -> bool:
        """Whether this user's role is ``role`` or above it."""
        return ROLES.index(self.role) >= ROLES.index(role)


@dataclass(frozen=True, slots=True)
class Users:
    """The users file, loaded (:func:`load_users`)."""

    users: Mapping[str, User] = field(default_factory=dict)
    raw_roles: tuple[Role, ...] = ("approver", "admin")
    """Roles that see raw content (ticket text, dead-letter originals); others see it
    with PII masked."""
    trusted_proxy_header: str | None = None
    """Header naming the user a trusted reverse proxy authenticated, if any."""
    trusted_proxies: tuple[str, ...] = ("127.0.0.1", "::1")
    """Client addresses whose :attr:`trusted_proxy_header` is believed."""

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if ``password`` is theirs, else ``None`` (the hash is computed for
        an unknown name too, so timing does not tell which names exist)."""
        user = self.users.get(name)
        stored = user.password_hash if user is not None and user.password_hash else _DUMMY
        ok = verify_password(password, stored)
        return user if ok and user is not None and user.password_hash else None

    def sees_raw(self, user: User) -> bool:
        """Whether ``user`` may see raw content."""
        return user.role in self.raw_roles


_DUMMY: Final = hash_password("x", n=2**14)
"""Verified against for unknown users (equalises the time of a refused login a little:
a real hash's N is larger; the cost of a guess is what matters)."""


def default_users_file(state_dir: Path) -> Path:
    """``<state_dir>/console-users.toml``."""
    return state_dir / USERS_FILE_NAME


def _role(value: object, where: str) -> Role:
    if value not in ROLES:
        raise ConsoleConfigError(f"{where}: role must be one of {', '.join(ROLES)}, got {value!r}")
    return next(r for r in ROLES if r == value)


def load_users(path: Path) -> Users:
    """Read and validate a users file.

    Raises:
        ConsoleConfigError: the file is missing, not TOML, or a field is invalid (the
            message names the file and the field).
    """
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConsoleConfigError(
            f"no console users file at {path}: add a user with "
            "`sitemesh console-user NAME --role admin`"
        ) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConsoleConfigError(f"{path}: not a readable TOML file: {exc}") from None
    conf = doc.get("console", {})
    if not isinstance(conf, dict):
        raise ConsoleConfigError(f"{path}: [console] must be a table")
    users: dict[str, User] = {}
    table = doc.get("users", {})
    if not isinstance(table, dict):
        raise ConsoleConfigError(f"{path}: [users] must be a table of users")
    for name, entry in table.items():
        where = f"{path}: users.{name}"
        if not isinstance(entry, dict):
            raise ConsoleConfigError(f"{where}: must be a table with role and password")
        pw = entry.get("password", "")
        if not isinstance(pw, str) or (pw and not pw.startswith("scrypt$")):
            raise ConsoleConfigError(
                f"{where}.password: expected an scrypt hash (sitemesh console-user), "
                "never a plain password"
            )
        users[name] = User(name, _role(entry.get("role"), f"{where}.role"), pw)
    raw = conf.get("raw_roles", ["approver", "admin"])
    if not isinstance(raw, list):
        raise ConsoleConfigError(f"{path}: console.raw_roles must be a list of roles")
    header = conf.get("trusted_proxy_header")
    if header is not None and (not isinstance(header, str) or not header.strip()):
        raise ConsoleConfigError(f"{path}: console.trusted_proxy_header must be a header name")
    proxies = conf.get("trusted_proxies", ["127.0.0.1", "::1"])
    if not isinstance(proxies, list) or not all(isinstance(p, str) for p in proxies):
        raise ConsoleConfigError(f"{path}: console.trusted_proxies must be a list of addresses")
    if not users and header is None:
        raise ConsoleConfigError(
            f"{path}: no users: add one with `sitemesh console-user NAME --role admin`"
        )
    return Users(
        users=users,
        raw_roles=tuple(_role(r, f"{path}: console.raw_roles") for r in raw),
        trusted_proxy_header=header,
        trusted_proxies=tuple(proxies),
    )


def _toml_str(value: str) -> str:
    # a TOML basic string: JSON's escapes are a subset TOML accepts
    import json

    return json.dumps(value)


def save_user(path: Path, name: str, role: Role | None, password_hash: str | None) -> None:
    """Add, update (``role``/``password_hash`` not ``None``) or remove (``role is None``)
    one user in the users file, keeping its ``[console]`` settings; written 0600,
    atomically.

    Raises:
        ConsoleConfigError: the existing file is invalid, or ``name`` is empty.
    """
    if not name.strip() or any(c in name for c in '\n\r"\\'):
        raise ConsoleConfigError(f"user name must be a non-empty plain name, got {name!r}")
    doc: dict[str, object] = {}
    if path.exists():
        try:
            doc = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConsoleConfigError(f"{path}: not a readable TOML file: {exc}") from None
    conf = doc.get("console", {})
    users = dict(doc.get("users", {}))  # type: ignore[call-overload]
    if role is None:
        users.pop(name, None)
    else:
        old = users.get(name, {})
        users[name] = {"role": role, "password": password_hash or old.get("password", "")}
    lines = ["# sitemesh console users (sitemesh console-user); passwords are scrypt hashes"]
    if conf:
        lines.append("[console]")
        for k, v in cast(dict[str, object], conf).items():
            val = (
                "[" + ", ".join(_toml_str(x) for x in v) + "]"
                if isinstance(v, list)
                else _toml_str(str(v))
            )
            lines.append(f"{k} = {val}")
        lines.append("")
    for uname, entry in users.items():
        lines += [f"[users.{_toml_str(uname)}]", f"role = {_toml_str(entry['role'])}",
                  f"password = {_toml_str(entry.get('password', ''))}", ""]  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    tmp.replace(path)
