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
from ._publish import PubAck, Publisher
from ._server import EmbeddedNats, NatsServer, ServerBinary, find_nats_server
from ._streams import DEADLETTER, MAX_MSG_BYTES, RECORDER, provision
from ._subjects import (
    HDR_CAUSATION,
    HDR_DATA_CLASS,
    HDR_MSG_ID,
    HDR_SCHEMA,
    HDR_TASK_ID,
    HDR_TRACEPARENT,
    HDR_TRACESTATE,
    PIPELINE,
    PREFIX,
    ROLES,
    Subjects,
    msg_id,
    next_role,
    token,
)
from ._types import Handler, MsgContext, Outbound, TaskIdOf
from ._worker import Worker, run_worker_until_signalled

__all__ = [
    "DEADLETTER",
    "HDR_CAUSATION",
    "HDR_DATA_CLASS",
    "HDR_MSG_ID",
    "HDR_SCHEMA",
    "HDR_TASK_ID",
    "HDR_TRACEPARENT",
    "HDR_TRACESTATE",
    "MAX_DELIVERIES_EXCEEDED",
    "MAX_MSG_BYTES",
    "PIPELINE",
    "PREFIX",
    "RECORDER",
    "ROLES",
    "Action",
    "Decision",
    "EmbeddedNats",
    "Handler",
    "MaxDeliveriesAdvisory",
    "MaxDeliveriesSweeper",
    "MsgContext",
    "NatsServer",
    "Outbound",
    "PubAck",
    "Publisher",
    "ServerBinary",
    "Subjects",
    "TaskIdOf",
    "Worker",
    "backoff_s",
    "connect",
    "dead_letter_msg_id",
    "decide",
    "find_nats_server",
    "msg_id",
    "next_role",
    "provision",
    "run_worker_until_signalled",
    "token",
]
