"""Processed history leaves the work streams; unprocessed work never does, whatever its
age (``sitemesh.bus.trim_processed``). Real nats-server (the session fixture)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js import JetStreamContext
from rich.console import Console

from sitemesh.bus import (
    TRIM_AT,
    NatsServer,
    Outbound,
    Publisher,
    Subjects,
    keep_streams,
    provision,
    stream_config,
    trim_processed,
    trim_stream,
)
from sitemesh.cli._trim_cmds import run_trim
from sitemesh.config import BusSettings, Settings
from sitemesh.errors import ConfigError


async def _fill(js: JetStreamContext, s: Subjects, n: int, size: int = 100) -> None:
    pub = Publisher(js)
    await pub.publish_many(
        [Outbound(subject=s.work("planner"), payload=b"x" * size, msg_id=f"m{i}") for i in range(n)]
    )


async def _planner(js: JetStreamContext, s: Subjects) -> JetStreamContext.PullSubscription:
    stream, durable, _ = s.consumer_for("planner")
    return await js.pull_subscribe_bind(durable=durable, stream=stream)


async def test_only_settled_history_older_than_max_age_is_trimmed(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    await _fill(js, s, 10)
    psub = await _planner(js, s)
    got = await psub.fetch(6, timeout=5)
    assert [m.metadata.sequence.stream for m in got] == [1, 2, 3, 4, 5, 6]
    for m in got[:3] + got[4:]:  # #4 stays delivered and unacked
        await m.ack_sync()

    # nothing is old yet: the history is kept for replay
    kept = await trim_stream(nc, s.work_stream, bus_settings)
    assert (kept.purged, kept.upto) == (0, 0)
    assert kept.floor == 3  # the planner acked 1-3; 4 is not settled; others have none

    later = time.time() + bus_settings.max_age_s + 60
    aged = await trim_stream(nc, s.work_stream, bus_settings, now=later)
    assert (aged.purged, aged.upto, aged.reason) == (3, 4, "age")
    info = await js.stream_info(s.work_stream)
    assert (info.state.first_seq, info.state.messages) == (4, 7)

    # the unacked one and the never-delivered ones are still there and still delivered
    await got[3].nak()
    rest = []
    async with asyncio.timeout(10):
        while len(rest) < 5:
            rest += await psub.fetch(10, timeout=5)
    assert sorted(m.metadata.sequence.stream for m in rest) == [4, 7, 8, 9, 10]
    for m in rest:
        await m.ack_sync()
    done = await trim_stream(nc, s.work_stream, bus_settings, now=later)
    assert (done.purged, done.floor) == (7, 10)  # 4-10: 5 and 6 acked before, the rest now
    assert (await js.stream_info(s.work_stream)).state.messages == 0


async def test_unprocessed_work_outlives_max_age(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    await _fill(js, s, 5)
    far = time.time() + 100 * bus_settings.max_age_s
    trims = {t.stream: t for t in await trim_processed(nc, s, bus_settings, now=far)}
    assert trims[s.work_stream].purged == 0
    assert trims[s.work_stream].floor == 0
    assert (await js.stream_info(s.work_stream)).state.messages == 5
    # and the server itself has no age limit to apply to them
    assert not (await js.stream_info(s.work_stream)).config.max_age


async def test_a_nearly_full_stream_sheds_all_settled_history(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    cfg = stream_config(bus_settings, s.work_stream, [s.all_work], max_age=False)
    cfg.max_bytes = 20_000
    await js.update_stream(cfg)
    pub = Publisher(js)
    n = 0
    while (await js.stream_info(s.work_stream)).state.bytes / 20_000 < TRIM_AT:
        await pub.publish(Outbound(subject=s.work("planner"), payload=b"x" * 180, msg_id=f"m{n}"))
        n += 1
    psub = await _planner(js, s)
    acked = n // 2
    for m in await psub.fetch(acked, timeout=5):
        await m.ack_sync()

    t = await trim_stream(nc, s.work_stream, bus_settings)  # nothing is old: full decides
    assert (t.reason, t.purged, t.upto) == ("full", acked, acked + 1)
    info = await js.stream_info(s.work_stream)
    assert (info.state.first_seq, info.state.messages) == (acked + 1, n - acked)
    # room again: new work is accepted
    await Publisher(js).publish(Outbound(subject=s.work("planner"), payload=b"y", msg_id="new"))


async def test_a_stream_nobody_consumes_is_left_alone(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await js.add_stream(stream_config(bus_settings, s.work_stream, [s.all_work], max_age=False))
    await _fill(js, s, 3)
    t = await trim_stream(nc, s.work_stream, bus_settings, now=time.time() + 10**9)
    assert t.purged == 0
    assert (await js.stream_info(s.work_stream)).state.messages == 3


async def test_keep_streams_trims_in_the_background(
    nc: Client,
    js: JetStreamContext,
    site: str,
    bus_settings: BusSettings,
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Subjects(site)
    short = bus_settings.model_copy(update={"max_age_s": 0.5, "duplicate_window_s": 0.5})
    await provision(js, s, short)
    await _fill(js, s, 4)
    psub = await _planner(js, s)
    for m in await psub.fetch(4, timeout=5):
        await m.ack_sync()
    caplog.set_level(logging.INFO, logger="sitemesh.bus")
    keeper = asyncio.create_task(keep_streams(nc, s, short, interval_s=0.2))

    def logged() -> bool:  # the round logs once it has trimmed every stream
        return any("trimmed 4 processed message(s)" in r.getMessage() for r in caplog.records)

    try:
        async with asyncio.timeout(15):
            while not logged():
                await asyncio.sleep(0.1)
    finally:
        keeper.cancel()
    assert (await js.stream_info(s.work_stream)).state.messages == 0


async def test_one_role_holding_an_old_message_pins_only_its_own_subject(
    nc: Client, js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    """What deadlocked a full WORK stream: the planner held its oldest input (its output
    refused), so the stream's prefix could not move, while the other roles' settled
    messages filled the stream."""
    s = Subjects(site)
    await provision(js, s, bus_settings)
    pub = Publisher(js)
    outs = [
        Outbound(
            subject=s.work("planner" if i % 4 == 0 else "retriever"), payload=b"x", msg_id=f"m{i}"
        )
        for i in range(20)
    ]
    await pub.publish_many(outs)  # planner: seq 1, 5, 9, 13, 17; retriever: the rest
    planner = await _planner(js, s)
    held = (await planner.fetch(1, timeout=5))[0]  # seq 1, never acked
    r_stream, r_durable, _ = s.consumer_for("retriever")
    retriever = await js.pull_subscribe_bind(durable=r_durable, stream=r_stream)
    for m in await retriever.fetch(15, timeout=5):
        await m.ack_sync()

    later = time.time() + bus_settings.max_age_s + 60
    t = await trim_stream(nc, s.work_stream, bus_settings, now=later)
    assert t.floor == 0  # the planner's ack floor: nothing of the prefix is settled
    assert t.purged == 15  # but every settled retriever message went
    info = await js.stream_info(s.work_stream)
    assert info.state.messages == 5  # the planner's five, the held one included
    await held.ack_sync()
    rest = await planner.fetch(4, timeout=5)
    assert [m.metadata.sequence.stream for m in rest] == [5, 9, 13, 17]


async def test_sitemesh_trim_prints_each_streams_floor(
    nats_server: NatsServer, js: JetStreamContext, site: str, bus_settings: BusSettings,
    tmp_path: Path,
) -> None:  # fmt: skip
    s = Subjects(site)
    await provision(js, s, bus_settings)
    await _fill(js, s, 3)
    for m in await (await _planner(js, s)).fetch(3, timeout=5):
        await m.ack_sync()
    settings = Settings(
        site=site,
        state_dir=tmp_path,
        nats={"url": nats_server.client_url},
        bus=bus_settings.model_copy(update={"max_age_s": 0.2, "duplicate_window_s": 0.2}),
    )
    await asyncio.sleep(0.3)
    console = Console(record=True, width=200)
    assert await run_trim(settings, console) == 0
    out = console.export_text()
    assert f"{s.work_stream}: processed up to seq 3; 3 removed below seq 4 (age)" in out
    assert f"{s.tasks_stream}: processed up to seq 0; kept" in out


async def test_sitemesh_trim_without_a_server_names_the_setting(tmp_path: Path) -> None:
    settings = Settings(site="eu1", state_dir=tmp_path)
    with pytest.raises(ConfigError) as err:
        await run_trim(settings, Console(record=True))
    assert err.value.key == "nats.url"
