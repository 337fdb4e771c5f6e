"""One pipeline hop: raw nats-py + msgspec vs sitemesh's Worker, same server, same run.

Each variant reads N pre-loaded 512-byte messages from a durable pull consumer,
decodes them with msgspec, publishes one message to the next subject (with a
``Nats-Msg-Id``), waits for the PubAck and acks the input:

* ``raw-seq``: the textbook loop: ``fetch`` a batch, then per message
  ``await js.publish(...)`` and ``await msg.ack()``.
* ``raw-pipe``: the same, but the batch's publishes are sent with
  ``publish_async`` and their PubAcks awaited together (what a careful user does).
* ``worker``: :class:`sitemesh.bus.Worker` with a handler returning one ``Outbound``.

Usage: ``python bench/hop.py [--n 20000] [--batch 64] [--repeat 1]``. Prints msg/s
and ratios; the target is ``worker >= 0.8 x raw``.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import msgspec
from nats.js import JetStreamContext

from sitemesh.bus import MsgContext, NatsServer, Outbound, Publisher, Subjects, Worker, connect
from sitemesh.bus import provision as provision_site
from sitemesh.config import BusSettings


class Item(msgspec.Struct, frozen=True, kw_only=True, tag="bench_item.v1"):
    n: int
    body: str


DECODER = msgspec.json.Decoder(Item)
ENCODER = msgspec.json.Encoder()
BODY = "x" * (512 - len(ENCODER.encode(Item(n=0, body=""))) - 5)


async def preload(js: JetStreamContext, site: str, n: int) -> None:
    subjects = Subjects(site)
    pub = Publisher(js, timeout_s=30)
    chunk = 1000
    for start in range(0, n, chunk):
        await pub.publish_many(
            Outbound(
                subject=subjects.work("retriever"),
                payload=Item(n=i, body=BODY),
                msg_id=f"in:{i}",
            )
            for i in range(start, min(n, start + chunk))
        )


async def raw_sequential(js: JetStreamContext, site: str, n: int, batch: int) -> None:
    subjects = Subjects(site)
    out = subjects.work("diagnostics")
    sub = await js.pull_subscribe_bind(durable="retriever", stream=subjects.work_stream)
    done = 0
    while done < n:
        for msg in await sub.fetch(min(batch, n - done), timeout=5):
            item = DECODER.decode(msg.data)
            await js.publish(out, msg.data, headers={"Nats-Msg-Id": f"out:{item.n}"})
            await msg.ack()
            done += 1
    await sub.unsubscribe()


async def raw_pipelined(js: JetStreamContext, site: str, n: int, batch: int) -> None:
    subjects = Subjects(site)
    out = subjects.work("diagnostics")
    sub = await js.pull_subscribe_bind(durable="retriever", stream=subjects.work_stream)
    done = 0
    while done < n:
        msgs = await sub.fetch(min(batch, n - done), timeout=5)
        futures = []
        for msg in msgs:
            item = DECODER.decode(msg.data)
            futures.append(
                await js.publish_async(out, msg.data, headers={"Nats-Msg-Id": f"out:{item.n}"})
            )
        await asyncio.gather(*futures)
        for msg in msgs:
            await msg.ack()
        done += len(msgs)
    await sub.unsubscribe()


async def worker(js: JetStreamContext, site: str, n: int, batch: int) -> float:
    subjects = Subjects(site)
    out = subjects.work("diagnostics")

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        return (Outbound(subject=out, payload=item, msg_id=f"out:{item.n}"),)

    settings = BusSettings(batch=batch)
    w = Worker(
        js,
        site=site,
        role="retriever",
        stream=subjects.work_stream,
        durable="retriever",
        decoder=DECODER.decode,
        handler=handle,
        settings=settings,
        max_inflight=batch * 2,
    )
    async with w:
        while w.handled < n:  # noqa: ASYNC110 - settled count, polled every 2 ms
            await asyncio.sleep(0.002)
        end = time.perf_counter()
    return end  # the clock stops when the last message is settled, not after shutdown


Variant = Callable[[JetStreamContext, str, int, int], Awaitable[float | None]]


async def measure(js: JetStreamContext, variant: Variant, n: int, batch: int) -> float:
    site = "b" + uuid.uuid4().hex[:8]
    subjects = Subjects(site)
    await provision_site(js, subjects, BusSettings(batch=batch))
    await preload(js, site, n)
    t0 = time.perf_counter()
    end = await variant(js, site, n, batch)
    elapsed = (end or time.perf_counter()) - t0
    info = await js.stream_info(subjects.work_stream, subjects_filter=subjects.work("diagnostics"))
    assert info.state.messages == 2 * n, info.state  # N inputs + N outputs
    await js.delete_stream(subjects.work_stream)
    return n / elapsed


async def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--n", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args()
    variants: dict[str, Variant] = {
        "raw-seq": raw_sequential,
        "raw-pipe": raw_pipelined,
        "worker": worker,
    }
    with tempfile.TemporaryDirectory() as tmp:
        async with NatsServer(Path(tmp)) as srv:
            nc = await connect(srv.client_url, name="bench", timeout_s=5)
            js = nc.jetstream()
            origin = srv.binary.origin
            print(f"nats-server {srv.version} ({origin}), n={args.n}, batch={args.batch}")
            rates: dict[str, float] = {}
            for _ in range(args.repeat):
                for name, variant in variants.items():
                    rate = await measure(js, variant, args.n, args.batch)
                    rates[name] = max(rates.get(name, 0.0), rate)
                    print(f"  {name:9s} {rate:10,.0f} msg/s")
            await nc.drain()
    print("best: " + ", ".join(f"{k} {v:,.0f} msg/s" for k, v in rates.items()))
    print(f"worker / raw-seq  = {rates['worker'] / rates['raw-seq']:.2f}x")
    print(f"worker / raw-pipe = {rates['worker'] / rates['raw-pipe']:.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
