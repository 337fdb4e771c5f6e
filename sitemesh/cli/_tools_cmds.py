"""``sitemesh tools list|health``: the site's tools and how they are doing.

* ``list`` starts (or connects to) every configured tool server, as a worker would,
  and prints its tools with their transport and arguments (from their input schemas);
  a server that cannot be reached is listed with the reason.
* ``health`` reads what the site's worker processes publish in ``sitemesh_tools_<site>``
  (:mod:`sitemesh.runtime`): per tool and process, the breaker state, calls, errors,
  timeouts, rate limits, latency (p50/p95) and the last errors (PII-free).

Both take ``--json``. The commands are plain async functions returning an exit code
(0 ok, 2 error); :data:`tools_app` wires them into the ``sitemesh`` command line.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._kb_cmds import _console, _exit, _settings

if TYPE_CHECKING:
    from ..config import Settings
    from ..runtime import ToolHealthReport

EXIT_OK: Final = 0
EXIT_ERROR: Final = 2

tools_app = typer.Typer(
    help="Tools over MCP: list the configured tools, show their health.",
    no_args_is_help=True,
)

SiteOpt = Annotated[
    str | None, typer.Option("--site", help="Site name (default: SITEMESH_SITE or eu1).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


async def tools_list(settings: Settings, console: Console, *, as_json: bool = False) -> int:
    """Print every configured tool server and its tools.

    Args:
        settings: the site's settings (``tools.file``).
        console: where to print.
        as_json: one JSON document: ``{"site", "servers": [{"name", "transport",
            "endpoint", "side_effects", "error", "tools": [{"name", "description",
            "input_schema"}]}]}``.

    Returns:
        0, or 2 when the tools file is invalid or a server is unreachable.
    """
    from ..tools import ToolConfigError, ToolError, ToolRegistry

    try:
        registry = ToolRegistry.from_settings(settings)
    except ToolConfigError as exc:
        console.print(Text(f"error: {exc}", style="red"), soft_wrap=True)
        return EXIT_ERROR
    servers: list[dict[str, Any]] = []
    async with registry:
        for spec in registry.specs.values():
            row: dict[str, Any] = {
                "name": spec.name,
                "transport": spec.transport,
                "endpoint": spec.endpoint,
                "side_effects": spec.side_effects,
                "description": spec.description,
                "error": None,
                "tools": [],
            }
            try:
                tools = await registry.list_tools(spec.name)
            except ToolError as exc:
                row["error"] = str(exc)
            else:
                row["tools"] = [
                    {
                        "name": t.name,
                        "description": t.description,
                        "input_schema": t.input_schema,
                        "arguments": t.summary(),
                    }
                    for t in tools
                ]
            servers.append(row)
    failed = any(s["error"] for s in servers)
    if as_json:
        console.print_json(json.dumps({"site": settings.site, "servers": servers}))
        return EXIT_ERROR if failed else EXIT_OK
    table = Table(title=f"tools of site {settings.site}", title_justify="left")
    for col in ("tool", "transport", "side effects", "arguments"):
        table.add_column(col, overflow="fold")
    for s in servers:
        if s["error"]:
            table.add_row(Text(s["name"]), s["transport"], "", Text(s["error"], style="red"))
            continue
        for t in s["tools"]:
            table.add_row(
                Text(t["name"]),
                s["transport"],
                "yes" if s["side_effects"] else "no",
                Text(t["arguments"]),
            )
    console.print(table)
    for s in servers:
        console.print(Text(f"{s['name']}: {s['transport']} {s['endpoint']}", style="dim"))
    return EXIT_ERROR if failed else EXIT_OK


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}"


_BREAKER_STYLE: Final = {"closed": "green", "half_open": "yellow", "open": "red"}


def _breaker(state: str) -> Text:
    return Text(state, style=_BREAKER_STYLE.get(state, ""))


def _process(r: ToolHealthReport) -> Text:
    return Text(f"{r.role} {r.host}:{r.pid}")


def _health_table(site: str, reports: list[ToolHealthReport]) -> Table:
    table = Table(title=f"tool health of site {site}", title_justify="left")
    table.add_column("tool", overflow="fold")
    table.add_column("process", overflow="fold")
    table.add_column("breaker")
    for col in (
        "calls",
        "ok",
        "errors",
        "timeouts",
        "rate limits",
        "open",
        "replayed",
        "p50 ms",
        "p95 ms",
    ):
        table.add_column(col, justify="right")
    for r in reports:
        for h in r.tools:
            table.add_row(
                Text(h.tool),
                _process(r),
                _breaker(h.breaker),
                f"{h.calls:,}",
                f"{h.ok:,}",
                f"{h.errors:,}",
                f"{h.timeouts:,}",
                f"{h.rate_limited:,}",
                f"{h.circuit_open:,}",
                f"{h.replayed:,}",
                _ms(h.latency_ms_p50),
                _ms(h.latency_ms_p95),
            )
    return table


def _models_table(site: str, reports: list[ToolHealthReport]) -> Table:
    table = Table(title=f"model backends of site {site}", title_justify="left")
    table.add_column("provider", no_wrap=True)
    table.add_column("process", overflow="fold")
    table.add_column("breaker", no_wrap=True)
    for col in ("calls", "ok", "failed", "open", "probe in s"):
        table.add_column(col, justify="right")
    table.add_column("last error", overflow="fold", ratio=1)
    for r in reports:
        for m in r.models:
            table.add_row(
                Text(m.provider),
                _process(r),
                _breaker(m.breaker),
                f"{m.calls:,}",
                f"{m.ok:,}",
                f"{m.failed:,}",
                f"{m.circuit_open:,}",
                f"{m.retry_in_s:.1f}" if m.breaker == "open" else "-",
                Text(m.last_error or "-"),
            )
    return table


async def tools_health(settings: Settings, console: Console, *, as_json: bool = False) -> int:
    """Print the tool health the site's processes publish, and the breakers of their
    model backends.

    Args:
        settings: the site's settings (NATS: ``SITEMESH_NATS_URL`` or the embedded
            server running under ``state_dir``; nothing is started).
        console: where to print.
        as_json: one JSON document: ``{"site", "processes": [ToolHealthReport...]}``.

    Returns:
        0, or 2 when NATS is unreachable.
    """
    from nats.errors import Error as NatsError

    from ..errors import SitemeshError
    from ..runtime import connect, read_tool_health
    from ._nats import running_nats_url

    url = running_nats_url(settings)
    if url is None:
        console.print(
            Text("no NATS server is running for this site (set SITEMESH_NATS_URL)", style="red")
        )
        return EXIT_ERROR
    try:
        nc = await connect(settings, "operator", url=url, name="sitemesh-tools")
        try:
            reports = await read_tool_health(nc.jetstream(), settings.site)
        finally:
            await nc.drain()
    except (SitemeshError, NatsError, OSError) as exc:
        console.print(Text(f"tools health failed: {type(exc).__name__}: {exc}", style="red"))
        return EXIT_ERROR
    if as_json:
        doc = {"site": settings.site, "processes": msgspec.to_builtins(reports)}
        console.print_json(json.dumps(doc))
        return EXIT_OK
    if any(r.models for r in reports):
        console.print(_models_table(settings.site, reports))
    if not any(r.tools for r in reports):
        console.print(
            Text(
                f"no tool calls reported at site {settings.site} yet "
                "(processes publish once they called a tool)"
            )
        )
        return EXIT_OK
    console.print(_health_table(settings.site, reports))
    errors = [(r, h, e) for r in reports for h in r.tools for e in h.last_errors]
    if errors:
        console.print(Text("last errors", style="bold"))
        for r, h, e in sorted(errors, key=lambda x: x[2].at)[-20:]:
            console.print(
                Text(f"  {e.at:%H:%M:%S} {h.tool} ({r.role}:{r.pid}) {e.kind}: {e.reason}"),
                soft_wrap=True,
            )
    return EXIT_OK


# -- the typer group ------------------------------------------------------------------


@tools_app.command("list")
def list_cmd(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """The configured tools, their transport and arguments (starts their servers)."""
    _exit(tools_list(_settings(site), _console(), as_json=as_json))


@tools_app.command("health")
def health_cmd(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """Per tool and process: breaker, calls, errors, rate limits, latency, last errors."""
    _exit(tools_health(_settings(site), _console(), as_json=as_json))
