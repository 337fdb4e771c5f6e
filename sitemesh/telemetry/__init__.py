"""Tracing and metrics (OpenTelemetry) for the runtime; agents never import this.

```python
setup_telemetry(settings.telemetry, site=settings.site, role=role)  # once per process
...                                 # workers/publishers built now are traced
shutdown_telemetry()                # flush on exit
```

One trace per task: the worker runtime opens a ``process`` span per consumed
message as a child of the W3C context in its headers, and the publisher opens a
``send`` span per message and injects its context into the outgoing headers
(:mod:`sitemesh.telemetry._middleware`). See ``docs/observability.md``.
"""

from ._calls import GENAI_OPT_IN, ModelCall, model_call, tool_call, watch_breakers
from ._metrics import BREAKER_VALUES, BreakerSource, Instruments
from ._middleware import (
    PublishMiddleware,
    WorkerMiddleware,
    destination_template,
    publish_middleware,
    worker_middleware,
)
from ._prometheus import METRICS_PATH, metrics_response
from ._propagation import extract, inject
from ._redact import (
    ALLOWED_ATTRIBUTES,
    RedactingSpanExporter,
    allowed_key,
    guard_attributes,
    refuses,
)
from ._setup import Telemetry, active, setup_telemetry, shutdown_telemetry

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "BREAKER_VALUES",
    "GENAI_OPT_IN",
    "METRICS_PATH",
    "BreakerSource",
    "Instruments",
    "ModelCall",
    "PublishMiddleware",
    "RedactingSpanExporter",
    "Telemetry",
    "WorkerMiddleware",
    "active",
    "allowed_key",
    "destination_template",
    "extract",
    "guard_attributes",
    "inject",
    "metrics_response",
    "model_call",
    "publish_middleware",
    "refuses",
    "setup_telemetry",
    "shutdown_telemetry",
    "tool_call",
    "watch_breakers",
    "worker_middleware",
]
