"""Boundary fixes, fast half: no credentials in printed URLs, one model setting per side.

* :func:`sitemesh.bus.redact_url` hides every userinfo (user, password, token), in a
  URL, a server list or a longer text; :func:`sitemesh.bus.connect` logs and raises
  with it.
* The hub's model chain cannot name a site endpoint (:func:`check_hub_models`), a
  process refuses the other side's model group (:func:`models_for`), the cloud node
  refuses both before it connects, and ``sitemesh up`` builds each side's processes
  from its own group.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from sitemesh.bus import connect, free_port, redact_url
from sitemesh.cli._hybrid import hub_settings, site_settings, write_env_files
from sitemesh.cloud_node import run_cloud
from sitemesh.config import HubSettings, ModelsSettings, NatsSettings, Settings
from sitemesh.errors import BusConnectionError, ConfigError
from sitemesh.models import check_hub_models, site_endpoints
from sitemesh.runtime import models_for

URL_SAFE = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
    min_size=8,
    max_size=43,
)


# -- redact_url ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("nats://site:pjNO5xq@127.0.0.1:57643", "nats://***:***@127.0.0.1:57643"),
        ("nats://s3cr3t-token@hub:4222", "nats://***@hub:4222"),  # a token is the user part
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("tls://cloud:pw@hub:4222/?x=1", "tls://***:***@hub:4222/?x=1"),
        ("nats-leaf://leaf-eu1:pw@nats-hub:7422", "nats-leaf://***:***@nats-hub:7422"),
        ("http://key:p@ss/w@vllm:8000/v1", "http://***:***@vllm:8000/v1"),  # raw @ and /
        ("site:pw@127.0.0.1:4222", "***:***@127.0.0.1:4222"),  # nats-py adds nats:// itself
        (
            "nats://a:pw1@h1:4222,nats://b:pw2@h2:4222, nats://h3:4222",
            "nats://***:***@h1:4222,nats://***:***@h2:4222, nats://h3:4222",
        ),
        ("nats://u:p,w@h:1,nats://h2:2", "nats://***:***@h:1,nats://h2:2"),  # raw , in it
        (
            "cannot connect to NATS at nats://u:pw@h:1: refused",
            "cannot connect to NATS at nats://***:***@h:1: refused",
        ),
        ("BusConnectionError('nats://u:pw@h:1')", "BusConnectionError('nats://***:***@h:1')"),
        ("not a url", "not a url"),
        ("", ""),
        ("nats://@h:4222", "nats://@h:4222"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@given(user=URL_SAFE, password=URL_SAFE, port=st.integers(1, 65535))
def test_redact_url_never_shows_a_password(user: str, password: str, port: int) -> None:
    one = f"nats://{user}:{password}@127.0.0.1:{port}"
    for text in (one, f"{one},{one}", f"error at {one}: refused", f"{user}:{password}@h:{port}"):
        shown = redact_url(text)
        assert password not in shown
        assert user not in shown.replace("nats://", "")
        assert f"{port}" in shown


async def test_connect_never_logs_or_raises_the_password(caplog: pytest.LogCaptureFixture) -> None:
    password = "pjNOv8E2l0G6Wq1rZyXtKc"
    url = f"nats://site:{password}@127.0.0.1:{free_port()}"  # nothing listens there
    caplog.set_level(logging.DEBUG)
    with pytest.raises(BusConnectionError) as err:
        await connect(url, name="test-redact", timeout_s=1.5)
    assert "nats://***:***@127.0.0.1:" in str(err.value)
    assert err.value.url.startswith("nats://***:***@")
    assert caplog.records, "positive control: the failed attempts are logged"
    assert password not in caplog.text
    assert password not in str(err.value) + repr(err.value)


# -- the hub's chain ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("models", "key"),
    [
        (ModelsSettings(site_chain=["vllm/qwen"]), "hub_models.site_chain"),
        (ModelsSettings(cloud_chain=["openai/gpt-4.1", "vllm/qwen"]), "hub_models.cloud_chain"),
        (ModelsSettings(vllm_base_url="http://10.0.0.7:8000/v1"), "hub_models.vllm_base_url"),
        (ModelsSettings(vllm_launch=True, vllm_model="qwen"), "hub_models.vllm_launch"),
        (ModelsSettings(cloud_chain=["nope"]), "hub_models.cloud_chain"),
    ],
)
def test_hub_chain_names_no_on_prem_model(models: ModelsSettings, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_hub_models(models)
    assert err.value.key == key
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("field", "url"),
    [
        ("openai_base_url", "http://vllm-eu1:8000/v1"),
        ("openai_base_url", "http://VLLM-EU1:8000/other"),  # same server, another path
        ("anthropic_base_url", "http://localhost:8000"),  # loopback names are one host
        ("openai_base_url", "http://key:sk-hidden@127.0.0.1:8000/v1"),
    ],
)
def test_hub_chain_names_no_listed_site_endpoint(field: str, url: str) -> None:
    endpoints = ["http://vllm-eu1:8000/v1", "http://127.0.0.1:8000/v1"]
    models = ModelsSettings.model_validate(
        {"cloud_chain": ["openai/gpt-4.1"], "openai_api_key": "sk-x", field: url}
    )
    with pytest.raises(ConfigError) as err:
        check_hub_models(models, site_endpoints=endpoints)
    assert err.value.key == f"hub_models.{field}"
    assert "sk-hidden" not in str(err.value)


def test_cloud_providers_elsewhere_pass() -> None:
    models = ModelsSettings(
        cloud_chain=["openai/gpt-4.1", "anthropic/claude-sonnet-4-6"],
        openai_base_url="https://api.openai.com/v1",
        anthropic_base_url="http://127.0.0.1:9000",  # loopback, but another port
        openai_api_key=SecretStr("sk-x"),
    )
    check_hub_models(models, site_endpoints=["http://127.0.0.1:8000/v1", "http://vllm-eu1:8000"])
    check_hub_models(ModelsSettings())  # nothing configured: the labelled fallback


def test_site_endpoints_of_a_site() -> None:
    assert site_endpoints(ModelsSettings()) == []
    assert site_endpoints(ModelsSettings(vllm_base_url="http://gpu1:8000/v1")) == [
        "http://gpu1:8000/v1"
    ]
    launched = ModelsSettings(vllm_launch=True, vllm_host="10.1.1.1", vllm_port=8123)
    assert site_endpoints(launched) == ["http://10.1.1.1:8123/v1"]


# -- one group per side -------------------------------------------------------------------
SITE_MODELS = ModelsSettings(
    site_chain=["vllm/qwen"], vllm_base_url="http://127.0.0.1:8000/v1", breaker_failures=2
)
HUB_MODELS = ModelsSettings(cloud_chain=["openai/gpt-4.1"], openai_api_key=SecretStr("sk-hub"))


def test_each_side_refuses_the_other_sides_models() -> None:
    both = Settings(models=SITE_MODELS, hub_models=HUB_MODELS)
    with pytest.raises(ConfigError) as err:
        models_for(both, "hub")
    assert err.value.key == "models.site_chain"
    assert "SITEMESH_MODELS_VLLM_BASE_URL" in str(err.value)
    assert "SITEMESH_HUB_MODELS_*" in str(err.value)
    with pytest.raises(ConfigError) as err:
        models_for(both, "site")
    assert err.value.key == "hub_models.cloud_chain"
    assert "sk-hub" not in str(err.value)
    assert models_for(Settings(models=SITE_MODELS), "site") == SITE_MODELS
    assert models_for(Settings(hub_models=HUB_MODELS), "hub") == HUB_MODELS


def test_env_names_of_each_side(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SITEMESH_MODELS_SITE_CHAIN", '["vllm/qwen"]')
    monkeypatch.setenv("SITEMESH_HUB_MODELS_CLOUD_CHAIN", '["anthropic/claude-sonnet-4-6"]')
    monkeypatch.setenv("SITEMESH_HUB_MODELS_ANTHROPIC_API_KEY", "sk-ant-hub")
    monkeypatch.setenv("SITEMESH_HUB_SITES", '["eu1", "us1"]')
    monkeypatch.setenv("SITEMESH_HUB_SITE_ENDPOINTS", '["http://vllm-eu1:8000/v1"]')
    s = Settings()
    assert s.models.site_chain == ["vllm/qwen"]
    assert s.models.cloud_chain == []
    assert s.hub_models.cloud_chain == ["anthropic/claude-sonnet-4-6"]
    assert s.hub.sites == ["eu1", "us1"]
    assert s.hub.site_endpoints == ["http://vllm-eu1:8000/v1"]
    env = s.to_env()
    assert env["SITEMESH_HUB_MODELS_ANTHROPIC_API_KEY"] == "sk-ant-hub"
    for key in [k for k in os.environ if k.startswith("SITEMESH_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert Settings() == s  # a child process reads back what to_env wrote


def test_up_builds_each_side_from_its_own_group(tmp_path: Path) -> None:
    base = Settings(state_dir=tmp_path, models=SITE_MODELS, hub_models=HUB_MODELS)
    hub = hub_settings(base, "nats://cloud:pw@127.0.0.1:4222")
    assert hub.models == ModelsSettings()
    assert hub.hub_models == HUB_MODELS
    assert hub.hub.site_endpoints == ["http://127.0.0.1:8000/v1"]
    assert models_for(hub, "hub") == HUB_MODELS
    site = site_settings(base, "eu1", "nats://site:pw@127.0.0.1:4223")
    assert site.models == SITE_MODELS
    assert site.hub_models == ModelsSettings()
    assert models_for(site, "site") == SITE_MODELS
    env = hub.to_env()  # what the synthesiser process gets: no site model at all
    assert "SITEMESH_MODELS_VLLM_BASE_URL" not in env
    assert env["SITEMESH_MODELS_SITE_CHAIN"] == "[]"
    assert not any(k.startswith("SITEMESH_HUB_MODELS_") and "sk-hub" in v for k, v in
                   site.to_env().items())  # fmt: skip


def test_up_refuses_a_hub_chain_pointing_at_the_sites_vllm(tmp_path: Path) -> None:
    base = Settings(
        state_dir=tmp_path,
        models=SITE_MODELS,  # the site's vLLM at 127.0.0.1:8000
        hub_models=ModelsSettings(
            cloud_chain=["openai/qwen"],
            openai_base_url="http://localhost:8000/v1",  # the same server
            openai_api_key=SecretStr("EMPTY"),
        ),
    )
    with pytest.raises(ConfigError) as err:
        models_for(hub_settings(base, None), "hub")
    assert err.value.key == "hub_models.openai_base_url"


def test_env_files_hold_the_credentials_owner_only(tmp_path: Path) -> None:
    servers = {
        "hub": Settings(site="hub", nats=NatsSettings(url="nats://cloud:pw-hub@127.0.0.1:1")),
        "eu1": Settings(site="eu1", nats=NatsSettings(url="nats://site:pw-eu1@h:2")),
    }
    files = write_env_files(servers, tmp_path / "env")
    assert sorted(files) == ["eu1", "hub"]
    assert "SITEMESH_NATS_URL=nats://site:pw-eu1@h:2\n" in files["eu1"].read_text()
    for path in files.values():
        assert path.stat().st_mode & 0o777 == 0o600


# -- checked at start ---------------------------------------------------------------------
async def test_cloud_node_refuses_a_site_endpoint_before_connecting() -> None:
    settings = Settings(
        site="hub",
        nats=NatsSettings(url=f"nats://cloud:pw@127.0.0.1:{free_port()}"),  # no server there
        hub=HubSettings(sites=["eu1"]),
        hub_models=ModelsSettings(cloud_chain=["openai/gpt-4.1", "vllm/qwen"]),
    )
    with pytest.raises(ConfigError) as err:  # not BusConnectionError: nothing connected
        await run_cloud(settings)
    assert err.value.key == "hub_models.cloud_chain"
    with pytest.raises(ConfigError) as err:
        await run_cloud(settings.model_copy(update={"hub_models": ModelsSettings(),
                                                    "models": SITE_MODELS}))  # fmt: skip
    assert err.value.key == "models.site_chain"


def test_worker_synthesiser_exits_with_one_line_naming_the_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SITEMESH_")}
    env |= {
        "SITEMESH_STATE_DIR": str(tmp_path),
        "SITEMESH_NATS_URL": f"nats://cloud:pw@127.0.0.1:{free_port()}",
        "SITEMESH_HUB_MODELS_CLOUD_CHAIN": '["openai/gpt-4.1"]',
        "SITEMESH_HUB_MODELS_OPENAI_API_KEY": "EMPTY",
        "SITEMESH_HUB_MODELS_OPENAI_BASE_URL": "http://vllm-eu1:8000/v1",
        "SITEMESH_HUB_SITE_ENDPOINTS": '["http://vllm-eu1:8000/v1"]',
        "COLUMNS": "400",
    }
    done = subprocess.run(
        [sys.executable, "-m", "sitemesh", "worker", "synthesiser", "--site", "hub"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [
        "error: hub_models.openai_base_url: http://vllm-eu1:8000/v1 is a site's model server "
        "(http://vllm-eu1:8000/v1 in hub.site_endpoints); the hub never calls a site endpoint"
    ], done.stderr
