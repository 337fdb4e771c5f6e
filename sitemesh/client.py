"""Publishing tasks from Python: ``await Client(js, site).submit(task)``.

No SDK is required to publish: any NATS client may publish the task JSON on
``sm.v1.task.<site>.<kind>`` (or, for one tenant, ``sm.v1.task.<site>.<tenant>.<kind>``;
see ``docs/subjects.md``). This client adds a task id, the submit time and the standard
headers, and :meth:`Client.wait` follows a submission to its answer (or to the router's
report that the id was taken).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass
from typing import Literal

import msgspec
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from .bus import HDR_MSG_ID, HDR_SCHEMA, HDR_TASK_ID, Subjects, as_stream_full, msg_id
from .errors import SchemaError
from .schemas import (
    EVENT_DECODER,
    TASK_KINDS,
    FinalAnswer,
    Task,
    TaskAccepted,
    TaskFailed,
    TaskResubmitted,
    encode,
    schema_tag,
    task_digest,
    utcnow,
)

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
        duplicate: the server already had this task, same id and same body, within
            its duplicate window (nothing new stored; ``stream_seq`` is the stored
            one's). A different body under a stored id is stored, and the router
            refuses it (``task_resubmitted.v1``, code ``task_id_conflict``).
    """

    task_id: str
    subject: str
    stream_seq: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """Where a submission ended, from its task's events (:meth:`Client.wait`).

    Attributes:
        task_id: the task id.
        status: ``answered`` (:attr:`answer`), ``failed`` (:attr:`failure`),
            ``refused`` (the id names another body: :attr:`report`, code
            ``task_id_conflict``) or ``duplicate`` (the id was accepted before and its
            answer is no longer in the events: :attr:`report`).
        answer: the task's final answer (also for a duplicate of an answered task).
        failure: the task's failure.
        report: the router's report on this submission, when the id was taken.
    """

    task_id: str
    status: Literal["answered", "failed", "refused", "duplicate"]
    answer: FinalAnswer | None = None
    failure: TaskFailed | None = None
    report: TaskResubmitted | None = None


class Client:
    """Submits tasks to one site.

    Args:
        js: a JetStream context on a connection to the site's server.
        site: the site name.
        tenant: submit as this tenant only: tasks go to
            ``sm.v1.task.<site>.<tenant>.<kind>``, the subjects a tenant's own client
            identity (``client-<tenant>``, ``docs/security.md``) may publish, and
            :meth:`wait` reads only the tenant's answer subject. ``None``: any tenant
            (a gateway's ``client`` identity, or the operator).
    """

    def __init__(self, js: JetStreamContext, site: str, *, tenant: str | None = None) -> None:
        self._js = js
        self._subjects = Subjects(site)
        self._tenant = tenant

    async def submit(self, task: Task, *, task_id: str | None = None) -> Submitted:
        """Publish ``task`` and wait for JetStream to store it.

        Args:
            task: the task; its ``task_id`` wins over ``task_id``.
            task_id: id to use when the task has none.

        A tenant-scoped client (``tenant=``) submits a task with the default tenant
        (``"default"``) as its own tenant's.

        Raises:
            SchemaError: the task has no id and none was given, or (a tenant-scoped
                client) it names another tenant (``$.tenant``).
            StreamFull: ``TASKS_<site>`` is full and refused it (nothing was stored).
            nats.js.errors.APIError: the server refused the message.
        """
        tid = task.task_id or task_id
        if not tid:
            raise SchemaError("a task needs a `task_id` to be tracked", field="$.task_id")
        tenant = task.tenant
        if self._tenant is not None and tenant != self._tenant:
            if tenant != "default":
                raise SchemaError(
                    f"`tenant` is {tenant[:64]!r}, but this client submits for tenant "
                    f"{self._tenant!r} only",
                    field="$.tenant",
                )
            tenant = self._tenant
        task = msgspec.structs.replace(
            task, task_id=tid, tenant=tenant, submitted_at=task.submitted_at or utcnow()
        )
        kind = KIND_OF_TAG[schema_tag(task)]
        return await self.publish_raw(
            kind, encode(task), task_id=tid, schema=schema_tag(task), digest=task_digest(task)
        )

    async def publish_raw(
        self,
        kind: str,
        data: bytes,
        *,
        task_id: str,
        schema: str | None = None,
        digest: str | None = None,
    ) -> Submitted:
        """Publish raw bytes as a task of ``kind`` (the router validates them).

        The ``Nats-Msg-Id`` is ``<task_id>:submit:client-<16 hex of the body digest>``:
        the same task again is dropped by the server within its duplicate window (and
        reported by the router after it), while another body under the same id is
        stored, so that the router can refuse it (``docs/subjects.md``, "Task ids").

        Args:
            kind: subject kind token (``support_ticket``).
            data: the payload, published byte for byte.
            task_id: goes into ``sm-task-id`` and the ``Nats-Msg-Id``.
            schema: optional ``sm-schema`` header value.
            digest: :func:`sitemesh.schemas.task_digest` of the decoded task;
                ``None``: the SHA-256 of ``data``.

        Raises:
            StreamFull: ``TASKS_<site>`` is full and refused it (nothing was stored).
            nats.js.errors.APIError: the server refused the message.
        """
        subject = self._subjects.task(kind, self._tenant)
        body = digest or hashlib.sha256(data).hexdigest()
        mid = msg_id(task_id, "submit", f"client-{body[:16]}")
        headers = {HDR_MSG_ID: mid, HDR_TASK_ID: task_id}
        if schema:
            headers[HDR_SCHEMA] = schema
        try:
            ack = await self._js.publish(subject, data, headers=headers)
        except APIError as exc:
            if (full := as_stream_full(exc, subject)) is not None:
                raise full from None
            raise
        return Submitted(
            task_id=task_id, subject=subject, stream_seq=ack.seq, duplicate=bool(ack.duplicate)
        )

    async def wait(self, submitted: Submitted, *, timeout_s: float = 300.0) -> Outcome:
        """Wait until ``submitted``'s task has an answer, or the router refused it.

        Reads the task's events from the start of ``EVENTS_<site>`` (an ordered
        consumer), so an answer published before the call, or before this
        submission (a duplicate of an answered task), is found as well. The router's
        verdict on this very submission decides: a ``task_accepted.v1`` or a
        ``task_resubmitted.v1`` duplicate with its ``stream_seq`` is followed by the
        answer; a ``task_resubmitted.v1`` conflict is :attr:`Outcome.status`
        ``refused``. A ``task_failed.v1`` of the router before any verdict is this
        submission's failure (it was not accepted).

        Needs JetStream access to ``EVENTS_<site>`` (a site without identities, or
        the ``operator`` identity); the ``client`` identity may only subscribe to
        the answers (``sm.v1.event.<site>.*.final.*``) as they are published.

        A tenant-scoped client sees its tenant's answers and nothing else: it
        subscribes to the task's answer subject, then looks for an answer already
        stored (a direct get, ``allow_direct`` on ``EVENTS_<site>``), and its
        outcome is ``answered`` or a timeout. Refusals and failures are events the
        tenant may not read (the operator sees them: ``sitemesh show``).

        Args:
            submitted: what :meth:`submit` or :meth:`publish_raw` returned.
            timeout_s: seconds to wait at most.

        Raises:
            TimeoutError: no outcome within ``timeout_s`` (the task may still run).
            nats.errors.Error: NATS failed (no permission, connection lost).
        """
        if self._tenant is not None:
            return await self._wait_answer(submitted, self._tenant, timeout_s)
        follow = _Follow(submitted)

        async def cb(msg: Msg) -> None:
            follow.on_event(msg.data)

        sub = await self._js.subscribe(
            self._subjects.task_events(submitted.task_id),
            cb=cb,
            ordered_consumer=True,
            config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
        )
        try:
            return await asyncio.wait_for(follow.done, timeout_s)
        except TimeoutError:
            raise TimeoutError(
                f"task {submitted.task_id!r} has no outcome after {timeout_s:g} s "
                "(it may still be running: `sitemesh show` it)"
            ) from None
        finally:
            await sub.unsubscribe()

    async def _wait_answer(self, submitted: Submitted, tenant: str, timeout_s: float) -> Outcome:
        """:meth:`wait` of a tenant-scoped client: the task's answer subject only."""
        subject = self._subjects.answer(submitted.task_id, tenant)
        found: asyncio.Future[FinalAnswer] = asyncio.get_running_loop().create_future()

        def settle(data: bytes) -> None:
            try:
                ev = EVENT_DECODER.decode(data)
            except msgspec.MsgspecError:
                return
            if isinstance(ev, FinalAnswer) and not found.done():
                found.set_result(ev)

        async def cb(msg: Msg) -> None:
            settle(msg.data)

        nc = self._js._nc  # a core subscription: the identity has no consumer API
        sub = await nc.subscribe(subject, cb=cb)
        try:
            with contextlib.suppress(NotFoundError):  # not answered yet: wait live
                stored = await self._js.get_last_msg(
                    self._subjects.events_stream, subject, direct=True
                )
                settle(stored.data or b"")
            answer = await asyncio.wait_for(found, timeout_s)
            return Outcome(submitted.task_id, "answered", answer=answer)
        except TimeoutError:
            raise TimeoutError(
                f"task {submitted.task_id!r} of tenant {tenant!r} has no answer after "
                f"{timeout_s:g} s (it may still be running, or have failed: the operator "
                "sees why with `sitemesh show`)"
            ) from None
        finally:
            await sub.unsubscribe()


class _Follow:
    """The events of one submission's task, in stream order, until an outcome."""

    def __init__(self, submitted: Submitted) -> None:
        self.tid = submitted.task_id
        self.seq = submitted.stream_seq
        self.done: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.verdict = False
        self.report: TaskResubmitted | None = None
        self.answer: FinalAnswer | None = None
        self.failure: TaskFailed | None = None

    def settle(self, outcome: Outcome) -> None:
        if not self.done.done():
            self.done.set_result(outcome)

    def on_event(self, data: bytes) -> None:
        try:
            ev = EVENT_DECODER.decode(data)
        except msgspec.MsgspecError:
            return  # an event type this client does not know
        match ev:
            case TaskAccepted() if ev.stream_seq in (0, self.seq):  # 0: an older router
                self.verdict = True
            case TaskResubmitted() if ev.stream_seq == self.seq:
                if ev.outcome == "conflict":
                    return self.settle(Outcome(self.tid, "refused", report=ev))
                self.verdict, self.report = True, ev
                if ev.status == "unknown":  # nothing more to come
                    return self.settle(Outcome(self.tid, "duplicate", report=ev))
            case FinalAnswer():
                self.answer = ev
            case TaskFailed():
                self.failure = ev
                if ev.role == "router" and not self.verdict:
                    return self.settle(Outcome(self.tid, "failed", failure=ev))
            case _:
                pass
        if not self.verdict:
            return None
        if self.answer is not None:
            self.settle(Outcome(self.tid, "answered", answer=self.answer, report=self.report))
        elif self.failure is not None:
            self.settle(Outcome(self.tid, "failed", failure=self.failure, report=self.report))
        return None
