"""``read_stream``: ranges by sequence and time, subject filters, big and empty streams."""

from __future__ import annotations

import asyncio
import itertools
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from sitemesh.bus import HDR_TASK_ID, Subjects, provision
from sitemesh.config import BusSettings
from sitemesh.replay import read_all, read_stream


async def test_ranges_filters_and_chunks(
    js: JetStreamContext, site: str, bus_settings: BusSettings
) -> None:
    s = Subjects(site)
    await provision(js, s, bus_settings)
    assert await read_all(js, s.events_stream) == []
    for i in range(1, 101):
        await js.publish(s.event(f"t{i % 2}", "router"), b'{"n":%d}' % i,
                         headers={HDR_TASK_ID: f"t{i % 2}"})  # fmt: skip
    everything = await read_all(js, s.events_stream)
    assert [r.seq for r in everything] == list(range(1, 101))
    assert everything[0].headers[HDR_TASK_ID] == "t1"
    assert everything[0].data == b'{"n":1}'
    assert everything[0].subject == s.event("t1", "router")
    assert all(a.time_ns <= b.time_ns for a, b in itertools.pairwise(everything))

    chunks = [len(c) async for c in read_stream(js, s.events_stream, batch=16)]
    assert sum(chunks) == 100
    assert max(chunks) <= 16
    assert min(chunks) >= 1
    # a caller slow to take each chunk lets up to three pulls' worth pile up: it
    # still gets them in order, in slices of at most ``batch``
    slow: list[list[int]] = []
    async for c in read_stream(js, s.events_stream, batch=16):
        slow.append([r.seq for r in c])
        await asyncio.sleep(0.05)
    assert [seq for c in slow for seq in c] == list(range(1, 101))
    assert max(map(len, slow)) <= 16

    mid = await read_all(js, s.events_stream, seq_from=10, seq_to=20)
    assert [r.seq for r in mid] == list(range(10, 21))
    odd = await read_all(js, s.events_stream, subject=s.task_events("t1"), seq_to=9)
    assert [r.seq for r in odd] == [1, 3, 5, 7, 9]
    assert await read_all(js, s.events_stream, seq_from=101) == []

    t50 = datetime.fromtimestamp(everything[49].time_ns / 1e9, UTC)
    since = await read_all(js, s.events_stream, since=t50)
    assert since[0].time_ns >= everything[49].time_ns - 1000
    assert since[-1].seq == 100
    until = await read_all(js, s.events_stream, until=t50 - timedelta(microseconds=1))
    assert until
    assert all(r.time_ns < everything[49].time_ns for r in until)
    both = await read_all(js, s.events_stream, seq_from=1, since=t50, seq_to=60)
    assert both
    assert both[-1].seq == 60
    assert all(r.time_ns >= everything[49].time_ns - 1000 for r in both)
    # the read leaves no consumer behind
    info = await js.stream_info(s.events_stream)
    assert info.state.consumer_count == 1  # the recorder, nothing else
