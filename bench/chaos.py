"""The fault suite: a real site (or hub and site) under faults, and what it lost.

Each scenario runs unique real tickets through a pinned ``nats-server`` and a
``sitemesh edge`` subprocess (every worker its own process), injects one fault, waits
for the site to drain, then reads the whole EVENTS stream and the state database:

* ``kills``: SIGKILL a random worker process every 1-2 s for ``--kill-for`` s while
  publishing at ``--rate`` tasks/s (the supervisor restarts them).
* ``nats``: SIGKILL the ``nats-server`` mid-stream and restart it on the same port and
  store after ``--down-s`` s; the bench's publisher retries until acked.
* ``leaf``: a hub and a site with leaf nodes (``sitemesh.topology``) and a policy that
  sends every ticket to the cloud; the hub is stopped for ``--cut-s`` s (the leaf
  link is down), tickets keep coming, then it is healed; ``--cuts`` times.
* ``db``: the recorder's database goes away for ``--outage-s`` s (SQLite: another
  connection holds ``BEGIN EXCLUSIVE``; PostgreSQL: ``pg_terminate_backend`` of every
  connection to the site's database, again and again).
* ``full``: a site whose streams hold ``--full-bytes`` (processed history older than
  ``--full-age-s`` is trimmed, all of it past 70 %), fed a burst of ``--full-n``
  tickets: the router admits no new task past 80 % of the work stream, full streams
  refuse publishes, the bench and the workers retry; on a failure it prints each
  consumer's backlog and ack floor.
* ``fuzz``: ``--fuzz-n`` hostile messages published raw on the task subjects (and on
  work subjects, as any client of an open server could), a valid ticket every
  ``--fuzz-every``: every hostile one must be dead-lettered with a reason, no worker
  may crash, the valid tickets must be answered.

Per scenario it prints: tasks published, answered, failed, recorded, lost (published
and never ended on the bus), duplicate final answers (``FinalAnswer`` events per task
id in the whole EVENTS stream), the backpressure seen (publish retries by reason,
peak consumer backlog, peak recorder lag, worker refusals) and ``PASS``/``FAIL``.
Exits 1 when a scenario failed.

Usage: ``python bench/chaos.py [--scenario kills|nats|leaf|db|full|fuzz|all]
[--kill-for 60] [--rate 100] [--down-s 5] [--cut-s 60] [--cuts 5] [--outage-s 20]
[--fuzz-n 5000] [--db sqlite|postgres|URL]``. Asserts nothing on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
from _site import (
    SITE,
    Pressure,
    PublishStats,
    Seen,
    connect_bench,
    final_answer_counts,
    kill_pid,
    publish,
    sample_pressure,
    site_env,
    start_edge,
    stop_edge,
    stream_counts,
    tickets_of,
    unique_texts,
    wait_ended,
    wait_recorded,
    warm_triage,
    watch_events,
    worker_pids,
)
from nats.aio.client import Client
from nats.js import JetStreamContext

from sitemesh.bus import (
    NatsServer,
    Outbound,
    Publisher,
    Subjects,
    consumer_floor,
    work_streams,
)
from sitemesh.edge_node import task_decoder
from sitemesh.schemas import (
    DLQ_DECODER,
    EVENT_DECODER,
    WORK_DECODER,
    SupportTicket,
    TaskFailed,
    decode,
)
from sitemesh.state import Store

SCENARIOS = ("kills", "nats", "leaf", "db", "full", "fuzz")
MAX_TASK_BYTES = 64 * 1024
"""The site's default ``bus.max_task_bytes`` (larger tasks are dead-lettered)."""


# -- figures ----------------------------------------------------------------------------
@dataclass
class Figures:
    """What one scenario counted; :meth:`report` prints it."""

    name: str
    published: int = 0
    answered: int = 0
    failed: int = 0
    recorded: int = 0
    lost: int = 0
    duplicates: int = 0
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    """Scenario figures by name (``kills``, ``restarts``, ``hostile``, ``dead_lettered``,
    ``publish_retries``...), for tests."""

    @property
    def ok(self) -> bool:
        return not self.problems and self.lost == 0 and self.duplicates == 0

    def report(self) -> str:
        head = (
            f"[{self.name}] published {self.published}, answered {self.answered}, "
            f"failed {self.failed}, recorded {self.recorded}, lost {self.lost}, "
            f"duplicate final answers {self.duplicates}: {'PASS' if self.ok else 'FAIL'}"
        )
        return "\n".join(
            [head, *("  " + x for x in self.lines), *("  ! " + x for x in self.problems)]
        )


async def outcome(
    js: JetStreamContext,
    subjects: Subjects,
    store: Store | None,
    ids: Sequence[str],
    prefix: str,
    fig: Figures,
    db_url: str | None = None,
    live: Seen | None = None,
) -> None:
    """Fill ``fig`` from the whole EVENTS stream (answers, failures, duplicates) and the
    database (tasks recorded; every stream event of ``prefix`` recorded once)."""
    wanted = set(ids)
    answers = await final_answer_counts(js, subjects, wanted)

    def failed_key(msg: Any) -> str | None:
        try:
            ev = EVENT_DECODER.decode(msg.data)
        except Exception:
            return None
        return ev.task_id if isinstance(ev, TaskFailed) and ev.task_id in wanted else None

    failed = await stream_counts(js, subjects.events_stream, subjects.all_events, failed_key)
    if live is not None:  # what aged out of a short history was still seen live
        for tid, n in live.answers.items():
            if tid in wanted and tid not in answers:
                answers[tid] = n
        failed.update(t for t in live.ended if t in wanted and t not in live.answers)
    fig.published = len(wanted)
    fig.answered = len(answers)
    fig.failed = len(set(failed) - set(answers))
    fig.duplicates = sum(1 for n in answers.values() if n > 1)
    fig.lost = len(wanted - set(answers) - set(failed))
    if fig.lost:
        some = sorted(wanted - set(answers) - set(failed))[:5]
        states = []
        for tid in some:
            view = await store.get_task(tid) if store is not None else None
            states.append(f"{tid}: {getattr(view, 'status', 'not in the db')}")
        fig.lines.append(f"lost, e.g.: {states}")
    if store is not None:
        recorded = await store.ended_ids(prefix)
        fig.recorded = len(recorded & wanted)
        if fig.recorded < len(wanted) - fig.lost:
            fig.problems.append(
                f"{len(wanted) - fig.lost - fig.recorded} ended on the bus, not in the db"
            )
    if db_url is not None:
        in_stream = await stream_counts(
            js,
            subjects.events_stream,
            subjects.all_events,
            lambda m: "e" if (m.headers or {}).get("sm-task-id", "").startswith(prefix) else None,
        )
        rows = await db_event_rows(db_url, prefix)
        fig.lines.append(
            f"events of the run: {in_stream['e']} in the EVENTS stream, {rows} recorded "
            f"in task_events"
        )
        if rows != in_stream["e"]:
            fig.problems.append(f"{in_stream['e'] - rows} events not recorded exactly once")


async def db_event_rows(db_url: str, prefix: str) -> int:
    """``task_events`` rows of tasks whose id starts with ``prefix``."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            res = await conn.execute(
                text("SELECT count(*) FROM task_events WHERE task_id LIKE :p"), {"p": prefix + "%"}
            )
            return int(res.scalar_one())
    finally:
        await engine.dispose()


def restarts_in(log: Path) -> int:
    """Worker restarts the supervisor logged (``... exited with N; restarting in``)."""
    try:
        return log.read_text("utf-8", "replace").count("; restarting in")
    except OSError:
        return 0


def held_inputs(logs: Path) -> int:
    """Inputs workers held because a full stream refused their output (log lines)."""
    n = 0
    for path in logs.glob("*.log"):
        with contextlib.suppress(OSError):
            n += path.read_text("utf-8", "replace").count("holding the input, publish attempt 1\n")
    return n


# -- a site -----------------------------------------------------------------------------
@dataclass
class LocalSite:
    """A running site: server, edge, a bench client, the events it saw."""

    state: Path
    srv: NatsServer
    env: dict[str, str]
    db_url: str
    edge: asyncio.subprocess.Process
    nc: Client
    js: JetStreamContext
    pub: Publisher
    store: Store
    subjects: Subjects = field(default_factory=lambda: Subjects(SITE))
    seen: Seen = field(default_factory=Seen)
    stats: PublishStats = field(default_factory=PublishStats)
    pressure: Pressure = field(default_factory=Pressure)
    restarts_before: int = 0

    @property
    def edge_log(self) -> Path:
        return self.state / "edge.log"

    async def restart_nats(self, down_s: float) -> float:
        """SIGKILL the server, wait ``down_s``, start it on the same port and store;
        returns the seconds it was unreachable."""
        t0 = time.monotonic()
        assert self.srv.pid is not None
        kill_pid(self.srv.pid)
        await self.srv.shutdown()  # reaps the killed process
        await asyncio.sleep(down_s)
        await self.srv.start()
        return time.monotonic() - t0


@contextlib.asynccontextmanager
async def local_site(
    tmp: Path, db_url: str | None, *, replicas: int = 1, colocate: bool = False, **extra: str
) -> AsyncIterator[LocalSite]:
    """Start a site in ``tmp`` (``extra``: more ``SITEMESH_*`` for its processes;
    ``colocate``: ``edge --colocate``, the agent roles in one process)."""
    srv = NatsServer(tmp / "nats")
    await srv.start()
    try:
        url = db_url or f"sqlite+aiosqlite:///{tmp / 'sitemesh.db'}"
        env = site_env(tmp, srv.client_url, url, **extra)
        await warm_triage(env)
        t0 = time.monotonic()
        edge = await start_edge(env, replicas, tmp / "edge.log", colocate=colocate)
        print(f"  sitemesh edge ready in {time.monotonic() - t0:.1f} s", flush=True)
        nc = await connect_bench(srv.client_url, "bench-chaos")
        js = nc.jetstream()
        site = LocalSite(tmp, srv, env, url, edge, nc, js, Publisher(js, timeout_s=5), Store(url))
        sub = await watch_events(js, site.subjects, site.seen)
        sampler = asyncio.create_task(sample_pressure(js, site.subjects, site.pressure))
        try:
            yield site
        finally:
            sampler.cancel()
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            await site.store.close()
            with contextlib.suppress(Exception):
                await nc.drain()
            await stop_edge(edge)
    finally:
        await srv.shutdown()


class Texts:
    """Hands out unique real ticket texts, never the same one twice in a run."""

    def __init__(self) -> None:
        self._all = list(unique_texts())
        self._next = 0
        self._issued: Counter[str] = Counter()  # task ids stay unique per tag
        self.run = time.strftime("%H%M%S")

    def tickets(self, n: int, tag: str) -> list[SupportTicket]:
        if self._next + n > len(self._all):
            self._next = 0  # wrapped: bodies repeat, task ids stay unique
        texts = self._all[self._next : self._next + n]
        self._next += n
        first = self._issued[tag]
        self._issued[tag] += n
        return [
            msgspec.structs.replace(t, task_id=f"{tag}{self.run}-{first + i:05d}")
            for i, t in enumerate(tickets_of(texts, ""))
        ]


async def drain(site: LocalSite, ids: list[str], prefix: str, timeout_s: float) -> float:
    """Wait until ``ids`` ended on the bus and in the db (or ``timeout_s``); seconds."""
    t0 = time.monotonic()
    await wait_ended(site.seen, ids, timeout_s, fatal=False)
    left = max(5.0, timeout_s - (time.monotonic() - t0))
    await wait_recorded(site.store, prefix, len(ids), left, fatal=False)
    return time.monotonic() - t0


def begin(site: LocalSite) -> None:
    """Start a scenario's counts afresh (a site may run several scenarios)."""
    site.stats.retries.clear()
    site.pressure.clear()
    site.restarts_before = restarts_in(site.edge_log)


def restarts(site: LocalSite) -> int:
    """Worker restarts the supervisor logged since :func:`begin`."""
    return restarts_in(site.edge_log) - site.restarts_before


def pressure_lines(site: LocalSite, fig: Figures) -> list[str]:
    fig.counts["publish_retries"] = site.stats.total
    fig.counts["restarts"] = restarts(site)
    fig.counts["recorder_lag_peak"] = site.pressure.recorder_lag
    retries = dict(site.stats.retries) or "none"
    return [
        f"publish retries {site.stats.total} ({retries}); {site.pressure.line()}",
        f"worker restarts logged by the supervisor: {restarts(site)}",
    ]


# -- scenarios --------------------------------------------------------------------------
async def scenario_kills(site: LocalSite, args: argparse.Namespace, texts: Texts) -> Figures:
    fig = Figures("kills")
    begin(site)
    tickets = texts.tickets(int(args.rate * args.kill_for), "kl")
    prefix = f"kl{texts.run}-"
    ids = [t.task_id or "" for t in tickets]
    killed: Counter[str] = Counter()
    pub = asyncio.create_task(
        publish(site.pub, site.subjects, site.seen, tickets, args.rate, site.stats)
    )
    rng = random.Random(args.seed)
    t0 = time.monotonic()
    while not pub.done():
        await asyncio.sleep(rng.uniform(1.0, 2.0))
        pids = worker_pids(site.edge.pid)
        if pids and not pub.done():
            pid = rng.choice(sorted(pids))
            if kill_pid(pid):
                killed[pids[pid]] += 1
    await pub
    took = time.monotonic() - t0
    fig.counts["kills"] = sum(killed.values())
    drained = await drain(site, ids, prefix, args.drain_s)
    await outcome(site.js, site.subjects, site.store, ids, prefix, fig, site.db_url, site.seen)
    fig.lines.append(
        f"{sum(killed.values())} SIGKILLs in {took:.0f} s ({dict(killed)}); "
        f"drained {drained:.1f} s after the last publish"
    )
    fig.lines += pressure_lines(site, fig)
    return fig


async def scenario_nats(site: LocalSite, args: argparse.Namespace, texts: Texts) -> Figures:
    fig = Figures("nats")
    begin(site)
    tickets = texts.tickets(int(args.rate * args.nats_for), "nt")
    prefix = f"nt{texts.run}-"
    ids = [t.task_id or "" for t in tickets]
    pub = asyncio.create_task(
        publish(site.pub, site.subjects, site.seen, tickets, args.rate, site.stats)
    )
    await asyncio.sleep(args.nats_for / 3)
    published_before = len(site.seen.published)
    down = await site.restart_nats(args.down_s)
    await pub
    drained = await drain(site, ids, prefix, args.drain_s)
    await outcome(site.js, site.subjects, site.store, ids, prefix, fig, site.db_url, site.seen)
    fig.lines.append(
        f"nats-server SIGKILLed after {published_before} publishes, unreachable "
        f"{down:.1f} s, restarted on the same port and store; drained {drained:.1f} s "
        f"after the last publish"
    )
    fig.lines += pressure_lines(site, fig)
    return fig


async def _pg_database(tag: str) -> tuple[str, Callable[[], Any]]:
    """A fresh database on the local PostgreSQL; returns its URL and a dropper."""
    import asyncpg

    name = f"sm_{tag}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", drop


async def _terminate_backends(db_name: str) -> int:
    """``pg_terminate_backend`` every connection to ``db_name`` (never another db's)."""
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        rows = await conn.fetch(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            db_name,
        )
        return sum(1 for r in rows if r[0])
    finally:
        await conn.close()


async def scenario_db(site: LocalSite, args: argparse.Namespace, texts: Texts) -> Figures:
    fig = Figures("db")
    begin(site)
    tickets = texts.tickets(int(args.db_rate * args.db_for), "db")
    prefix = f"db{texts.run}-"
    ids = [t.task_id or "" for t in tickets]
    pub = asyncio.create_task(
        publish(site.pub, site.subjects, site.seen, tickets, args.db_rate, site.stats)
    )
    await asyncio.sleep(args.db_for / 4)
    t0 = time.monotonic()
    how = ""
    if site.db_url.startswith("sqlite"):
        path = site.db_url.split(":///", 1)[1]
        conn = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        await asyncio.to_thread(conn.execute, "BEGIN EXCLUSIVE")
        locked = time.monotonic()
        await asyncio.sleep(args.outage_s)
        await asyncio.to_thread(conn.execute, "ROLLBACK")
        conn.close()
        how = f"SQLite BEGIN EXCLUSIVE held {time.monotonic() - locked:.1f} s"
    else:
        name = site.db_url.rsplit("/", 1)[1]
        killed = 0
        while time.monotonic() - t0 < args.outage_s:
            killed += await _terminate_backends(name)
            await asyncio.sleep(0.5)
        how = f"{killed} backends terminated over {args.outage_s:.0f} s"
    lag_at_end = site.pressure.recorder_lag
    await pub
    drained = await drain(site, ids, prefix, args.drain_s)
    await outcome(site.js, site.subjects, site.store, ids, prefix, fig, site.db_url, site.seen)
    fig.lines.append(
        f"{how}; recorder lag peak during the outage {lag_at_end} events; "
        f"drained {drained:.1f} s after the last publish"
    )
    fig.lines += pressure_lines(site, fig)
    return fig


async def scenario_full(site: LocalSite, args: argparse.Namespace, texts: Texts) -> Figures:
    fig = Figures("full")
    begin(site)
    tmp = site.state
    tickets = texts.tickets(args.full_n, "fl")
    prefix = f"fl{texts.run}-"
    ids = [t.task_id or "" for t in tickets]
    t0 = time.monotonic()
    for i in range(0, len(tickets), 50):  # bursts of 50, each retried until stored
        await publish(site.pub, site.subjects, site.seen, tickets[i : i + 50], None, site.stats)
    took = time.monotonic() - t0
    drained = await drain(site, ids, prefix, args.drain_s)
    await outcome(site.js, site.subjects, site.store, ids, prefix, fig, None, site.seen)
    full = {k: f"{v / 1024:.0f} KiB" for k, v in site.pressure.stream_bytes.items()}
    fig.lines.append(
        f"streams of {args.full_bytes / 1024:.0f} KiB, history {args.full_age_s:.0f} s; "
        f"burst published in {took:.1f} s; peak stream sizes {full}; "
        f"drained {drained:.1f} s after"
    )
    fig.lines.append(
        f"publishes refused by a full stream (bench): "
        f"{site.stats.retries.get('StreamFull', 0)}; inputs held by workers on a "
        f"refused output: {held_inputs(tmp / 'logs')}"
    )
    fig.lines += pressure_lines(site, fig)
    if not fig.ok:
        fig.lines += await consumer_floors(site.js, site.subjects)
    return fig


async def consumer_floors(js: JetStreamContext, subjects: Subjects) -> list[str]:
    """Per work stream: its sequences and fill, then each consumer's backlog and ack
    floor (what holds back the trim of processed history)."""
    lines = []
    for stream in work_streams(subjects):
        try:
            info = await js.stream_info(stream)
            consumers = await js.consumers_info(stream)
        except Exception as exc:
            lines.append(f"  {stream}: not read ({type(exc).__name__})")
            continue
        st = info.state
        lines.append(
            f"  {stream}: seq {st.first_seq}..{st.last_seq}, {st.messages} msgs, "
            f"{st.bytes / 1024:.0f} KiB"
        )
        for c in consumers:
            floor = consumer_floor(c, st.last_seq)
            lines.append(
                f"    {c.name}: pending {c.num_pending}, unacked {c.num_ack_pending}, "
                f"ack floor {c.ack_floor.stream_seq if c.ack_floor else '-'}, floor {floor}"
            )
    return lines


# -- fuzz -------------------------------------------------------------------------------
WORK_ROLES = ("retriever", "diagnostics", "planner", "validator", "escalation")
FIELD_KINDS = frozenset(
    {"wrong_type", "missing_field", "out_of_range", "huge_string", "bad_datetime", "bad_task_id"}
)
"""Hostile kinds whose dead letter should name the offending field."""


def _ticket(task_id: str | None = None, **fields: Any) -> dict[str, Any]:
    """A support ticket as JSON fields (``fields`` override or add any)."""
    base: dict[str, Any] = {"type": "support_ticket.v1", "body": "my card payment was declined"}
    if task_id is not None:
        base["task_id"] = task_id
    return {**base, **fields}


def _j(value: Any) -> bytes:
    return json.dumps(value).encode()


_BAD_UTF8 = (b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80")
_WRONG_TYPES: tuple[tuple[str, Any], ...] = (
    ("body", 42), ("body", ["a"]), ("body", {"t": 1}), ("body", None), ("body", True),
    ("urgency", "high"), ("urgency", 1.5), ("tenant", ["x"]), ("task_id", 12345),
    ("channel", {}), ("submitted_at", 17), ("title", False),
)  # fmt: skip
_OUT_OF_RANGE: tuple[tuple[str, Any], ...] = (
    ("urgency", 7), ("urgency", -1), ("urgency", 10**30), ("body", ""),
    ("body", "x" * 20_000), ("title", "t" * 600),
)  # fmt: skip
_WRONG_TAGS = ("telemetry_alert.v1", "work_item.v2", "final_answer.v1", "support_ticket.v9", "")
_EMPTY = (b"", b" ", b"\n", b"null", b"{}", b"[]", b'""', b"0")
_BAD_DATES = ("yesterday", "2024-13-45T25:61:00Z", "", "0", "2024-01-01T00:00:00+25:00")
_BAD_IDS = ("has space", "a" * 300, "dot.dot>", "\u202eevil", "tab\tid", "*", ">")
_SURROGATES = ("\\ud800", "\\udfff", "\\ud83d")
_BAD_LITERALS = (b"NaN", b"Infinity", b"-Infinity", b"1e400", b"0x10", b"01")
_BAD_HEADER_IDS = ("x" * 500, "a.b.>", "id with spaces", "\u202eevil")


def _nested(rng: random.Random) -> str:
    depth = rng.choice([100, 1000, 10_000])
    if rng.random() < 0.5:
        return "[" * depth + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def hostile(rng: random.Random, tid: str) -> tuple[str, bytes, dict[str, str]]:
    """One hostile message for a task subject: ``(kind, payload, extra headers)``."""
    pick = rng.randrange(16)
    if pick == 0:
        good = _j(_ticket(task_id=tid))
        variants = [
            good[: rng.randrange(1, len(good) - 1)], good.replace(b":", b"", 1), b"{{{}",
            b"{'a': 1}", rng.randbytes(rng.randrange(1, 200)), b"nul\x00l",
            b'{"type": "support_ticket.v1", "body": "x",}',
        ]  # fmt: skip
        return "invalid_json", rng.choice(variants), {}
    if pick == 1:
        bad = rng.choice(_BAD_UTF8)
        return "invalid_utf8", b'{"type": "support_ticket.v1", "body": "ab' + bad + b'cd"}', {}
    if pick == 2:
        inner = _nested(rng)
        if rng.random() < 0.5:
            return "deep_nesting", inner.encode(), {}
        body = f'{{"type": "support_ticket.v1", "body": "x", "tenant": {inner}}}'
        return "deep_nesting", body.encode(), {}
    if pick == 3:
        key, value = rng.choice(_WRONG_TYPES)
        return "wrong_type", _j({**_ticket(task_id=tid), key: value}), {}
    if pick == 4:
        msg = _ticket(task_id=tid)
        del msg[rng.choice(["body", "type"])]
        return "missing_field", _j(msg), {}
    if pick == 5:
        key, value = rng.choice(_OUT_OF_RANGE)
        return "out_of_range", _j({**_ticket(task_id=tid), key: value}), {}
    if pick == 6 and rng.random() < 0.15:  # ~1 % of them: 45 MB per 5,000
        body = "o" * rng.randrange(800_000, 950_000)
        return "oversize", _j(_ticket(task_id=tid, body=body)), {}
    if pick == 7:
        return "wrong_tag", _j({**_ticket(task_id=tid), "type": rng.choice(_WRONG_TAGS)}), {}
    if pick == 8:
        return "empty", rng.choice(_EMPTY), {}
    if pick in (6, 9):
        key = rng.choice(["tenant", "channel", "customer", "product", "source"])
        value = "h" * rng.randrange(300, 40_000)
        return "huge_string", _j({**_ticket(task_id=tid), key: value}), {}
    if pick == 10:
        return "bad_datetime", _j(_ticket(task_id=tid, submitted_at=rng.choice(_BAD_DATES))), {}
    if pick == 11:
        return "bad_task_id", _j(_ticket(task_id=rng.choice(_BAD_IDS))), {}
    if pick == 12:
        odd = rng.choice(_SURROGATES)
        body = f'{{"type": "support_ticket.v1", "task_id": "{tid}", "body": "x{odd}y"}}'
        return "unicode", body.encode(), {}
    if pick == 13:
        head = b'{"type": "support_ticket.v1", "body": "x", "urgency": '
        return "bad_literal", head + rng.choice(_BAD_LITERALS) + b"}", {}
    if pick == 14:
        headers = {"sm-task-id": rng.choice(_BAD_HEADER_IDS), "sm-schema": "support_ticket.v1"}
        return "hostile_headers", _j(_ticket(body="")), headers
    return "bom", b"\xef\xbb\xbf" + _j(_ticket(task_id=tid)), {}


def hostile_work(rng: random.Random, tid: str) -> tuple[str, bytes, dict[str, str]]:
    """A hostile message for a work subject (what a client of an open server could send)."""
    pick = rng.randrange(5)
    if pick == 0:
        return "work_missing", _j({"type": "work_item.v2", "task_id": tid}), {}
    if pick == 1:
        item = {"type": "work_item.v2", "task_id": tid, "task": "not a task", "workflow": 7,
                "step": [], "outputs": "x"}  # fmt: skip
        return "work_wrong_type", _j(item), {}
    if pick == 2:
        return "work_ticket", _j(_ticket(task_id=tid)), {}
    if pick == 3:
        return "work_garbage", rng.randbytes(rng.randrange(1, 300)), {}
    return "work_deep", ("[" * 10_000 + "]" * 10_000).encode(), {}


def locally_valid(subject: str, data: bytes) -> bool:
    """Whether the site's own decoders accept ``data`` on ``subject`` (then it is not
    hostile after all and is not sent)."""
    try:
        if ".work." in subject:
            decode(data, WORK_DECODER)
            return True
        task = task_decoder(MAX_TASK_BYTES)(data)
    except Exception:
        return False
    return subject.rsplit(".", 1)[-1] == "support_ticket" and isinstance(task, SupportTicket)


@dataclass
class Letter:
    reason: str
    error_class: str
    field: str | None


async def dead_letters(js: JetStreamContext, subjects: Subjects) -> dict[tuple[str, int], Letter]:
    """Every dead letter of the DLQ stream, by the original's ``(stream, seq)``."""
    out: dict[tuple[str, int], Letter] = {}

    def key(msg: Any) -> tuple[str, int] | None:
        try:
            dl = DLQ_DECODER.decode(msg.data)
        except Exception:
            return None
        out[(dl.stream, dl.stream_seq)] = Letter(dl.reason, dl.error_class, dl.field)
        return (dl.stream, dl.stream_seq)

    await stream_counts(js, subjects.dlq_stream, subjects.all_dlq, key)
    return out


async def scenario_fuzz(site: LocalSite, args: argparse.Namespace, texts: Texts) -> Figures:
    fig = Figures("fuzz")
    begin(site)
    s = site.subjects
    rng = random.Random(args.seed)
    pids_before = worker_pids(site.edge.pid)
    valid = texts.tickets(max(1, args.fuzz_n // args.fuzz_every), "fv")
    prefix = f"fv{texts.run}-"
    sent: dict[tuple[str, int], str] = {}  # (stream, seq) -> kind
    skipped = 0
    batch: list[tuple[str, Outbound]] = []

    async def flush() -> None:
        outs = [o for _, o in batch]
        acks = await site.pub.publish_each(outs)
        for (kind, _), ack in zip(batch, acks, strict=True):
            if isinstance(ack, Exception):
                fig.problems.append(f"hostile {kind} refused at publish: {ack!r}"[:200])
            else:
                sent[(ack.stream, ack.seq)] = kind
        batch.clear()

    v = 0
    t0 = time.monotonic()
    for i in range(args.fuzz_n):
        tid = f"fz{texts.run}-{i:05d}"
        if i % args.fuzz_every == 0 and v < len(valid):
            await flush()
            await publish(site.pub, s, site.seen, [valid[v]], None, site.stats)
            v += 1
        if rng.random() < args.fuzz_work_share:
            subject = s.work(rng.choice(WORK_ROLES))
            kind, data, headers = hostile_work(rng, tid)
        else:
            subject = s.task(rng.choice(["support_ticket"] * 8 + ["telemetry_alert", "bogus"]))
            kind, data, headers = hostile(rng, tid)
        if locally_valid(subject, data):
            skipped += 1
            continue
        batch.append((kind, Outbound(subject, data, f"fz{texts.run}:{i}", headers=headers)))
        if len(batch) >= 25 or len(data) > 100_000:
            await flush()
    await flush()
    took = time.monotonic() - t0
    ids = [t.task_id or "" for t in valid[:v]]
    # every hostile one dead-lettered (or the timeout), the valid ones answered
    deadline = time.monotonic() + args.drain_s
    letters: dict[tuple[str, int], Letter] = {}
    while time.monotonic() < deadline:
        letters = await dead_letters(site.js, s)
        if all(k in letters for k in sent) and all(i in site.seen.ended for i in ids):
            break
        await asyncio.sleep(2.0)
    await wait_recorded(site.store, prefix, len(ids), 30, fatal=False)
    await outcome(site.js, s, site.store, ids, prefix, fig, None, site.seen)
    pids_after = worker_pids(site.edge.pid)
    crashes = restarts(site)
    by_kind: Counter[str] = Counter(sent.values())
    lettered: Counter[str] = Counter()
    with_field: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    fields: Counter[str] = Counter()
    no_reason = 0
    for k, kind in sent.items():
        if (letter := letters.get(k)) is None:
            continue
        lettered[kind] += 1
        reasons[letter.error_class] += 1
        if letter.field:
            with_field[kind] += 1
            fields[letter.field[:40]] += 1
        if not letter.reason.strip():
            no_reason += 1
    missing = sum(by_kind.values()) - sum(lettered.values())
    fig.counts.update(
        hostile=len(sent), dead_lettered=sum(lettered.values()), no_reason=no_reason,
        with_field=sum(with_field.values()), crashes=crashes,
    )  # fmt: skip
    fig.lines.append(
        f"{len(sent)} hostile messages ({skipped} generated ones the decoders accept "
        f"were not sent) and {v} valid tickets in {took:.1f} s"
    )
    fig.lines.append(
        f"dead-lettered {sum(lettered.values())} of {len(sent)}; without a reason "
        f"{no_reason}; by error class: {dict(reasons.most_common())}"
    )
    fig.lines.append(
        "by kind (sent/dead-lettered/with a field): "
        + ", ".join(
            f"{kind} {n}/{lettered[kind]}/{with_field[kind]}" for kind, n in sorted(by_kind.items())
        )
    )
    fig.lines.append(f"fields named, most common: {dict(fields.most_common(10))}")
    fig.lines.append(
        f"worker processes before {len(pids_before)}, after {len(pids_after)}, "
        f"same pids: {set(pids_before) == set(pids_after)}; restarts logged {crashes}"
    )
    fig.lines += pressure_lines(site, fig)[:1]
    if missing:
        gone = Counter(kind for k, kind in sent.items() if k not in letters)
        fig.problems.append(f"{missing} hostile messages not dead-lettered: {dict(gone)}")
    if no_reason:
        fig.problems.append(f"{no_reason} dead letters without a reason")
    if crashes or set(pids_before) != set(pids_after):
        fig.problems.append(f"worker crashes: {crashes} restarts logged")
    no_field = {k: lettered[k] - with_field[k] for k in FIELD_KINDS if lettered[k] - with_field[k]}
    if no_field:
        fig.lines.append(f"dead letters naming no field where one applies: {no_field}")
    return fig


# -- leaf -------------------------------------------------------------------------------
ALL_TO_CLOUD = """
version = "chaos-all-to-cloud"
public_kinds = []

[[rule]]
id = "every-ticket-to-cloud"
description = "chaos bench: send every ticket to the cloud, anonymised"
action = "allow_cloud"
match = { kinds = ["support_ticket"], backend_healthy = true }
"""


async def scenario_leaf(args: argparse.Namespace, texts: Texts, tmp: Path) -> Figures:
    from rich.console import Console

    from sitemesh.cli._hybrid import hybrid_stack  # the stack `sitemesh up` runs
    from sitemesh.config import BusSettings, Settings
    from sitemesh.policy import PolicyStore
    from sitemesh.runtime import connect as runtime_connect

    fig = Figures("leaf")
    settings = Settings(state_dir=tmp, bus=BusSettings(graceful_timeout_s=10))
    t0 = time.monotonic()
    async with hybrid_stack(settings, [SITE], Console(file=sys.stderr)) as stack:
        print(f"  hub + site {SITE} ready in {time.monotonic() - t0:.1f} s", flush=True)
        s = stack.sites[SITE]
        # the stack's servers admit only their identities: the site's operator here
        nc = await runtime_connect(s, "operator", name="bench-chaos-leaf")
        js = nc.jetstream()
        subjects = Subjects(SITE)
        await PolicyStore(js).publish(ALL_TO_CLOUD)
        seen, stats = Seen(), PublishStats()
        sub = await watch_events(js, subjects, seen)
        pub = Publisher(js, timeout_s=5)
        store = Store(s.db_url)
        prefix = f"lf{texts.run}-"
        all_ids: list[str] = []
        try:
            # before any cut: the policy is in force and the cloud answers
            warm = texts.tickets(args.leaf_n, "lf")
            await publish(pub, subjects, seen, warm, None, stats)
            ids = [t.task_id or "" for t in warm]
            all_ids += ids
            await wait_ended(seen, ids, args.drain_s, fatal=False)
            fig.lines.append(f"before the cuts: {sum(i in seen.ended for i in ids)}/{len(ids)} "
                             f"ended, routes {dict(seen.routes)}")  # fmt: skip
            for cut in range(args.cuts):
                routes_before = seen.routes.copy()
                tickets = texts.tickets(args.leaf_n, "lf")
                ids = [t.task_id or "" for t in tickets]
                all_ids += ids
                await stack.topo.stop_hub()
                t_cut = time.monotonic()
                await publish(
                    pub, subjects, seen, tickets, args.leaf_n / max(1.0, args.cut_s / 2), stats
                )
                ended_during = sum(i in seen.ended for i in ids)
                await asyncio.sleep(max(0.0, args.cut_s - (time.monotonic() - t_cut)))
                t_heal = time.monotonic()
                await stack.topo.start_hub()  # waits for the leaf, resumes CLOUD_IN sources
                relinked = time.monotonic() - t_heal
                await wait_ended(seen, ids, args.drain_s, fatal=False)
                resynced = time.monotonic() - t_heal
                done = sum(i in seen.ended for i in ids)
                cloud = seen.routes["cloud"] - routes_before["cloud"]
                fig.lines.append(
                    f"cut {cut + 1}: {len(ids)} tickets during {args.cut_s:.0f} s down "
                    f"({ended_during} ended while down); leaf back {relinked:.1f} s after "
                    f"the heal; {done}/{len(ids)} ended {resynced:.1f} s after it, "
                    f"{cloud} answered by the cloud"
                )
                if done < len(ids):
                    fig.problems.append(
                        f"cut {cut + 1}: {len(ids) - done} not ended after the heal"
                    )
            await wait_recorded(store, prefix, len(all_ids), 60, fatal=False)
            await outcome(js, subjects, store, all_ids, prefix, fig, None, seen)
            fig.lines.append(f"routes of all answers: {dict(seen.routes)}; publish retries "
                             f"{stats.total} ({dict(stats.retries)})")  # fmt: skip
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            await store.close()
            with contextlib.suppress(Exception):
                await nc.drain()
    return fig


# -- main -------------------------------------------------------------------------------
RUNNERS: dict[str, Callable[[LocalSite, argparse.Namespace, Texts], Awaitable[Figures]]] = {
    "kills": scenario_kills,
    "nats": scenario_nats,
    "db": scenario_db,
    "full": scenario_full,
    "fuzz": scenario_fuzz,
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    p.add_argument("--rate", type=float, default=100.0, help="tasks/s of kills and nats")
    p.add_argument("--kill-for", type=float, default=60.0, help="seconds of worker kills")
    p.add_argument("--ack-wait-s", type=float, default=None, help="site ack wait (kills)")
    p.add_argument("--nats-for", type=float, default=30.0, help="seconds of the nats run")
    p.add_argument("--down-s", type=float, default=5.0, help="seconds nats-server is down")
    p.add_argument("--cut-s", type=float, default=60.0, help="seconds the leaf link is cut")
    p.add_argument("--cuts", type=int, default=5, help="leaf cuts")
    p.add_argument("--leaf-n", type=int, default=20, help="tickets per leaf cut")
    p.add_argument("--db-for", type=float, default=60.0, help="seconds of the db run")
    p.add_argument("--db-rate", type=float, default=20.0, help="tasks/s of the db run")
    p.add_argument("--outage-s", type=float, default=20.0, help="seconds of db outage")
    p.add_argument("--full-n", type=int, default=600, help="tickets of the full burst")
    p.add_argument("--full-bytes", type=int, default=2 << 20, help="stream limit (full)")
    p.add_argument("--full-age-s", type=float, default=30.0, help="stream history (full)")
    p.add_argument("--fuzz-n", type=int, default=5000, help="hostile messages")
    p.add_argument("--fuzz-every", type=int, default=10, help="a valid ticket every N")
    p.add_argument("--fuzz-work-share", type=float, default=0.1, help="share on work subjects")
    p.add_argument("--drain-s", type=float, default=600.0, help="seconds to wait for the end")
    p.add_argument("--db", default="sqlite", help="sqlite, postgres (a fresh db) or a URL")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument(
        "--colocate", action="store_true",
        help="`edge --colocate`: the agent roles in one process (kills hit it mid-chain)",
    )  # fmt: skip
    return p


def site_extra(name: str, args: argparse.Namespace) -> dict[str, str]:
    """The ``SITEMESH_*`` settings the site of scenario ``name`` runs with."""
    extra = {}
    if args.ack_wait_s:
        extra["SITEMESH_BUS_ACK_WAIT_S"] = str(args.ack_wait_s)
    if name == "full":
        extra["SITEMESH_BUS_MAX_BYTES"] = str(args.full_bytes)
        extra["SITEMESH_BUS_MAX_AGE_S"] = str(args.full_age_s)
    return extra


async def run_one(name: str, args: argparse.Namespace, texts: Texts, tmp: Path) -> Figures:
    """Scenario ``name`` on a site of its own in ``tmp`` (``--db postgres``: a fresh
    database on the local server, dropped after)."""
    if name == "leaf":
        return await scenario_leaf(args, texts, tmp)
    db_url, drop = args.db_url, None
    if args.db == "postgres":
        db_url, drop = await _pg_database("chaos")
    try:
        async with local_site(
            tmp, db_url, colocate=args.colocate, **site_extra(name, args)
        ) as site:
            return await RUNNERS[name](site, args, texts)
    finally:
        if drop is not None:
            await drop()


async def run(args: argparse.Namespace) -> list[Figures]:
    """Run the selected scenarios; their figures, printed as each ends."""
    texts = Texts()
    names = SCENARIOS if args.scenario == "all" else (args.scenario,)
    out = []
    for name in names:
        print(f"== {name}", flush=True)
        with tempfile.TemporaryDirectory(prefix=f"sitemesh-chaos-{name}-") as tmp:
            fig = await run_one(name, args, texts, Path(tmp))
        print(fig.report(), flush=True)
        out.append(fig)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.db_url = None if args.db in ("sqlite", "postgres") else args.db
    figures = asyncio.run(run(args))
    return 0 if all(f.ok for f in figures) else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
    sys.exit(130)
