"""``sitemesh replay``: re-run recorded tasks in a sandbox and print the diff.

Plain async function returning the exit code; the typer app only wires it up
(``raise typer.Exit(asyncio.run(replay(settings, console, ...)))``):

* 0: every replayed task reproduced its original decisions and outputs;
* 1: at least one task differs (the report shows where, as JSON paths);
* 2: an error (no such stream, nothing selected, invalid rules file, NATS down).

See ``docs/replay.md``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from nats.errors import Error as NatsError
from nats.js.errors import NotFoundError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from ..agents import Registry
from ..bus import Subjects
from ..config import Settings
from ..errors import SitemeshError
from ..replay import (
    MISSING,
    DiffReport,
    ReplayModels,
    ReplayTools,
    Selection,
    Speed,
    build_agents,
    load_recorder,
    original_outcomes,
    replay_policy,
    replay_tasks,
    replay_workflows,
    select_tasks,
)
from ..runtime import connect
from ._nats import nats_url

EXIT_SAME: Final = 0
EXIT_DIFFERENT: Final = 1
EXIT_ERROR: Final = 2

_AGO: Final = re.compile(r"^(?P<n>\d+(?:\.\d+)?)(?P<unit>[smhd])$")
_UNIT_S: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_when(value: datetime | str | None, *, now: datetime | None = None) -> datetime | None:
    """A time bound: a datetime, an ISO 8601 string (naive = UTC), or ``15m``/``2h``/
    ``1d`` ago.

    Raises:
        ValueError: not a time or a duration.
    """
    if value is None or isinstance(value, datetime):
        return value if value is None or value.tzinfo else value.replace(tzinfo=UTC)
    m = _AGO.match(value.strip())
    if m is not None:
        ago = timedelta(seconds=float(m["n"]) * _UNIT_S[m["unit"]])
        return (now or datetime.now(UTC)) - ago
    when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _short(value: Any, width: int = 70) -> str:
    text = value if isinstance(value, str) and value == MISSING else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def render_report(report: DiffReport, console: Console, *, max_changes: int = 12) -> None:
    """Print the per-task diff: a summary line and a table of the tasks that differ."""
    n, changed = len(report.tasks), report.changed
    before, after = report.policy_versions
    versions = ", ".join(sorted(before)) or "?"
    if before != after:
        versions += " → " + (", ".join(sorted(after)) or "?")
    console.print(
        f"replay [bold]{report.replay_id}[/bold]: {n} task(s) in {report.elapsed_s:.1f} s, "
        f"[green]{n - len(changed)} match[/green], "
        + (f"[red]{len(changed)} differ[/red]" if changed else "0 differ")
        + f" (policy {versions})"
    )
    if not changed:
        console.print("[green]diff empty: every decision and output was reproduced[/green]")
        return
    for t in changed:
        status = (
            t.original_status
            if t.original_status == t.replayed_status
            else f"{t.original_status} → {t.replayed_status}"
        )
        console.print(Text.assemble((t.task_id, "bold"), "  ", (status, "yellow")))
        shown = t.changes[:max_changes]
        width = max(len(c.path) for c in shown)
        for c in shown:
            console.print(
                Text.assemble(
                    "  ",
                    (c.path.ljust(width), "cyan"),
                    "  ",
                    (_short(c.original, 50), "red"),
                    " → ",
                    (_short(c.replayed, 50), "green"),
                ),
                overflow="ellipsis",
                no_wrap=True,
            )
        if len(t.changes) > len(shown):
            console.print(f"  … {len(t.changes) - len(shown)} more")


async def replay(
    settings: Settings,
    console: Console,
    task_ids: Sequence[str] | None = None,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    seq_from: int | None = None,
    seq_to: int | None = None,
    rules_file: Path | None = None,
    speed: Speed = "max",
    live_models: bool = False,
    keep: bool = False,
    *,
    stream: str | None = None,
    timeout_s: float = 120.0,
    agent_paths: Sequence[str] = (),
    live_tools: bool = False,
) -> int:
    """``sitemesh replay``: select recorded tasks, re-run them in a sandbox, diff.

    Args:
        settings: the site's settings (``site``, NATS, bus, policy).
        console: where to print.
        task_ids: replay these tasks (``--task``, repeatable).
        since: first stored time (``--since``: ISO 8601 or ``15m``/``2h`` ago).
        until: last stored time (``--until``).
        seq_from: first sequence of the stream (``--from-seq``).
        seq_to: last sequence of the stream (``--to-seq``).
        rules_file: replay under these rules instead of the original ones (``--rules``).
        speed: ``max`` or ``original`` (the recorded gaps between tasks).
        live_models: call the current models instead of serving recorded responses.
        keep: keep the sandbox streams (``TASKS_<site>_R<id>``...) for inspection.
        stream: the stream the ranges select from (default ``TASKS_<site>``).
        timeout_s: seconds to wait for the replayed tasks to end.
        agent_paths: agents to register by import path (``--agent module:Class``),
            for workflows with roles that are not installed.
        live_tools: call the tools live (tools replay ``off``; a side effect the
            original run made is served its recorded response, not repeated) instead
            of serving the recorded responses only (``strict``, the default: zero live
            calls, a call with no record fails its task with ``ToolReplayMiss``).

    Returns:
        0 diff empty, 1 differences, 2 error.
    """
    if speed not in ("max", "original"):
        console.print(f"[red]--speed must be 'original' or 'max', not {speed!r}[/red]")
        return EXIT_ERROR
    try:
        selection = Selection(
            task_ids=tuple(task_ids or ()),
            since=parse_when(since),
            until=parse_when(until),
            seq_from=seq_from,
            seq_to=seq_to,
            stream=stream,
        )
    except ValueError as exc:
        console.print(f"[red]invalid time bound: {exc}[/red]")
        return EXIT_ERROR
    subjects = Subjects(settings.site)
    try:
        async with nats_url(settings, console) as url:
            nc = await connect(settings, "operator", url=url, name="sitemesh-replay")
            try:
                return await _replay(
                    settings, console, nc.jetstream(), subjects, selection,
                    rules_file=rules_file, speed=speed, live_models=live_models,
                    keep=keep, timeout_s=timeout_s, agent_paths=agent_paths,
                    live_tools=live_tools,
                )  # fmt: skip
            finally:
                await nc.drain()
    except NotFoundError:
        console.print(f"[red]site {settings.site!r} has no such stream (nothing recorded?)[/red]")
    except (SitemeshError, NatsError, OSError, TimeoutError) as exc:
        console.print(f"[red]replay failed: {type(exc).__name__}: {exc}[/red]")
    return EXIT_ERROR


async def _replay(
    settings: Settings,
    console: Console,
    js: Any,
    subjects: Subjects,
    selection: Selection,
    *,
    rules_file: Path | None,
    speed: Speed,
    live_models: bool,
    keep: bool,
    timeout_s: float,
    agent_paths: Sequence[str],
    live_tools: bool,
) -> int:
    from ..policy import PiiScanner

    with console.status("selecting recorded tasks..."):
        tasks = await select_tasks(js, subjects, selection)
        original = await original_outcomes(js, subjects, tasks)
    if not tasks:
        console.print("[yellow]no recorded task matches the selection[/yellow]")
        return EXIT_ERROR
    ids = [t for t, _ in tasks]
    versions = {v for t in ids if (v := original.policy_version(t))}
    policy = await replay_policy(
        js, settings.site, versions, rules_file=rules_file, configured=settings.policy.rules_file
    )
    models = ReplayModels(load_recorder(settings), live=live_models)
    workflows = await replay_workflows(
        js, settings.site, {v for t in ids if (v := original.workflow_version(t))}
    )
    registry = Registry.load(agent_paths)
    missing = [r for r in workflows.roles if r not in registry]
    if missing:
        console.print(
            f"[red]workflows {workflows.version} name roles that are not installed here: "
            f"{', '.join(missing)}; pass --agent module:Class for each[/red]"
        )
        return EXIT_ERROR
    console.print(
        f"replaying {len(tasks)} task(s) of site {settings.site} (TASKS seq "
        f"{tasks[0][1].seq}-{tasks[-1][1].seq}) at speed {speed}, policy {policy.version}, "
        f"model calls {models.mode}, tool calls {'live' if live_tools else 'recorded'}, "
        f"workflows {workflows.version}"
    )
    with console.status("loading the PII analyzer and the agents..."):
        scanner = PiiScanner.from_settings(settings.policy)
        await asyncio.to_thread(scanner.load)
        tools = ReplayTools(settings, live=live_tools, scanner=scanner)
    async with tools:
        tools.registry()  # an invalid tools file fails here (exit 2), not in every task
        resources = tools.resources(settings.site)
        with console.status("setting up the agents..."):
            roles = [r for r in workflows.roles if r in registry]
            agents = await build_agents(registry, roles, resources=resources)
        progress = Progress(
            TextColumn("replaying"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        with progress:
            bar = progress.add_task("replay", total=len(tasks))
            report = await replay_tasks(
                js,
                subjects,
                settings.bus,
                tasks,
                policy=policy,
                scanner=scanner,
                agents=agents,
                workflows=workflows,
                registry=registry,
                models=models,
                speed=speed,
                backend_healthy=settings.hub.enabled,
                keep=keep,
                timeout_s=timeout_s,
                progress=lambda done, _total: progress.update(bar, completed=done),
                original=original,
                resources=resources,
            )
        served, live = tools.counts()
    render_report(report, console)
    if served or live:
        console.print(f"tool calls: {served} served from records, {live} live")
    if keep:
        sandbox = Subjects.sandbox(settings.site, report.replay_id)
        console.print(f"[dim]kept sandbox streams {sandbox.tasks_stream}, ...[/dim]")
    return EXIT_SAME if report.empty else EXIT_DIFFERENT
