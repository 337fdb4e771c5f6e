"""``sitemesh telemetry add|list|show|remove``: the site's telemetry sources.

A source is checked here (opened and read once: devices, series, lines, time span)
and its spec stored as ``telemetry/<name>`` in the site's artifact bucket; the site's
diagnostics workers read it when an alert names it (``telemetry_source``) and
``sitemesh watch NAME`` tails it. The data itself stays where it is. The bundled
``cisco-leaf7`` capture is listed too and cannot be removed.

The commands are plain async functions returning an exit code (0 ok, 1 not found,
2 error); :data:`telemetry_app` wires them into the ``sitemesh`` command line.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._kb_cmds import (
    EXIT_ERROR,
    EXIT_NOT_FOUND,
    EXIT_OK,
    JsonOpt,
    SiteOpt,
    _bucket,
    _console,
    _err,
    _exit,
    _settings,
)

if TYPE_CHECKING:
    from ..config import Settings
    from ..sources import SourceSpec, SourceSummary

KINDS: Final = ("auto", "series", "prometheus_text", "logs", "prometheus_api")
"""Accepted ``--kind`` values (``auto``: :func:`sitemesh.sources.infer_kind`)."""

telemetry_app = typer.Typer(
    help="Telemetry sources of the site: metric series (CSV/Parquet), Prometheus text / "
    "OpenMetrics files, log files, a Prometheus HTTP API; add, list, show, remove.",
    no_args_is_help=True,
)


def build_spec(
    name: str,
    location: str,
    *,
    kind: str = "auto",
    device_label: str | None = None,
    queries: list[str] | None = None,
    step_seconds: float | None = None,
    time_pattern: str | None = None,
    time_format: str | None = None,
    timeout_seconds: float | None = None,
) -> SourceSpec:
    """The spec ``telemetry add`` stores: a local path made absolute, the kind inferred
    when ``auto``, unset options left at their defaults.

    Raises:
        SourceError: a bad name, kind or option (names the field).
    """
    import msgspec

    from ..sources import SourceError, infer_kind, parse_spec

    if kind not in KINDS:
        raise SourceError(f"--kind {kind!r}: expected one of {', '.join(KINDS)}", field="kind")
    if "://" not in location:
        location = str(Path(location).expanduser().resolve())
    raw: dict[str, Any] = {
        "name": name,
        "kind": infer_kind(location) if kind == "auto" else kind,
        "location": location,
    }
    for key, value in (
        ("device_label", device_label),
        ("queries", queries or None),
        ("step_seconds", step_seconds),
        ("time_pattern", time_pattern),
        ("time_format", time_format),
        ("timeout_seconds", timeout_seconds),
    ):
        if value is not None:
            raw[key] = value
    return parse_spec(msgspec.json.encode(raw))


def _probe(spec: SourceSpec) -> SourceSummary:
    from ..sources import open_source

    return open_source(spec).describe()


def _span(first: object, last: object) -> str:
    if not first and not last:
        return "-"
    return f"{first or '?'} .. {last or '?'}"


async def telemetry_add(settings: Settings, console: Console, spec: SourceSpec) -> int:
    """Check ``spec`` by reading the source once, then store it at the site.

    Returns:
        0 stored, 2 error (printed as one line).

    Raises:
        SourceError: the source cannot be read (printed by the CLI).
        BusConnectionError: NATS cannot be reached.
    """
    from nats.errors import Error as NatsError

    from ..sources import publish_source

    summary = await asyncio.to_thread(_probe, spec)
    if not summary.series and not summary.log_lines and spec.kind != "prometheus_api":
        return _err(console, f"{spec.location}: no series or log lines found ({spec.kind})")
    try:
        async with _bucket(settings, console, create=True) as bucket:
            assert bucket is not None  # created
            await publish_source(bucket, spec, summary)
    except NatsError as exc:
        return _err(console, f"telemetry add: NATS refused: {type(exc).__name__}: {exc}")
    devices = ", ".join(summary.devices[:5]) + (" ..." if len(summary.devices) > 5 else "")
    console.print(
        f"stored telemetry/{spec.name} at site {settings.site}: {spec.kind} {spec.location}; "
        f"{summary.series} series, {summary.log_lines} log line(s), devices "
        f"{devices or '(any: the data names none)'}, "
        f"{_span(summary.first, summary.last)}; alerts may now name "
        f'"telemetry_source": "{spec.name}"',
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK


def _spec_row(spec: SourceSpec, origin: str, meta: dict[str, str]) -> dict[str, Any]:
    import msgspec

    row: dict[str, Any] = {"origin": origin, **msgspec.to_builtins(spec)}
    row["checked"] = {
        k: meta[k] for k in ("devices", "series", "log_lines", "first", "last") if k in meta
    }
    return row


def _bundled_rows() -> list[dict[str, Any]]:
    from ..sources import BUNDLED_SOURCES

    return [
        {
            "origin": "bundled",
            "name": name,
            "kind": "cisco_mdt",
            "location": "(packaged)",
            "description": text,
        }
        for name, text in BUNDLED_SOURCES.items()
    ]


async def telemetry_list(settings: Settings, console: Console, *, as_json: bool = False) -> int:
    """Print the bundled and the site's telemetry sources.

    Returns:
        0, or 2 when the site's sources could not be read (the bundled ones are printed
        anyway, then the reason).
    """
    from nats.errors import Error as NatsError

    from ..errors import SitemeshError
    from ..sources import list_sources

    rows = _bundled_rows()
    problem = None
    try:
        async with _bucket(settings, console, create=False, inspect_only=True) as bucket:
            if bucket is not None:
                rows += [_spec_row(s, "site", m) for s, m in await list_sources(bucket)]
    except (SitemeshError, NatsError, OSError) as exc:
        problem = f"site telemetry sources not read: {exc}"
    if as_json:
        console.print_json(json.dumps({"site": settings.site, "sources": rows, "error": problem}))
        return EXIT_ERROR if problem else EXIT_OK
    table = Table(title=f"telemetry sources of site {settings.site}", title_justify="left")
    for col in ("name", "origin", "kind", "location", "checked"):
        table.add_column(col, overflow="fold")
    for r in rows:
        checked = r.get("checked") or {}
        said = (
            f"{checked.get('series', '?')} series, {checked.get('log_lines', '?')} lines, "
            f"{checked.get('devices', '?')} device(s)"
            if checked
            else r.get("description", "")
        )
        table.add_row(Text(r["name"], "bold"), r["origin"], r["kind"], r["location"], said)
    console.print(table)
    if problem:
        return _err(console, problem)
    return EXIT_OK


async def telemetry_show(
    settings: Settings, console: Console, name: str, *, as_json: bool = False
) -> int:
    """Print source ``name``'s spec and what it holds now (read again).

    Returns:
        0, 1 no such source, 2 it cannot be read now.
    """
    import msgspec

    from ..sources import BUNDLED_SOURCES, SourceError, SourceNotFound, fetch_source

    if name in BUNDLED_SOURCES:
        row = next(r for r in _bundled_rows() if r["name"] == name)
        if as_json:
            console.print_json(json.dumps(row))
        else:
            console.print(f"{name} (bundled): {row['description']}", highlight=False)
        return EXIT_OK
    try:
        async with _bucket(settings, console, create=False, inspect_only=True) as bucket:
            if bucket is None:
                raise SourceNotFound(name)
            spec = await fetch_source(bucket, name)
    except SourceNotFound:
        console.print(Text(f"no telemetry source {name!r} at site {settings.site}", "red"))
        return EXIT_NOT_FOUND
    out: dict[str, Any] = {"site": settings.site, **msgspec.to_builtins(spec)}
    try:
        summary = await asyncio.to_thread(_probe, spec)
        out["now"] = {
            "devices": summary.devices,
            "series": summary.series,
            "log_lines": summary.log_lines,
            "first": summary.first.isoformat() if summary.first else None,
            "last": summary.last.isoformat() if summary.last else None,
        }
        problem = None
    except SourceError as exc:
        problem = str(exc)
        out["error"] = problem
    if as_json:
        console.print_json(json.dumps(out))
    else:
        for key, value in out.items():
            console.print(f"[bold]{key}[/bold]: {value}", highlight=False, soft_wrap=True)
    return EXIT_ERROR if problem else EXIT_OK


async def telemetry_remove(settings: Settings, console: Console, name: str) -> int:
    """Remove site source ``name``; alerts that still name it are dead-lettered.

    Returns:
        0 removed, 1 no such source, 2 the bundled one was named.
    """
    from nats.errors import Error as NatsError

    from ..sources import BUNDLED_SOURCES, SourceNotFound, remove_source

    if name in BUNDLED_SOURCES:
        return _err(console, f"{name} is a bundled telemetry source and cannot be removed")
    try:
        async with _bucket(settings, console, create=False) as bucket:
            if bucket is None:
                raise SourceNotFound(name)
            await remove_source(bucket, name)
    except SourceNotFound:
        console.print(Text(f"no telemetry source {name!r} at site {settings.site}", "red"))
        return EXIT_NOT_FOUND
    except NatsError as exc:
        return _err(console, f"telemetry remove: NATS refused: {type(exc).__name__}: {exc}")
    console.print(f"removed telemetry/{name} from site {settings.site}", highlight=False)
    return EXIT_OK


# -- the typer group ------------------------------------------------------------------


@telemetry_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Source name (a-z, 0-9, _, . and -).")],
    source: Annotated[
        str,
        typer.Argument(
            help="A folder or file of CSV/Parquet series, Prometheus text/OpenMetrics files "
            "or logs (plain or JSON lines), or a Prometheus URL (http://host:9090)."
        ),
    ],
    kind: Annotated[
        str, typer.Option("--kind", help="auto, series, prometheus_text, logs, prometheus_api.")
    ] = "auto",
    device_label: Annotated[
        str | None,
        typer.Option("--device-label", help="Label, column or JSON field naming the device."),
    ] = None,
    query: Annotated[
        list[str] | None,
        typer.Option(
            "--query",
            help="PromQL for prometheus_api ({device} is the alert's device); repeatable.",
        ),
    ] = None,
    step: Annotated[
        float | None, typer.Option("--step", help="prometheus_api query step, seconds.")
    ] = None,
    time_pattern: Annotated[
        str | None,
        typer.Option("--time-pattern", help="Plain logs: regex with a (?P<time>...) group."),
    ] = None,
    time_format: Annotated[
        str | None, typer.Option("--time-format", help="strptime format of that group.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="prometheus_api HTTP timeout, seconds.")
    ] = None,
    site: SiteOpt = None,
) -> None:
    """Check SOURCE (read it once) and register it on the site as NAME."""
    from ._app import _run_sync

    holder: list[SourceSpec] = []

    def build() -> int:
        holder.append(
            build_spec(
                name,
                source,
                kind=kind,
                device_label=device_label,
                queries=query,
                step_seconds=step,
                time_pattern=time_pattern,
                time_format=time_format,
                timeout_seconds=timeout,
            )
        )
        return EXIT_OK

    if (code := _run_sync(build)) != EXIT_OK:
        raise typer.Exit(code)
    _exit(telemetry_add(_settings(site), _console(), holder[0]))


@telemetry_app.command("list")
def list_cmd(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """List the bundled and the site's telemetry sources."""
    _exit(telemetry_list(_settings(site), _console(), as_json=as_json))


@telemetry_app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(help="Source name.")],
    site: SiteOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a source's spec and what it holds now (devices, series, lines, time span)."""
    _exit(telemetry_show(_settings(site), _console(), name, as_json=as_json))


@telemetry_app.command("remove")
def remove_cmd(
    name: Annotated[str, typer.Argument(help="Source name.")], site: SiteOpt = None
) -> None:
    """Remove a site source (the data itself is left alone)."""
    _exit(telemetry_remove(_settings(site), _console(), name))
