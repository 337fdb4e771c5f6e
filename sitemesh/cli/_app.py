"""The ``sitemesh`` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from ..config import Settings, load_settings
from ..errors import SitemeshError

app = typer.Typer(
    name="sitemesh",
    help="AI agents across on-prem sites and the cloud, on NATS JetStream.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)

SiteOpt = Annotated[
    str | None, typer.Option("--site", help="Site name (default: SITEMESH_SITE or eu1).")
]


def _settings(site: str | None = None) -> Settings:
    return load_settings(site=site) if site else load_settings()


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a coroutine, turning sitemesh errors into a message and exit code 2."""
    try:
        result = asyncio.run(coro)
    except SitemeshError as exc:
        err_console.print(f"[bold red]error:[/bold red] {exc}")
        return 2
    return int(result or 0)


def _logging(level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


@app.command()
def worker(
    role: Annotated[
        str,
        typer.Argument(
            help="router, retriever, diagnostics, planner, validator, escalation or recorder"
        ),
    ],
    site: SiteOpt = None,
) -> None:
    """Run one role of a site until SIGTERM/SIGINT (several processes of a role share its work)."""
    from ..edge_node import run_role

    _logging()
    raise typer.Exit(_run(run_role(_settings(site), role)))


@app.command()
def edge(
    site: SiteOpt = None,
    replicas: Annotated[int, typer.Option(help="Processes per agent role.")] = 1,
) -> None:
    """Run a site's whole set: embedded NATS (unless SITEMESH_NATS_URL is set), the
    recorder, the router and the five agents, each as its own process."""
    from ._run import run_edge

    _logging()
    raise typer.Exit(_run(run_edge(_settings(site), console, replicas=replicas)))


@app.command()
def publish(
    files: Annotated[
        list[Path], typer.Argument(exists=True, dir_okay=False, help=".json or .jsonl task files")
    ],
    site: SiteOpt = None,
    task_id_prefix: Annotated[str, typer.Option(help="Prefix for derived task ids.")] = "",
    raw: Annotated[
        str | None,
        typer.Option(
            "--raw", metavar="KIND", help="Publish bytes unchecked on this kind's subject."
        ),
    ] = None,
) -> None:
    """Publish tasks onto sm.v1.task.<site>.<kind> and print one task id per line."""
    from ._run import run_publish

    raise typer.Exit(_run(run_publish(_settings(site), console, files, task_id_prefix, raw)))


@app.command()
def status(site: SiteOpt = None) -> None:
    """Counts of tasks by status, outcome and data class, and the latest tasks."""
    from ._state_cmds import show_status

    raise typer.Exit(_run(show_status(_settings(site), console)))


@app.command()
def show(task_id: str, site: SiteOpt = None) -> None:
    """A task's steps, policy decision, outcome, dead letters and timings."""
    from ._state_cmds import show_task

    raise typer.Exit(_run(show_task(_settings(site), task_id, console)))


@app.command()
def schemas(
    check: Annotated[bool, typer.Option(help="Fail if the checked-in schemas are stale.")] = False,
) -> None:
    """Generate the JSON Schemas of every message into sitemesh/schemas/json/."""
    from ..schemas import json_schemas, write_json_schemas
    from ..schemas._jsonschema import SCHEMA_DIR

    if check:
        stale = [
            n
            for n, t in json_schemas().items()
            if not (SCHEMA_DIR / n).exists() or (SCHEMA_DIR / n).read_text("utf-8") != t
        ]
        if stale:
            err_console.print(f"stale JSON Schemas: {stale}; run `sitemesh schemas`")
            raise typer.Exit(1)
        console.print("JSON Schemas are up to date")
        return
    for path in write_json_schemas():
        console.print(f"wrote {path}")


@app.command()
def demo(
    site: SiteOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Example data folder (default: examples/data).")
    ] = None,
    timeout_s: Annotated[
        float, typer.Option(help="Seconds to wait for every task to end.")
    ] = 600.0,
) -> None:
    """The main job on the embedded default: NATS, every worker as a process, real
    tickets and telemetry alerts in, answers and dead letters out, a summary."""
    from ._demo import run_demo

    _logging(logging.WARNING)
    raise typer.Exit(_run(run_demo(_settings(site), console, data_dir=data, timeout_s=timeout_s)))


def main() -> None:
    """Console-script entry point."""
    app()
