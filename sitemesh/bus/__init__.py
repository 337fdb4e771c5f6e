"""The NATS JetStream runtime: subjects, streams, publishing and the worker loop.

```python
async with NatsServer(tmp) as srv:                      # or connect to SITEMESH_NATS_URL
    nc = await connect(srv.client_url, name="planner", timeout_s=5)
    js = nc.jetstream()
    await provision(js, Subjects("eu1"), settings.bus)  # idempotent
    stream, durable, _ = Subjects("eu1").consumer_for("planner")
    worker = Worker(js, site="eu1", role="planner", stream=stream, durable=durable,
                    decoder=WORK_DECODER.decode, handler=handle, settings=settings.bus)
    await run_worker_until_signalled(worker, nc)
```
"""

from ._acking import Action, Decision, backoff_s, decide
from ._connect import connect
from ._deadletter import (
    MAX_DELIVERIES_EXCEEDED,
    MaxDeliveriesAdvisory,
    MaxDeliveriesSweeper,
    dead_letter_msg_id,
)
from ._documents import (
    CONFIG_BUCKET,
    CONFIG_HISTORY,
    MAX_DOCUMENT_BYTES,
    Document,
    DocumentStore,
    LiveDocument,
    Revision,
    load_toml,
)
from ._middleware import (
    ProcessMiddleware,
    PublishMiddlewareFactory,
    SendMiddleware,
    Settle,
    WorkerMiddlewareFactory,
    install_middleware,
    publish_middleware,
    worker_middlewares,
)
from ._objects import (
    KNOWLEDGE_BUCKET_PREFIX,
    ArtifactInfo,
    ArtifactNotFound,
    SiteArtifacts,
    knowledge_bucket,
)
from ._publish import PubAck, Publisher
from ._redact import redact_url
from ._server import EmbeddedNats, NatsServer, ServerBinary, find_nats_server, free_port
from ._streams import (
    AGENT_ENTRY_POINTS,
    DEADLETTER,
    MAX_MSG_BYTES,
    RECORDER,
    consumer_config,
    consumer_configs,
    installed_roles,
    provision,
    stream_config,
    stream_configs,
)
from ._subjects import (
    ALL_IN,
    ALL_OUT,
    CLOUD_IN,
    CLOUD_OUT,
    HDR_CAUSATION,
    HDR_DATA_CLASS,
    HDR_MSG_ID,
    HDR_SCHEMA,
    HDR_TASK_ID,
    HDR_TRACEPARENT,
    HDR_TRACESTATE,
    PREFIX,
    REPLAY_PREFIX,
    Subjects,
    msg_id,
    token,
)
from ._types import Handler, MsgContext, Outbound, TaskIdOf
from ._worker import Worker, ack_metadata, run_worker_until_signalled

__all__ = [
    "AGENT_ENTRY_POINTS",
    "ALL_IN",
    "ALL_OUT",
    "CLOUD_IN",
    "CLOUD_OUT",
    "CONFIG_BUCKET",
    "CONFIG_HISTORY",
    "DEADLETTER",
    "HDR_CAUSATION",
    "HDR_DATA_CLASS",
    "HDR_MSG_ID",
    "HDR_SCHEMA",
    "HDR_TASK_ID",
    "HDR_TRACEPARENT",
    "HDR_TRACESTATE",
    "KNOWLEDGE_BUCKET_PREFIX",
    "MAX_DELIVERIES_EXCEEDED",
    "MAX_DOCUMENT_BYTES",
    "MAX_MSG_BYTES",
    "PREFIX",
    "RECORDER",
    "REPLAY_PREFIX",
    "Action",
    "ArtifactInfo",
    "ArtifactNotFound",
    "Decision",
    "Document",
    "DocumentStore",
    "EmbeddedNats",
    "Handler",
    "LiveDocument",
    "MaxDeliveriesAdvisory",
    "MaxDeliveriesSweeper",
    "MsgContext",
    "NatsServer",
    "Outbound",
    "ProcessMiddleware",
    "PubAck",
    "PublishMiddlewareFactory",
    "Publisher",
    "Revision",
    "SendMiddleware",
    "ServerBinary",
    "Settle",
    "SiteArtifacts",
    "Subjects",
    "TaskIdOf",
    "Worker",
    "WorkerMiddlewareFactory",
    "ack_metadata",
    "backoff_s",
    "connect",
    "consumer_config",
    "consumer_configs",
    "dead_letter_msg_id",
    "decide",
    "find_nats_server",
    "free_port",
    "install_middleware",
    "installed_roles",
    "knowledge_bucket",
    "load_toml",
    "msg_id",
    "provision",
    "publish_middleware",
    "redact_url",
    "run_worker_until_signalled",
    "stream_config",
    "stream_configs",
    "token",
    "worker_middlewares",
]
