"""What runs at a site: the ingress router, the agent workers, the recorder, and the
supervisor that keeps them running as separate processes."""

from ._batching import BatchingDecider
from ._ingress import Ingress, task_decoder, task_id_of
from ._pipeline import agent_handler
from ._roles import WORKER_ROLES, run_role, worker_name
from ._supervisor import SITE_ROLES, Supervisor, child_env, process_environ

__all__ = [
    "SITE_ROLES",
    "WORKER_ROLES",
    "BatchingDecider",
    "Ingress",
    "Supervisor",
    "agent_handler",
    "child_env",
    "process_environ",
    "run_role",
    "task_decoder",
    "task_id_of",
    "worker_name",
]
