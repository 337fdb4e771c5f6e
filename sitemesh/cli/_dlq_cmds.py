"""``sitemesh dlq list|show|redrive``: the site's dead letters.

Plain async functions returning the exit code; the typer app only wires them up
(``raise typer.Exit(asyncio.run(dlq_list(settings, console, ...)))``). They read
``DLQ_<site>`` directly (no database needed); ``redrive`` republishes the original
message exactly once (see :func:`sitemesh.replay.redrive`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Final

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..bus import Subjects
from ..config import Settings
from ..errors import SitemeshError
from ..replay import (
    DeadLetterNotFound,
    DeadLetterRecord,
    find_dead_letter,
    list_dead_letters,
    redrive,
)
from ..runtime import connect
from ._nats import nats_url
from ._report import builtins_without, print_json

EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
"""No dead letter has the given sequence or task id."""
EXIT_ERROR: Final = 2


@contextlib.asynccontextmanager
async def _js(settings: Settings, console: Console) -> AsyncIterator[JetStreamContext]:
    async with nats_url(settings, console) as url:
        nc = await connect(settings, "operator", url=url, name="sitemesh-dlq")
        try:
            yield nc.jetstream()
        finally:
            await nc.drain()


def _ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _redriven(rec: DeadLetterRecord) -> str:
    return f"yes (seq {rec.redrive.seq})" if rec.redrive else ""


async def dlq_list(
    settings: Settings,
    console: Console,
    role: str | None = None,
    limit: int = 50,
    *,
    as_json: bool = False,
) -> int:
    """Print the newest dead letters of the site.

    Args:
        settings: the site's settings.
        console: where to print.
        role: only those of this role (``router``, ``planner``...).
        limit: at most this many.
        as_json: one JSON document ``{"site", "dead_letters": [...]}`` instead: each
            with its ``DLQ_<site>`` sequence, the dead letter's fields but the original
            payload (``dlq show`` has it) and the sequence of its redrive (or ``null``).

    Returns:
        0, or 2 on error.
    """
    try:
        async with _js(settings, console) as js:
            records = await list_dead_letters(js, Subjects(settings.site), role=role, limit=limit)
    except (SitemeshError, NatsError, OSError) as exc:
        console.print(f"[red]dlq list failed: {type(exc).__name__}: {exc}[/red]")
        return EXIT_ERROR
    if as_json:
        listed = [
            {"seq": rec.seq, "redriven_seq": rec.redrive.seq if rec.redrive else None,
             **builtins_without(rec.letter, "original")}
            for rec in records
        ]  # fmt: skip
        print_json(console, {"site": settings.site, "dead_letters": listed})
        return EXIT_OK
    if not records:
        console.print(f"no dead letters at site {settings.site}")
        return EXIT_OK
    table = Table(title=f"dead letters of site {settings.site} (newest last)")
    widest = max((len(r.letter.task_id or "") for r in records), default=4)
    for col in ("seq", "dead at", "role", "task", "error", "field", "reason", "redriven"):
        if col == "task":  # never cut or folded: `dlq show TASK_ID` takes it
            table.add_column(col, no_wrap=True, min_width=widest)
        else:
            table.add_column(col, overflow="fold")
    for rec in records:
        d = rec.letter
        table.add_row(
            str(rec.seq),
            _ts(d.dead_at),
            d.role,
            d.task_id or "",
            d.error_class,
            d.field or "",
            Text(d.reason[:120]),
            _redriven(rec),
        )
    console.print(table)
    return EXIT_OK


async def dlq_show(settings: Settings, console: Console, seq_or_task_id: str) -> int:
    """Print one dead letter: why, where from, its headers and original payload.

    Args:
        settings: the site's settings.
        console: where to print.
        seq_or_task_id: its DLQ sequence, or a task id (its newest dead letter).

    Returns:
        0, 1 when there is no such dead letter, 2 on error.
    """
    try:
        async with _js(settings, console) as js:
            rec = await find_dead_letter(js, Subjects(settings.site), seq_or_task_id)
    except DeadLetterNotFound as exc:
        console.print(f"[red]{exc}[/red]")
        return EXIT_NOT_FOUND
    except (SitemeshError, NatsError, OSError) as exc:
        console.print(f"[red]dlq show failed: {type(exc).__name__}: {exc}[/red]")
        return EXIT_ERROR
    d = rec.letter
    table = Table(show_header=False, title=f"dead letter {rec.seq}")
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in (
        ("task", d.task_id or ""),
        ("role", d.role),
        ("error", d.error_class),
        ("field", d.field or ""),
        ("reason", d.reason),
        ("deliveries", str(d.deliveries)),
        ("original", f"{d.subject} ({d.stream} #{d.stream_seq})"),
        ("dead at", _ts(d.dead_at)),
        ("redriven", _redriven(rec) or "no"),
    ):
        table.add_row(key, Text(value))
    for k, v in sorted(d.original_headers.items()):
        table.add_row(f"header {k}", Text(v))
    console.print(table)
    try:
        body = json.dumps(json.loads(d.original), indent=2, ensure_ascii=False)
    except ValueError:
        body = repr(d.original[:2000])
    console.print(Text(body))
    return EXIT_OK


async def dlq_redrive(settings: Settings, console: Console, seq_or_task_id: str) -> int:
    """Republish a dead letter's original for its role to process again, exactly once.

    Args:
        settings: the site's settings.
        console: where to print.
        seq_or_task_id: its DLQ sequence, or a task id (its newest dead letter).

    Returns:
        0 (also when it had been redriven before: nothing is published twice),
        1 when there is no such dead letter, 2 when it cannot be redriven.
    """
    try:
        async with _js(settings, console) as js:
            result = await redrive(js, Subjects(settings.site), seq_or_task_id)
    except DeadLetterNotFound as exc:
        console.print(f"[red]{exc}[/red]")
        return EXIT_NOT_FOUND
    except (SitemeshError, NatsError, OSError) as exc:
        console.print(f"[red]dlq redrive failed: {type(exc).__name__}: {exc}[/red]")
        return EXIT_ERROR
    if result.already:
        console.print(
            f"dead letter {result.dlq_seq} was already redriven as {result.stream} "
            f"#{result.seq} ({result.msg_id}); nothing published"
        )
    else:
        console.print(
            f"redriven dead letter {result.dlq_seq} onto {result.subject} as "
            f"{result.stream} #{result.seq} ({result.msg_id})"
        )
    return EXIT_OK
