"""Finding, starting and reusing ``nats-server``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from sitemesh.bus import EmbeddedNats, NatsServer, connect, find_nats_server
from sitemesh.bus._server import MIN_VERSION, server_version
from sitemesh.errors import BusConnectionError, NatsServerError
from tests.conftest import assert_eventually

DEBIAN_SERVER = Path("/usr/sbin/nats-server")


def test_bundled_binary_is_preferred_and_recent() -> None:
    found = find_nats_server(None)
    assert found.origin == "bundled"
    assert found.version >= MIN_VERSION


@pytest.mark.skipif(not DEBIAN_SERVER.exists(), reason="no system nats-server here")
def test_old_binary_is_refused_with_the_reason() -> None:
    version = server_version(DEBIAN_SERVER)
    if version >= MIN_VERSION:
        pytest.skip("the system nats-server is recent")
    with pytest.raises(NatsServerError, match=r"2\.9\.\d+.*needs >= 2\.10\.0"):
        find_nats_server(DEBIAN_SERVER)


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(NatsServerError, match="cannot run"):
        find_nats_server(tmp_path / "nope")


async def test_server_start_failure_includes_its_output(tmp_path: Path) -> None:
    bad_config = tmp_path / "bad.conf"
    bad_config.write_text("this is { not valid")
    with pytest.raises(NatsServerError, match="exited"):
        async with NatsServer(tmp_path / "store", config=bad_config, ready_timeout_s=5):
            pass


async def test_the_server_runs_in_its_own_session(tmp_path: Path) -> None:
    """A Ctrl-C at the terminal (SIGINT to the foreground process group) does not reach
    the server: its owner stops the workers first and the server last. (Signalling
    our own group here would interrupt the test runner itself.)"""
    import os

    async with NatsServer(tmp_path / "store", ready_timeout_s=30) as server:
        pid = server.pid
        assert pid is not None
        assert os.getsid(pid) == pid != os.getsid(0)
        assert os.getpgid(pid) != os.getpgid(0)


async def test_embedded_server_is_started_once_and_reused(tmp_path: Path) -> None:
    async with EmbeddedNats(tmp_path) as first:
        assert first.owner
        info = json.loads((tmp_path / "nats.json").read_text())
        assert info["url"] == first.url
        assert (tmp_path / "nats").is_dir()
        async with EmbeddedNats(tmp_path) as second:
            assert not second.owner
            assert second.url == first.url
            nc = await connect(second.url, name="reuse", timeout_s=5)
            assert nc.connected_server_version.major == 2
            await nc.drain()
        await first.shutdown()
        await first.shutdown()  # idempotent
    assert not (tmp_path / "nats.json").exists()


async def test_connect_failure_names_the_url() -> None:
    from sitemesh.bus._server import free_port

    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(BusConnectionError, match=url.replace(".", r"\.")):
        await connect(url, name="nobody", timeout_s=1)


async def test_embedded_server_replaces_a_stale_record(tmp_path: Path) -> None:
    stale = {"pid": 2**22 + 12345, "host": "127.0.0.1", "port": 1, "url": "nats://127.0.0.1:1"}
    (tmp_path / "nats.json").write_text(json.dumps(stale))
    async with EmbeddedNats(tmp_path) as embedded:
        assert embedded.owner
        assert embedded.url != stale["url"]
        assert json.loads((tmp_path / "nats.json").read_text())["url"] == embedded.url


async def test_embedded_server_that_dies_is_restarted_with_its_stream(tmp_path: Path) -> None:
    """``EmbeddedNats.watch`` (what ``edge`` and ``demo`` run): a SIGKILLed server comes
    back on the same URL with its JetStream store, and the operator is told."""
    told: list[tuple[int, int]] = []
    async with EmbeddedNats(tmp_path) as embedded:
        assert embedded.server is not None
        nc = await connect(embedded.url, name="pytest", timeout_s=5)
        js = nc.jetstream()
        await js.add_stream(name="KEEP", subjects=["keep.>"])
        await js.publish("keep.1", b"x")
        first_pid = embedded.server.pid
        watch = asyncio.create_task(
            embedded.watch(lambda code, n: told.append((code, n)), interval_s=0.05)
        )
        try:
            assert first_pid is not None
            os.kill(first_pid, signal.SIGKILL)
            await assert_eventually(lambda: told, timeout_s=10, msg="death not noticed")
            assert told[0] == (-signal.SIGKILL, 1)

            async def stream_back() -> bool:
                try:
                    info = await js.stream_info("KEEP")
                except Exception:
                    return False
                return info.state.messages == 1

            await assert_eventually(stream_back, timeout_s=30, msg="not restarted")
            assert embedded.server.pid not in (None, first_pid)
            record = json.loads((tmp_path / "nats.json").read_text())
            assert record["pid"] == embedded.server.pid
            assert record["url"] == embedded.url
            assert (tmp_path / "nats" / "nats-server.log.1").exists()
        finally:
            watch.cancel()
            await nc.close()
