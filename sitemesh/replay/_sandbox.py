"""Re-running recorded tasks in an isolated sandbox and diffing the outcomes.

The sandbox is the site's subject map under ``sm.replay.<id>`` with its own
streams (``TASKS_<site>_R<id>``...), served by in-process workers on the same
server; nothing is published on a live subject, so live consumers, the recorder
and the state database never see a replayed message.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Final, Literal

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ..agents import Agent, AgentResources, Registry
from ..bus import HDR_MSG_ID, HDR_TASK_ID, Outbound, Publisher, Subjects, stream_configs
from ..config import BusSettings
from ..policy import PiiScanner, Policy
from ..schemas import EVENT_DECODER, ApprovalRequested, FinalAnswer, TaskFailed
from ..workflows import Workflows
from ._diff import DiffReport, diff_task
from ._models import ReplayModels
from ._outcome import OutcomeBuilder
from ._readback import StreamRecord, read_stream
from ._site import InProcessSite

Speed = Literal["original", "max"]
"""``original``: keep the recorded gaps between tasks; ``max``: all at once."""

Progress = Callable[[int, int], None]
"""``progress(ended, total)``, called as replayed tasks end."""

PUBLISH_CHUNK: Final = 256
"""Tasks published per pipelined batch at ``speed="max"``."""

_ORIGINAL_MARGIN_NS: Final = 1_000_000_000
"""Events are read from 1 s before the first selected task was stored."""


def new_replay_id() -> str:
    """A short random sandbox id (8 hex digits)."""
    return uuid.uuid4().hex[:8]


async def read_outcomes(
    js: JetStreamContext,
    subjects: Subjects,
    task_ids: Sequence[str],
    *,
    since_ns: int | None = None,
) -> OutcomeBuilder:
    """The outcomes of ``task_ids`` as recorded in ``subjects``' EVENTS and WORK streams.

    Args:
        js: a JetStream context.
        subjects: the live or sandbox map to read.
        task_ids: the tasks.
        since_ns: read only what was stored from this time (Unix ns) on.
    """
    builder = OutcomeBuilder(task_ids)
    since = datetime.fromtimestamp(since_ns / 1e9, UTC) if since_ns is not None else None
    async for chunk in read_stream(
        js, subjects.events_stream, subject=subjects.all_events, since=since
    ):
        builder.add_events(chunk)
    async for chunk in read_stream(
        js, subjects.work_stream, subject=subjects.all_work, since=since
    ):
        builder.add_work(chunk)
    return builder


async def original_outcomes(
    js: JetStreamContext, subjects: Subjects, tasks: Sequence[tuple[str, StreamRecord]]
) -> OutcomeBuilder:
    """The recorded outcomes of selected tasks (events and work from their time on)."""
    first_ns = min((rec.time_ns for _, rec in tasks), default=0)
    return await read_outcomes(
        js, subjects, [t for t, _ in tasks], since_ns=first_ns - _ORIGINAL_MARGIN_NS
    )


def _outbound(sandbox: Subjects, task_id: str, rec: StreamRecord) -> Outbound:
    kind = rec.subject.rsplit(".", 1)[-1]
    headers = {k: v for k, v in rec.headers.items() if k not in (HDR_MSG_ID, HDR_TASK_ID)}
    return Outbound(
        subject=sandbox.task(kind),
        payload=rec.data,
        msg_id=rec.headers.get(HDR_MSG_ID) or f"replay:{task_id}",
        task_id=task_id,
        headers=headers,
    )


async def delete_sandbox(js: JetStreamContext, sandbox: Subjects, bus: BusSettings) -> None:
    """Delete every stream of ``sandbox`` (never a live one).

    Raises:
        ValueError: ``sandbox`` is the live map.
    """
    if not sandbox.is_sandbox:
        raise ValueError(f"refusing to delete the live streams of site {sandbox.site!r}")
    for cfg in stream_configs(sandbox, bus):
        assert cfg.name is not None
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(cfg.name)


async def replay_tasks(
    js: JetStreamContext,
    subjects: Subjects,
    bus: BusSettings,
    tasks: Sequence[tuple[str, StreamRecord]],
    *,
    policy: Policy,
    scanner: PiiScanner,
    agents: Mapping[str, Agent] | None = None,
    workflows: Workflows | None = None,
    registry: Registry | None = None,
    models: ReplayModels | None = None,
    speed: Speed = "max",
    backend_healthy: bool = False,
    keep: bool = False,
    replay_id: str | None = None,
    timeout_s: float = 120.0,
    progress: Progress | None = None,
    original: OutcomeBuilder | None = None,
    resources: AgentResources | None = None,
) -> DiffReport:
    """Re-run recorded tasks in a sandbox and compare each with its original run.

    Args:
        js: a JetStream context.
        subjects: the live site's map (read only).
        bus: worker settings for the sandbox workers and streams.
        tasks: ``(task id, task message)`` from :func:`select_tasks`.
        policy: the rules the sandbox router applies.
        scanner: a loaded PII scanner.
        agents: role -> agent (set up); default: freshly built from ``registry``.
        workflows: the workflows the sandbox router starts; default: the bundled ones.
        registry: the agent registry; default: the installed agents.
        models: where model calls are answered from (recorded by default).
        speed: ``max`` or ``original`` (the recorded gaps between tasks).
        backend_healthy: the ``backend_healthy`` policy fact in the sandbox.
        keep: keep the sandbox streams for inspection (else deleted).
        replay_id: the sandbox id; default: :func:`new_replay_id`.
        timeout_s: seconds to wait, after the last task is published, for every
            replayed task to end (answer, failure or approval request).
        progress: called with ``(ended, total)`` as tasks end.
        original: the original outcomes if already read (:func:`original_outcomes`).
        resources: what the sandbox's agents reach through their context; pass
            :meth:`ReplayTools.resources` (and build ``agents`` with the same) so their
            tool calls are served from the records (``None``: no tools, no models).

    Returns:
        The per-task diff; a task that did not end shows status ``pending``.
    """
    del models  # deterministic agents call no model; backends take it from here
    rid = replay_id or new_replay_id()
    sandbox = Subjects.sandbox(subjects.site, rid)
    ids = [tid for tid, _ in tasks]
    wanted = set(ids)
    if original is None:
        original = await original_outcomes(js, subjects, tasks)

    ended: set[str] = set()
    all_ended = asyncio.Event()
    if not wanted:
        all_ended.set()

    async def on_event(msg: Msg) -> None:
        tid = (msg.headers or {}).get(HDR_TASK_ID)
        if tid not in wanted or tid in ended:
            return
        try:
            ev = EVENT_DECODER.decode(msg.data)
        except Exception:  # not ours to judge here: the diff shows it
            return
        if isinstance(ev, FinalAnswer | TaskFailed | ApprovalRequested):
            ended.add(tid)
            if progress is not None:
                progress(len(ended), len(wanted))
            if len(ended) == len(wanted):
                all_ended.set()

    nc = js._nc  # the connection; nats-py exposes no public accessor
    sub = await nc.subscribe(sandbox.all_events, cb=on_event)
    t0 = time.monotonic()
    try:
        async with InProcessSite(
            js,
            sandbox,
            bus,
            policy=policy,
            scanner=scanner,
            agents=agents,
            backend_healthy=backend_healthy,
            workflows=workflows,
            registry=registry,
            resources=resources,
        ):
            publisher = Publisher(js)
            outs = [_outbound(sandbox, tid, rec) for tid, rec in tasks]
            if speed == "original":
                prev = None
                for out, (_, rec) in zip(outs, tasks, strict=True):
                    if prev is not None and rec.time_ns > prev:
                        await asyncio.sleep((rec.time_ns - prev) / 1e9)
                    prev = rec.time_ns
                    await publisher.publish(out)
            else:
                for i in range(0, len(outs), PUBLISH_CHUNK):
                    await publisher.publish_many(outs[i : i + PUBLISH_CHUNK])
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_s):
                    await all_ended.wait()
        elapsed = time.monotonic() - t0
        replayed = await read_outcomes(js, sandbox, ids)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        if not keep:
            await delete_sandbox(js, sandbox, bus)
    before, after = original.outcomes(), replayed.outcomes()
    return DiffReport(
        tasks=tuple(diff_task(t, before.get(t), after.get(t)) for t in ids),
        replay_id=rid,
        elapsed_s=elapsed,
        policy_versions=(
            frozenset(v for t in ids if (v := original.policy_version(t))),
            frozenset(v for t in ids if (v := replayed.policy_version(t))),
        ),
    )
