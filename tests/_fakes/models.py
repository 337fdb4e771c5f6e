"""Helpers for model tests: fake servers per backend and a client wired to them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sitemesh.models import (
    AnthropicBackend,
    InMemoryRecorder,
    ModelBackend,
    ModelClient,
    OpenAIBackend,
    RetryPolicy,
    Router,
)
from tests._fakes.llm_server import FakeLLMServer

SITE_CHAIN = ["vllm/qwen2.5-7b-instruct"]
CLOUD_CHAIN = ["openai/gpt-4.1", "anthropic/claude-sonnet-4-6"]


@dataclass
class Sleeps:
    """A fake ``asyncio.sleep`` that records the delays it was asked for."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@dataclass
class Servers:
    """One fake server per backend, so request counts are per backend."""

    openai: FakeLLMServer
    anthropic: FakeLLMServer
    vllm: FakeLLMServer

    def client(
        self,
        *,
        timeout_s: float = 5.0,
        max_attempts: int = 3,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        recorder: InMemoryRecorder | None = None,
        sleep: Sleeps | None = None,
        **kwargs: Any,
    ) -> ModelClient:
        backends: dict[str, ModelBackend] = {
            "vllm": OpenAIBackend(provider="vllm", base_url=self.vllm.openai_url,
                                  timeout_s=timeout_s),
            "openai": OpenAIBackend(provider="openai", base_url=self.openai.openai_url,
                                    api_key="sk-test", timeout_s=timeout_s),
            "anthropic": AnthropicBackend(base_url=self.anthropic.url, api_key="sk-ant-test",
                                          timeout_s=timeout_s),
        }
        return ModelClient(
            backends,
            Router(SITE_CHAIN, CLOUD_CHAIN),
            retry=RetryPolicy(max_attempts=max_attempts, base_s=0.01, max_s=0.05),
            breaker_failures=breaker_failures,
            breaker_reset_s=breaker_reset_s,
            recorder=recorder or InMemoryRecorder(),
            sleep=sleep or Sleeps(),
            **kwargs,
        )


@contextmanager
def fake_servers() -> Iterator[Servers]:
    """Three fake servers (OpenAI, Anthropic, site vLLM); use in a test fixture."""
    with FakeLLMServer() as o, FakeLLMServer() as a, FakeLLMServer() as v:
        yield Servers(openai=o, anthropic=a, vllm=v)
