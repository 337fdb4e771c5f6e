"""What runs at a site besides the agents: the ingress router and its task-id registry
(``sitemesh_tasks_<site>``), the cloud forwarder and inbox finaliser of the boundary,
the supervisor that keeps a site's worker processes running, and the release or
rejection of a task parked for approval (:func:`decide_and_publish`)."""

from ..bus import pending_kv  # kept here too: the pending bucket is the boundary's
from ._approvals import (
    REJECTED_ERROR_CLASS,
    approved_item,
    decide_and_publish,
    reject_task,
    release,
)
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
    "REJECTED_ERROR_CLASS",
    "TASKS_BUCKET_PREFIX",
    "AnswerState",
    "BatchingDecider",
    "CloudForwarder",
    "InboxFinaliser",
    "Ingress",
    "Supervisor",
    "TaskRecord",
    "TaskRegistry",
    "approved_item",
    "build_incident",
    "child_env",
    "decide_and_publish",
    "forwards",
    "pending_kv",
    "process_environ",
    "provision_task_registry",
    "pseudonymized_texts",
    "reject_task",
    "release",
    "start_workflow",
    "task_decoder",
    "task_id_of",
    "task_registry_bucket",
]
