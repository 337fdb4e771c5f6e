"""What the site benches share: real tickets, a pinned ``nats-server`` and ``sitemesh
edge`` as a subprocess, publishing, and watching the answers (bus and database).

Imported by ``bench/pipeline.py`` and ``bench/chaos.py`` (run as ``python bench/x.py``,
so this directory is on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from sitemesh.bus import Outbound, Publisher, Subjects
from sitemesh.schemas import EVENT_DECODER, FinalAnswer, SupportTicket, TaskFailed
from sitemesh.state import Store

ROOT = Path(__file__).resolve().parent.parent
SITE = "eu1"


def unique_texts() -> Iterator[tuple[str, str]]:
    """``(source, text)`` of every unique real ticket text the repo carries."""
    seen: set[str] = set()

    def fresh(text: str) -> bool:
        key = " ".join(text.lower().split())
        if not key or key in seen:
            return False
        seen.add(key)
        return True

    for name in ("banking77-heldout.jsonl", "ibm-heldout.jsonl"):
        for line in (ROOT / "bench" / "data" / name).read_text("utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                text = row.get("text") or row.get("body") or ""
                if fresh(text):
                    yield name.split("-")[0], text
    with (ROOT / "sitemesh" / "triage" / "data" / "banking77" / "train.csv").open(
        encoding="utf-8", newline=""
    ) as fh:
        for row in csv.DictReader(fh):
            text = row.get("text") or ""
            if fresh(text):
                yield "banking77-train", text


def tickets_of(texts: list[tuple[str, str]], prefix: str) -> list[SupportTicket]:
    """One ticket per text, task ids ``<prefix>00000``, ``<prefix>00001``..."""
    return [
        SupportTicket(task_id=f"{prefix}{i:05d}", body=text, channel="api", source=src)
        for i, (src, text) in enumerate(texts)
    ]


@dataclass
class Seen:
    """What the bench saw on the bus, by task id (monotonic seconds)."""

    published: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    answers: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    """Routes (``local``, ``cloud``...) of the final answers seen."""


@dataclass
class PublishStats:
    """Publishes the bench had to repeat, by the reason of the failed attempt."""

    retries: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.retries.values())


def pct(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def site_env(state: Path, nats_url: str, db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a site's processes: this one's without its ``SITEMESH_*``,
    then the site, state dir, server, database and ``extra`` (``SITEMESH_BUS_...``)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SITEMESH_")},
        "SITEMESH_SITE": SITE,
        "SITEMESH_STATE_DIR": str(state),
        "SITEMESH_NATS_URL": nats_url,
        "SITEMESH_DB_URL": db_url,
        "COLUMNS": "200",
        **extra,
    }


async def warm_triage(env: Mapping[str, str]) -> None:
    """Train and cache the triage model once (what ``make demo`` does first)."""
    warm = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sitemesh", "triage", "warm", env=dict(env),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await warm.wait()


async def start_edge(
    env: Mapping[str, str], replicas: int, log: Path, *, colocate: bool = False
) -> asyncio.subprocess.Process:
    """``sitemesh edge`` as a child; returns once it printed that the site is ready
    (``colocate``: ``edge --colocate``, the agent roles in one process)."""
    extra = ["--colocate"] if colocate else []
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sitemesh", "edge", "--replicas", str(replicas), *extra,
        env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    deadline = time.monotonic() + 300
    with log.open("wb") as out:
        while time.monotonic() < deadline:
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=300)
            out.write(line)
            if not line:
                out.close()
                tail = (await asyncio.to_thread(log.read_text, "utf-8", "replace"))[-3000:]
                raise SystemExit(f"sitemesh edge exited before it was ready:\n{tail}")
            if re.search(rb"\bready\b in", line):
                break
    # keep draining its output so it never blocks on a full pipe
    asyncio.get_running_loop().create_task(_drain(proc, log))
    return proc


async def _drain(proc: asyncio.subprocess.Process, log: Path) -> None:
    assert proc.stdout is not None
    with log.open("ab") as out:
        while line := await proc.stdout.readline():
            out.write(line)
            out.flush()


async def stop_edge(edge: asyncio.subprocess.Process, timeout_s: float = 60) -> None:
    """SIGTERM ``sitemesh edge`` (it stops its workers), SIGKILL after ``timeout_s``."""
    if edge.returncode is not None:
        return
    edge.terminate()
    try:
        await asyncio.wait_for(edge.wait(), timeout_s)
    except TimeoutError:
        edge.kill()
        await edge.wait()


def worker_pids(parent: int) -> dict[int, str]:
    """``{pid: role}`` of the ``sitemesh worker ROLE`` children of ``parent`` (/proc)."""
    out: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid != parent:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if b"worker" in argv:
            i = argv.index(b"worker")
            roles = [argv[i + 1].decode() if i + 1 < len(argv) else "?"]
            roles += [argv[j + 1].decode() for j, a in enumerate(argv[:-1]) if a == b"--with"]
            out[int(entry.name)] = "+".join(roles)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used so far (/proc); 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_by_role(edge: int, nats: int | None) -> Counter[str]:
    """CPU seconds used so far by each role's ``sitemesh worker`` processes under the
    ``sitemesh edge`` pid ``edge`` (replicas summed), by ``edge`` itself, by the
    ``nats-server`` pid ``nats`` and by this process (the bench's publisher and
    watchers share the machine)."""
    out: Counter[str] = Counter()
    for pid, role in worker_pids(edge).items():
        out[role] += cpu_seconds(pid)
    out["(edge supervisor)"] = cpu_seconds(edge)
    if nats is not None:
        out["(nats-server)"] = cpu_seconds(nats)
    out["(this bench)"] = cpu_seconds(os.getpid())
    return out


def kill_pid(pid: int, sig: signal.Signals = signal.SIGKILL) -> bool:
    """Send ``sig`` to ``pid``; ``False`` if it is gone already."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


async def watch_events(js: JetStreamContext, subjects: Subjects, seen: Seen) -> Any:
    """Subscribe to the site's new events and fill ``seen`` for the tasks it published;
    returns the subscription (``await sub.unsubscribe()``)."""

    async def on_event(msg: Any) -> None:
        # only answers and failures are read: skip decoding the others (the bench
        # shares the machine with the site it measures)
        if ".final." not in msg.subject and b'"task_failed.v1"' not in msg.data:
            return
        ev = EVENT_DECODER.decode(msg.data)
        if isinstance(ev, FinalAnswer | TaskFailed) and ev.task_id in seen.published:
            seen.ended.setdefault(ev.task_id, time.monotonic())
            if isinstance(ev, FinalAnswer):
                seen.answers[ev.task_id] = seen.answers.get(ev.task_id, 0) + 1
                seen.routes[str(ev.route)] += 1
            else:
                seen.failed += 1

    return await js.subscribe(
        subjects.all_events, cb=on_event, ordered_consumer=True,
        config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
    )  # fmt: skip


async def publish_retrying(
    pub: Publisher, outs: list[Outbound], stats: PublishStats | None, *, give_up_s: float = 600
) -> None:
    """Publish ``outs`` until every one is acked: a refusal (full stream), a missing
    PubAck or a lost connection is counted in ``stats`` and the refused ones published
    again (same ``Nats-Msg-Id``: a repeat of a stored one is dropped by the server).

    Raises:
        SystemExit: still not acked after ``give_up_s`` seconds.
    """
    deadline = time.monotonic() + give_up_s
    todo = outs
    while todo:
        try:
            results = await pub.publish_each(todo)
        except Exception as exc:  # the connection itself (closed, reconnecting)
            results = [exc] * len(todo)
        again = []
        for out, res in zip(todo, results, strict=True):
            if isinstance(res, Exception):
                if stats is None:
                    raise res
                stats.retries[type(res).__name__] += 1
                again.append(out)
        todo = again
        if todo:
            if time.monotonic() > deadline:
                raise SystemExit(f"{len(todo)} publishes not acked within {give_up_s:.0f} s")
            await asyncio.sleep(0.2)


async def publish(
    pub: Publisher,
    subjects: Subjects,
    seen: Seen,
    tickets: list[SupportTicket],
    rate: float | None,
    stats: PublishStats | None = None,
) -> None:
    """Publish ``tickets``; all at once (``rate`` None) or paced at ``rate`` per second.

    With ``stats`` failed publishes are retried and counted (:func:`publish_retrying`);
    without, the first failure raises.
    """
    subject = subjects.task("support_ticket")
    if rate is None:
        now = time.monotonic()
        for t in tickets:
            assert t.task_id is not None
            seen.published[t.task_id] = now
        outs = [Outbound(subject, t, t.task_id) for t in tickets]
        if stats is None:
            await pub.publish_many(outs)
        else:
            await publish_retrying(pub, outs, stats)
        return
    start = time.monotonic()
    for i, t in enumerate(tickets):
        assert t.task_id is not None
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        seen.published[t.task_id] = time.monotonic()
        if stats is None:
            await pub.publish(Outbound(subject, t, t.task_id))
        else:
            await publish_retrying(pub, [Outbound(subject, t, t.task_id)], stats)


async def wait_ended(seen: Seen, ids: list[str], timeout_s: float, *, fatal: bool = True) -> float:
    """Monotonic time the last of ``ids`` ended on the bus.

    Raises:
        SystemExit: not all ended within ``timeout_s`` (unless ``fatal`` is false: then
            the time it gave up).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(i in seen.ended for i in ids):
            return max(seen.ended[i] for i in ids) if ids else time.monotonic()
        await asyncio.sleep(0.02)
    missing = sum(1 for i in ids if i not in seen.ended)
    if not fatal:
        return time.monotonic()
    raise SystemExit(f"{missing} of {len(ids)} tasks not answered within {timeout_s:.0f} s")


async def wait_recorded(
    store: Store, prefix: str, n: int, timeout_s: float, *, fatal: bool = True
) -> float:
    """Monotonic time the database held ``n`` ended tasks of ``prefix``.

    Raises:
        SystemExit: fewer within ``timeout_s`` (unless ``fatal`` is false).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the database may be the fault
            if len(await store.ended_ids(prefix)) >= n:
                return time.monotonic()
        await asyncio.sleep(0.05)
    if not fatal:
        return time.monotonic()
    got = len(await store.ended_ids(prefix))
    raise SystemExit(f"{n - got} of {n} tasks not recorded within {timeout_s:.0f} s")


async def stream_counts(
    js: JetStreamContext, stream: str, subject: str, key: Any, *, idle_s: float = 3.0
) -> Counter[Any]:
    """Read every message of ``stream`` on ``subject`` (from the first) and count them by
    ``key(msg)`` (skipped when it returns ``None``); stops at the stream's last message
    at the start (or after ``idle_s`` seconds without one)."""
    info = await js.stream_info(stream)
    last = info.state.last_seq
    counts: Counter[Any] = Counter()
    if info.state.messages == 0:
        return counts
    sub = await js.subscribe(
        subject, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL)
    )
    try:
        while True:
            try:
                msg = await sub.next_msg(timeout=idle_s)
            except TimeoutError:
                break
            k = key(msg)
            if k is not None:
                counts[k] += 1
            if msg.metadata.sequence.stream >= last or msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return counts


async def final_answer_counts(
    js: JetStreamContext, subjects: Subjects, task_ids: Iterable[str]
) -> Counter[str]:
    """How many ``FinalAnswer`` events the whole EVENTS stream holds per task of
    ``task_ids`` (what a duplicate answer would show, whatever the live subscription
    saw)."""
    wanted = set(task_ids)

    def key(msg: Any) -> str | None:
        try:
            ev = EVENT_DECODER.decode(msg.data)
        except Exception:
            return None
        return ev.task_id if isinstance(ev, FinalAnswer) and ev.task_id in wanted else None

    return await stream_counts(js, subjects.events_stream, subjects.all_events, key)


@dataclass
class Pressure:
    """Peaks sampled from the server while a scenario runs."""

    pending: Counter[str] = field(default_factory=Counter)
    """Peak unprocessed (pending + unacked) per consumer, ``<stream>/<durable>``."""
    stream_bytes: Counter[str] = field(default_factory=Counter)
    """Peak bytes per stream."""
    samples: int = 0
    errors: int = 0

    def clear(self) -> None:
        """Forget the peaks so far (a new scenario on the same site)."""
        self.pending.clear()
        self.stream_bytes.clear()
        self.samples = self.errors = 0

    @property
    def recorder_lag(self) -> int:
        """Peak events the recorder had yet to record (pending + unacked on EVENTS)."""
        return max((n for k, n in self.pending.items() if k.endswith("/recorder")), default=0)

    def line(self) -> str:
        agents = {k: n for k, n in self.pending.items() if not k.endswith("/recorder")}
        top = max(agents.items(), key=lambda kv: kv[1], default=("-", 0))
        return (
            f"consumer pending peak {top[1]} ({top[0]}); recorder lag peak "
            f"{self.recorder_lag} events; sampled {self.samples}x"
            + (f" ({self.errors} samples failed)" if self.errors else "")
        )


async def sample_pressure(
    js: JetStreamContext, subjects: Subjects, out: Pressure, interval_s: float = 0.5
) -> None:
    """Sample every consumer's backlog and every stream's size into ``out`` until
    cancelled (a failed sample, e.g. the server down, is counted and skipped)."""
    streams = (subjects.tasks_stream, subjects.work_stream, subjects.events_stream)
    while True:
        try:
            for stream in streams:
                info = await js.stream_info(stream)
                out.stream_bytes[stream] = max(out.stream_bytes[stream], info.state.bytes)
                for c in await js.consumers_info(stream):
                    if not c.config.durable_name:  # the bench's own (ephemeral) readers
                        continue
                    n = (c.num_pending or 0) + (c.num_ack_pending or 0)
                    key = f"{stream}/{c.name}"
                    out.pending[key] = max(out.pending[key], n)
            out.samples += 1
        except Exception:
            out.errors += 1
        await asyncio.sleep(interval_s)


async def connect_bench(url: str, name: str) -> Client:
    """A bench client that reconnects forever (as the site's processes do)."""
    from sitemesh.bus import connect

    return await connect(url, name=name, timeout_s=5)
