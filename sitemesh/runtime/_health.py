"""Readiness of a worker process, and waiting for a set of processes to be ready.

* :class:`Readiness` — one process's ``loading`` → ``ready`` → ``stopping``: the
  bus registry (:class:`WorkerPresence`, ``sitemesh_workers_<site>``) and the
  optional HTTP probes (:class:`HealthServer`, ``SITEMESH_HEALTH_PORT``).
  :func:`sitemesh.runtime.run_role` drives it; a process is ready once its services
  are built and its agent's ``setup()`` ran.
* :func:`wait_ready` — what ``sitemesh edge``, ``up`` and ``demo`` wait on: every
  process they started registered ``ready`` (matched by host and pid, so a record
  left by a killed process never counts for its restarted successor).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Literal, Protocol

from nats.js import JetStreamContext

from ..config import Settings
from ..errors import NotReadyError
from ..schemas import utcnow
from ._http import HealthServer
from ._presence import WorkerPresence, WorkerRecord, presence_key, read_worker

log = logging.getLogger("sitemesh.health")

ProcessState = Literal["loading", "ready", "stopping"]
"""Where a process is: loading (models, indexes), ready (taking work), stopping."""

POLL_S: Final = 0.25
"""Seconds between two looks at the registry while :func:`wait_ready` waits."""


class Readiness:
    """This process's readiness, on the bus and (optionally) over HTTP.

    Args:
        settings: ``health`` (port, host, heartbeat, TTL); ``nats.has_identity``
            decides whether this process may create the registry bucket.
        role: the role the process runs.
        site: the site it registers at (default ``settings.site``; ``hub`` for the
            cloud agents).
        serve_http: ``False``: no HTTP probes even with ``health.port`` set (a
            co-located role: the process's first role serves them).
    """

    def __init__(
        self, settings: Settings, role: str, *, site: str | None = None, serve_http: bool = True
    ) -> None:
        self.role = role
        self.site = site or settings.site
        self.started_at = utcnow()
        self._state: ProcessState = "loading"
        self._health = settings.health
        self._create_bucket = not settings.nats.has_identity
        self._presence: WorkerPresence | None = None
        self.http: HealthServer | None = None
        """The HTTP endpoint (``None`` unless ``health.port`` is set); add routes
        before :meth:`start`."""
        if settings.health.port and serve_http:
            self.http = HealthServer(self, host=settings.health.host, port=settings.health.port)

    @property
    def state(self) -> ProcessState:
        """``loading``, ``ready`` or ``stopping``."""
        return self._state

    def describe(self) -> dict[str, object]:
        """What the probes answer: role, site, pid, state, seconds since start."""
        return {
            "role": self.role,
            "site": self.site,
            "pid": os.getpid(),
            "state": self._state,
            "uptime_s": round((utcnow() - self.started_at).total_seconds(), 3),
        }

    async def start(self) -> None:
        """Serve the HTTP probes (if configured): ``/readyz`` answers 503 until :meth:`ready`."""
        if self.http is not None:
            await self.http.start()

    async def ready(self, js: JetStreamContext | None, *, origin: str = "") -> None:
        """The process is loaded and takes work: ``/readyz`` 200, registered in the bus.

        Args:
            js: where to register; ``None``: HTTP only (a process outside a site's
                ``SITE`` account, such as the inbox relay).
            origin: where the role's code comes from (the agent's entry point or
                import path).
        """
        if self._state != "loading":
            return
        self._state = "ready"
        if js is None:
            return
        record = WorkerRecord.now(
            site=self.site, role=self.role, origin=origin, started_at=self.started_at
        )
        self._presence = WorkerPresence(js, record, self._health, create_bucket=self._create_bucket)
        await self._presence.start()

    async def stopping(self) -> None:
        """SIGTERM: ``/readyz`` 503 and the record ``stopping`` while in-flight work ends."""
        self._state = "stopping"
        if self._presence is not None:
            await self._presence.stopping()

    async def shutdown(self) -> None:
        """Delete the record (call before draining NATS) and stop the endpoint. Idempotent."""
        self._state = "stopping"
        if self._presence is not None:
            await self._presence.shutdown()
        if self.http is not None:
            await self.http.shutdown()


class Processes(Protocol):
    """Processes someone started for one site (:class:`sitemesh.edge_node.Supervisor`)."""

    @property
    def site(self) -> str:
        """The site they register at."""
        ...

    @property
    def roles(self) -> Sequence[str]:
        """One role per process (a role appears once per replica)."""
        ...

    @property
    def pids(self) -> Mapping[str, list[int]]:
        """``{role: [pid, ...]}`` of the processes running now."""
        ...


async def _missing(
    js: JetStreamContext, procs: Processes, host: str, label: Callable[[str], str]
) -> list[str]:
    """The roles of ``procs`` with fewer ready processes than they should have."""
    wanted: dict[str, int] = {}
    for role in procs.roles:
        wanted[role] = wanted.get(role, 0) + 1
    pids = procs.pids
    out: list[str] = []
    for role, n in wanted.items():
        keys = [presence_key(role, host, pid) for pid in pids.get(role, [])]
        records = await asyncio.gather(*(read_worker(js, procs.site, k) for k in keys))
        ready = sum(1 for r in records if r is not None and r.state == "ready")
        if ready < n:
            short = n - ready
            out.append(label(role) + (f" x{short}" if short > 1 else ""))
    return out


async def wait_ready(
    groups: Sequence[tuple[JetStreamContext, Processes]],
    *,
    timeout_s: float,
    on_progress: Callable[[list[str]], None] | None = None,
) -> float:
    """Wait until every process of every group is registered ``ready``.

    A process counts when the registry holds a ``ready`` record for its host and
    current pid, so a crashed and restarted child counts only once the new process
    is loaded. Registry errors (a bucket not created yet, a NATS hiccup) count as
    "not yet".

    Args:
        groups: ``(js, processes)`` per site: where the site's registry is, and the
            processes started for it on this host.
        timeout_s: seconds to wait at most.
        on_progress: called with what is still loading (``planner``, or
            ``eu1/planner`` with several groups) after every look, and with ``[]``
            at the end.

    Returns:
        The seconds it took.

    Raises:
        NotReadyError: still loading after ``timeout_s``; names what.
    """
    host = socket.gethostname()
    t0 = time.monotonic()
    several = len({procs.site for _, procs in groups}) > 1
    while True:
        missing: list[str] = []
        for js, procs in groups:

            def label(role: str, site: str = procs.site) -> str:
                return f"{site}/{role}" if several else role

            try:
                missing += await _missing(js, procs, host, label)
            except Exception as exc:  # not reachable yet: keep waiting, say why in the log
                log.debug("registry of %s not readable yet: %r", procs.site, exc)
                missing += [label(r) for r in dict.fromkeys(procs.roles)]
        if on_progress is not None:
            on_progress(missing)
        if not missing:
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise NotReadyError(missing, timeout_s)
        await asyncio.sleep(POLL_S)
