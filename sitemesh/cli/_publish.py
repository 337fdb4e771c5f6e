"""``sitemesh publish``: tasks from JSON / JSON-lines files onto the bus."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from nats.js.client import JetStreamContext

from ..client import KIND_OF_TAG, Client, Submitted
from ..errors import SchemaError, StreamFull
from ..schemas import TASK_DECODER, Task, decode, schema_tag


@dataclass(frozen=True, slots=True)
class Prepared:
    """One task ready to publish: its id, subject kind and payload."""

    task_id: str
    kind: str
    task: Task | None
    raw: bytes | None


def _records(path: Path) -> Iterator[tuple[str, bytes]]:
    """``(label, bytes)`` per task: one per line for ``.jsonl``, the whole file else."""
    data = path.read_bytes()
    if path.suffix == ".jsonl":
        for n, line in enumerate(data.splitlines(), 1):
            if line.strip():
                yield f"{path.stem}-{n}", line
    else:
        yield path.stem, data


def prepare(
    paths: Sequence[Path], *, prefix: str = "", raw_kind: str | None = None
) -> list[Prepared]:
    """Read and check tasks from ``paths``.

    Args:
        paths: ``.json`` (one task) or ``.jsonl`` (one task per line) files.
        prefix: prepended to every task id: the task's own ``task_id``, or one
            derived from the file (``<prefix><file stem>-<line>``).
        raw_kind: publish bytes unchecked on this subject kind (for testing the
            router's validation); ``None`` decodes and checks every task first.

    Raises:
        SchemaError: a task does not decode; the message names file, line and field.
    """
    out: list[Prepared] = []
    for path in paths:
        for label, data in _records(path):
            if raw_kind is not None:
                out.append(Prepared(f"{prefix}{label}", raw_kind, None, data))
                continue
            try:
                task = decode(data, TASK_DECODER)
            except SchemaError as exc:
                raise SchemaError(f"{path} ({label}): {exc}", field=exc.field) from exc
            tid = prefix + (task.task_id or label)
            task = msgspec.structs.replace(task, task_id=tid)
            out.append(Prepared(tid, KIND_OF_TAG[schema_tag(task)], task, None))
    return out


async def publish(
    js: JetStreamContext,
    site: str,
    tasks: Sequence[Prepared],
    *,
    concurrency: int = 256,
    tenant: str | None = None,
) -> list[Submitted]:
    """Publish ``tasks`` (pipelined, at most ``concurrency`` awaiting PubAcks); with
    ``tenant``, on that tenant's subjects (``Client(..., tenant=)``).

    Raises:
        SchemaError: a task names a tenant other than ``tenant``.
        StreamFull: ``TASKS_<site>`` refused some of them; the message says how many
            were stored (publishing the same files again is safe: the stored ones
            are dropped as duplicates).
    """
    client = Client(js, site, tenant=tenant)
    sem = asyncio.Semaphore(concurrency)

    async def one(p: Prepared) -> Submitted:
        async with sem:
            if p.task is not None:
                return await client.submit(p.task, task_id=p.task_id)
            assert p.raw is not None
            return await client.publish_raw(p.kind, p.raw, task_id=p.task_id)

    results = await asyncio.gather(*(one(p) for p in tasks), return_exceptions=True)
    for r in results:
        if isinstance(r, BaseException) and not isinstance(r, StreamFull):
            raise r
    full = [r for r in results if isinstance(r, StreamFull)]
    if full:
        stored = len(results) - len(full)
        raise StreamFull(
            full[0].subject,
            f"{full[0].limit}; {stored} of {len(results)} tasks were stored, "
            "publishing the same files again later is safe",
        )
    return [r for r in results if isinstance(r, Submitted)]
