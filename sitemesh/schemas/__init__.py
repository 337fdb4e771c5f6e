"""Wire messages: msgspec Structs tagged ``<type>.v<N>``, JSON on the wire.

JSON Schemas for every message are generated into ``sitemesh/schemas/json/`` by
``sitemesh schemas`` (see :func:`sitemesh.schemas.json_schemas`); the tests fail
if the checked-in files are stale.
"""

from ._base import (
    DATA_CLASS_ORDER,
    DataClass,
    Message,
    Role,
    Site,
    TaskId,
    Zone,
    utcnow,
)
from ._cloud import CloudAnswer, CloudIncident
from ._codec import (
    ANSWER_DECODER,
    DLQ_DECODER,
    ENCODER,
    EVENT_DECODER,
    INCIDENT_DECODER,
    TASK_DECODER,
    WORK_DECODER,
    decode,
    encode,
    schema_tag,
)
from ._events import ApprovalRequested, DeadLetter, Event, StepCompleted, TaskAccepted, TaskFailed
from ._jsonschema import ALL_MESSAGES, json_schemas, write_json_schemas
from ._outputs import (
    Diagnosis,
    Envelope,
    Escalation,
    FinalAnswer,
    Finding,
    Outcome,
    Passage,
    Plan,
    PlanStep,
    RetrievalResult,
    ValidationIssue,
    ValidationReport,
    WorkItem,
)
from ._policy import Action, EntityCount, PolicyDecision
from ._tasks import TASK_KINDS, SupportTicket, Task, TelemetryAlert

__all__ = [
    "ALL_MESSAGES",
    "ANSWER_DECODER",
    "DATA_CLASS_ORDER",
    "DLQ_DECODER",
    "ENCODER",
    "EVENT_DECODER",
    "INCIDENT_DECODER",
    "TASK_DECODER",
    "TASK_KINDS",
    "WORK_DECODER",
    "Action",
    "ApprovalRequested",
    "CloudAnswer",
    "CloudIncident",
    "DataClass",
    "DeadLetter",
    "Diagnosis",
    "EntityCount",
    "Envelope",
    "Escalation",
    "Event",
    "FinalAnswer",
    "Finding",
    "Message",
    "Outcome",
    "Passage",
    "Plan",
    "PlanStep",
    "PolicyDecision",
    "RetrievalResult",
    "Role",
    "Site",
    "StepCompleted",
    "SupportTicket",
    "Task",
    "TaskAccepted",
    "TaskFailed",
    "TaskId",
    "TelemetryAlert",
    "ValidationIssue",
    "ValidationReport",
    "WorkItem",
    "Zone",
    "decode",
    "encode",
    "json_schemas",
    "schema_tag",
    "utcnow",
    "write_json_schemas",
]
