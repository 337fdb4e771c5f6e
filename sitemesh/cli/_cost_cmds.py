"""``sitemesh cost`` and the cost lines of ``sitemesh show TASK_ID``.

Plain async functions returning the process exit code (or lines), so the typer app
only wires them up::

    raise typer.Exit(asyncio.run(show_cost(settings, console, by=by, prefix=prefix)))

Costs come from the ``model_calls`` table (see :mod:`sitemesh.models._ledger`), in
the price table's currency (USD by default).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import make_url

from ..config import Settings
from ..models import COST_KEYS, CostRow, cost_rollup, total
from ..state import Store, is_sqlite, sqlite_path
from ._report import print_json

EXIT_OK: Final = 0
EXIT_BAD_ARGS: Final = 2
"""Exit code of :func:`show_cost` when ``by`` is not a known grouping."""

_HEADER: Final[dict[str, str]] = {
    "task": "task",
    "agent": "agent",
    "model": "model",
    "tenant": "tenant",
    "day": "day (UTC)",
}


def fmt_cost(cost: Decimal, currency: str = "USD") -> str:
    """``cost`` for display: 6 decimals below 1, else 2 (``"0.000330 USD"``)."""
    places = Decimal("0.000001") if abs(cost) < 1 else Decimal("0.01")
    return f"{cost.quantize(places):,} {currency}"


def _add(table: Table, r: CostRow, *, style: str = "") -> None:
    cost = fmt_cost(r.cost) + (f" (+{r.unpriced} unpriced)" if r.unpriced else "")
    table.add_row(
        Text(r.key or "-"),
        f"{r.calls:,}",
        f"{r.ok:,}",
        f"{r.tokens_in:,}",
        f"{r.tokens_out:,}",
        cost,
        f"{r.latency_ms:,.0f}",
        style=style,
    )


def _table(rows: list[CostRow], by: str, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(_HEADER.get(by, by), overflow="fold")
    for col in ("calls", "ok", "tokens in", "tokens out", "cost", "mean ms"):
        table.add_column(col, justify="right")
    for r in rows:
        _add(table, r)
    if len(rows) > 1:
        table.add_section()
        _add(table, total(rows), style="bold")
    return table


async def show_cost(
    settings: Settings,
    console: Console,
    by: str = "task",
    prefix: str | None = None,
    since: datetime | None = None,
    *,
    limit: int = 50,
    as_json: bool = False,
) -> int:
    """Print recorded model calls rolled up by task, agent, model, tenant or day.

    Args:
        settings: the database is ``settings.db_url``.
        console: where to render.
        by: ``task``, ``agent``, ``model``, ``tenant`` or ``day`` (UTC days).
        prefix: only tasks whose id starts with this.
        since: only calls started at or after this time (aware; UTC if naive).
        limit: at most this many groups (most expensive first; days: the latest).
        as_json: one JSON document ``{"site", "by", "prefix", "since", "groups": [...]}``
            instead, every group (no ``limit``).

    Returns:
        :data:`EXIT_OK`, or :data:`EXIT_BAD_ARGS` for an unknown ``by``.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the database is unreachable.
    """
    if by not in COST_KEYS:
        console.print(Text(f"cannot group cost by {by!r}; use one of {', '.join(COST_KEYS)}"))
        return EXIT_BAD_ARGS
    url = settings.db_url
    label = make_url(url).render_as_string(hide_password=True)
    path = sqlite_path(url) if is_sqlite(url) else None
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    rows: list[CostRow] = []
    if path is None or path.exists():
        async with Store(url) as store:
            rows = await cost_rollup(store, by, prefix=prefix, since=since)
    if as_json:
        doc = {"site": settings.site, "by": by, "prefix": prefix, "since": since, "groups": rows}
        print_json(console, doc)
        return EXIT_OK
    if path is not None and not path.exists():
        console.print(Text(f"no model calls recorded yet (no database at {label})"))
        return EXIT_OK
    scope = "".join(
        [
            f" for tasks {prefix}*" if prefix else "",
            f" since {since:%Y-%m-%d %H:%M}Z" if since else "",
        ]
    )
    if not rows:
        console.print(Text(f"no model calls recorded{scope} ({label})"))
        return EXIT_OK
    shown = rows[-limit:] if by == "day" else rows[:limit]
    more = f", top {limit} of {len(rows)}" if len(rows) > limit else ""
    console.print(_table(shown, by, f"model cost by {by}{scope}{more}"))
    if len(rows) > limit:
        all_ = total(rows)
        console.print(Text(f"all {len(rows)} groups: {all_.calls:,} calls, {fmt_cost(all_.cost)}"))
    return EXIT_OK


async def task_cost_lines(store: Store, task_id: str) -> list[str]:
    """Plain-text lines on the model cost of one task, for ``sitemesh show TASK_ID``.

    One summary line, then one line per agent and per model, e.g.::

        model calls: 3 (3 ok), 1,800 tokens in / 420 tokens out, 0.000522 USD
          agent planner: 2 calls, 1,200 / 300 tokens, 0.000360 USD
          model openai/gpt-4o-mini: 3 calls, 1,800 / 420 tokens, 0.000522 USD

    Args:
        store: the open state store.
        task_id: the task.

    Returns:
        The lines (no markup); ``["model calls: none recorded"]`` if there are none.
    """
    agents = await cost_rollup(store, "agent", task_id=task_id)
    if not agents:
        return ["model calls: none recorded"]
    models = await cost_rollup(store, "model", task_id=task_id)
    t = total(agents)
    unpriced = f" (+{t.unpriced} unpriced)" if t.unpriced else ""
    lines = [
        f"model calls: {t.calls:,} ({t.ok:,} ok), {t.tokens_in:,} tokens in / "
        f"{t.tokens_out:,} tokens out, {fmt_cost(t.cost)}{unpriced}"
    ]
    for label, rows in (("agent", agents), ("model", models)):
        lines.extend(
            f"  {label} {r.key or '-'}: {r.calls:,} call{'s' if r.calls != 1 else ''}, "
            f"{r.tokens_in:,} / {r.tokens_out:,} tokens, {fmt_cost(r.cost)}"
            for r in rows
        )
    return lines
