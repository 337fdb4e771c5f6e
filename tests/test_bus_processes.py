"""Worker *processes* against a real server: SIGKILL, crashes, sharing, SIGTERM.

The worker is ``tests/_workers/bus_worker.py``: one output per input on
``work(diagnostics)`` with msg id ``out:<n>``.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from nats.js import JetStreamContext

from sitemesh.bus import (
    MAX_DELIVERIES_EXCEEDED,
    MaxDeliveriesSweeper,
    NatsServer,
    Outbound,
    Publisher,
    Subjects,
    provision,
)
from sitemesh.config import BusSettings
from sitemesh.schemas import DLQ_DECODER, EVENT_DECODER, TaskFailed
from tests.conftest import assert_eventually, stream_messages

pytestmark = pytest.mark.slow

WORKER = Path(__file__).parent / "_workers" / "bus_worker.py"


class Output(msgspec.Struct, frozen=True):
    n: int
    pid: int


class Procs:
    """Worker processes started by a test; all killed at teardown."""

    def __init__(self, url: str, site: str, settings: BusSettings) -> None:
        self.url, self.site, self.settings = url, site, settings
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self, *, sleep_s: float = 0.0, inflight: int | None = None
    ) -> subprocess.Popen[bytes]:
        args = [sys.executable, str(WORKER), self.url, self.site, self.settings.model_dump_json()]
        args += ["--sleep", str(sleep_s)]
        if inflight is not None:
            args += ["--inflight", str(inflight)]
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stderr:
                proc.stderr.close()


@pytest.fixture
def procs(nats_server: NatsServer, site: str, bus_settings: BusSettings) -> Iterator[Procs]:
    p = Procs(nats_server.client_url, site, bus_settings)
    yield p
    p.close()


async def _submit(js: JetStreamContext, site: str, ns: range, *, poison: bool = False) -> None:
    s = Subjects(site)
    enc = msgspec.json.Encoder()
    await Publisher(js).publish_many(
        Outbound(
            subject=s.work("retriever"),
            payload=enc.encode({"n": n, "poison": poison}),
            msg_id=f"in:{n}",
            task_id=f"task-{n}",
        )
        for n in ns
    )


async def _outputs(js: JetStreamContext, site: str) -> list[Output]:
    s = Subjects(site)
    msgs = await stream_messages(js, s.work_stream, s.work("diagnostics"))
    return [msgspec.json.decode(m.data or b"", type=Output) for m in msgs]


async def _consumer(js: JetStreamContext, site: str) -> tuple[int, int]:
    info = await js.consumer_info(Subjects(site).work_stream, "retriever")
    return info.num_pending, info.num_ack_pending


async def test_sigkill_mid_batch_loses_nothing_and_duplicates_nothing(
    js: JetStreamContext, site: str, bus_settings: BusSettings, procs: Procs
) -> None:
    await provision(js, Subjects(site), bus_settings)
    n = 200
    await _submit(js, site, range(n))
    first = procs.start(sleep_s=0.1, inflight=8)
    await assert_eventually(lambda: _outputs_at_least(js, site, 20), timeout_s=20)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert (await _consumer(js, site))[1] > 0, "killed with nothing in flight"
    procs.start(sleep_s=0.0, inflight=32)

    async def all_done() -> bool:
        return await _consumer(js, site) == (0, 0) and len(await _outputs(js, site)) >= n

    await assert_eventually(all_done, timeout_s=30)
    outs = await _outputs(js, site)
    assert sorted(o.n for o in outs) == list(range(n))  # no loss, no duplicate
    assert {o.pid for o in outs} >= {first.pid}


async def _outputs_at_least(js: JetStreamContext, site: str, k: int) -> bool:
    return len(await _outputs(js, site)) >= k


async def test_two_processes_share_the_work(
    js: JetStreamContext, site: str, bus_settings: BusSettings, procs: Procs
) -> None:
    await provision(js, Subjects(site), bus_settings)
    a = procs.start(sleep_s=0.02, inflight=4)
    b = procs.start(sleep_s=0.02, inflight=4)
    # Both bound and pulling before the work arrives.
    await assert_eventually(lambda: _waiting(js, site, 2), timeout_s=20)
    n = 200
    await _submit(js, site, range(n))
    await assert_eventually(lambda: _outputs_at_least(js, site, n), timeout_s=30)
    await assert_eventually(lambda: _consumer_idle(js, site))
    outs = await _outputs(js, site)
    assert sorted(o.n for o in outs) == list(range(n))
    by_pid = {pid: sum(o.pid == pid for o in outs) for pid in (a.pid, b.pid)}
    assert all(count > 0 for count in by_pid.values()), by_pid


async def _waiting(js: JetStreamContext, site: str, k: int) -> bool:
    info = await js.consumer_info(Subjects(site).work_stream, "retriever")
    return (info.num_waiting or 0) >= k


async def _consumer_idle(js: JetStreamContext, site: str) -> bool:
    return await _consumer(js, site) == (0, 0)


async def test_sigterm_finishes_in_flight_and_exits_zero(
    js: JetStreamContext, site: str, bus_settings: BusSettings, procs: Procs
) -> None:
    await provision(js, Subjects(site), bus_settings)
    await _submit(js, site, range(40))
    proc = procs.start(sleep_s=0.5, inflight=8)

    async def in_flight() -> bool:
        return (await _consumer(js, site))[1] > 0

    await assert_eventually(in_flight, timeout_s=20)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode()

    async def none_in_flight() -> bool:
        return (await _consumer(js, site))[1] == 0

    # Everything it took was finished and acked, or given back.
    await assert_eventually(none_in_flight, timeout_s=5)
    finished = await _outputs(js, site)
    assert 0 < len(finished) < 40
    # The rest is still there for the next worker; nothing lost, nothing doubled.
    procs.start()
    await assert_eventually(lambda: _outputs_at_least(js, site, 40), timeout_s=20)
    await assert_eventually(lambda: _consumer_idle(js, site))
    assert sorted(o.n for o in await _outputs(js, site)) == list(range(40))


async def test_message_that_kills_every_worker_is_dead_lettered_by_the_sweeper(
    js: JetStreamContext, site: str, bus_settings: BusSettings, procs: Procs
) -> None:
    settings = bus_settings.model_copy(update={"max_deliver": 2, "ack_wait_s": 1.0})
    subjects = Subjects(site)
    await provision(js, subjects, settings)
    procs.settings = settings
    await _submit(js, site, range(7, 8), poison=True)
    sweeper = MaxDeliveriesSweeper(js, site=site, settings=settings)
    async with sweeper:
        crashes = 0

        async def dead_lettered() -> bool:
            nonlocal crashes
            if not procs.started or procs.started[-1].poll() is not None:
                if procs.started:
                    assert procs.started[-1].returncode == -signal.SIGKILL
                    crashes += 1
                procs.start()  # restart the crashed worker, as a supervisor would
            return bool(await stream_messages(js, subjects.dlq_stream, subjects.all_dlq))

        await assert_eventually(dead_lettered, timeout_s=30, interval_s=0.05)
    assert crashes == settings.max_deliver
    [raw] = await stream_messages(js, subjects.dlq_stream, subjects.all_dlq)
    letter = DLQ_DECODER.decode(raw.data or b"")
    assert letter.error_class == MAX_DELIVERIES_EXCEEDED
    assert letter.role == "retriever"
    assert letter.deliveries == settings.max_deliver
    assert letter.task_id == "task-7"
    assert b'"poison":true' in letter.original
    assert raw.headers is not None
    assert raw.headers["Nats-Msg-Id"] == f"dlq:{subjects.work_stream}:{letter.stream_seq}"
    [event] = await stream_messages(js, subjects.events_stream, subjects.task_events("task-7"))
    failed = EVENT_DECODER.decode(event.data or b"")
    assert isinstance(failed, TaskFailed)
    assert failed.error_class == MAX_DELIVERIES_EXCEEDED
