"""Runs a site's roles as separate OS processes and keeps them running.

One child process per role (``sitemesh worker ROLE --site SITE``), each with its
own log file under ``<state_dir>/logs``. A child that exits on its own is
restarted with exponential backoff (1 s doubling to 30 s), which starts over at 1 s
once a child has run for :data:`STABLE_AFTER_S` (a crash an hour after the last
one is a new incident, not a crash loop); :meth:`Supervisor.stop`
sends SIGTERM to every child (they stop fetching, finish in-flight work and drain)
and SIGKILLs those still alive after the graceful timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

log = logging.getLogger("sitemesh.supervisor")

SEED_FILE_ENV = "SITEMESH_NATS_NKEY_SEED_FILE"
"""Set per child to its own role's seed file when ``identities`` are given."""

HEALTH_PORT_ENV = "SITEMESH_HEALTH_PORT"
"""Not passed on to children (``settings.health.port``): each would try to bind it."""

RESTART_DELAY_S: Final = 1.0
"""Delay before restarting a child after its first exit (or a stable run), in seconds."""

MAX_RESTART_DELAY_S: Final = 30.0
"""Ceiling of the restart delay, which doubles per exit of a crash-looping child, in seconds."""

STABLE_AFTER_S: Final = 60.0
"""A child that ran at least this long before it exited was stable: its restart delay
starts over at :data:`RESTART_DELAY_S` instead of doubling on, in seconds."""

RESTART_HISTORY: Final = 32
"""Restart delays remembered per child (:attr:`Supervisor.restart_delays`)."""


def _members(entry: str) -> list[str]:
    """The roles of one :class:`Supervisor` process entry: ``"a+b"`` -> ``["a", "b"]``."""
    return [r for r in entry.split("+") if r]


@dataclass
class _Child:
    role: str
    index: int
    proc: asyncio.subprocess.Process | None = None
    restarts: int = 0
    health_port: int = 0
    log_path: Path = field(default_factory=Path)
    started_at: float = 0.0
    delays: deque[float] = field(default_factory=lambda: deque(maxlen=RESTART_HISTORY))


class Supervisor:
    """Start, watch and stop the worker processes of one site.

    Args:
        site: the site name.
        roles: roles to run; a role may appear several times to run several
            processes that share its work (one durable consumer). An entry
            ``"triage+retriever+planner"`` runs those agent roles in one process
            (``sitemesh worker triage --with retriever --with planner``).
        env: the complete environment of the children (``SITEMESH_*`` included).
        log_dir: where ``<site>-<role>-<n>.log`` files go.
        graceful_timeout_s: seconds to wait after SIGTERM before SIGKILL.
        restart: restart children that exit on their own.
        agents: import paths (``module:Class``) of agents every child registers
            (``sitemesh worker --agent``), so a role of yours runs like a built-in one.
        identities: ``{role: seed file}``: each child gets its own role's NATS identity
            (``SITEMESH_NATS_NKEY_SEED_FILE``) and no inherited seed; ``None``: ``env``
            as given.
        restart_delay_s: seconds before the first restart of a child (and the first
            after a stable run); doubles per exit up to ``max_restart_delay_s``.
        max_restart_delay_s: ceiling of the restart delay, in seconds.
        stable_after_s: a child that ran at least this many seconds before exiting
            restarts after ``restart_delay_s`` again (see :data:`STABLE_AFTER_S`).
        program: what a child runs, before its ``worker ROLE --site SITE`` arguments;
            default this Python with ``-m sitemesh``.
        health_port: the first port of the children's HTTP endpoints (``/healthz``,
            ``/readyz``, ``/metrics``): the n-th child in start order (from 0) gets
            ``health_port + n``, the same one across its restarts; ``0``: none (the
            environment's ``SITEMESH_HEALTH_PORT`` is never passed on as it is: every
            child would try the same port).
        clock: monotonic seconds, to measure how long a child ran (tests pass a fake).

    Raises:
        KeyError: ``identities`` lacks one of ``roles``.
        ValueError: a restart delay is not positive, ``max_restart_delay_s`` is below
            ``restart_delay_s``, or ``stable_after_s`` is negative.
    """

    def __init__(
        self,
        site: str,
        roles: Sequence[str],
        *,
        env: Mapping[str, str],
        log_dir: Path,
        graceful_timeout_s: float = 20.0,
        restart: bool = True,
        agents: Sequence[str] = (),
        identities: Mapping[str, Path] | None = None,
        restart_delay_s: float = RESTART_DELAY_S,
        max_restart_delay_s: float = MAX_RESTART_DELAY_S,
        stable_after_s: float = STABLE_AFTER_S,
        program: Sequence[str] = (sys.executable, "-m", "sitemesh"),
        clock: Callable[[], float] = time.monotonic,
        health_port: int = 0,
    ) -> None:
        self.site = site
        if not 0 < restart_delay_s <= max_restart_delay_s:
            raise ValueError(
                f"restart_delay_s ({restart_delay_s}) must be > 0 and <= max_restart_delay_s "
                f"({max_restart_delay_s})"
            )
        if stable_after_s < 0:
            raise ValueError(f"stable_after_s must be >= 0 seconds, got {stable_after_s}")
        self._restart_delay_s = restart_delay_s
        self._max_restart_delay_s = max_restart_delay_s
        self._stable_after_s = stable_after_s
        self._program = list(program)
        self._clock = clock
        if identities is not None:
            missing = sorted({r for entry in roles for r in _members(entry)} - set(identities))
            if missing:
                raise KeyError(f"no NATS identity for roles {missing}")
        self._identities = identities
        self._agent_args = [arg for path in agents for arg in ("--agent", path)]
        self._env = dict(env)
        # one HTTP health port per process: children cannot all bind the same one
        self._env.pop(HEALTH_PORT_ENV, None)
        self._log_dir = log_dir
        self._graceful_timeout_s = graceful_timeout_s
        self._restart = restart
        seen: dict[str, int] = {}
        self._children: list[_Child] = []
        for n, role in enumerate(roles):
            seen[role] = seen.get(role, 0) + 1
            port = health_port + n if health_port else 0
            self._children.append(_Child(role=role, index=seen[role], health_port=port))
        self._stopping = False
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def roles(self) -> list[str]:
        """One role per child process and role it runs, in start order (a role once
        per replica)."""
        return [r for c in self._children for r in _members(c.role)]

    def log_path(self, role: str) -> Path:
        """The log file of the first child running ``role``.

        Raises:
            KeyError: no child runs ``role``.
        """
        for c in self._children:
            if role in (c.role, *_members(c.role)):
                return self._log_dir / f"{self.site}-{c.role}-{c.index}.log"
        raise KeyError(role)

    @property
    def restart_delays(self) -> dict[str, list[float]]:
        """``{"<role>-<n>": [seconds, ...]}``: the delay before each restart of each
        child so far, oldest first (the last :data:`RESTART_HISTORY`)."""
        return {f"{c.role}-{c.index}": list(c.delays) for c in self._children}

    @property
    def health_ports(self) -> dict[str, int]:
        """``{"<role>-<n>": port}`` of the children's HTTP endpoints (none: ``{}``)."""
        return {f"{c.role}-{c.index}": c.health_port for c in self._children if c.health_port}

    @property
    def pids(self) -> dict[str, list[int]]:
        """``{role: [pid, ...]}`` of the running children."""
        out: dict[str, list[int]] = {}
        for c in self._children:
            if c.proc is not None and c.proc.returncode is None:
                for role in _members(c.role):
                    out.setdefault(role, []).append(c.proc.pid)
        return out

    async def _spawn(self, child: _Child) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        child.log_path = self._log_dir / f"{self.site}-{child.role}-{child.index}.log"
        first, *others = _members(child.role)
        together = [arg for role in others for arg in ("--with", role)]
        with child.log_path.open("ab") as logfile:
            child.proc = await asyncio.create_subprocess_exec(
                *self._program,
                "worker",
                first,
                *together,
                "--site",
                self.site,
                *self._agent_args,
                env=self._child_env(first, child.health_port),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=logfile,
                stderr=logfile,
                start_new_session=True,
            )
        child.started_at = self._clock()
        log.info("started %s-%s #%d pid %d", self.site, child.role, child.index, child.proc.pid)

    def _child_env(self, role: str, health_port: int = 0) -> dict[str, str]:
        env = dict(self._env)
        if health_port:
            env[HEALTH_PORT_ENV] = str(health_port)
        if self._identities is None:
            return env
        env = {k: v for k, v in env.items() if not k.startswith("SITEMESH_NATS_NKEY_SEED")}
        env[SEED_FILE_ENV] = str(self._identities[role])
        return env

    async def _watch(self, child: _Child) -> None:
        delay = self._restart_delay_s
        while True:
            assert child.proc is not None
            code = await child.proc.wait()
            ran_s = self._clock() - child.started_at
            if self._stopping or not self._restart:
                return
            if ran_s >= self._stable_after_s:
                delay = self._restart_delay_s  # it ran stably: not a crash loop
            child.restarts += 1
            child.delays.append(delay)
            log.warning(
                "%s-%s #%d exited with %s after %.0f s; restarting in %.1f s (log: %s)",
                self.site,
                child.role,
                child.index,
                code,
                ran_s,
                delay,
                child.log_path,
            )
            await asyncio.sleep(delay)
            if self._stopping:
                return
            delay = min(delay * 2, self._max_restart_delay_s)
            await self._spawn(child)

    async def start(self) -> None:
        """Start every child process (returns once they are spawned, not ready)."""
        for child in self._children:
            await self._spawn(child)
        self._watchers = [asyncio.create_task(self._watch(c)) for c in self._children]

    async def stop(self) -> dict[str, int | None]:
        """SIGTERM every child, wait up to the graceful timeout, SIGKILL the rest.

        Safe to call twice. Returns ``{"<role>-<n>": exit code}``.
        """
        self._stopping = True
        procs = [(c, c.proc) for c in self._children if c.proc is not None]
        for _, p in procs:
            if p.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.send_signal(signal.SIGTERM)
        waits = [p.wait() for _, p in procs]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self._graceful_timeout_s)
        except TimeoutError:
            for c, p in procs:
                if p.returncode is None:
                    log.warning("%s-%s did not stop in time; killing", self.site, c.role)
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
            await asyncio.gather(*(p.wait() for _, p in procs))
        for w in self._watchers:
            w.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)
        self._watchers = []
        return {f"{c.role}-{c.index}": p.returncode for c, p in procs}

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def child_env(base: Mapping[str, str], sitemesh_env: Mapping[str, str]) -> dict[str, str]:
    """The children's environment: ``base`` (PATH...) with every inherited
    ``SITEMESH_*`` replaced by ``sitemesh_env``."""
    env = {k: v for k, v in base.items() if not k.startswith("SITEMESH_")}
    env.update(sitemesh_env)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def process_environ() -> dict[str, str]:
    """This process's environment, for building children's (not for settings)."""
    return dict(os.environ)
