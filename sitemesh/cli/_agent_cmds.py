"""``sitemesh agents`` and ``sitemesh workflows``: the registry, and the workflows in KV."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from nats.errors import Error as NatsError
from nats.js.errors import APIError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..agents import Registry
from ..bus import Subjects, provision
from ..config import Settings
from ..runtime import SERVICE_ROLES, connect
from ..workflows import Workflows, WorkflowStore, check_workflows
from ._nats import nats_url


def list_agents(
    console: Console, agent_paths: Sequence[str], *, schemas_dir: Path | None, as_json: bool
) -> int:
    """Print every registered agent role: input, output, zones and where it came from.

    Args:
        console: where to print.
        agent_paths: agents to register by import path besides the installed ones.
        schemas_dir: also write ``<role>.input.schema.json`` / ``<role>.output.schema.json``
            here.
        as_json: print JSON instead of a table.

    Returns:
        0.

    Raises:
        AgentError: an entry point or import path does not load.
    """
    registry = Registry.load(agent_paths)
    rows = []
    for spec in registry.values():
        accepts = (
            [str(t.__struct_config__.tag) for t in spec.accepts] if spec.accepts else ["any task"]
        )
        rows.append(
            {
                "role": spec.role,
                "input": accepts,
                "output": str(spec.output.__struct_config__.tag),
                "zones": sorted(spec.zones),
                "final": spec.final,
                "origin": spec.origin,
                "description": spec.description,
            }
        )
    if schemas_dir is not None:
        schemas_dir.mkdir(parents=True, exist_ok=True)
        for spec in registry.values():
            for part, schema in spec.schemas().items():
                path = schemas_dir / f"{spec.role}.{part}.schema.json"
                path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", "utf-8")
    if as_json:
        console.print_json(json.dumps(rows))
        return 0
    table = Table(title="agent roles", title_justify="left")
    for col in ("role", "input", "output", "zones", "from", "does"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            Text(str(r["role"]), "bold"),
            ", ".join(r["input"]),  # type: ignore[arg-type]
            str(r["output"]) + (" (ends a workflow)" if r["final"] else ""),
            ", ".join(r["zones"]),  # type: ignore[arg-type]
            str(r["origin"]),
            str(r["description"]),
        )
    console.print(table)
    console.print(Text(f"services (not agents): {', '.join(SERVICE_ROLES)}", "dim"), soft_wrap=True)
    if schemas_dir is not None:
        console.print(Text(f"schemas written to {schemas_dir}", "dim"))
    return 0


def _workflow_table(doc: Workflows) -> Table:
    table = Table(
        title=f"workflows {doc.version} ({doc.label}) from {doc.source}", title_justify="left"
    )
    for col in ("workflow", "kinds", "#", "step", "role", "zone", "when / jumps"):
        table.add_column(col, overflow="fold")
    for w in doc.workflows:
        for i, step in enumerate(w.steps, 1):
            cond = [f"when {step.when}"] if step.when else []
            cond += [f"-> {j.to} if {j.when}" for j in step.jumps]
            table.add_row(
                w.name if i == 1 else "",
                ", ".join(w.kinds) if i == 1 else "",
                str(i),
                step.name,
                step.role,
                step.zone,
                "; ".join(cond),
            )
    return table


async def run_workflows(
    settings: Settings,
    console: Console,
    file: Path | None,
    text: str | None,
    *,
    site: str | None,
    agent_paths: Sequence[str],
    check_only: bool,
) -> int:
    """Show the workflows in force, or check and publish ``text`` (read from ``file``) live.

    Publishing checks the document against the agent registry (installed agents plus
    ``agent_paths``) and the policy in force, stores it in the configuration bucket
    (``workflows``, or ``workflows.<site>`` with ``site``), and creates the durable
    consumer of every role it names, so work for a role whose workers are not running
    yet waits on the bus, visible in ``sitemesh status``.

    Returns:
        0 published or shown, 2 invalid (the error names workflow, step and field).

    Raises:
        WorkflowError: the document is invalid (printed by the CLI as one line).
        AgentError: an ``--agent`` import path does not load.
    """
    registry = Registry.load(agent_paths)
    doc: Workflows | None = None
    if file is not None and text is not None:
        doc = Workflows.from_toml(text, source=str(file))
        if check_only:
            check_workflows(doc, registry)
            console.print(f"{file}: valid workflows {doc.version} ({len(doc.workflows)})")
            return 0
    try:
        return await _show_or_publish(settings, console, file, text, doc, registry, site=site)
    except (NatsError, APIError) as exc:  # one line, no traceback
        console.print(f"[red]workflows: NATS refused: {type(exc).__name__}: {exc}[/red]")
        return 2


async def _show_or_publish(
    settings: Settings,
    console: Console,
    file: Path | None,
    text: str | None,
    doc: Workflows | None,
    registry: Registry,
    *,
    site: str | None,
) -> int:
    from ..policy import PolicyStore

    async with nats_url(settings, console) as url:
        nc = await connect(settings, "operator", url=url, name="sitemesh-workflows")
        try:
            js = nc.jetstream()
            store = WorkflowStore(js)
            if doc is None or text is None:
                current = await store.current(site or settings.site)
                console.print(_workflow_table(current))
                missing = [r for r in current.roles if r not in registry]
                if missing:
                    console.print(Text(f"roles not installed here: {', '.join(missing)}", "yellow"))
                return 0
            policy = await PolicyStore(js).current(site or settings.site)
            check_workflows(doc, registry, policy)
            published = await store.publish(text, site=site)
            # the streams (a new site has none yet) and every named role's consumer, so
            # work for a role without workers waits, visible in `sitemesh status`
            subjects = Subjects(site or settings.site)
            await provision(js, subjects, settings.bus, roles=("router", *published.roles))
            console.print(
                f"published workflows {published.version} ({published.label}) to "
                f"{store.bucket}/{store.key_for(site)}; routers apply it to the next task"
            )
            console.print(_workflow_table(published))
            return 0
        finally:
            await nc.drain()
