"""The pseudonym vault: encrypted placeholder → original mappings, per task, on-prem.

Each mapping entry is one row of ``pseudonym_vault`` (migration ``0002``): the
placeholder and entity type in clear (they are what leaves the site anyway), the
original value only as AES-256-GCM ciphertext (NIST SP 800-38D) under a random
96-bit nonce. The associated data binds a row to its ``(task_id, placeholder)``, so
ciphertexts moved between rows fail to decrypt instead of re-identifying the
wrong value. Rows are inserted with insert-or-ignore and never updated: once
handed out, a placeholder means the same value for the life of the task.

Key: ``PrivacySettings.vault_key`` (URL-safe base64 of 32 random bytes). Without
one, :func:`load_vault_key` creates ``<state_dir>/vault.key`` (mode 0600) on first
use and logs a warning: that is for development only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from ..errors import VaultKeyError
from ..state import PseudonymVaultRow, create_engine, migrate

if TYPE_CHECKING:
    from pydantic import SecretStr

    from ..config import PrivacySettings

__all__ = ["KEY_BYTES", "Vault", "generate_vault_key", "load_vault_key"]

log = logging.getLogger(__name__)

KEY_BYTES: Final = 32
"""Vault key length in bytes (AES-256)."""

NONCE_BYTES: Final = 12
"""AES-GCM nonce length in bytes (96 bits, SP 800-38D section 8.2.2)."""

KEY_FILE_NAME: Final = "vault.key"
"""Development key file under ``state_dir`` when no key is configured."""

_KEY_ID_LABEL: Final = b"sitemesh.vault.key-id.v1"


def generate_vault_key() -> str:
    """A fresh vault key: 32 random bytes, URL-safe base64 (for ``SITEMESH_PRIVACY_VAULT_KEY``)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")


def _decode_key(value: str | bytes) -> bytes:
    raw = value.encode("ascii") if isinstance(value, str) else value
    if len(raw) == KEY_BYTES and isinstance(value, bytes):
        return raw
    try:
        key = base64.urlsafe_b64decode(raw.strip())
    except (binascii.Error, ValueError) as exc:
        raise VaultKeyError("vault key is not URL-safe base64") from exc
    if len(key) != KEY_BYTES:
        raise VaultKeyError(f"vault key must decode to {KEY_BYTES} bytes, got {len(key)}")
    return key


def load_vault_key(privacy: PrivacySettings, state_dir: Path) -> bytes:
    """The vault key from settings, or the development key file (created if missing).

    Args:
        privacy: ``Settings.privacy``; ``vault_key`` wins when set.
        state_dir: ``Settings.state_dir``; holds ``vault.key`` when no key is set.

    Returns:
        The 32-byte key.

    Raises:
        VaultKeyError: the configured key or the key file is malformed.
    """
    if privacy.vault_key is not None:
        return _decode_key(privacy.vault_key.get_secret_value())
    path = state_dir / KEY_FILE_NAME
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race: use its key
            pass
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(generate_vault_key() + "\n")
            log.warning(
                "no privacy.vault_key configured: created the development key file %s "
                "(mode 0600); set SITEMESH_PRIVACY_VAULT_KEY in production",
                path,
            )
    return _decode_key(path.read_text(encoding="ascii").strip())


def _key_id(key: bytes) -> str:
    return hmac.new(key, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:16]


def _aad(task_id: str, placeholder: str) -> bytes:
    return f"{task_id}\x00{placeholder}".encode()


def _entity_type(placeholder: str) -> str:
    inner = placeholder.strip("<>")
    return inner.rpartition("_")[0] or inner


class Vault:
    """Encrypted, append-only store of pseudonym mappings (async; SQLite or PostgreSQL).

    Args:
        db: an async SQLAlchemy URL (``sqlite+aiosqlite:///...``,
            ``postgresql+asyncpg://...``; the engine is created, migrated to head
            and disposed by :meth:`close`) or an existing ``AsyncEngine`` (the
            caller migrates and disposes it).
        key: the 32-byte key, its URL-safe base64 form, or a ``SecretStr`` of it.

    Raises:
        VaultKeyError: ``key`` is malformed.

    Example::

        async with Vault(settings.db_url, load_vault_key(settings.privacy,
                                                         settings.state_dir)) as vault:
            await vault.put("t-1", {"<PERSON_1>": "Ada Lovelace"})
            assert await vault.get("t-1") == {"<PERSON_1>": "Ada Lovelace"}
    """

    def __init__(self, db: str | AsyncEngine, key: bytes | str | SecretStr) -> None:
        secret = key if isinstance(key, str | bytes) else key.get_secret_value()
        self._key = _decode_key(secret)
        self._aead = AESGCM(self._key)
        self.key_id: str = _key_id(self._key)
        """Public fingerprint of the key (16 hex chars), stored on every row."""
        if isinstance(db, AsyncEngine):
            self._engine, self._url, self._owned = db, None, False
        else:
            self._engine, self._url, self._owned = create_engine(db), db, True
        self._migrated = not self._owned

    async def __aenter__(self) -> Vault:
        await self._ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Dispose the engine if the vault created it. Safe to call twice."""
        if self._owned:
            await self._engine.dispose()

    async def _ready(self) -> None:
        if not self._migrated and self._url is not None:
            await migrate(self._url)
            self._migrated = True

    async def put(self, task_id: str, mapping: Mapping[str, str]) -> None:
        """Store ``mapping`` for ``task_id``, encrypted; existing placeholders are kept.

        Insert-or-ignore: a placeholder already stored for the task keeps its
        original value (rows are never updated). Callers that may race (two
        processes pseudonymising the same task) read back with :meth:`get` to see
        which value won, as :class:`~sitemesh.policy.Pseudonymizer` does.

        Args:
            task_id: the task the mapping belongs to.
            mapping: placeholder (``"<PERSON_1>"``) → original value.

        Raises:
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        if not mapping:
            return
        await self._ready()
        now = datetime.now(UTC)
        rows = []
        for placeholder, value in mapping.items():
            nonce = secrets.token_bytes(NONCE_BYTES)
            sealed = self._aead.encrypt(nonce, value.encode(), _aad(task_id, placeholder))
            rows.append(
                {
                    "task_id": task_id,
                    "placeholder": placeholder,
                    "entity_type": _entity_type(placeholder),
                    "key_id": self.key_id,
                    "nonce": nonce,
                    "ciphertext": sealed,
                    "created_at": now,
                }
            )
        table = PseudonymVaultRow.__table__
        assert isinstance(table, Table)
        dialect = self._engine.dialect.name
        stmt = (
            postgresql.insert(table).on_conflict_do_nothing()
            if dialect == "postgresql"
            else sqlite.insert(table).on_conflict_do_nothing()
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)

    async def get(self, task_id: str) -> dict[str, str]:
        """The decrypted mapping of ``task_id`` (empty when none was stored).

        Args:
            task_id: the task.

        Returns:
            placeholder → original value.

        Raises:
            VaultKeyError: a row was sealed with another key, or fails
                authentication (wrong key or tampered row). Nothing is returned.
            sqlalchemy.exc.SQLAlchemyError: the database failed.
        """
        await self._ready()
        stmt = select(
            PseudonymVaultRow.placeholder,
            PseudonymVaultRow.key_id,
            PseudonymVaultRow.nonce,
            PseudonymVaultRow.ciphertext,
        ).where(PseudonymVaultRow.task_id == task_id)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        out: dict[str, str] = {}
        for placeholder, key_id, nonce, sealed in rows:
            if key_id != self.key_id:
                raise VaultKeyError(
                    f"vault rows of task {task_id} were sealed with key {key_id}, but the "
                    f"configured key is {self.key_id}: wrong SITEMESH_PRIVACY_VAULT_KEY?",
                    task_id=task_id,
                )
            try:
                plain = self._aead.decrypt(bytes(nonce), bytes(sealed), _aad(task_id, placeholder))
            except InvalidTag as exc:
                raise VaultKeyError(
                    f"vault row {placeholder} of task {task_id} failed authentication "
                    "(wrong key or tampered row)",
                    task_id=task_id,
                ) from exc
            out[placeholder] = plain.decode()
        return out
