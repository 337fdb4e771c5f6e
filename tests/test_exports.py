"""Pin the public API of the packages that don't pin their own (bus, policy and state
have theirs). A change here is an API change: update the docs and the changelog."""

from __future__ import annotations

import importlib
import importlib.resources

import pytest

PUBLIC = {
    "sitemesh.schemas": [
        "ALL_MESSAGES", "ANSWER_DECODER", "INCIDENT_DECODER", "CloudAnswer", "CloudIncident",
        "Action", "ApprovalRequested", "DATA_CLASS_ORDER", "DLQ_DECODER", "DataClass",
        "DeadLetter", "Diagnosis", "ENCODER", "EVENT_DECODER", "EntityCount", "Envelope",
        "Escalation", "Event", "FinalAnswer", "Finding", "Message", "Outcome", "Passage",
        "Plan", "PlanStep", "PolicyDecision", "RetrievalResult", "Role", "Site",
        "StepCompleted", "SupportTicket", "TASK_DECODER", "TASK_KINDS", "Task",
        "TaskAccepted", "TaskFailed", "TaskId", "TelemetryAlert", "ValidationIssue",
        "ValidationReport", "WORK_DECODER", "WorkItem", "Zone", "decode", "encode",
        "json_schemas", "schema_tag", "utcnow", "write_json_schemas",
    ],
    "sitemesh.agents": [
        "AGENT_ROLES", "ALLOWED_ACTIONS", "Agent", "AgentContext", "AgentOutput",
        "DiagnosticsAgent", "EscalationAgent", "FaultScore", "KnowledgeBase", "PlannerAgent",
        "PlanningBackend", "RetrieverAgent", "RunbookPlanner", "ValidatorAgent",
        "build_agent", "default_kb", "fault_score", "load_fault_log",
    ],
    "sitemesh.edge_node": [
        "BatchingDecider", "Ingress", "SITE_ROLES", "Supervisor", "WORKER_ROLES",
        "agent_handler", "child_env", "process_environ", "run_role", "task_decoder",
        "task_id_of", "worker_name",
    ],
    "sitemesh.cli": ["app", "main"],
    "sitemesh.cloud_node": [
        "COMPOSED_LABEL", "ComposingSynthesiser", "SynthesisBackend", "Synthesiser",
    ],
}  # fmt: skip


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_api(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert hasattr(mod, name), f"{module}.{name} is exported but missing"


def test_py_typed_is_shipped() -> None:
    import sitemesh

    assert (importlib.resources.files(sitemesh) / "py.typed").is_file()
