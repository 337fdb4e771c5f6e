"""The vLLM launcher: start ``vllm serve`` from configuration and health-check it, or
use one already running. No GPU here, so ``vllm`` is a fake executable serving the
fake OpenAI-compatible server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from sitemesh.bus import free_port
from sitemesh.config import ModelsSettings
from sitemesh.errors import ConfigError, ModelUnavailable
from sitemesh.models import (
    ChatMessage,
    ModelClient,
    ModelRequest,
    OpenAIBackend,
    VllmServer,
    vllm_health,
)
from tests._fakes.llm_server import FakeLLMServer

REPO = Path(__file__).resolve().parent.parent
MODEL = "Qwen/Qwen2.5-7B-Instruct"




def fake_vllm(tmp_path: Path, body: str | None = None) -> Path:
    exe = tmp_path / "vllm"
    exe.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        + (body or "from tests._fakes.llm_server import main\nsys.exit(main(sys.argv[1:]))\n")
    )
    exe.chmod(0o755)
    return exe


@pytest.fixture
def running() -> Iterator[FakeLLMServer]:
    with FakeLLMServer(models=(MODEL,)) as srv:
        yield srv


async def test_launches_waits_for_health_serves_and_stops(tmp_path: Path) -> None:
    port = free_port()
    server = VllmServer(MODEL, port=port, executable=str(fake_vllm(tmp_path)),
                        args=["--max-model-len", "4096"], startup_timeout_s=30, poll_s=0.05,
                        env={"FAKE_VLLM_STARTUP_S": "0.5"}, log_path=tmp_path / "vllm.log")
    assert server.command()[1:4] == ["serve", MODEL, "--host"]
    async with server:
        assert not server.reused
        assert server.process is not None
        process = server.process
        assert await vllm_health(server.base_url, MODEL)
        backend = OpenAIBackend(provider="vllm", base_url=server.base_url, timeout_s=5)
        request = ModelRequest(messages=[ChatMessage(role="user", content="hi")])
        response = await backend.complete(request, MODEL, max_tokens=16)
        await backend.aclose()
        assert response.text == "Hello from the fake model."
    assert process.returncode is not None
    assert not await vllm_health(server.root_url)
    assert "fake vllm serving" in (tmp_path / "vllm.log").read_text()
    await server.shutdown()  # safe twice


async def test_uses_a_server_already_running(running: FakeLLMServer) -> None:
    port = int(running.url.rsplit(":", 1)[1])
    async with VllmServer(MODEL, port=port, executable="no-such-vllm") as server:
        assert server.reused
        assert server.process is None
        assert server.base_url == running.openai_url
    assert await vllm_health(running.url)  # left running


async def test_wrong_model_on_the_port_is_not_reused(running: FakeLLMServer) -> None:
    port = int(running.url.rsplit(":", 1)[1])
    assert not await vllm_health(running.url, "other-model")
    with pytest.raises(ConfigError, match=r"models\.vllm_executable"):
        await VllmServer("other-model", port=port, executable="no-such-vllm").start()


async def test_a_crash_during_startup_is_reported(tmp_path: Path) -> None:
    exe = fake_vllm(tmp_path, "sys.exit(3)\n")
    server = VllmServer(MODEL, port=free_port(), executable=str(exe), poll_s=0.05)
    with pytest.raises(ModelUnavailable, match="exited with code 3"):
        await server.start()


async def test_startup_timeout_stops_the_process(tmp_path: Path) -> None:
    server = VllmServer(MODEL, port=free_port(), executable=str(fake_vllm(tmp_path)),
                        startup_timeout_s=1.0, poll_s=0.05, env={"FAKE_VLLM_STARTUP_S": "60"})
    with pytest.raises(ModelUnavailable, match="not healthy after 1 s"):
        await server.start()
    assert server.process is None


async def test_from_settings() -> None:
    settings = ModelsSettings(vllm_launch=True, vllm_model=MODEL, vllm_port=8123,
                              vllm_args=["--served-model-name", "qwen"],
                              site_chain=["vllm/qwen"])
    server = VllmServer.from_settings(settings)
    assert (server.port, server.served_name) == (8123, "qwen")
    async with ModelClient.from_settings(settings) as client:
        backend = client.backends["vllm"]
        assert isinstance(backend, OpenAIBackend)
        assert str(backend._client.base_url).rstrip("/") == "http://127.0.0.1:8123/v1"
    with pytest.raises(ConfigError, match=r"models\.vllm_model"):
        VllmServer.from_settings(ModelsSettings())
