"""``sitemesh status`` and ``sitemesh show TASK_ID``: render the state database.

Both are plain async functions returning the process exit code, so the typer app
only wires them up (``raise typer.Exit(asyncio.run(show_task(...)))``).
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime
from typing import Any, Final

from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from ..config import Settings
from ..state import StatusCounts, Store, TaskSummary, TaskView, is_sqlite, sqlite_path, task_report
from ._queues import read_queues, show_queues
from ._report import answer_section, builtins_without, print_json

EXIT_OK: Final = 0
EXIT_UNKNOWN_TASK: Final = 1
"""Exit code of :func:`show_task` when the task id is not in the database."""

_STATUS_STYLE: Final = {"accepted": "yellow", "answered": "green", "failed": "red"}
_OUTCOME_STYLE: Final = {"resolved": "green", "escalate": "yellow", "needs_human": "magenta"}


def _db_label(url: str) -> str:
    """The database URL without its password, for display."""
    return make_url(url).render_as_string(hide_password=True)


def _missing_sqlite(url: str) -> bool:
    path = sqlite_path(url) if is_sqlite(url) else None
    return path is not None and not path.exists()


def _t(value: object, style: str = "") -> Text:
    """Plain text (never parsed as rich markup: summaries and reasons are data)."""
    return Text("-" if value is None or value == "" else str(value), style=style)


def _ts(at: datetime | None) -> str:
    return "-" if at is None else at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _since_ms(at: datetime | None, start: datetime | None) -> float | None:
    if at is None or start is None:
        return None
    return (at - start).total_seconds() * 1000.0


def _ts_since(at: datetime | None, start: datetime | None) -> str:
    since = _since_ms(at, start)
    return _ts(at) if since is None else f"{_ts(at)}  (+{_ms(since)} ms)"


def _pct(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank) of non-empty ``values``."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


def _counts_table(
    title: str, header: str, counts: dict[str, int], styles: dict[str, str], *, ordered: bool
) -> Table:
    """A two-column count table; ``ordered`` keeps ``counts``' order, else most first."""
    table = Table(title=title, title_justify="left")
    table.add_column(header)
    table.add_column("tasks", justify="right")
    items = list(counts.items())
    if not ordered:
        items.sort(key=lambda kv: (-kv[1], kv[0]))
    for key, n in items:
        table.add_row(_t(key, styles.get(key, "")), str(n))
    if not counts:
        table.add_row(_t(None), "0")
    return table


def _tasks_table(tasks: list[TaskSummary]) -> Table:
    table = Table(title=f"latest {len(tasks)} tasks", title_justify="left")
    # an id is never cut or folded (it is what people copy): its column is as wide as
    # the longest id, and the others give way at 80 columns
    widest = max((len(t.task_id) for t in tasks), default=4)
    table.add_column("task", no_wrap=True, min_width=widest)
    for col in ("kind", "status", "outcome", "data class", "latency ms", "submitted"):
        table.add_column(col, justify="right" if col == "latency ms" else "left")
    for t in tasks:
        table.add_row(
            _t(t.task_id),
            _t(t.kind),
            _t(t.status, _STATUS_STYLE.get(t.status, "")),
            _t(t.outcome, _OUTCOME_STYLE.get(t.outcome or "", "")),
            _t(t.data_class),
            _ms(t.latency_ms),
            _ts(t.submitted_at),
        )
    return table


async def show_status(
    settings: Settings,
    console: Console,
    *,
    limit: int = 15,
    as_json: bool = False,
    site: str | None = None,
) -> int:
    """Print task counts by status, outcome and data class, latencies, the latest tasks,
    then per role its ready workers and queued work on NATS (flagging roles with work
    waiting and no ready worker; a one-line note instead when NATS is not reachable).

    Args:
        settings: the database is ``settings.db_url``; NATS is ``settings.nats.url``
            or the embedded server if one runs (none is started).
        console: where to render.
        limit: how many of the latest tasks to list.
        site: count and list only this site's tasks and dead letters (``--site``:
            several sites may share one database); ``None``: every site's.
        as_json: one JSON document instead: ``site``, ``counts`` (``total``,
            ``dead_letters``, ``by_status``, ``by_outcome``, ``by_data_class``),
            ``latency_ms`` (``n``, ``p50``, ``p95``, ``max``, ``mean``; ``null`` before
            the first answer), ``latest`` (task summaries without the customer
            message), ``workers`` (per role: ``ready``, ``stopping``, ``pending``,
            ``ack_pending``, ``redelivered``, ``waiting``), ``streams`` (bytes and
            fill of each) and ``nats`` (``null``, or why the workers are unknown).

    Returns:
        The exit code, :data:`EXIT_OK`.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable.
    """
    if as_json:
        print_json(console, await _status_doc(settings, limit=limit, site=site))
        return EXIT_OK
    await _show_database(settings, console, limit=limit, site=site)
    await show_queues(settings, console)
    return EXIT_OK


async def _status_doc(settings: Settings, *, limit: int, site: str | None) -> dict[str, Any]:
    """What ``status --json`` prints (see :func:`show_status`)."""
    doc: dict[str, Any] = {"site": settings.site, "counts": None, "latency_ms": None}
    latest: list[TaskSummary] = []
    if not _missing_sqlite(settings.db_url):
        counts, latest, latencies = await _read_database(settings.db_url, limit, site)
        doc["counts"] = {
            "total": counts.total,
            "dead_letters": counts.dead_letters,
            "by_status": dict(counts.by_status),
            "by_outcome": dict(counts.by_outcome),
            "by_data_class": dict(counts.by_data_class),
        }
        if latencies:
            doc["latency_ms"] = {
                "n": len(latencies),
                "p50": _pct(latencies, 50),
                "p95": _pct(latencies, 95),
                "max": max(latencies),
                "mean": statistics.fmean(latencies),
            }
    doc["latest"] = [builtins_without(t, "customer_message") for t in latest]
    state = await read_queues(settings)
    if isinstance(state, str):
        doc.update(workers=None, streams=None, nats=state)
        return doc
    queues, fills = state
    doc["workers"] = {
        q.role: {
            "stream": q.stream, "ready": q.ready, "stopping": q.stopping,
            "pending": q.pending, "ack_pending": q.ack_pending,
            "redelivered": q.redelivered, "waiting": q.waiting,
        }
        for q in queues
    }  # fmt: skip
    doc["streams"] = {
        f.stream: {"bytes": f.bytes, "max_bytes": f.max_bytes, "fraction": f.fraction}
        for f in fills
    }
    doc["nats"] = None
    return doc


async def _read_database(
    url: str, limit: int, site: str | None = None
) -> tuple[StatusCounts, list[TaskSummary], list[float]]:
    """What ``status`` shows of the database: counts, the latest ``limit`` tasks and the
    answered tasks' end-to-end latencies (ms); of ``site`` only, when given."""
    async with Store(url) as store:
        counts = await store.counts(site=site)
        latest = await store.list_tasks(limit=limit, site=site)
        if site is None:
            return counts, latest, await store.latencies()
        # Store.latencies() has no site filter: read them off the site's answered tasks
        n = max(counts.by_status.get("answered", 0), 1)
        answered = await store.list_tasks(limit=n, status="answered", site=site)
        return counts, latest, [float(t.latency_ms) for t in answered if t.latency_ms is not None]


async def _show_database(
    settings: Settings, console: Console, *, limit: int, site: str | None = None
) -> None:
    url = settings.db_url
    console.print(f"site [bold]{settings.site}[/bold], state in {_db_label(url)}", highlight=False)
    if _missing_sqlite(url):
        console.print("no tasks recorded yet (the database does not exist)")
        return
    counts, latest, latencies = await _read_database(url, limit, site)
    console.print(
        Columns(
            [
                _counts_table(
                    "by status", "status", dict(counts.by_status), _STATUS_STYLE, ordered=True
                ),
                _counts_table(
                    "by outcome", "outcome", dict(counts.by_outcome), _OUTCOME_STYLE, ordered=False
                ),
                _counts_table(
                    "by data class", "data class", dict(counts.by_data_class), {}, ordered=False
                ),
            ]
        )
    )
    console.print(f"{counts.total} task(s), {counts.dead_letters} dead letter(s)", highlight=False)
    if latencies:
        console.print(
            f"end-to-end latency over {len(latencies)} answered tasks: "
            f"p50 {_pct(latencies, 50):,.0f} ms, p95 {_pct(latencies, 95):,.0f} ms, "
            f"max {max(latencies):,.0f} ms, mean {statistics.fmean(latencies):,.0f} ms",
            highlight=False,
        )
    if latest:
        console.print(_tasks_table(latest))


def _header(view: TaskView) -> Table:
    t = view.task
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, Text]] = [
        ("task", _t(t.task_id)),
        ("site / kind", _t(f"{t.site or '-'} / {t.kind or '-'}")),
        ("tenant", _t(t.tenant)),
        ("title", _t(t.title)),
        ("status", _t(t.status, _STATUS_STYLE.get(t.status, ""))),
        ("data class", _t(t.data_class)),
        ("submitted", _t(_ts(t.submitted_at))),
        ("accepted", _t(_ts_since(t.accepted_at, t.submitted_at))),
        ("finished", _t(_ts_since(t.finished_at, t.submitted_at))),
        ("latency", _t(f"{_ms(t.latency_ms)} ms" if t.latency_ms is not None else None)),
    ]
    for key, value in rows:
        grid.add_row(key, value)
    return grid


def _steps(view: TaskView) -> Table:
    table = Table(title="steps", title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("+ms", justify="right")
    table.add_column("took ms", justify="right")
    table.add_column("role")
    table.add_column("event")
    table.add_column("summary", overflow="fold")
    for i, ev in enumerate(view.events, 1):
        table.add_row(
            str(i),
            _ms(_since_ms(ev.at, view.task.submitted_at)),
            _ms(ev.duration_ms),
            _t(ev.role),
            _t(ev.type),
            _t(ev.summary),
        )
    return table


OUTPUT_CHARS = 600
"""Characters of a step's output JSON shown by ``show`` (the whole of it is in the
task's event; ``sitemesh trace`` and the database keep it)."""


def _outputs(view: TaskView) -> Table:
    """Each workflow step's output (custom agents' included), as compact JSON."""
    table = Table(title="step outputs", title_justify="left")
    table.add_column("step")
    table.add_column("role")
    table.add_column("type")
    table.add_column("output", overflow="fold")
    for ev in view.events:
        output = ev.payload.get("output")
        if output is None:
            continue
        text = json.dumps(output, separators=(",", ":"), ensure_ascii=False)
        if len(text) > OUTPUT_CHARS:
            text = text[:OUTPUT_CHARS] + f"... ({len(text)} characters)"
        table.add_row(
            _t(ev.payload.get("step", "")),
            _t(ev.role),
            _t(ev.payload.get("output_type", "")),
            _t(text),
        )
    return table


def _decision(view: TaskView) -> Table | Text:
    d = view.decision
    if d is None:
        return Text("policy decision: none recorded", style="dim")
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    entities = ", ".join(f"{e.entity_type}×{e.count}" for e in d.entities) or "none"
    grid.add_row("policy", _t(f"{d.action} by rule {d.rule_id} (policy {d.policy_version})"))
    grid.add_row("data class", _t(d.data_class))
    grid.add_row("entities", _t(entities))
    grid.add_row("reasons", _t("; ".join(d.reasons)))
    grid.add_row("analyzer", _t(f"{d.analyzer_ms:,.1f} ms"))
    return grid


def _outcome(view: TaskView) -> Table:
    t = view.task
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("outcome", _t(t.outcome, _OUTCOME_STYLE.get(t.outcome or "", "")))
    grid.add_row("reasons", _t("\n".join(f"- {r}" for r in t.reasons)))
    grid.add_row("customer message", _t(t.customer_message))
    return grid


def _dead_letters(view: TaskView) -> Table:
    table = Table(title="dead letters", title_justify="left")
    for col in ("role", "error", "field", "deliveries", "original", "reason"):
        table.add_column(col, overflow="fold", justify="right" if col == "deliveries" else "left")
    for dl in view.dead_letters:
        table.add_row(
            _t(dl.role),
            _t(dl.error_class, "red"),
            _t(dl.field),
            str(dl.deliveries),
            _t(f"{dl.stream}#{dl.stream_seq}"),
            _t(dl.reason),
        )
    return table


def at_other_site(view: TaskView | None, site: str | None) -> bool:
    """Whether ``view`` is recorded as another site's task than ``site`` (``--site``).

    A task's site is ``""`` until its ``task_accepted`` event is recorded: such a task
    matches any site, and so does every task when ``site`` is ``None``.
    """
    return view is not None and site is not None and view.task.site not in ("", site)


def print_other_site(console: Console, task_id: str, site: str, view: TaskView) -> None:
    """Say that ``task_id`` is not a task of ``site`` (it is ``view``'s site's)."""
    console.print(
        Text(f"no task {task_id} at site {site} (it is a task of site {view.task.site})", "red")
    )


async def show_task(
    settings: Settings,
    task_id: str,
    console: Console,
    *,
    as_json: bool = False,
    site: str | None = None,
) -> int:
    """Print one task: its steps with timings, policy decision, outcome, dead letters.

    Step timings are milliseconds since the task was submitted (``+ms``) and the
    step's own duration (``took ms``, ``finished_at - started_at``).

    Args:
        settings: the database is ``settings.db_url``.
        task_id: the task to show.
        console: where to render.
        as_json: print :func:`sitemesh.state.task_report` as one JSON document.
        site: show it only if it is this site's task (``--site``; see
            :func:`at_other_site`); ``None``: whichever site's.

    Returns:
        :data:`EXIT_OK`, or :data:`EXIT_UNKNOWN_TASK` (after printing a message and
        any tasks whose id starts with ``task_id``) when the task is not recorded,
        or is recorded as another site's than ``site``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable.
    """
    url = settings.db_url
    if _missing_sqlite(url):
        console.print(Text(f"unknown task {task_id!r}: no state database at {_db_label(url)}"))
        return EXIT_UNKNOWN_TASK
    async with Store(url) as store:
        view = await store.get_task(task_id)
        similar = [] if view is not None else await store.list_tasks(limit=5, prefix=task_id)
        costs = await _cost_lines(store, task_id) if view is not None else []
    if view is not None and site is not None and at_other_site(view, site):
        print_other_site(console, task_id, site, view)
        return EXIT_UNKNOWN_TASK
    if view is None:
        console.print(
            Text(f"unknown task {task_id!r} at site {settings.site} ({_db_label(url)})", "red")
        )
        if similar:
            console.print(Text("tasks starting with it: " + ", ".join(t.task_id for t in similar)))
        return EXIT_UNKNOWN_TASK
    report = task_report(view)
    if as_json:
        report["costs"] = costs
        console.print(
            json.dumps(report, ensure_ascii=False, indent=2),
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        return EXIT_OK
    console.print(_header(view))
    if view.events:
        console.print(_steps(view))
        outputs = _outputs(view)
        if outputs.row_count:
            console.print(outputs)
    console.print(_decision(view))
    if view.task.status == "answered":
        section = answer_section(report)
        if section is not None:
            console.print(section)
        console.print(_outcome(view))
    elif view.task.status == "failed":
        console.print(Text("failed: " + "; ".join(view.task.reasons), style="red"))
    if view.dead_letters:
        console.print(_dead_letters(view))
    for line in costs:
        console.print(Text(line))
    return EXIT_OK


async def _cost_lines(store: Store, task_id: str) -> list[str]:
    """Model calls, tokens and cost of the task per agent (none when no model ran)."""
    from ._cost_cmds import task_cost_lines

    return await task_cost_lines(store, task_id)
