"""Pin the public API of the packages that don't pin their own (bus, policy and state
have theirs). A change here is an API change: update the docs and the changelog."""

from __future__ import annotations

import importlib
import importlib.resources

import pytest

PUBLIC = {
    "sitemesh.schemas": [
        "MAX_INLINE_SERIES", "MAX_LOG_LINES", "MAX_LOG_LINE_CHARS", "MAX_SERIES_POINTS",
        "SOURCE_NAME_PATTERN", "ALL_MESSAGES", "ANSWER_DECODER", "Action",
        "ApprovalRequested", "CloudAnswer",
        "CloudIncident", "Condition", "DATA_CLASS_ORDER", "DLQ_DECODER", "DataClass",
        "DeadLetter", "Diagnosis", "ENCODER", "EVENT_DECODER", "EntityCount", "Envelope",
        "Escalation", "Event", "FinalAnswer", "Finding", "FindingKind", "INCIDENT_DECODER",
        "Jump", "Message", "Outcome", "Passage", "Plan", "PlanStep", "PolicyDecision",
        "RetrievalResult", "Role", "SCHEMA_DIR", "Site", "StepCompleted", "StepName",
        "StepOutput", "StepSkipped", "SupportTicket", "TASK_DECODER", "TASK_KINDS", "Task",
        "TaskAccepted", "TaskFailed", "TaskId", "TelemetryAlert", "ValidationIssue",
        "ValidationReport", "WORK_DECODER", "WorkItem", "WorkflowSpec", "WorkflowStep",
        "Zone", "decode", "encode", "json_schemas", "schema_tag", "utcnow",
        "write_json_schemas",
        "ALL_REASON_CODES", "REASON_CODES", "REASON_DETAILS", "describe_reason",
        "is_reason_code", "reason_code", "reason_codes",
        # hostile input and task ids (docs/architecture.md, docs/subjects.md)
        "MAX_NESTING", "check_nesting", "hostile_json_error", "json_path_at",
        "IncidentFinding", "IncidentResolution", "IncidentStep", "IncidentTriage",
        "LabelScore", "Resolution", "Triage",
        "LogLine", "MetricSeries",
        "CustomerContext", "CustomerStatus",
        "ToolUse", "ToolUseOutcome",
        "AnswerStatus", "ResubmissionOutcome", "TaskResubmitted", "task_digest",
        "ModelHealth",
    ],
    "sitemesh.agents": [
        "ACTION_DESCRIPTIONS", "ALLOWED_ACTIONS", "Agent", "AgentContext", "AgentOutput",
        "AgentResources", "AgentSpec", "DiagnosticsAgent", "ENTRY_POINT_GROUP",
        "EscalationAgent", "FALLBACK_MESSAGE", "FaultScore", "KnowledgeBase",
        "PlannerAgent", "PlanningBackend", "RESERVED_ROLES", "Registry", "RetrieverAgent",
        "RunbookPlanner", "TICKET_MESSAGE", "TriageAgent", "ValidatorAgent", "agent",
        "check_agent_class",
        "default_kb", "diagnosis_ref", "fault_score", "import_agent", "load_fault_log",
        "ToolPlanningBackend", "crm_handle",
    ],
    "sitemesh.edge_node": [
        "BatchingDecider", "CloudForwarder", "InboxFinaliser", "Ingress", "Supervisor",
        "build_incident", "pseudonymized_texts",
        "child_env", "forwards", "pending_kv", "process_environ", "start_workflow",
        "task_decoder", "task_id_of",
        "TASKS_BUCKET_PREFIX", "AnswerState", "TaskRecord", "TaskRegistry",
        "provision_task_registry", "task_registry_bucket",
        "REJECTED_ERROR_CLASS", "approved_item", "decide_and_publish", "reject_task",
        "release",
    ],
    "sitemesh.runtime": [
        "Finaliser", "HealthServer", "INBOX_DURABLE", "ProbeState", "ProcessState",
        "Processes", "Readiness", "SERVICE_ROLES", "Service", "WORKERS_BUCKET_PREFIX",
        "WorkerPresence", "WorkerRecord", "WorkerState", "build_model_client",
        "catch_early_signals", "connect", "creds_dir_identity", "embedded_identity",
        "models_for", "nats_options",
        "presence_key",
        "provision_workers", "read_worker", "read_workers", "ready_by_role", "run_role",
        "step_handler", "wait_ready", "worker_name", "worker_roles", "workers_bucket",
        "TOOLS_BUCKET_PREFIX", "ToolHealthPublisher", "ToolHealthReport", "ToolsService",
        "build_tool_registry", "provision_tool_health", "read_tool_health", "tools_bucket",
        "RoleQueue", "role_queues",
    ],
    "sitemesh.workflows": [
        "Advance", "BUNDLED_WORKFLOWS", "Condition", "LiveWorkflows", "PolicyView",
        "RoleInfo", "Skip", "WORKFLOWS_KEY", "WorkflowStore", "Workflows", "bundled_text",
        "check_workflows", "cloud_allowed", "data_class_raised", "dispatch", "first_step",
        "new_item", "next_step", "parse_condition", "skipped_events", "step_names", "step_of"
    ],
    "sitemesh.cli": ["app", "main"],
    "sitemesh.tools": [
        "ANSWERED_OUTCOMES", "BUNDLED_TOOLS_FILE", "IDEMPOTENCY_ARGUMENT",
        "IDEMPOTENCY_META_KEY", "TOOLS_FILE_NAME", "InMemoryToolRecorder",
        "InvalidToolArguments", "NullToolRecorder", "ReadOnlyToolRecorder", "ReplayMode",
        "ResponseScanner",
        "StoreToolRecorder", "ToolCall", "ToolCallOutcome", "ToolCallRecorder", "ToolCalls",
        "ToolCircuitOpen", "ToolConfigError", "ToolError", "ToolErrorNote", "ToolHealth",
        "ToolInfo", "ToolRateLimited", "ToolRegistry", "ToolReplayMiss", "ToolResponse",
        "ToolResponseUnscanned", "ToolResult", "ToolSource", "ToolSpec", "ToolTimeout",
        "ToolUnavailable", "Transport", "UnknownTool", "arguments_hash", "idempotency_key",
        "load_tool_specs", "parse_tool_specs", "tool_call_id", "tools_file",
        "validate_arguments",
    ],
    "sitemesh.cloud_node": [
        "COMPOSED_LABEL", "ComposingSynthesiser", "SynthesisBackend", "Synthesiser",
        "describe_incident", "provision_cloud", "run_cloud",
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
