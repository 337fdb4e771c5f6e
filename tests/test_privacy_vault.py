"""Pseudonym vault: encrypted at rest, append-only, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, text, update

from sitemesh.config import PrivacySettings
from sitemesh.errors import SitemeshError, VaultKeyError
from sitemesh.policy import Vault, generate_vault_key, load_vault_key
from sitemesh.state import create_engine, migrate
from sitemesh.state._vault_models import PseudonymVaultRow
from tests._dbs import DB_KINDS, fresh_db

SECRET = "Ada Lovelace-Byron"
MAPPING = {"<PERSON_1>": SECRET, "<EMAIL_ADDRESS_1>": "ada@example.org", "<PERSON_2>": "Ödön"}


@pytest.fixture(params=DB_KINDS)
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database per test: a SQLite file, or a PostgreSQL database dropped after."""
    async with fresh_db(
        request.param, tmp_path, tag="vault", sqlite_file=tmp_path / "state" / "sitemesh.db"
    ) as url:
        yield url


@pytest.fixture
def key() -> str:
    return generate_vault_key()


async def test_put_get_round_trip(db_url: str, key: str) -> None:
    async with Vault(db_url, key) as vault:
        assert await vault.get("t-1") == {}
        await vault.put("t-1", MAPPING)
        await vault.put("t-2", {"<PERSON_1>": "someone else"})
        assert await vault.get("t-1") == MAPPING
        assert await vault.get("t-2") == {"<PERSON_1>": "someone else"}
    # a new vault on the same database and key reads it back
    async with Vault(db_url, SecretStr(key)) as again:
        assert await again.get("t-1") == MAPPING


async def test_rows_hold_no_plain_value(db_url: str, key: str) -> None:
    async with Vault(db_url, key) as vault:
        await vault.put("t-1", MAPPING)
    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(select(PseudonymVaultRow.__table__))).all()
    finally:
        await engine.dispose()
    assert len(rows) == len(MAPPING)
    for row in rows:
        raw = b"".join(
            v if isinstance(v, bytes) else str(v).encode() for v in row._mapping.values()
        )
        for value in MAPPING.values():
            assert value.encode() not in raw
            assert value.encode("utf-16-le") not in raw
        assert len(row.nonce) == 12
        assert row.key_id == vault.key_id
    if db_url.startswith("sqlite"):
        db_file = Path(db_url.split("///", 1)[1])
        blob = b"".join(p.read_bytes() for p in db_file.parent.iterdir() if p.is_file())
        assert SECRET.encode() not in blob


async def test_insert_or_ignore_keeps_the_first_value(db_url: str, key: str) -> None:
    async with Vault(db_url, key) as vault:
        await vault.put("t-1", {"<PERSON_1>": "first"})
        await vault.put("t-1", {"<PERSON_1>": "second", "<PERSON_2>": "new"})
        assert await vault.get("t-1") == {"<PERSON_1>": "first", "<PERSON_2>": "new"}


async def test_wrong_key_fails_clearly(db_url: str, key: str) -> None:
    async with Vault(db_url, key) as vault:
        await vault.put("t-1", MAPPING)
    async with Vault(db_url, generate_vault_key()) as other:
        with pytest.raises(VaultKeyError, match="sealed with key") as info:
            await other.get("t-1")
        assert info.value.task_id == "t-1"
        assert SECRET not in str(info.value)
        assert await other.get("t-unknown") == {}


async def test_tampered_or_moved_rows_fail_authentication(db_url: str, key: str) -> None:
    async with Vault(db_url, key) as vault:
        await vault.put("t-1", {"<PERSON_1>": "a", "<PERSON_2>": "b"})
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                row = (
                    await conn.execute(
                        select(PseudonymVaultRow.nonce, PseudonymVaultRow.ciphertext).where(
                            PseudonymVaultRow.placeholder == "<PERSON_2>"
                        )
                    )
                ).one()
                # The append-only trigger (revision 0005) refuses this UPDATE; someone
                # with the table owner's rights can drop it, and the AEAD must still
                # catch the moved value.
                if conn.dialect.name == "postgresql":
                    trigger = "pseudonym_vault_append_only"
                    await conn.execute(
                        text(f"ALTER TABLE pseudonym_vault DISABLE TRIGGER {trigger}")
                    )
                else:
                    await conn.execute(text("DROP TRIGGER pseudonym_vault_no_update"))
                # swap <PERSON_2>'s sealed value into <PERSON_1>'s row
                await conn.execute(
                    update(PseudonymVaultRow)
                    .where(PseudonymVaultRow.placeholder == "<PERSON_1>")
                    .values(nonce=row.nonce, ciphertext=row.ciphertext)
                )
        finally:
            await engine.dispose()
        with pytest.raises(VaultKeyError, match="failed authentication"):
            await vault.get("t-1")


async def test_vault_on_an_engine_the_caller_owns(tmp_path: Path, key: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'v.db'}"
    await migrate(url)
    engine = create_engine(url)
    try:
        vault = Vault(engine, key)
        await vault.put("t", {"<URL_1>": "https://example.org/x"})
        await vault.close()  # does not dispose a borrowed engine
        assert await vault.get("t") == {"<URL_1>": "https://example.org/x"}
    finally:
        await engine.dispose()


@pytest.mark.parametrize("bad", ["not base64!", base64.urlsafe_b64encode(b"short").decode()])
def test_malformed_key(bad: str) -> None:
    with pytest.raises(VaultKeyError) as info:
        Vault("sqlite+aiosqlite:///:memory:", bad)
    assert isinstance(info.value, SitemeshError)
    assert isinstance(info.value, ValueError)


def test_development_key_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = tmp_path / "state"
    with caplog.at_level(logging.WARNING, logger="sitemesh.policy._vault"):
        first = load_vault_key(PrivacySettings(), state)
    assert len(first) == 32
    path = state / "vault.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert any("development" in r.getMessage() for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sitemesh.policy._vault"):
        assert load_vault_key(PrivacySettings(), state) == first  # reused, no new warning
    assert not caplog.records


def test_configured_key_wins(tmp_path: Path, key: str) -> None:
    settings = PrivacySettings(vault_key=SecretStr(key))
    assert load_vault_key(settings, tmp_path) == base64.urlsafe_b64decode(key)
    assert not (tmp_path / "vault.key").exists()
