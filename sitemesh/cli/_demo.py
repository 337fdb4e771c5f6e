"""``sitemesh demo``: the main job end to end on the embedded default.

1. start (or reuse) the embedded ``nats-server`` and migrate the SQLite database;
2. start the site's processes (recorder, router, five agents) with the supervisor
   and wait until each has registered ready on the bus (``sitemesh_workers_<site>``);
3. publish the real tickets, the telemetry alerts and the malformed tasks with
   ``sitemesh publish`` (a subprocess: the public path);
4. follow the task events until every task has a final answer or a dead letter;
5. wait until the recorder has stored them, print the summary from the database,
   stop everything cleanly.

Exit code 0 only if every valid task was answered exactly once and every malformed
task was dead-lettered with a reason naming the expected field.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec
from nats.js.api import ConsumerConfig, DeliverPolicy
from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..bus import Subjects, keep_streams, provision
from ..config import Settings
from ..edge_node import child_env, process_environ, provision_task_registry
from ..runtime import connect, provision_workers
from ..schemas import (
    EVENT_DECODER,
    FinalAnswer,
    SupportTicket,
    TaskFailed,
    TelemetryAlert,
    decode,
    reason_codes,
    utcnow,
)
from . import _demo_sources as demo_sources
from ._demo_sources import SourceRun
from ._nats import nats_url, worker_identities
from ._ready import pids_line, wait_workers
from ._run import on_url, site_roles, site_supervisor

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "examples" / "data"


@dataclass
class _Run:
    """What the demo knows about the tasks it published."""

    valid: set[str] = field(default_factory=set)
    malformed: dict[str, dict[str, str]] = field(default_factory=dict)
    alerts: dict[str, TelemetryAlert] = field(default_factory=dict)
    answers: dict[str, FinalAnswer] = field(default_factory=dict)
    answer_count: Counter[str] = field(default_factory=Counter)
    failed: dict[str, TaskFailed] = field(default_factory=dict)
    tickets: dict[str, SupportTicket] = field(default_factory=dict)
    """Published tickets by task id (``publish`` prints ids in file order)."""
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    """Labels of the bundled tickets that have them, by ``source``."""
    inline: dict[str, bool] = field(default_factory=dict)
    """Alerts with inline samples: task id -> whether their window is a labelled anomaly."""
    source: SourceRun | None = None
    """The telemetry source's alerts (labelled) and the ones ``sitemesh watch`` raised."""

    @property
    def total(self) -> int:
        return len(self.valid) + len(self.malformed)

    def ended(self) -> int:
        return len(self.answers.keys() | self.failed.keys())


async def _sh_publish(
    settings: Settings, url: str, files: list[Path], prefix: str, raw: str | None = None
) -> list[str]:
    """Run ``sitemesh publish`` as a subprocess; returns the task ids it printed."""
    env = child_env(process_environ(), on_url(settings, url).to_env())
    env["COLUMNS"] = "400"
    args = [
        sys.executable,
        "-m",
        "sitemesh",
        "publish",
        *map(str, files),
        "--site",
        settings.site,
        "--task-id-prefix",
        prefix,
    ]
    if raw:
        args += ["--raw", raw]
    proc = await asyncio.create_subprocess_exec(
        *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"sitemesh publish failed ({proc.returncode}): {err.decode()[-2000:]}")
    return [ln.strip() for ln in out.decode().splitlines() if ln.strip().startswith(prefix)]


def _pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = max(0, min(len(values) - 1, round(p / 100 * (len(values) - 1))))
    return values[k]


LOCAL_MODEL_SAMPLE: Final = {"ibm-twitter-cdp": 4, "banking77": 4, "endava-it": 2, "alerts": 2}
"""Tasks per source the demo runs with ``--local-model``: each plan SmolLM2-135M
writes takes ~30 s on this 2-core machine (docs/models.md), and only tickets without
a knowledge-base answer and alerts are planned by the model."""


def _sample(data: Path, out: Path) -> Path:
    """A copy of ``data`` with :data:`LOCAL_MODEL_SAMPLE` tickets per source, evenly
    spaced through each source (so they differ), and the first alerts."""
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    by_corpus: dict[str, list[str]] = {}
    for line in (data / "tickets.jsonl").read_text("utf-8").splitlines():
        corpus = str(json.loads(line).get("source") or "").split("/", 1)[0]
        by_corpus.setdefault(corpus, []).append(line)
    lines = []
    for corpus, rows in by_corpus.items():
        n = LOCAL_MODEL_SAMPLE.get(corpus, 0)
        lines += rows[:: max(1, len(rows) // n)][:n] if n else []
    (out / "tickets.jsonl").write_text("\n".join(lines) + "\n", "utf-8")
    alerts = (data / "telemetry_alerts.jsonl").read_text("utf-8").splitlines()
    (out / "telemetry_alerts.jsonl").write_text(
        "\n".join(alerts[: LOCAL_MODEL_SAMPLE["alerts"]]) + "\n", "utf-8"
    )
    for name in ("tickets.labels.jsonl",):
        shutil.copy(data / name, out / name)
    shutil.copytree(data / "malformed", out / "malformed", dirs_exist_ok=True)
    return out


async def run_demo(
    settings: Settings,
    console: Console,
    *,
    data_dir: Path | None = None,
    timeout_s: float = 600.0,
    local_model: bool = False,
    insecure: bool = False,
) -> int:
    """Run the demo; returns the exit code (0: every task ended as expected).

    With ``local_model`` the site's planner calls SmolLM2-135M behind llama.cpp's
    server (:func:`sitemesh.cli._local_model.local_model`) on a sample of the tasks
    (:data:`LOCAL_MODEL_SAMPLE`). The embedded server is authenticated (each worker
    process, ``sitemesh publish`` and ``sitemesh watch`` run as their own role) unless
    ``insecure``."""
    if local_model:
        from ._local_model import local_model as run_local_model

        data = _sample(data_dir or DEFAULT_DATA, settings.state_dir / "demo-sample")
        console.print(
            "local model: a sample of "
            + ", ".join(f"{n} {k}" for k, n in LOCAL_MODEL_SAMPLE.items())
            + " (each model plan takes tens of seconds on CPU)",
            highlight=False,
        )
        async with run_local_model(settings, console) as lm:
            return await run_demo(
                lm.settings, console, data_dir=data, timeout_s=max(timeout_s, 1800.0),
                insecure=insecure,
            )  # fmt: skip
    from ..agents import fault_score
    from ..state import Store, migrate

    data = data_dir or DEFAULT_DATA
    run_id = utcnow().strftime("%Y%m%dT%H%M%S")
    prefix = f"demo-{run_id}-"
    subjects = Subjects(settings.site)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((data / "malformed" / "MANIFEST.json").read_text("utf-8"))
    manifest.pop("_doc", None)
    run = _Run()

    async with nats_url(settings, console, insecure=insecure) as url:
        await migrate(settings.db_url)
        nc = await connect(settings, "operator", url=url, name="sitemesh-demo")
        js = nc.jetstream()
        await provision(js, subjects, settings.bus)
        await provision_workers(js, settings.site, settings.health)
        await provision_task_registry(js, settings.site, settings.bus)
        roles = site_roles(1)
        sup = site_supervisor(settings, url, roles, (), worker_identities(settings, url, roles))
        store = Store(settings.db_url)
        keeper = asyncio.create_task(keep_streams(nc, subjects, settings.bus))
        try:
            await sup.start()
            # every process registered ready (sitemesh_workers_<site>): loaded, taking work
            ready_s = await wait_workers(
                console, [(js, sup)], timeout_s=settings.health.ready_timeout_s
            )
            console.print(
                f"{len(roles)} worker processes ready in {ready_s or 0:.1f} s: {pids_line([sup])}",
                highlight=False,
            )

            def on_event(data: bytes) -> None:
                ev = decode(data, EVENT_DECODER)
                if not ev.task_id.startswith(prefix):
                    return
                if isinstance(ev, FinalAnswer):
                    run.answers[ev.task_id] = ev
                    run.answer_count[ev.task_id] += 1
                elif isinstance(ev, TaskFailed):
                    run.failed[ev.task_id] = ev

            async def cb(msg: Any) -> None:
                on_event(msg.data)

            sub = await js.subscribe(
                subjects.all_events,
                cb=cb,
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.NEW),
            )

            tickets = data / "tickets.jsonl"
            alerts = data / "telemetry_alerts.jsonl"
            for line in alerts.read_bytes().splitlines():
                if line.strip():
                    a = msgspec.json.decode(line, type=TelemetryAlert)
                    if a.task_id:
                        run.alerts[prefix + a.task_id] = a
            inline = data / "telemetry_inline_alerts.jsonl"
            files = [tickets, alerts, *([inline] if inline.exists() else [])]
            # a telemetry source of the site (held-out NAB series) and alerts naming it
            sourced, run.source, said = await demo_sources.prepare(settings, url)
            for said_line in said:
                console.print(said_line, highlight=False, soft_wrap=True)
            t_pub = time.monotonic()
            ids = await _sh_publish(settings, url, files, prefix)
            src_ids = await _sh_publish(settings, url, [sourced], prefix)
            run.source.labels = {prefix + k: v for k, v in run.source.labels.items()}
            run.tickets = _ticket_ids(tickets, ids)
            run.labels = _labels(data / "tickets.labels.jsonl")
            inline_labels = data / "telemetry_inline_alerts.labels.jsonl"
            if inline_labels.exists():
                rows = [json.loads(ln) for ln in inline_labels.read_text("utf-8").splitlines()
                        if ln.strip()]  # fmt: skip
                run.inline = {prefix + str(r["task"]): bool(r["anomalous"]) for r in rows}
            # alerts carry their own ids; make them unique per run as well
            run.valid.update(ids)
            run.valid.update(src_ids)
            by_kind: dict[str, list[Path]] = {}
            for name, spec in manifest.items():
                by_kind.setdefault(spec["kind"], []).append(data / "malformed" / name)
            for kind, files in by_kind.items():
                for tid in await _sh_publish(settings, url, files, prefix, raw=kind):
                    run.malformed[tid] = manifest[tid.removeprefix(prefix) + ".json"]
            console.print(
                f"published {len(run.valid)} tasks and {len(run.malformed)} "
                f"malformed ones in {time.monotonic() - t_pub:.1f} s (run {run_id})"
            )
            # the platform raises incidents itself: sitemesh watch backfills two devices
            await demo_sources.watch(settings, url, run.source, prefix)
            run.valid.update(run.source.watched)
            console.print(
                f"sitemesh watch {demo_sources.DEMO_SOURCE} --once (devices "
                f"{', '.join(run.source.watch_devices)}, whole span): raised "
                f"{len(run.source.watched)} incident alert(s)",
                highlight=False,
            )

            with Progress(
                TextColumn("[bold]tasks"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                job = bar.add_task("tasks", total=run.total)
                deadline = time.monotonic() + timeout_s
                while run.ended() < run.total and time.monotonic() < deadline:
                    bar.update(job, completed=run.ended())
                    await asyncio.sleep(0.2)
                bar.update(job, completed=run.ended())
            await sub.unsubscribe()

            # the recorder writes asynchronously: wait until the database has them
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                counts = await store.ended_ids(prefix)
                if len(counts) >= run.ended():
                    break
                await asyncio.sleep(0.2)
            return await _summary(console, store, run, prefix, fault_score)
        finally:
            keeper.cancel()
            codes = await sup.stop()
            bad = {k: v for k, v in codes.items() if v not in (0, None)}
            if bad:
                console.print(f"[yellow]workers exited with {bad}[/yellow]")
            await store.close()
            await nc.drain()


def _ticket_ids(path: Path, ids: list[str]) -> dict[str, SupportTicket]:
    """The tickets of ``path`` by the task ids ``publish`` printed (same order)."""
    lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    out: dict[str, SupportTicket] = {}
    for tid, line in zip(ids, lines, strict=False):
        out[tid] = msgspec.json.decode(line, type=SupportTicket)
    return out


def _labels(path: Path) -> dict[str, dict[str, str]]:
    """``source`` -> its labels (``label_set``/``label``, or ``article``/``url``)."""
    if not path.exists():
        return {}
    rows = (json.loads(ln) for ln in path.read_text("utf-8").splitlines() if ln.strip())
    return {str(r["source"]): r for r in rows}


def _corpus(ticket: SupportTicket) -> str:
    return (ticket.source or "other").split("/", 1)[0]


def _url_key(url: str | None) -> str:
    """An article URL without the web-archive prefix, scheme and trailing slash."""
    if not url:
        return ""
    if "web.archive.org/web/" in url:
        url = url.split("/", 5)[-1] if url.count("/") >= 5 else url
    return url.split("://", 1)[-1].rstrip("/").lower()


def _resolved_right(answer: FinalAnswer, label: dict[str, str]) -> bool | None:
    """Whether a resolved answer's document matches the ticket's label (its intent /
    category, or the article the agent really sent); ``None`` when unlabelled."""
    res = answer.resolution
    if res is None or not label:
        return None
    if "label" in label:
        return res.intent == label["label"]
    if "url" in label:
        return _url_key(res.url) == _url_key(label["url"]) or res.doc_id == label.get("article")
    return None


def _support_summary(console: Console, run: _Run) -> None:
    """Outcomes per ticket corpus, triage accuracy, precision of resolved, the reasons
    of the rest, and three resolved answers in full."""
    rows: dict[str, Counter[str]] = {}
    triage_hits: dict[str, list[tuple[bool, float]]] = {}
    resolved_checks: dict[str, list[bool]] = {}
    reasons: Counter[str] = Counter()
    for tid, ticket in run.tickets.items():
        answer = run.answers.get(tid)
        if answer is None:
            continue
        corpus = _corpus(ticket)
        rows.setdefault(corpus, Counter())[answer.outcome] += 1
        label = run.labels.get(ticket.source or "", {})
        tri = answer.triage
        if tri is not None and "label" in label and tri.label_set == label.get("label_set"):
            triage_hits.setdefault(tri.label_set, []).append(
                (tri.label == label["label"], tri.confidence)
            )
        if answer.outcome == "resolved":
            right = _resolved_right(answer, label)
            if right is not None:
                resolved_checks.setdefault(corpus, []).append(right)
        else:
            for code in reason_codes(answer.reasons):
                reasons[code] += 1
    t = Table(title="tickets: outcome by source")
    for col in ("source", "tickets", "resolved", "escalate", "needs_human", "resolved right"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for corpus, c in sorted(rows.items()):
        checks = resolved_checks.get(corpus, [])
        t.add_row(
            corpus, str(sum(c.values())), str(c["resolved"]), str(c["escalate"]),
            str(c["needs_human"]),
            f"{sum(checks)}/{len(checks)}" if checks else "-",
        )  # fmt: skip
    console.print(t)
    for label_set, hits in sorted(triage_hits.items()):
        acc = sum(h for h, _ in hits) / len(hits)
        conf = statistics.fmean(c for _, c in hits)
        console.print(
            f"triage accuracy ({label_set}, {len(hits)} bundled tickets with labels, held out "
            f"from training): {acc:.3f}; mean confidence {conf:.3f}",
            highlight=False,
        )
    checks = [c for v in resolved_checks.values() for c in v]
    if checks:
        console.print(
            f"precision of resolved (document matches the label): {sum(checks)}/{len(checks)}"
            f" = {sum(checks) / len(checks):.3f}",
            highlight=False,
        )
    plans = Counter(a.plan.source for a in run.answers.values() if a.plan is not None)
    asked = [
        a.plan
        for a in run.answers.values()
        if a.plan is not None
        and (a.plan.source == "model" or a.plan.rationale.startswith("Model planning"))
    ]
    console.print(
        "plans by source: " + ", ".join(f"{k} {v}" for k, v in plans.most_common())
        + (f"; the site model was asked for {len(asked)}, its plan kept for "
           f"{sum(p.source == 'model' for p in asked)}" if asked else ""),
        highlight=False,
    )  # fmt: skip
    if reasons:
        console.print("why the other tickets were not resolved (reason codes, counted):")
        for reason, n in reasons.most_common(8):
            console.print(f"  {n:>4}  {reason}", highlight=False)
    resolved = [
        (tid, ticket, answer)
        for tid, ticket in run.tickets.items()
        if (answer := run.answers.get(tid)) is not None and answer.outcome == "resolved"
    ]
    # three in full: one per ticket source first, then the next ones
    firsts = {_corpus(t): (tid, t, a) for tid, t, a in reversed(resolved)}
    examples = list(firsts.values())
    examples += [r for r in resolved if r not in examples]
    for tid, ticket, answer in examples[:3]:
        _show_resolved(console, tid, ticket, answer)


def _inline_summary(console: Console, run: _Run) -> None:
    """Alerts that carried their own samples (NAB windows, labelled anomalous or
    normal): how many of each the diagnostics flagged, and what it said."""
    flagged: dict[bool, list[int]] = {True: [], False: []}
    for task, anomalous in run.inline.items():
        answer = run.answers.get(task)
        if answer is None:
            continue
        n = len(answer.diagnosis.findings) if answer.diagnosis is not None else 0
        flagged[anomalous].append(n)
    if not (flagged[True] or flagged[False]):
        return
    console.print(
        "alerts with inline samples (held-out NAB windows): diagnostics flagged "
        f"{sum(n > 0 for n in flagged[True])}/{len(flagged[True])} anomalous windows and "
        f"{sum(n > 0 for n in flagged[False])}/{len(flagged[False])} normal ones "
        "(sitemesh show <task> prints the findings)",
        highlight=False,
    )


def _outcomes(run: _Run, ids: Iterable[str]) -> str:
    counts = Counter(a.outcome for t in ids if (a := run.answers.get(t)) is not None)
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none answered"


def _source_summary(console: Console, run: _Run) -> None:
    """Alerts that named the telemetry source (labelled windows) and the incidents
    ``sitemesh watch`` raised: what was flagged and how each group ended."""
    src = run.source
    if src is None:
        return
    groups = {flag: [t for t, a in src.labels.items() if a == flag] for flag in (True, False)}
    flagged = {
        flag: sum(
            1 for t in ids
            if (a := run.answers.get(t)) is not None and a.diagnosis is not None
            and a.diagnosis.findings
        )
        for flag, ids in groups.items()
    }  # fmt: skip
    console.print(
        f"alerts naming telemetry source {demo_sources.DEMO_SOURCE} (held-out NAB, read by "
        f"the diagnostics agent): flagged {flagged[True]}/{len(groups[True])} anomalous "
        f"windows and {flagged[False]}/{len(groups[False])} normal ones; outcomes: "
        f"anomalous {_outcomes(run, groups[True])}; normal {_outcomes(run, groups[False])}",
        highlight=False,
    )
    inline = {flag: [t for t, a in run.inline.items() if a == flag] for flag in (True, False)}
    if run.inline:
        console.print(
            f"outcomes of the inline alerts: anomalous {_outcomes(run, inline[True])}; "
            f"normal {_outcomes(run, inline[False])}",
            highlight=False,
        )
    hits = 0
    for t in src.watched:
        answer = run.answers.get(t)
        if answer is None or answer.diagnosis is None:
            continue
        hits += bool(answer.diagnosis.findings)
    labelled = sum(demo_sources.in_window(src, d, at) for d, at in src.watched.values())
    windows = sum(len(src.windows.get(d, [])) for d in src.watch_devices)
    caught = sum(
        any(d == dev and lo <= at <= hi for d, at in src.watched.values())
        for dev in src.watch_devices
        for lo, hi in src.windows.get(dev, [])
    )
    console.print(
        f"incidents raised by sitemesh watch: {len(src.watched)} ({labelled} in a labelled "
        f"anomaly window; {caught}/{windows} windows caught), confirmed by the diagnostics "
        f"agent {hits}; outcomes: {_outcomes(run, src.watched)}",
        highlight=False,
    )


def _show_resolved(console: Console, tid: str, ticket: SupportTicket, answer: FinalAnswer) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    grid.add_row("task", tid)
    grid.add_row("ticket", " ".join(f"{ticket.title} {ticket.body}".split())[:400])
    tri = answer.triage
    if tri is not None:
        grid.add_row(
            "triage",
            f"{tri.label or '(no model for tenant ' + ticket.tenant + ')'} {tri.confidence:.2f} "
            f"({tri.label_set or '-'}), urgency {tri.urgency} ({tri.urgency_source}), "
            f"language {tri.language}",
        )
    res = answer.resolution
    if res is not None:
        grid.add_row(
            "grounded in",
            f"{res.doc_kind} {res.doc_id} ({res.kb}), confidence {res.confidence:.2f}",
        )
    grid.add_row("reasons", "; ".join(answer.reasons))
    grid.add_row("reply", answer.customer_message)
    console.print(Panel(grid, title="resolved", title_align="left"))


async def _summary(console: Console, store: Any, run: _Run, prefix: str, fault_score: Any) -> int:
    """Print the summary from the database; returns the exit code."""
    ok = True
    _support_summary(console, run)
    _inline_summary(console, run)
    _source_summary(console, run)
    tasks = await store.list_tasks(limit=100_000, prefix=prefix)
    outcome = Counter(t.outcome or t.status for t in tasks)
    dclass = Counter(t.data_class for t in tasks if t.status == "answered")
    t = Table(title="outcomes (from the database)")
    t.add_column("outcome")
    t.add_column("tasks", justify="right")
    for k, v in outcome.most_common():
        t.add_row(str(k), str(v))
    console.print(t)
    t = Table(title="data classes of answered tasks (policy decisions)")
    t.add_column("data class")
    t.add_column("tasks", justify="right")
    for k, v in dclass.most_common():
        t.add_row(str(k), str(v))
    console.print(t)

    dls = await store.dead_letters(limit=1000, task_id_prefix=prefix)
    console.print(f"[bold]dead letters[/bold] ({len(dls)}): task, field named (expected), reason")
    for dl in sorted(dls, key=lambda d: d.task_id or ""):
        spec = run.malformed.get(dl.task_id or "", {})
        expected = spec.get("field")
        mark = "[green]ok[/green]" if dl.field == expected else f"[red]expected {expected}[/red]"
        if expected is not None and dl.field != expected:
            ok = False
        console.print(
            f"  {(dl.task_id or '?').removeprefix(prefix):<22} {dl.field or '-':<15} {mark}  "
            f"{dl.error_class}: {dl.reason[:150]}",
            highlight=False,
        )

    lat = await store.latencies(prefix)
    if lat:
        console.print(
            f"end-to-end latency over {len(lat)} answered tasks: "
            f"p50 {_pct(lat, 50):.0f} ms, p95 {_pct(lat, 95):.0f} ms, "
            f"max {max(lat):.0f} ms, mean {statistics.fmean(lat):.0f} ms"
        )

    diags = [
        a.diagnosis
        for tid, a in run.answers.items()
        if tid in run.alerts and a.diagnosis is not None
    ]
    alerts = [
        msgspec.structs.replace(a, task_id=tid)
        for tid, a in run.alerts.items()
        if tid in run.answers
    ]
    if alerts:
        console.print("diagnostics against the injected-fault log (Cisco leaf7 capture):")
        console.print(fault_score(diags, alerts).render())

    missing = sorted(run.valid - run.answers.keys())
    dup = {k: v for k, v in run.answer_count.items() if v > 1}
    not_dead = sorted(set(run.malformed) - {d.task_id for d in dls})
    answered_db = sum(1 for x in tasks if x.status == "answered")
    console.print(
        f"valid tasks: {len(run.valid)}, answered: {len(run.answers)} "
        f"(in database: {answered_db}); malformed: {len(run.malformed)}, "
        f"dead-lettered: {len(run.malformed) - len(not_dead)}"
    )
    for what, items in (
        ("unanswered", missing),
        ("answered more than once", sorted(dup)),
        ("malformed but not dead-lettered", not_dead),
    ):
        if items:
            ok = False
            console.print(f"[red]{what}: {items[:10]}{' ...' if len(items) > 10 else ''}[/red]")
    if answered_db != len(run.valid):
        ok = False
    console.print("[bold green]demo OK[/bold green]" if ok else "[bold red]demo FAILED[/bold red]")
    return 0 if ok else 1
