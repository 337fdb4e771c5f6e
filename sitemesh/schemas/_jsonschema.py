"""JSON Schema generation for every top-level message (checked in under ``json/``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from ._cloud import CloudAnswer, CloudIncident
from ._events import (
    ApprovalRequested,
    DeadLetter,
    StepCompleted,
    StepSkipped,
    TaskAccepted,
    TaskFailed,
    TaskResubmitted,
)
from ._outputs import (
    Diagnosis,
    Escalation,
    FinalAnswer,
    Plan,
    RetrievalResult,
    ValidationReport,
    WorkItem,
)
from ._policy import PolicyDecision
from ._tasks import SupportTicket, TelemetryAlert

ALL_MESSAGES: tuple[type[msgspec.Struct], ...] = (
    SupportTicket,
    TelemetryAlert,
    WorkItem,
    RetrievalResult,
    Diagnosis,
    Plan,
    ValidationReport,
    Escalation,
    FinalAnswer,
    PolicyDecision,
    TaskAccepted,
    StepCompleted,
    StepSkipped,
    TaskFailed,
    DeadLetter,
    CloudIncident,
    CloudAnswer,
    ApprovalRequested,
    TaskResubmitted,
)
"""Every top-level wire message, in a stable order."""

SCHEMA_DIR = Path(__file__).parent / "json"
"""Where the generated schemas are checked in."""


def json_schemas() -> dict[str, str]:
    """Generate ``{file name: JSON text}`` for every message, deterministically.

    File names are the message tag plus ``.schema.json`` (``support_ticket.v1.schema.json``).
    """
    out: dict[str, str] = {}
    for cls in ALL_MESSAGES:
        tag = str(cls.__struct_config__.tag)
        schema: dict[str, Any] = msgspec.json.schema(cls)
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": tag, **schema}
        out[f"{tag}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return out


def write_json_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    """Write :func:`json_schemas` into ``directory``, removing stale schema files.

    Returns:
        The paths written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    wanted = json_schemas()
    for old in directory.glob("*.schema.json"):
        if old.name not in wanted:
            old.unlink()
    written = []
    for name, text in wanted.items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
