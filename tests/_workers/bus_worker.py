"""A worker process for the bus tests: ``retriever`` items in, one output each out.

Usage: ``python bus_worker.py URL SITE SETTINGS_JSON [--sleep S] [--inflight N]``.

Input: ``{"n": int, "poison": bool}`` on ``work(retriever)``. Output: ``{"n", "pid"}``
on ``work(diagnostics)`` with msg id ``out:<n>`` (derived, so a redelivered input's
re-publish is dropped as a duplicate). A ``poison`` item SIGKILLs the process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Sequence

import msgspec

from sitemesh.bus import MsgContext, Outbound, Subjects, Worker, connect, run_worker_until_signalled
from sitemesh.config import BusSettings


class Item(msgspec.Struct, frozen=True):
    n: int
    poison: bool = False


class Output(msgspec.Struct, frozen=True):
    n: int
    pid: int


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("site")
    p.add_argument("settings")
    p.add_argument("--sleep", type=float, default=0.0)
    p.add_argument("--inflight", type=int, default=None)
    args = p.parse_args()
    settings = BusSettings.model_validate_json(args.settings)
    subjects = Subjects(args.site)
    out_subject = subjects.work("diagnostics")
    pid = os.getpid()
    enc = msgspec.json.Encoder()

    async def handle(item: Item, ctx: MsgContext) -> Sequence[Outbound]:
        if item.poison:
            os.kill(pid, signal.SIGKILL)
        if args.sleep:
            await asyncio.sleep(args.sleep)
        data = enc.encode(Output(n=item.n, pid=pid))
        return [Outbound(subject=out_subject, payload=data, msg_id=f"out:{item.n}")]

    nc = await connect(args.url, name=f"test-worker-{pid}", timeout_s=5)
    stream, durable, _ = subjects.consumer_for("retriever")
    worker = Worker(
        nc.jetstream(),
        site=args.site,
        role="retriever",
        stream=stream,
        durable=durable,
        decoder=msgspec.json.Decoder(Item).decode,
        handler=handle,
        settings=settings,
        max_inflight=args.inflight,
    )
    await run_worker_until_signalled(worker, nc)


if __name__ == "__main__":
    asyncio.run(main())
