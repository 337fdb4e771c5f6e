"""``sitemesh trace TASK_ID``: a task's tree of steps, where each ran, decisions, costs.

Built from what the site recorded (``task_events``, ``policy_decisions``,
``dead_letters`` and, when the table exists, ``model_calls``) plus, when the site's
NATS server is reachable, the task's messages still in ``EVENTS_<site>`` (events
the recorder has not written yet, and the trace id from their ``traceparent``).
Only PII-free fields are printed: summaries, roles, ids, classes, counts and times;
never a dead letter's reason or payload (they may quote the customer). Step outputs
are printed with their free text elided (:func:`elide_text`): numbers, booleans and
short single-token strings (labels, codes, ids) stay, anything with a space or
longer than :data:`TOKEN_CHARS` becomes ``<text N chars>``; ``sitemesh show`` has
the whole output.

A plain async function returning the exit code, like ``sitemesh show``; the typer
app only wires it up.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from rich.console import Console
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from ..bus import HDR_TRACEPARENT, Subjects
from ..config import Settings
from ..state import Store, TaskEventView, TaskView, create_engine, task_report
from ._state_cmds import (
    EXIT_OK,
    EXIT_UNKNOWN_TASK,
    _missing_sqlite,
    at_other_site,
    print_other_site,
)

MODEL_CALLS: Final = "model_calls"
"""Table of model calls (per task), shown when it exists."""

_MODEL_COLUMNS: Final = (
    "started_at", "agent", "site", "provider", "model", "outcome", "attempts", "tokens_in",
    "tokens_out", "cost_usd", "latency_ms",
)  # fmt: skip
"""Columns of ``model_calls`` shown when present, in this order (never the prompt hash,
the error text or the record: they may identify or quote the request)."""

_MAX_STREAM_EVENTS: Final = 1000


@dataclass(frozen=True, slots=True)
class _Step:
    where: str
    role: str
    what: str
    summary: str
    at: datetime | None
    took_ms: float | None
    deliveries: int
    output: str = ""


TRACE_OUTPUT_CHARS = 240
"""Characters of a step's output JSON a trace line shows (``show`` shows more)."""

TOKEN_CHARS = 40
"""Longest string (without white space) a trace shows as it is."""


def elide_text(value: Any) -> Any:
    """``value`` (JSON-like) with free text replaced by ``<text N chars>``: a string
    is kept only if it has no white space and at most :data:`TOKEN_CHARS` characters
    (labels such as ``negative``, action codes, ids), recursively."""
    if isinstance(value, str):
        if len(value) <= TOKEN_CHARS and not any(c.isspace() for c in value):
            return value
        return f"<text {len(value)} chars>"
    if isinstance(value, dict):
        return {k: elide_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [elide_text(v) for v in value]
    return value


def _compact(value: Any) -> str:
    text = json.dumps(elide_text(value), separators=(",", ":"), ensure_ascii=False)
    if len(text) > TRACE_OUTPUT_CHARS:
        return text[:TRACE_OUTPUT_CHARS] + f"... ({len(text)} characters)"
    return text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _since(at: datetime | None, start: datetime | None) -> str:
    if at is None or start is None:
        return "-"
    return f"+{(at - start).total_seconds() * 1000:,.0f}"


def _steps(view: TaskView, site: str, extra: Sequence[TaskEventView]) -> list[_Step]:
    seen = {(e.stream, e.stream_seq) for e in view.events}
    events = sorted(
        [*view.events, *(e for e in extra if (e.stream, e.stream_seq) not in seen)],
        key=lambda e: (e.stream, e.stream_seq),  # stored order: the causal order
    )
    final = next((e for e in events if e.type.startswith("final_answer.")), None)
    crossed = final is not None and final.payload.get("route") == "cloud"
    escalations = [e for e in events if e.role == "escalation" and e.type.startswith("step_")]
    steps: list[_Step] = []
    for e in events:
        where = f"site {e.payload.get('site') or site}"
        deliveries = int(e.payload.get("deliveries") or 1)
        what = e.type.rsplit(".", 1)[0].replace("_", " ")
        summary = e.summary
        if e.type.startswith("task_failed."):  # its reason may quote the message: class only
            field = e.payload.get("field")
            summary = f"{e.payload.get('error_class', 'error')}" + (f" at {field}" if field else "")
        if crossed and len(escalations) >= 2 and e is escalations[-1]:
            forward = escalations[0]
            steps.append(
                _Step(
                    "cloud",
                    "synthesiser",
                    "cloud hop",
                    "anonymised incident answered by the cloud",
                    forward.at,
                    None
                    if e.started_at is None
                    else (e.started_at - forward.at).total_seconds() * 1000,
                    1,
                )
            )
        role = e.role or ("escalation" if what == "final answer" else "-")
        if e.payload.get("step"):
            what = f"{what} {e.payload['step']}"
        output = ""
        if e.payload.get("output") is not None:
            output = f"{e.payload.get('output_type', '')} " + _compact(e.payload["output"])
        steps.append(
            _Step(where, role, what, summary, e.at, e.duration_ms, deliveries, output=output)
        )
    return steps


async def _stream_events(
    settings: Settings, task_id: str
) -> tuple[list[TaskEventView], str | None]:
    """The task's events still in ``EVENTS_<site>`` and its trace id; nothing if unreachable."""
    from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

    from ..runtime import connect
    from ..schemas import EVENT_DECODER, decode

    subjects = Subjects(settings.site)
    url = settings.nats.url
    if not url:
        return [], None
    found: list[TaskEventView] = []
    trace_id: str | None = None
    nc = await connect(settings, "operator", url=url, name="sitemesh-trace")
    try:
        js = nc.jetstream()
        sub = await js.pull_subscribe(
            subjects.task_events(task_id),
            stream=subjects.events_stream,
            config=ConsumerConfig(
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.NONE,
                inactive_threshold=10.0,
            ),
        )
        while len(found) < _MAX_STREAM_EVENTS:
            try:
                msgs = await sub.fetch(100, timeout=0.5)
            except TimeoutError:
                break
            for msg in msgs:
                parent = (msg.headers or {}).get(HDR_TRACEPARENT, "")
                if trace_id is None and parent.count("-") == 3:
                    trace_id = parent.split("-")[1]
                with contextlib.suppress(Exception):  # a foreign message: skip it
                    ev: Any = decode(msg.data, EVENT_DECODER)
                    payload: dict[str, Any] = _to_builtins(ev)
                    found.append(
                        TaskEventView(
                            stream=subjects.events_stream,
                            stream_seq=msg.metadata.sequence.stream,
                            type=str(payload.get("type", "")),
                            role=payload.get("role"),
                            summary=str(payload.get("summary", "")),
                            at=msg.metadata.timestamp,
                            started_at=getattr(ev, "started_at", None),
                            payload=payload,
                        )
                    )
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
    finally:
        await nc.drain()
    return found, trace_id


def _to_builtins(ev: object) -> dict[str, Any]:
    import msgspec

    # through JSON, not to_builtins: a step's output is raw JSON (msgspec.Raw)
    out = msgspec.json.decode(msgspec.json.encode(ev))
    return out if isinstance(out, dict) else {}


async def _model_calls(url: str, task_id: str) -> list[Mapping[str, Any]] | None:
    """Rows of ``model_calls`` for ``task_id``; ``None`` when the table does not exist."""
    from sqlalchemy import MetaData, Table, inspect, select

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            if not await conn.run_sync(lambda c: inspect(c).has_table(MODEL_CALLS)):
                return None
            table = await conn.run_sync(lambda c: Table(MODEL_CALLS, MetaData(), autoload_with=c))
            if "task_id" not in table.c:
                return None
            order = [table.c[c] for c in ("started_at", "id") if c in table.c]
            stmt = select(table).where(table.c.task_id == task_id).order_by(*order)
            out: list[Mapping[str, Any]] = []
            for r in await conn.execute(stmt):
                row: dict[str, Any] = dict(r._mapping)
                if row.get("cost_nanos") is not None:  # 1e-9 USD (sitemesh.state)
                    row["cost_usd"] = f"{row['cost_nanos'] / 1e9:.6f}"
                out.append(row)
            return out
    finally:
        await engine.dispose()


def _model_table(rows: Sequence[Mapping[str, Any]]) -> Table:
    present = [c for c in _MODEL_COLUMNS if any(c in r for r in rows)]
    table = Table(title=f"model calls ({len(rows)})", title_justify="left")
    for col in present:
        table.add_column(col.replace("_", " "), justify="right" if "_" in col else "left")
    total_cost = 0.0
    tokens = 0
    for r in rows:
        table.add_row(*(Text("-" if r.get(c) is None else str(r[c])) for c in present))
        total_cost += float(r.get("cost_usd") or 0)
        tokens += int(r.get("tokens_in") or 0) + int(r.get("tokens_out") or 0)
    table.caption = f"{tokens:,} tokens, ${total_cost:.4f}"
    return table


async def show_trace(
    settings: Settings,
    task_id: str,
    console: Console,
    *,
    as_json: bool = False,
    site: str | None = None,
) -> int:
    """Print the tree of ``task_id``: each step, where it ran, decision, timings, retries.

    Args:
        settings: the site's database (``settings.db_url``) and, if set, its NATS URL
            (``settings.nats.url``) for events not recorded yet.
        task_id: the task.
        console: where to render.
        as_json: print one JSON document instead: the task report of ``show --json``
            plus ``trace`` (each step: where, role, what, at, took_ms, deliveries,
            summary), ``trace_id`` and ``model_calls``.
        site: trace it only if it is this site's task (``--site``; see
            :func:`sitemesh.cli._state_cmds.at_other_site`); ``None``: whichever site's.

    Returns:
        :data:`EXIT_OK`, or :data:`EXIT_UNKNOWN_TASK` when nothing is known about it,
        or it is recorded as another site's task than ``site``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable.
    """
    url = settings.db_url
    view: TaskView | None = None
    if not _missing_sqlite(url):
        async with Store(url) as store:
            view = await store.get_task(task_id)
    if view is not None and site is not None and at_other_site(view, site):
        print_other_site(console, task_id, site, view)
        return EXIT_UNKNOWN_TASK
    extra: list[TaskEventView] = []
    trace_id: str | None = None
    with contextlib.suppress(Exception):  # NATS is optional: the database is the record
        extra, trace_id = await _stream_events(settings, task_id)
    if view is None:
        if not extra:
            console.print(f"unknown task {task_id!r} at site {settings.site}", highlight=False)
            return EXIT_UNKNOWN_TASK
        from ..state import TaskSummary

        view = TaskView(
            task=TaskSummary(
                task_id=task_id, site=settings.site, kind="", tenant="", title="",
                status="accepted", data_class=None, outcome=None, reasons=(),
                customer_message="", submitted_at=None, accepted_at=None, finished_at=None,
                latency_ms=None,
            )
        )  # fmt: skip
    t = view.task
    start = t.submitted_at or t.accepted_at
    label = Text.assemble(
        (f"task {t.task_id}", "bold"),
        f"  site {t.site or settings.site}, {t.kind or '-'}, {t.status}",
        f" ({t.outcome})" if t.outcome else "",
        f", {_ms(t.latency_ms)} ms end to end" if t.latency_ms is not None else "",
        f"  trace {trace_id}" if trace_id else "",
    )
    tree = Tree(label)
    d = view.decision
    if d is not None:
        tree.add(
            Text(
                f"policy: {d.action} by rule {d.rule_id} (policy {d.policy_version}), "
                f"data class {d.data_class}, analyzer {d.analyzer_ms:.1f} ms"
            )
        )
    retries = 0
    steps = _steps(view, t.site or settings.site, extra)
    if as_json:
        calls = None
        with contextlib.suppress(Exception):
            calls = await _model_calls(url, task_id) if not _missing_sqlite(url) else None
        doc = task_report(view)
        doc["trace_id"] = trace_id
        doc["trace"] = [
            {
                "where": s.where, "role": s.role, "what": s.what, "summary": s.summary,
                "at": s.at.isoformat() if s.at else None, "took_ms": s.took_ms,
                "deliveries": s.deliveries,
            }
            for s in steps
        ]  # fmt: skip
        doc["model_calls"] = [dict(c) for c in calls or []]
        console.print(
            json.dumps(doc, ensure_ascii=False, indent=2, default=str),
            soft_wrap=True,
            highlight=False,
            markup=False,
        )
        return EXIT_OK
    for step in steps:
        retried = step.deliveries > 1
        retries += step.deliveries - 1
        node = Text.assemble(
            (f"{_since(step.at, start):>8} ms  ", "dim"),
            (f"{step.where:<10} ", "cyan" if step.where == "cloud" else "green"),
            (f"{step.role:<12} ", "bold"),
            f"{step.what}",
            f"  took {_ms(step.took_ms)} ms" if step.took_ms is not None else "",
            (f"  deliveries {step.deliveries}" if retried else "", "yellow"),
            (f"  {step.summary}" if step.summary else "", "dim"),
        )
        branch = tree.add(node)
        if step.output:
            branch.add(Text(step.output, "dim"))
    for dl in view.dead_letters:
        tree.add(
            Text(
                f"dead letter: {dl.role} rejected {dl.stream}#{dl.stream_seq} with "
                f"{dl.error_class}" + (f" at {dl.field}" if dl.field else "")
                + f" after {dl.deliveries} deliveries",
                style="red",
            )
        )  # fmt: skip
    console.print(tree)
    calls = None
    with contextlib.suppress(Exception):
        calls = await _model_calls(url, task_id) if not _missing_sqlite(url) else None
    if calls:
        console.print(_model_table(calls))
    console.print(
        f"{sum(s.what != 'cloud hop' for s in steps)} event(s), {retries} redeliver(ies), "
        f"{len(view.dead_letters)} dead letter(s)"
        + ("" if calls is not None else "; no model_calls table"),
        highlight=False,
    )
    return EXIT_OK
