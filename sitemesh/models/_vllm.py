"""Start ``vllm serve`` on a site GPU host, or use one already running; health-check it.

vLLM's OpenAI-compatible server answers ``GET /health`` with 200 once the engine
is up, and lists the served models at ``GET /v1/models`` (vLLM docs, "OpenAI-
Compatible Server"). :class:`VllmServer` probes both: if a server already serves the
model at the configured address it is used as is (and left running); otherwise
``<executable> serve <model> --host H --port P [args...]`` is started and polled
until healthy. Needs the ``sitemesh[gpu]`` extra on the host that launches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Self

import httpx

from ..errors import ConfigError, ModelUnavailable

if TYPE_CHECKING:
    from ..config import ModelsSettings


async def stop_process(
    process: asyncio.subprocess.Process | None, graceful_timeout_s: float
) -> None:
    """SIGTERM ``process``, then SIGKILL after ``graceful_timeout_s`` seconds; nothing
    when it is ``None`` or has already exited (a model server's shutdown)."""
    if process is None or process.returncode is not None:
        return
    process.terminate()
    try:
        await asyncio.wait_for(process.wait(), graceful_timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()


async def vllm_health(base_url: str, model: str | None = None, *, timeout_s: float = 2.0) -> bool:
    """Is an OpenAI-compatible server healthy at ``base_url`` (and serving ``model``)?

    Args:
        base_url: the server root, e.g. ``http://127.0.0.1:8000`` (a trailing ``/v1``
            is ignored).
        model: a model name that must be listed at ``/v1/models``; ``None``: any.
        timeout_s: seconds per HTTP request.

    Returns:
        ``True`` when ``/health`` is 200 and ``/v1/models`` lists ``model``.
    """
    root = base_url.rstrip("/").removesuffix("/v1")
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            health = await http.get(f"{root}/health")
            if health.status_code != 200:
                return False
            if model is None:
                return True
            listed = await http.get(f"{root}/v1/models")
            if listed.status_code != 200:
                return False
            ids = {m.get("id") for m in listed.json().get("data", [])}
            return model in ids
    except (httpx.HTTPError, ValueError):
        return False


class VllmServer:
    """A ``vllm serve`` process owned by this worker, or an already running server.

    Use as ``async with VllmServer(...) as server: ...``; ``server.base_url`` is the
    ``/v1`` URL for :class:`~sitemesh.models.OpenAIBackend`.

    Args:
        model: the model to serve (Hugging Face id or local path); also the name
            clients use unless ``--served-model-name`` is in ``args``.
        host: listen address.
        port: listen port.
        executable: the ``vllm`` command (name on ``PATH`` or path).
        args: extra ``vllm serve`` arguments.
        startup_timeout_s: seconds to wait for health after starting (weights load).
        poll_s: seconds between health probes.
        env: extra environment for the process.
        log_path: file the process's output goes to (``None``: discarded).
    """

    def __init__(
        self,
        model: str,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        executable: str = "vllm",
        args: Sequence[str] = (),
        startup_timeout_s: float = 900.0,
        poll_s: float = 0.5,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.model = model
        self.host = host
        self.port = port
        self.executable = executable
        self.args = list(args)
        self.startup_timeout_s = startup_timeout_s
        self.poll_s = poll_s
        self.env = dict(env or {})
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.reused = False
        """``True`` when a server was already running and is only being used."""

    @classmethod
    def from_settings(cls, settings: ModelsSettings, *, log_path: Path | None = None) -> Self:
        """Build from the ``models`` settings (``vllm_model``, ``vllm_host``...).

        Raises:
            ConfigError: ``models.vllm_model`` is not set.
        """
        if not settings.vllm_model:
            raise ConfigError("models.vllm_model", "set the model vllm serve should load")
        return cls(
            settings.vllm_model,
            host=settings.vllm_host,
            port=settings.vllm_port,
            executable=settings.vllm_executable,
            args=settings.vllm_args,
            startup_timeout_s=settings.vllm_startup_timeout_s,
            log_path=log_path,
        )

    @property
    def root_url(self) -> str:
        """``http://<host>:<port>``."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://<host>:<port>/v1``: the OpenAI-compatible API."""
        return f"{self.root_url}/v1"

    @property
    def served_name(self) -> str:
        """The model name clients send (``--served-model-name`` if given)."""
        if "--served-model-name" in self.args:
            i = self.args.index("--served-model-name")
            if i + 1 < len(self.args):
                return self.args[i + 1]
        return self.model

    def command(self) -> list[str]:
        """The command line that is started."""
        return [self.executable, "serve", self.model, "--host", self.host,
                "--port", str(self.port), *self.args]

    async def healthy(self) -> bool:
        """One health probe (see :func:`vllm_health`)."""
        return await vllm_health(self.root_url, self.served_name)

    async def start(self) -> None:
        """Use a running server, or start one and wait until it is healthy.

        Raises:
            ConfigError: the executable is not found.
            ModelUnavailable: the process exited, or did not become healthy within
                ``startup_timeout_s``; the process is stopped.
        """
        if await self.healthy():
            self.reused = True
            return
        exe = shutil.which(self.executable)
        if exe is None:
            raise ConfigError(
                "models.vllm_executable",
                f"{self.executable!r} not found (install sitemesh[gpu] on the GPU host)",
            )
        out = self.log_path.open("ab") if self.log_path else None
        try:
            self.process = await asyncio.create_subprocess_exec(
                exe, *self.command()[1:],
                stdout=out or asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        finally:
            if out is not None:
                out.close()
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                code = self.process.returncode
                self.process = None
                raise ModelUnavailable(f"vllm serve exited with code {code} during startup",
                                       provider="vllm", model=self.model)
            if await self.healthy():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), self.poll_s)
        await self.shutdown()
        raise ModelUnavailable(
            f"vllm serve {self.model} not healthy after {self.startup_timeout_s:g} s",
            provider="vllm", model=self.model,
        )

    async def shutdown(self, *, graceful_timeout_s: float = 30.0) -> None:
        """Stop a process this object started (SIGTERM, then SIGKILL); safe twice.

        A reused server is left running.

        Args:
            graceful_timeout_s: seconds to wait after SIGTERM before SIGKILL.
        """
        process, self.process = self.process, None
        await stop_process(process, graceful_timeout_s)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
