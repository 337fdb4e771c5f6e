"""Publishing tasks from Python: ``await Client(js, site).submit(task)``.

No SDK is required to publish: any NATS client may publish the task JSON on
``sm.v1.task.<site>.<kind>`` (see ``docs/subjects.md``). This client adds a task id,
the submit time and the standard headers.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec
from nats.js.client import JetStreamContext

from .bus import HDR_MSG_ID, HDR_SCHEMA, HDR_TASK_ID, Subjects, msg_id
from .errors import SchemaError
from .schemas import TASK_KINDS, Task, encode, schema_tag, utcnow

KIND_OF_TAG: dict[str, str] = {
    str(cls.__struct_config__.tag): kind for kind, cls in TASK_KINDS.items()
}
"""Schema tag -> subject kind (``support_ticket.v1`` -> ``support_ticket``)."""


@dataclass(frozen=True, slots=True)
class Submitted:
    """A task that JetStream stored.

    Attributes:
        task_id: the task id.
        subject: where it was published.
        stream_seq: its sequence in ``TASKS_<site>``.
        duplicate: the server already had a task with this id (nothing new stored).
    """

    task_id: str
    subject: str
    stream_seq: int
    duplicate: bool


class Client:
    """Submits tasks to one site.

    Args:
        js: a JetStream context on a connection to the site's server.
        site: the site name.
    """

    def __init__(self, js: JetStreamContext, site: str) -> None:
        self._js = js
        self._subjects = Subjects(site)

    async def submit(self, task: Task, *, task_id: str | None = None) -> Submitted:
        """Publish ``task`` and wait for JetStream to store it.

        Args:
            task: the task; its ``task_id`` wins over ``task_id``.
            task_id: id to use when the task has none.

        Raises:
            SchemaError: the task has no id and none was given.
            nats.js.errors.APIError: the server refused the message.
        """
        tid = task.task_id or task_id
        if not tid:
            raise SchemaError("a task needs a `task_id` to be tracked", field="$.task_id")
        task = msgspec.structs.replace(
            task, task_id=tid, submitted_at=task.submitted_at or utcnow()
        )
        kind = KIND_OF_TAG[schema_tag(task)]
        return await self.publish_raw(kind, encode(task), task_id=tid, schema=schema_tag(task))

    async def publish_raw(
        self, kind: str, data: bytes, *, task_id: str, schema: str | None = None
    ) -> Submitted:
        """Publish raw bytes as a task of ``kind`` (the router validates them).

        Args:
            kind: subject kind token (``support_ticket``).
            data: the payload, published byte for byte.
            task_id: goes into ``sm-task-id`` and the ``Nats-Msg-Id``.
            schema: optional ``sm-schema`` header value.
        """
        subject = self._subjects.task(kind)
        headers = {HDR_MSG_ID: msg_id(task_id, "submit", "client"), HDR_TASK_ID: task_id}
        if schema:
            headers[HDR_SCHEMA] = schema
        ack = await self._js.publish(subject, data, headers=headers)
        return Submitted(
            task_id=task_id, subject=subject, stream_seq=ack.seq, duplicate=bool(ack.duplicate)
        )
