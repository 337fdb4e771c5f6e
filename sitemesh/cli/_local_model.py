"""``--local-model``: a real site model on this machine for ``sitemesh edge`` (and ``demo``).

:func:`local_model` starts SmolLM2-135M-Instruct behind llama.cpp's OpenAI-compatible
server (:class:`sitemesh.models.LocalModelServer`, its own process, log under
``<state_dir>/logs``) and yields settings whose site models point at it, so the
planner (``ModelPlanner``) calls it through the same client as a site vLLM. With
``hub=True`` a second, separate server is started for the hub's synthesiser: the hub
never calls a site endpoint. Both are stopped on exit.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from rich.console import Console

from ..config import Settings
from ..models import LocalModelServer, with_local_model


@dataclass(frozen=True, slots=True)
class LocalModel:
    """What :func:`local_model` runs.

    Attributes:
        settings: the given settings with ``models`` (and, with a hub server,
            ``hub_models``) pointing at the servers; pass these to the processes.
        site: the site's model server.
        hub: the hub's own model server, or ``None``.
    """

    settings: Settings
    site: LocalModelServer
    hub: LocalModelServer | None = None


@contextlib.asynccontextmanager
async def local_model(
    settings: Settings, console: Console | None = None, *, hub: bool = False
) -> AsyncIterator[LocalModel]:
    """Run the local model server(s) for the duration of the block.

    Args:
        settings: the base settings (``state_dir`` for the logs; ``models`` and
            ``hub_models`` are replaced, see :func:`sitemesh.models.with_local_model`).
        console: where one line per started server goes (``None``: silent).
        hub: also start the hub's own server and point ``hub_models`` at it. Only for
            callers that hand each side its own group (``sitemesh up`` / ``demo
            --sites``); a single site's processes refuse ``SITEMESH_HUB_MODELS_*``.

    Yields:
        The settings to run with and the servers.

    Raises:
        ConfigError: the ``local`` extra is not installed (says how to install it).
        ModelUnavailable: a server exited or was not healthy in time (names its log
            and ends with its last lines).
    """
    logs = settings.state_dir / "logs"
    async with contextlib.AsyncExitStack() as stack:
        names: Sequence[str] = ("site", "hub") if hub else ("site",)
        servers: list[LocalModelServer] = []
        for side in names:
            start = time.perf_counter()
            server = LocalModelServer(log_path=logs / f"local-model-{side}.log")
            await stack.enter_async_context(server)
            servers.append(server)
            if console is not None:
                console.print(
                    f"local model [bold]{server.name}[/bold] for the {side} at "
                    f"{server.base_url} ({server.threads} CPU threads, ready in "
                    f"{time.perf_counter() - start:.1f} s; log {server.log_path})"
                )
        hub_server = servers[1] if hub else None
        yield LocalModel(with_local_model(settings, servers[0], hub_server), servers[0], hub_server)


async def run_edge_local(
    settings: Settings,
    console: Console,
    *,
    replicas: int = 1,
    agents: Sequence[str] = (),
    insecure: bool = False,
    colocate: bool = False,
    console_port: int | None = None,
) -> int:
    """``sitemesh edge --local-model``: :func:`~sitemesh.cli._run.run_edge` (with every
    one of its options) with the site's models on a local server started first and
    stopped last."""
    from ._run import run_edge

    async with local_model(settings, console) as lm:
        return await run_edge(
            lm.settings, console, replicas=replicas, agents=agents, insecure=insecure,
            colocate=colocate, console_port=console_port,
        )  # fmt: skip
