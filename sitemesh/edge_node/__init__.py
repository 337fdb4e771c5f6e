"""What runs at a site besides the agents: the ingress router and its task-id registry
(``sitemesh_tasks_<site>``), the cloud forwarder and inbox finaliser of the boundary,
and the supervisor that keeps a site's worker processes running."""

from ..bus import pending_kv  # kept here too: the pending bucket is the boundary's
from ._batching import BatchingDecider
from ._forward import CloudForwarder, InboxFinaliser, forwards
from ._incident import build_incident, pseudonymized_texts
from ._ingress import Ingress, start_workflow, task_decoder, task_id_of
from ._supervisor import Supervisor, child_env, process_environ
from ._task_ids import (
    TASKS_BUCKET_PREFIX,
    AnswerState,
    TaskRecord,
    TaskRegistry,
    provision_task_registry,
    task_registry_bucket,
)

__all__ = [
    "TASKS_BUCKET_PREFIX",
    "AnswerState",
    "BatchingDecider",
    "CloudForwarder",
    "InboxFinaliser",
    "Ingress",
    "Supervisor",
    "TaskRecord",
    "TaskRegistry",
    "build_incident",
    "child_env",
    "forwards",
    "pending_kv",
    "process_environ",
    "provision_task_registry",
    "pseudonymized_texts",
    "start_workflow",
    "task_decoder",
    "task_id_of",
    "task_registry_bucket",
]
