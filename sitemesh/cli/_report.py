"""One task as a document: what ``show --json`` / ``trace --json`` print, and the
answer section ``show`` renders (triage, the grounding document, the plan, the
customer message, the cloud's proposal, what left the site)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text


def print_json(console: Console, doc: object) -> None:
    """``doc`` as one JSON document on ``console`` (``--json``): structs, dataclasses and
    mappings as objects, datetimes in ISO 8601, never wrapped, styled or cut."""
    text = msgspec.json.format(msgspec.json.encode(msgspec.to_builtins(doc)), indent=2)
    console.print(text.decode(), soft_wrap=True, highlight=False, markup=False)


def builtins_without(value: object, *fields: str) -> dict[str, Any]:
    """A struct or dataclass as a JSON-ready dict, leaving out ``fields`` (what a
    ``--json`` listing keeps for the detail commands: ticket text, payloads)."""
    out: dict[str, Any] = msgspec.to_builtins(value)
    return {k: v for k, v in out.items() if k not in fields}


def _t(value: object, style: str = "") -> Text:
    return Text("-" if value in (None, "") else str(value), style=style)


def answer_section(report: Mapping[str, Any]) -> Group | None:
    """The answer part of ``show``: triage, grounding document, plan steps, customer
    message, proposal and what left the site; ``None`` when the task has no answer."""
    plan = report.get("plan")
    triage = report.get("triage")
    resolution = report.get("resolution")
    if not (plan or triage or resolution or report.get("proposal")):
        return None
    parts: list[Table | Text] = []
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    if triage:
        label = triage.get("label") or "(no triage model for this tenant)"
        alts = ", ".join(f"{a['label']} {a['p']:.2f}" for a in triage.get("alternatives", []))
        grid.add_row(
            "triage",
            _t(
                f"{label} {triage.get('confidence', 0):.2f} ({triage.get('label_set') or '-'}), "
                f"urgency {triage.get('urgency', 3)} "
                f"({triage.get('urgency_source', 'default')}), "
                f"language {triage.get('language', 'und')}" + (f"; next: {alts}" if alts else "")
            ),
        )
    if resolution:
        grid.add_row(
            "grounded in",
            _t(
                f"{resolution.get('doc_kind')} {resolution.get('doc_id')} of "
                f"{resolution.get('kb')}, confidence {resolution.get('confidence', 0):.2f}"
                + (f", {resolution['url']}" if resolution.get("url") else "")
            ),
        )
    grid.add_row("route", _t(report.get("route")))
    if report.get("proposal"):
        grid.add_row("proposal", _t(report["proposal"]))
    left = report.get("left_site")
    grid.add_row(
        "left the site",
        _t(
            "nothing: answered on the site"
            if left is None
            else f"incident {left.get('task_id')}: {len(left.get('steps', []))} steps, "
            f"placeholders {', '.join(left.get('placeholders', [])) or 'none'}"
        ),
    )
    parts.append(grid)
    if plan and plan.get("steps"):
        table = Table(title=f"plan ({plan.get('source', 'runbook')})", title_justify="left")
        for col in ("n", "action", "description", "grounding"):
            table.add_column(col, overflow="fold")
        for step in plan["steps"]:
            table.add_row(
                str(step.get("n")), _t(step.get("action")), _t(step.get("description")),
                _t(", ".join(step.get("grounding", []))),
            )  # fmt: skip
        parts.append(table)
    return Group(*parts)
