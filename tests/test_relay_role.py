"""``sitemesh worker relay`` as its own process (compose and Kubernetes run it so):
it provisions the site's EGRESS streams and carries cloud answers into INBOX once."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import pytest

from sitemesh.bus import Subjects, find_nats_server
from sitemesh.config import BusSettings, NatsSettings, Settings
from sitemesh.edge_node import child_env, process_environ
from sitemesh.topology import Topology, TopologySpec
from tests.conftest import TEST_STREAM_BYTES, assert_eventually, stream_messages

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

BUS = BusSettings(max_bytes=TEST_STREAM_BYTES, ack_wait_s=2)


async def test_relay_process_moves_answers_into_the_inbox_once(tmp_path: Path) -> None:
    spec = TopologySpec.for_sites(["eu1"], tmp_path / "topo")
    async with Topology(spec, binary=find_nats_server(None), bus=BUS, relays=False) as topo:
        settings = Settings(
            site="eu1", state_dir=tmp_path, bus=BUS,
            nats=NatsSettings(url=topo.egress_url("eu1")),
        )  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sitemesh", "worker", "relay", "--site", "eu1",
            env=child_env(process_environ(), settings.to_env()),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            hub = await topo.connect_hub("test-hub")
            js_hub = hub.jetstream()
            for i in range(5):
                await js_hub.publish(
                    Subjects("eu1").inbox(f"t{i}"), b'{"answer": %d}' % i,
                    headers={"Nats-Msg-Id": f"t{i}:answer:synthesiser"},
                )  # fmt: skip
            site = await topo.connect_site("eu1", "test-site")
            subjects = Subjects("eu1")

            async def inbox() -> list[object]:
                try:
                    return await stream_messages(
                        site.jetstream(), subjects.inbox_stream, subjects.all_in
                    )
                except Exception:
                    return []

            got = await assert_eventually(lambda: _len_at_least(inbox, 5), timeout_s=60)
            assert got
            await asyncio.sleep(1.5)  # a redelivery would show up as a duplicate here
            msgs = await inbox()
            assert sorted(m.subject for m in msgs) == sorted(  # type: ignore[attr-defined]
                subjects.inbox(f"t{i}") for i in range(5)
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 30)
        assert code == 0, (await proc.stderr.read()).decode()[-2000:]  # type: ignore[union-attr]


async def _len_at_least(fn: object, n: int) -> bool:
    return len(await fn()) >= n  # type: ignore[operator]
