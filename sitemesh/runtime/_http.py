"""A process's optional HTTP endpoint: ``/healthz``, ``/readyz`` and any route added.

Starlette routes served by uvicorn on a thread of their own, so the endpoint answers
while the worker's event loop is busy loading (spaCy, indexes) or handling a batch.
Off unless :attr:`HealthSettings.port` is set; binds :attr:`HealthSettings.host`
(``127.0.0.1`` by default). A port that cannot be bound is logged and the worker
runs without the endpoint: it is a probe, never a reason not to work.

More routes (``/metrics``) are Starlette routes given to the constructor or to
:meth:`HealthServer.add_route` before :meth:`HealthServer.start`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Final, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

log = logging.getLogger("sitemesh.health")

STOP_TIMEOUT_S: Final = 3.0
"""Seconds :meth:`HealthServer.shutdown` waits for the server thread."""

Endpoint = Callable[[Request], Awaitable[Response]]
"""A Starlette endpoint: ``async def metrics(request) -> Response``."""


class ProbeState(Protocol):
    """What the probes report (:class:`sitemesh.runtime.Readiness` is one)."""

    @property
    def state(self) -> str:
        """``loading``, ``ready`` or ``stopping``."""
        ...

    def describe(self) -> dict[str, object]:
        """A small JSON-able description of the process (role, site, pid, state)."""
        ...


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers (the worker's own stay in charge), telling a
    thread when it listens."""

    def __init__(self, config: uvicorn.Config, listening: threading.Event) -> None:
        super().__init__(config)
        self._listening = listening

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        self._listening.set()


class HealthServer:
    """``/healthz`` (200 while the process runs) and ``/readyz`` (200 once ready,
    503 while loading or stopping), each with a JSON body of :meth:`ProbeState.describe`.

    Args:
        state: what the probes report.
        host: interface to bind.
        port: TCP port; ``0`` picks a free one (see :attr:`port`).
        routes: more Starlette routes.
    """

    def __init__(
        self, state: ProbeState, *, host: str, port: int, routes: Sequence[BaseRoute] = ()
    ) -> None:
        self._state = state
        self.host = host
        self._port = port
        self._routes: list[BaseRoute] = [
            Route("/healthz", self._healthz, methods=["GET", "HEAD"]),
            Route("/readyz", self._readyz, methods=["GET", "HEAD"]),
            *routes,
        ]
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the chosen one once :meth:`start` bound a ``0`` port)."""
        return self._port

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def add_route(
        self, path: str, endpoint: Endpoint, *, methods: Sequence[str] = ("GET",)
    ) -> None:
        """Serve ``endpoint`` at ``path`` too (call before :meth:`start`).

        Raises:
            RuntimeError: the server is already started.
        """
        if self._server is not None:
            raise RuntimeError("add routes before HealthServer.start()")
        self._routes.append(Route(path, endpoint, methods=list(methods)))

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse(self._state.describe())

    async def _readyz(self, request: Request) -> Response:
        code = 200 if self._state.state == "ready" else 503
        return JSONResponse(self._state.describe(), status_code=code)

    async def start(self) -> bool:
        """Bind and serve on a daemon thread.

        Returns:
            Whether the endpoint is up (``False``, logged: the port could not be bound).
        """
        if self._server is not None:
            return self.running
        try:
            family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
            sock = socket.create_server((self.host, self._port), family=family)
        except OSError as exc:
            log.warning("no health endpoint: cannot bind %s:%d: %s", self.host, self._port, exc)
            return False
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            Starlette(routes=self._routes),
            log_config=None,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
        )
        started = threading.Event()
        server = _Server(config, started)
        self._server = server

        def serve() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # never take the worker down with it
                log.warning("health endpoint stopped: %r", exc)
            finally:
                started.set()
                sock.close()

        self._thread = threading.Thread(target=serve, name="sitemesh-health", daemon=True)
        self._thread.start()
        await asyncio.to_thread(started.wait, STOP_TIMEOUT_S)
        if self.running:
            log.info("health endpoint at http://%s:%d (/healthz, /readyz)", self.host, self.port)
        return self.running

    async def shutdown(self) -> None:
        """Stop serving and join the thread. Safe to call twice."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        await asyncio.to_thread(thread.join, STOP_TIMEOUT_S)
        self._thread = None
