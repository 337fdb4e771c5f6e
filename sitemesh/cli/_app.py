"""The ``sitemesh`` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ..config import Settings, load_settings
from ..errors import SitemeshError
from ..logs import configure_logging, logging_configured
from ._kb_cmds import kb_app
from ._telemetry_cmds import telemetry_app
from ._tools_cmds import tools_app
from ._triage_cmds import triage_app

EXIT_ERROR = 2
"""Exit code of a command that failed with an error it names in one line."""
EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT, as a shell reports it)."""

_DB_MODULES = ("sqlalchemy", "asyncpg", "aiosqlite", "sqlite3", "sitemesh.state")


def _raised_in(exc: BaseException, prefixes: tuple[str, ...]) -> bool:
    """Whether ``exc`` was raised through a module whose name starts with a prefix."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith(prefixes):
            return True
        tb = tb.tb_next
    return False


def _database() -> str:
    """The state database, without its password, as the settings name it."""
    from ..bus import redact_url

    try:
        return f"the database at {redact_url(load_settings().db_url)} (SITEMESH_DB_URL)"
    except Exception:  # the settings are what is wrong: said on their own
        return "the database (SITEMESH_DB_URL)"


def _error_line(exc: BaseException) -> str | None:
    """What a command failing with ``exc`` prints on one line; ``None``: not an error
    we can name (a bug: let its traceback through)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from ..config import describe_settings_error

    if (isinstance(exc, ValidationError) and exc.title == "Settings") or isinstance(
        exc, SettingsError
    ):
        return f"invalid setting: {describe_settings_error(exc)}"
    if isinstance(exc, SitemeshError):
        return str(exc)
    sa = sys.modules.get("sqlalchemy.exc")  # not imported: not a database error
    if sa is not None and isinstance(exc, sa.DBAPIError):
        orig = exc.orig if exc.orig is not None else exc
        return f"cannot use {_database()}: {type(orig).__name__}: {orig}"
    if isinstance(exc, OSError):
        if _raised_in(exc, _DB_MODULES):
            return f"cannot reach {_database()}: {type(exc).__name__}: {exc}"
        return f"{type(exc).__name__}: {exc}"
    nats_errors = sys.modules.get("nats.errors")
    if nats_errors is not None and isinstance(exc, nats_errors.Error):
        return f"NATS: {type(exc).__name__}: {exc}"
    return None


def _failure(exc: BaseException) -> int | None:
    """Print what ``exc`` means on one line of stderr and return the exit code:
    :data:`EXIT_INTERRUPTED` after Ctrl-C, :data:`EXIT_ERROR` for an error we can
    name (a bad setting, an unreachable database or NATS, a sitemesh error); ``None``
    (nothing printed) for anything else."""
    if isinstance(exc, KeyboardInterrupt):
        err_console.print("interrupted", highlight=False)
        return EXIT_INTERRUPTED
    if not isinstance(exc, Exception):
        return None
    line = _error_line(exc)
    if line is None:
        return None
    from ..bus import redact_url

    one_line = " ".join(redact_url(line).split())
    err_console.print(
        f"[bold red]error:[/bold red] {escape(one_line)}", soft_wrap=True, highlight=False
    )
    return EXIT_ERROR


class _Commands(TyperGroup):
    """The root command: whatever a command raises that :func:`_failure` can name
    (a bad setting while it loads its settings, Ctrl-C at any point) ends it with
    one line on stderr and an exit code, not a traceback."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click.Context
        try:
            return super().invoke(ctx)
        except (KeyboardInterrupt, Exception) as exc:
            code = _failure(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None


app = typer.Typer(
    name="sitemesh",
    help="AI agents across on-prem sites and the cloud, on NATS JetStream.",
    cls=_Commands,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        console.print(f"sitemesh {version('sitemesh')}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """AI agents across on-prem sites and the cloud, on NATS JetStream."""

SiteOpt = Annotated[
    str | None, typer.Option("--site", help="Site name (default: SITEMESH_SITE or eu1).")
]
InsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Run the embedded nats-server WITHOUT authentication (default: one NKey "
        "identity per role under <state>/creds). Any local process could then read and "
        "forge messages; for a machine you alone use.",
    ),
]

HybridInsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Run the hub and sites WITHOUT per-role identities and TLS, on the shared "
        "per-account passwords (default: one NKey identity per role and mutual TLS, under "
        "<state>/topology/creds and certs). Every process could then act as any role of "
        "its account; for a machine you alone use.",
    ),
]
DemoInsecureOpt = Annotated[
    bool,
    typer.Option(
        "--insecure",
        help="Run the embedded nats-server WITHOUT authentication (with --sites: the hub "
        "and sites without per-role identities and TLS, on shared passwords). Default: "
        "one NKey identity per role. For a machine you alone use.",
    ),
]


def _settings(site: str | None = None) -> Settings:
    """The command's settings; with ``SITEMESH_LOG_FORMAT=json`` and logging not set
    up yet (:func:`_logging`), its warnings are logged as JSON lines from now on."""
    settings = load_settings(site=site) if site else load_settings()
    if settings.log_format == "json" and not logging_configured():
        configure_logging(settings, level=logging.WARNING)
    return settings


def _run(coro: Coroutine[Any, Any, int | None]) -> int:
    """Run a coroutine; an error :func:`_failure` can name (a sitemesh error, an
    unreachable database or NATS) or Ctrl-C becomes one line and its exit code."""
    try:
        result = asyncio.run(coro)
    except (KeyboardInterrupt, Exception) as exc:
        code = _failure(exc)
        if code is None:
            raise
        return code
    return int(result or 0)


def _run_sync(fn: Callable[[], int]) -> int:
    """Run ``fn``; errors and Ctrl-C as in :func:`_run`."""
    try:
        return fn()
    except (KeyboardInterrupt, Exception) as exc:
        code = _failure(exc)
        if code is None:
            raise
        return code


def _logging(
    level: int = logging.INFO, *, site: str | None = None, role: str | None = None
) -> None:
    """Log to stderr from ``level`` up, in ``SITEMESH_LOG_FORMAT`` (JSON lines carry
    ``service.name`` ``sitemesh-<role>``, the site and the role)."""
    configure_logging(_settings(site), role=role, level=level)


@app.command()
def worker(
    role: Annotated[
        str | None,
        typer.Argument(
            help="an agent role (`sitemesh agents` lists them), or recorder, router, relay "
            "(site EGRESS), synthesiser (hub); omit it with a single --agent"
        ),
    ] = None,
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent",
            metavar="MODULE:CLASS",
            help="Register this agent class by import path (repeatable).",
        ),
    ] = None,
    with_: Annotated[
        list[str] | None,
        typer.Option(
            "--with",
            metavar="ROLE",
            help="Run this agent role in the same process too (repeatable): work items "
            "between its roles are handed over in memory instead of over the bus.",
        ),
    ] = None,
    site: SiteOpt = None,
) -> None:
    """Run one role of a site until SIGTERM/SIGINT (several processes of a role share its work)."""
    from ..runtime import catch_early_signals

    catch_early_signals()
    from ..runtime import run_role

    _logging(site=site, role=role)
    together = tuple(r for value in with_ or () for r in value.split(",") if r)
    raise typer.Exit(
        _run(run_role(_settings(site), role, agents=tuple(agent or ()), colocate=together))
    )


@app.command()
def edge(
    site: SiteOpt = None,
    replicas: Annotated[int, typer.Option(help="Processes per agent role.")] = 1,
    agent: Annotated[
        list[str] | None,
        typer.Option("--agent", metavar="MODULE:CLASS", help="Also run this agent (repeatable)."),
    ] = None,
    local_model: Annotated[
        bool,
        typer.Option(help="Plan with SmolLM2-135M on this CPU (llama.cpp server process)."),
    ] = False,
    insecure: InsecureOpt = False,
    colocate: Annotated[
        bool,
        typer.Option(
            help="Run the agent roles together in one process (per replica): each step "
            "hands the next its work in memory, fewer bus hops per task; each role keeps "
            "its own NATS identity.",
        ),
    ] = False,
    console_port: Annotated[
        int | None,
        typer.Option(
            "--console",
            metavar="PORT",
            help="Also serve the operator console on 127.0.0.1:PORT once the site is "
            "ready (users: <state>/console-users.toml, see `sitemesh console-user`).",
        ),
    ] = None,
) -> None:
    """Run a site's whole set: embedded NATS (unless SITEMESH_NATS_URL is set), the
    recorder, the router and a process per agent role the workflows in force name
    (installed agents, plus those named with --agent), each as its own process
    (--colocate: the agent roles in one); with --local-model also a local model
    server the planner calls."""
    from ._run import run_edge

    _logging(site=site)
    agents = tuple(agent or ())
    if local_model:
        from ._local_model import run_edge_local

        raise typer.Exit(_run(run_edge_local(
            _settings(site), console, replicas=replicas, agents=agents, insecure=insecure,
            colocate=colocate, console_port=console_port,
        )))  # fmt: skip
    raise typer.Exit(_run(run_edge(_settings(site), console, replicas=replicas, agents=agents,
                                   insecure=insecure, colocate=colocate,
                                   console_port=console_port)))  # fmt: skip


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
    tenant: Annotated[
        str | None,
        typer.Option(
            help="Publish as this tenant's client identity (client-<tenant>), on "
            "sm.v1.task.<site>.<tenant>.<kind>."
        ),
    ] = None,
    allow_unserved: Annotated[
        bool,
        typer.Option(
            help="Publish even when no router is ready at the site (the tasks wait on its "
            "task stream until one is)."
        ),
    ] = False,
) -> None:
    """Publish tasks onto sm.v1.task.<site>.<kind> and print one task id per line
    (exit 3, publishing nothing, when no router is ready there unless --allow-unserved)."""
    from ._run import run_publish

    run = run_publish(
        _settings(site), console, files, task_id_prefix, raw, tenant=tenant,
        allow_unserved=allow_unserved,
    )  # fmt: skip
    raise typer.Exit(_run(run))


@app.command()
def watch(
    source: Annotated[
        str, typer.Argument(help="A telemetry source of the site (`sitemesh telemetry list`).")
    ],
    device: Annotated[
        list[str] | None,
        typer.Option("--device", help="Watch only this device (repeatable)."),
    ] = None,
    interval: Annotated[float, typer.Option(help="Seconds between polls.")] = 30.0,
    once: Annotated[bool, typer.Option("--once", help="Poll once, then exit.")] = False,
    since: Annotated[
        datetime | None,
        typer.Option(
            help="First poll reads from this time (a backfill), not the lookback.",
            formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"],
        ),
    ] = None,
    tenant: Annotated[str, typer.Option(help="Tenant of the raised alerts.")] = "default",
    task_id_prefix: Annotated[str, typer.Option(help="Prefix for the derived task ids.")] = "",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the alerts; publish nothing.")
    ] = False,
    site: SiteOpt = None,
) -> None:
    """Tail a telemetry source and publish a telemetry alert per new incident (one per
    incident, ids derived from it, state kept under the state dir)."""
    from ._watch_cmds import run_watch

    try:
        code = _run(
            run_watch(
                _settings(site),
                console,
                source,
                devices=list(device or ()),
                interval=interval,
                once=once,
                since=since,
                tenant=tenant,
                dry_run=dry_run,
                id_prefix=task_id_prefix,
            )
        )
    except KeyboardInterrupt:
        code = 130
    raise typer.Exit(code)


@app.command()
def status(
    site: SiteOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Counts of tasks by status, outcome and data class, the latest tasks, and per role
    its ready workers and queued work on NATS (roles with work and no worker in red);
    with --site, of that site's tasks only (sites may share one database)."""
    from ._state_cmds import show_status

    raise typer.Exit(_run(show_status(_settings(site), console, as_json=as_json, site=site)))


@app.command()
def trim(
    site: SiteOpt = None,
    watch: Annotated[
        bool, typer.Option(help="Keep trimming every few seconds until interrupted.")
    ] = False,
) -> None:
    """Remove the work streams' processed history: older than bus.max_age_s, or all of
    it once a stream is nearly full; never what a consumer has yet to settle.
    `sitemesh edge` does this itself; run it where workers run without edge."""
    from ._trim_cmds import run_trim

    raise typer.Exit(_run(run_trim(_settings(site), console, watch=watch)))


@app.command()
def show(
    task_id: str,
    site: SiteOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """A task's steps, policy decision, triage, plan, customer message, proposal, what
    left the site, outcome, dead letters and timings."""
    from ._state_cmds import show_task

    raise typer.Exit(_run(show_task(_settings(site), task_id, console, as_json=as_json, site=site)))


@app.command()
def approvals(
    site: SiteOpt = None,
    status_: Annotated[
        str, typer.Option("--status", help="pending, approved, rejected or all.")
    ] = "pending",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Tasks parked by a require_approval rule, and past decisions."""
    from ..state import ApprovalStatus
    from ._approvals_cmds import approvals_list

    choices: dict[str, ApprovalStatus | None] = {
        "pending": "pending", "approved": "approved", "rejected": "rejected", "all": None,
    }  # fmt: skip
    if status_ not in choices:
        err_console.print(f"--status must be one of {sorted(choices)}, not {status_!r}")
        raise typer.Exit(2)
    raise typer.Exit(
        _run(approvals_list(_settings(site), console, status=choices[status_], as_json=as_json))
    )


def _decide(approval_id: str, site: str | None, by: str | None, reason: str, yes: bool) -> int:
    from ._approvals_cmds import approve as approve_cmd
    from ._approvals_cmds import default_who
    from ._approvals_cmds import reject as reject_cmd

    fn = approve_cmd if yes else reject_cmd
    return _run(fn(_settings(site), approval_id, by or default_who(), reason, console))


ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides (default: your OS user).")]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (recorded).")]


@app.command()
def approve(
    approval_id: str, site: SiteOpt = None, by: ByOpt = None, reason: ReasonOpt = ""
) -> None:
    """Approve a parked task (by approval id or task id); it continues at once."""
    raise typer.Exit(_decide(approval_id, site, by, reason, yes=True))


@app.command()
def reject(
    approval_id: str, site: SiteOpt = None, by: ByOpt = None, reason: ReasonOpt = ""
) -> None:
    """Reject a parked task; it ends with a task_failed event naming who and why."""
    raise typer.Exit(_decide(approval_id, site, by, reason, yes=False))


@app.command()
def policy(
    rules: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="Rules file to publish.")
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="Publish as this site's override only.")
    ] = None,
) -> None:
    """Show the policy in force (NATS KV), or validate and publish RULES live to every router."""
    from ._run import run_policy

    text = rules.read_text("utf-8") if rules is not None else None
    raise typer.Exit(_run(run_policy(_settings(), console, text, site)))


AgentOpt = Annotated[
    list[str] | None,
    typer.Option("--agent", metavar="MODULE:CLASS", help="Register an agent by import path."),
]


@app.command()
def agents(
    agent: AgentOpt = None,
    schemas_dir: Annotated[
        Path | None,
        typer.Option("--schemas", help="Write each role's input/output JSON Schemas here."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the agent roles installed (entry points) or named (--agent): role, input,
    output, zones and where each came from."""
    from ._agent_cmds import list_agents

    raise typer.Exit(
        _run_sync(lambda: list_agents(console, tuple(agent or ()), schemas_dir=schemas_dir,
                                      as_json=as_json))
    )  # fmt: skip


@app.command()
def workflows(
    file: Annotated[
        Path | None,
        typer.Argument(exists=True, dir_okay=False, help="Workflows file (TOML) to publish."),
    ] = None,
    site: Annotated[
        str | None, typer.Option("--site", help="Publish as this site's override only.")
    ] = None,
    agent: AgentOpt = None,
    check: Annotated[
        bool, typer.Option("--check", help="Validate FILE against the registry; publish nothing.")
    ] = False,
) -> None:
    """Show the workflows in force (NATS KV), or check FILE against the agent registry and
    the policy and publish it live to every router."""
    from ._agent_cmds import run_workflows

    raise typer.Exit(
        _run(run_workflows(_settings(), console, file,
                           file.read_text("utf-8") if file is not None else None, site=site,
                           agent_paths=tuple(agent or ()), check_only=check))
    )  # fmt: skip


@app.command()
def schemas(
    check: Annotated[bool, typer.Option(help="Fail if the checked-in schemas are stale.")] = False,
) -> None:
    """Generate the JSON Schemas of every message into sitemesh/schemas/json/, and of a
    telemetry source spec into sitemesh/sources/."""
    from ..schemas import SCHEMA_DIR, json_schemas, write_json_schemas
    from ..sources import SPEC_SCHEMA_FILE, spec_json_schema

    spec = SPEC_SCHEMA_FILE
    if check:
        stale = [
            n
            for n, t in json_schemas().items()
            if not (SCHEMA_DIR / n).exists() or (SCHEMA_DIR / n).read_text("utf-8") != t
        ]
        if not spec.exists() or spec.read_text("utf-8") != spec_json_schema():
            stale.append(spec.name)
        if stale:
            err_console.print(f"stale JSON Schemas: {stale}; run `sitemesh schemas`")
            raise typer.Exit(1)
        console.print("JSON Schemas are up to date")
        return
    for path in write_json_schemas():
        console.print(f"wrote {path}")
    spec.write_text(spec_json_schema(), encoding="utf-8")
    console.print(f"wrote {spec}")


@app.command()
def demo(
    site: SiteOpt = None,
    data: Annotated[
        Path | None, typer.Option(help="Example data folder (default: examples/data).")
    ] = None,
    timeout_s: Annotated[
        float, typer.Option(help="Seconds to wait for every task to end.")
    ] = 600.0,
    sites: Annotated[
        str | None,
        typer.Option(help="Run across a hub and these sites (eu1,us1) instead of one site."),
    ] = None,
    local_model: Annotated[
        bool,
        typer.Option(
            "--local-model",
            help="The planner calls SmolLM2-135M on CPU (the `local` extra); runs a sample "
            "of the tasks, since each model plan takes tens of seconds here.",
        ),
    ] = False,
    insecure: DemoInsecureOpt = False,
) -> None:
    """The main job on the embedded default: NATS, every worker as a process, real
    tickets and telemetry alerts in, answers and dead letters out, a summary."""
    _logging(logging.WARNING)
    if sites:
        from ._demo_hybrid import run_hybrid_demo

        names = [s.strip() for s in sites.split(",") if s.strip()]
        raise typer.Exit(_run(run_hybrid_demo(_settings(), console, names, timeout_s=timeout_s,
                                              insecure=insecure)))  # fmt: skip
    from ._demo import run_demo

    raise typer.Exit(
        _run(
            run_demo(
                _settings(site), console, data_dir=data, timeout_s=timeout_s,
                local_model=local_model, insecure=insecure,
            )
        )
    )  # fmt: skip


@app.command()
def up(
    sites: Annotated[str, typer.Option(help="Comma-separated site names.")] = "eu1,us1",
    insecure: HybridInsecureOpt = False,
    console_port: Annotated[
        int | None,
        typer.Option(
            "--console",
            metavar="PORT",
            help="Also serve each site's operator console on 127.0.0.1 (site i on PORT+i) "
            "once ready (users: <state>/console-users.toml, see `sitemesh console-user`).",
        ),
    ] = None,
) -> None:
    """A cloud hub and one leaf nats-server per site on this machine, with every
    site's workers and the cloud agents; prints the URLs and runs until stopped.
    Every server requires a per-role identity and mutual TLS (generated under
    <state>/topology on the first start, reused after) unless --insecure."""
    from ._hybrid import run_up

    _logging(logging.WARNING)
    names = [s.strip() for s in sites.split(",") if s.strip()]
    raise typer.Exit(_run(run_up(_settings(), console, names, insecure=insecure,
                                 console_port=console_port)))  # fmt: skip


@app.command()
def cost(
    site: SiteOpt = None,
    by: Annotated[str, typer.Option(help="task, agent, model, tenant or day.")] = "task",
    prefix: Annotated[str | None, typer.Option(help="Only tasks whose id starts so.")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601 start time.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Model usage and cost rolled up per task, agent, model, tenant or day."""
    from datetime import datetime

    from ._cost_cmds import show_cost

    try:
        start = datetime.fromisoformat(since) if since else None
    except ValueError:
        err_console.print(
            f"--since: expected an ISO 8601 time like 2026-11-22T00:00Z, not {since!r}"
        )
        raise typer.Exit(2) from None
    raise typer.Exit(
        _run(show_cost(_settings(site), console, by, prefix, start, as_json=as_json))
    )


@app.command()
def trace(
    task_id: str,
    site: SiteOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """A task's tree: each step, where it ran, decision, model calls, timings, retries,
    dead letters (from the site database and the event stream)."""
    from ._trace_cmds import show_trace

    raise typer.Exit(
        _run(show_trace(_settings(site), task_id, console, as_json=as_json, site=site))
    )


@app.command()
def replay(
    site: SiteOpt = None,
    task: Annotated[list[str] | None, typer.Option("--task", help="Task id (repeatable).")] = None,
    since: Annotated[str | None, typer.Option(help="ISO 8601, or 15m / 2h / 1d ago.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO 8601, or 15m / 2h / 1d ago.")] = None,
    from_seq: Annotated[
        int | None, typer.Option("--from-seq", help="First stream sequence.")
    ] = None,
    to_seq: Annotated[int | None, typer.Option("--to-seq", help="Last stream sequence.")] = None,
    stream: Annotated[
        str | None, typer.Option(help="Stream to select from (default TASKS).")
    ] = None,
    rules: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="Replay under these rules.")
    ] = None,
    speed: Annotated[str, typer.Option(help="original or max.")] = "max",
    live_models: Annotated[bool, typer.Option(help="Call current models, not recordings.")] = False,
    live_tools: Annotated[
        bool,
        typer.Option(
            help="Call the tools live, not recordings (a recorded side effect is not repeated)."
        ),
    ] = False,
    keep: Annotated[bool, typer.Option(help="Keep the sandbox streams.")] = False,
    agent: Annotated[
        list[str] | None,
        typer.Option("--agent", metavar="MODULE:CLASS", help="Register an agent by import path."),
    ] = None,
) -> None:
    """Re-run recorded tasks in an isolated sandbox and diff decisions and outputs
    against the original run (exit 0: identical, 1: differences, 2: error)."""
    from ._replay_cmds import replay as replay_cmd

    if speed not in ("original", "max"):
        err_console.print(f"--speed must be original or max, not {speed!r}")
        raise typer.Exit(2)
    raise typer.Exit(
        _run(
            replay_cmd(
                _settings(site), console, task, since, until, from_seq, to_seq, rules,
                speed, live_models, keep, stream=stream,  # type: ignore[arg-type]
                agent_paths=tuple(agent or ()), live_tools=live_tools,
            )
        )
    )  # fmt: skip


dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")
app.add_typer(triage_app, name="triage")
app.add_typer(kb_app, name="kb")
app.add_typer(telemetry_app, name="telemetry")
app.add_typer(tools_app, name="tools")


@dlq_app.command("list")
def dlq_list(
    site: SiteOpt = None,
    role: Annotated[str | None, typer.Option(help="Only this role's dead letters.")] = None,
    limit: int = 50,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
) -> None:
    """Dead letters with their reason and field, newest first."""
    from ._dlq_cmds import dlq_list as cmd

    raise typer.Exit(
        _run(cmd(_settings(site), console, role=role, limit=limit, as_json=as_json))
    )


@dlq_app.command("show")
def dlq_show(seq_or_task_id: str, site: SiteOpt = None) -> None:
    """One dead letter: reason, field, headers and the original payload."""
    from ._dlq_cmds import dlq_show as cmd

    raise typer.Exit(_run(cmd(_settings(site), console, seq_or_task_id)))


@dlq_app.command("redrive")
def dlq_redrive(seq_or_task_id: str, site: SiteOpt = None) -> None:
    """Republish a dead letter's original message once (a repeated redrive is a no-op)."""
    from ._dlq_cmds import dlq_redrive as cmd

    raise typer.Exit(_run(cmd(_settings(site), console, seq_or_task_id)))


SitesOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--sites",
        "--site",
        metavar="SITE[,SITE...]",
        help="Site names, comma-separated and/or repeated (--site eu1 --site us1); "
        "default eu1,us1.",
    ),
]


def _site_names(sites: list[str] | None) -> list[str]:
    """``--sites eu1,us1`` and ``--site eu1 --site us1`` alike; default ``eu1, us1``."""
    names = [s.strip() for arg in sites or ["eu1,us1"] for s in arg.split(",") if s.strip()]
    return list(dict.fromkeys(names))


@app.command()
def creds(
    sites: SitesOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default <state>/creds).")] = None,
    rotate: Annotated[bool, typer.Option(help="Replace existing identities.")] = False,
    show_permissions: Annotated[bool, typer.Option(help="Print each role's permissions.")] = False,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="An agent role besides the installed ones (repeatable)."),
    ] = None,
    tenant: Annotated[
        list[str] | None,
        typer.Option(
            "--tenant",
            help="A tenant that gets its own client identity, client-<tenant> (repeatable; "
            "adds to SITEMESH_NATS_TENANTS).",
        ),
    ] = None,
) -> None:
    """NKey identities per role and site, each allowed only its own subjects."""
    from ._secure_cmds import creds_cmd

    names = _site_names(sites)
    settings = _settings()
    tenants = (*settings.nats.tenants, *(tenant or ()))
    raise typer.Exit(
        creds_cmd(settings.state_dir, names, console, out_dir=out, rotate=rotate,
                  show_permissions=show_permissions, roles=tuple(role or ()),
                  tenants=tenants)
    )  # fmt: skip


@app.command()
def certs(
    sites: SitesOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default <state>/certs).")] = None,
    host: Annotated[
        list[str] | None, typer.Option("--host", help="Extra SAN (repeatable).")
    ] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 30,
) -> None:
    """A development CA and TLS certificates for the hub, the sites and clients."""
    from ._secure_cmds import certs_cmd

    names = _site_names(sites)
    raise typer.Exit(
        certs_cmd(_settings().state_dir, names, console, out_dir=out, hosts=host, days=days)
    )


@app.command("console")
def console_cmd(
    site: SiteOpt = None,
    host: Annotated[
        str, typer.Option(help="Address to bind (default loopback; see docs/console.md).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8470,
    users: Annotated[
        Path | None,
        typer.Option(help="Users file (TOML; default <state>/console-users.toml)."),
    ] = None,
    monitor: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The site's nats-server monitoring endpoint (http://127.0.0.1:8222): "
            "shows the hub link (leaf node) state on the health page.",
        ),
    ] = None,
) -> None:
    """The operator console: tasks, traces, approvals, dead letters, policy, health and
    cost of a site in a browser. Login required (users from --users)."""
    from ._console_cmds import run_console

    _logging(logging.WARNING)
    raise typer.Exit(_run(run_console(_settings(site), console, host=host, port=port,
                                      users_file=users, monitor_url=monitor)))  # fmt: skip


@app.command("console-user")
def console_user(
    name: Annotated[str, typer.Argument(help="User name.")],
    role: Annotated[str, typer.Option(help="viewer, approver or admin.")] = "viewer",
    users: Annotated[
        Path | None,
        typer.Option(help="Users file (TOML; default <state>/console-users.toml)."),
    ] = None,
    remove: Annotated[bool, typer.Option(help="Remove the user instead.")] = False,
) -> None:
    """Add or update a console user (asks for the password; stores its scrypt hash)."""
    from ._console_cmds import edit_user

    raise typer.Exit(
        _run_sync(lambda: edit_user(_settings(), console, name, role, users, remove=remove))
    )


def main() -> None:
    """Console-script entry point."""
    app()
