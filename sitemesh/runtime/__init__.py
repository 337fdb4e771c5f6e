"""The one wiring layer: settings + a role in, a running service out.

* :func:`connect` — every process and CLI command reaches NATS through it, with the
  role's identity (NKey, TLS) from the settings;
* :func:`run_role` — ``sitemesh worker ROLE``: the runtime's services
  (:data:`SERVICE_ROLES`) and every agent of the registry, built the same way;
* :func:`step_handler` — an agent as a :class:`sitemesh.bus.Worker` handler: checks,
  step events, the next step of the workflow;
* :func:`build_model_client` — the process's model client, recording every call.

Cross-cutting middleware (tracing, metrics) is injected into the bus runtime by
:func:`sitemesh.telemetry.setup_telemetry` through :func:`sitemesh.bus.install_middleware`.
"""

from ._connect import connect
from ._identity import nats_options
from ._models import build_model_client
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

__all__ = [
    "INBOX_DURABLE",
    "SERVICE_ROLES",
    "Finaliser",
    "Service",
    "build_model_client",
    "catch_early_signals",
    "connect",
    "nats_options",
    "run_role",
    "step_handler",
    "worker_name",
    "worker_roles",
]
