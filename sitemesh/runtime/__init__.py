"""The one wiring layer: settings + a role in, a running service out.

* :func:`connect` — every process and CLI command reaches NATS through it, with the
  role's identity (NKey, TLS) from the settings;
* :func:`run_role` — ``sitemesh worker ROLE``: the runtime's services
  (:data:`SERVICE_ROLES`) and every agent of the registry, built the same way;
* :func:`step_handler` — an agent as a :class:`sitemesh.bus.Worker` handler: checks,
  step events, the next step of the workflow;
* :func:`build_model_client` — the process's model client, recording every call,
  from its side's model settings (:func:`models_for`: a site's or the hub's);
* :func:`build_tool_registry` — the process's tool registry (MCP servers, built on the
  first tool call); :class:`ToolHealthPublisher` puts its health in the site's
  ``sitemesh_tools_<site>`` KV bucket, :func:`read_tool_health` reads it back
  (:func:`provision_tool_health` creates the bucket on a site with identities);
* :class:`Readiness` — a process's loading → ready → stopping, registered in the
  site's ``sitemesh_workers_<site>`` KV bucket (:class:`WorkerPresence`) and served
  on the optional ``/healthz``/``/readyz`` endpoint (:class:`HealthServer`);
  :func:`wait_ready` waits for a set of processes, :func:`read_workers` lists them.

Cross-cutting middleware (tracing, metrics) is injected into the bus runtime by
:func:`sitemesh.telemetry.setup_telemetry` through :func:`sitemesh.bus.install_middleware`.
"""

from ._connect import connect, creds_dir_identity, embedded_identity
from ._health import Processes, ProcessState, Readiness, wait_ready
from ._http import HealthServer, ProbeState
from ._identity import nats_options
from ._models import build_model_client, models_for
from ._presence import (
    WORKERS_BUCKET_PREFIX,
    WorkerPresence,
    WorkerRecord,
    WorkerState,
    presence_key,
    provision_workers,
    read_worker,
    read_workers,
    ready_by_role,
    workers_bucket,
)
from ._queues import RoleQueue, role_queues
from ._roles import (
    INBOX_DURABLE,
    SERVICE_ROLES,
    Service,
    catch_early_signals,
    run_role,
    worker_name,
    worker_roles,
)
from ._steps import Finaliser, step_handler
from ._tools import (
    TOOLS_BUCKET_PREFIX,
    ToolHealthPublisher,
    ToolHealthReport,
    ToolsService,
    build_tool_registry,
    provision_tool_health,
    read_tool_health,
    tools_bucket,
)

__all__ = [
    "INBOX_DURABLE",
    "SERVICE_ROLES",
    "TOOLS_BUCKET_PREFIX",
    "WORKERS_BUCKET_PREFIX",
    "Finaliser",
    "HealthServer",
    "ProbeState",
    "ProcessState",
    "Processes",
    "Readiness",
    "RoleQueue",
    "Service",
    "ToolHealthPublisher",
    "ToolHealthReport",
    "ToolsService",
    "WorkerPresence",
    "WorkerRecord",
    "WorkerState",
    "build_model_client",
    "build_tool_registry",
    "catch_early_signals",
    "connect",
    "creds_dir_identity",
    "embedded_identity",
    "models_for",
    "nats_options",
    "presence_key",
    "provision_tool_health",
    "provision_workers",
    "read_tool_health",
    "read_worker",
    "read_workers",
    "ready_by_role",
    "role_queues",
    "run_role",
    "step_handler",
    "tools_bucket",
    "wait_ready",
    "worker_name",
    "worker_roles",
    "workers_bucket",
]
