"""The task-id registry: which task each id names, for good.

JetStream drops a repeated ``Nats-Msg-Id`` only within ``bus.duplicate_window_s``
(10 min). Past it, the same id would run the whole workflow again, and within it a
different body under the same id would be dropped without a word. The router
therefore records every id it accepts, create-only, in the KV bucket
``sitemesh_tasks_<site>`` (:func:`task_registry_bucket`):

* key: the id as one subject token (:func:`sitemesh.bus.token`, the token of the
  task's event subjects too), so two ids that would share event subjects
  (``a.b``, ``a_b``) cannot both be accepted;
* value: a :class:`TaskRecord`: the id, the digest of the body
  (:func:`sitemesh.schemas.task_digest`), the sequence of the accepted message in
  ``TASKS_<site>`` and the time.

A new ``TASKS`` message whose id is in the registry under another stream sequence is a
*resubmission* (:class:`sitemesh.schemas.TaskResubmitted`): the same body is a
duplicate (reported with where the accepted task stands, nothing runs), another body
is refused. The same stream sequence is a *redelivery* of the accepted message (the
router died after the ``create``, or its ack was lost): processed normally, its
outputs deduplicated by their derived msg ids.

The bucket keeps one value per key (history 1) for ``2 x bus.max_age_s``: a task's
events, its answer included, stay in ``EVENTS_<site>`` for ``max_age_s`` from when
they are published, and a task may wait that long for an approval before it is
answered. It holds at most ``bus.max_bytes`` (a record is ~250 bytes: ~4 million ids
per GiB) and refuses new keys when full (discard ``new``): the router then cannot
accept a task, naks it, and dead-letters it after ``bus.max_deliver`` deliveries
with the reason, never accepting an id it could not record.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    APIError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from ..bus import Subjects, open_kv, token
from ..config import BusSettings
from ..errors import TransientError
from ..schemas import (
    EVENT_DECODER,
    AnswerStatus,
    ApprovalRequested,
    FinalAnswer,
    TaskFailed,
)

log = logging.getLogger("sitemesh.router")

TASKS_BUCKET_PREFIX: Final = "sitemesh_tasks_"
"""Prefix of the per-site task-id registry (``sitemesh_tasks_<site>``)."""

KV_TIMEOUT_S: Final = 5.0
"""Seconds one registry operation may take before the task is retried."""

MAX_EVENTS_SCANNED: Final = 256
"""Events of one task read to find where it stands (a task has ~10)."""

_ENCODER: Final = msgspec.json.Encoder()


def task_registry_bucket(site: str) -> str:
    """The KV bucket of ``site``'s accepted task ids: ``sitemesh_tasks_<site>``."""
    return f"{TASKS_BUCKET_PREFIX}{site}"


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What the registry stores for an accepted task id (JSON)."""

    task_id: str
    """The id as the router accepted it (the key is its token)."""
    digest: str
    """:func:`sitemesh.schemas.task_digest` of the accepted body (SHA-256, hex)."""
    stream_seq: int
    """Sequence of the accepted message in ``TASKS_<site>``."""
    accepted_at: datetime
    """When the router accepted it (UTC)."""


_DECODER: Final = msgspec.json.Decoder(TaskRecord)


class AnswerState(msgspec.Struct, frozen=True, kw_only=True):
    """Where an accepted task stands, read from its events."""

    status: AnswerStatus
    seq: int | None = None
    """Sequence in ``EVENTS_<site>`` of its answer (or failure)."""
    at: datetime | None = None
    """When that event was stored."""


def _config(site: str, bus: BusSettings) -> KeyValueConfig:
    return KeyValueConfig(
        bucket=task_registry_bucket(site),
        description=f"accepted task ids of site {site}, create-only (sitemesh router)",
        history=1,
        ttl=2 * bus.max_age_s,
        max_bytes=bus.max_bytes,
        max_value_size=1024,
        storage=StorageType.FILE,
        direct=True,
    )


async def _bucket(js: JetStreamContext, site: str, bus: BusSettings, *, create: bool) -> KeyValue:
    return await open_kv(js, _config(site, bus), create=create)


async def provision_task_registry(
    js: JetStreamContext, site: str, bus: BusSettings | None = None
) -> KeyValue:
    """Create ``site``'s task-id registry if it is missing; returns it.

    Run next to :func:`sitemesh.runtime.provision_workers` by whoever provisions the
    site (``sitemesh edge`` as ``operator``, the demo, the provisioner): on a site with
    per-role identities the router may read and create keys, never the bucket. A
    router without an identity creates it itself. An existing bucket is used as it is.

    Args:
        js: a JetStream context allowed to create the bucket's stream.
        site: the site name.
        bus: ``max_age_s`` (the TTL is twice it) and ``max_bytes`` for a new bucket
            (default :class:`~sitemesh.config.BusSettings`).

    Raises:
        nats.js.errors.APIError: the server refused (e.g. no permission).
    """
    return await _bucket(js, site, bus or BusSettings(), create=True)


class TaskRegistry:
    """The router's view of ``sitemesh_tasks_<site>`` (see the module docstring).

    Args:
        js: a JetStream context.
        subjects: the site's subject map (its event subjects, for :meth:`answer_state`).
        bus: limits of a bucket it creates.
        create_bucket: create the bucket when missing (a site without identities);
            ``False``: the provisioner did (:func:`provision_task_registry`).
    """

    def __init__(
        self,
        js: JetStreamContext,
        subjects: Subjects,
        bus: BusSettings | None = None,
        *,
        create_bucket: bool = True,
    ) -> None:
        self._js = js
        self._subjects = subjects
        self._bus = bus or BusSettings()
        self._create = create_bucket
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return task_registry_bucket(self._subjects.site)

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            async with self._lock:
                if self._kv is None:
                    self._kv = await _bucket(
                        self._js, self._subjects.site, self._bus, create=self._create
                    )
        return self._kv

    def _failed(self, what: str, exc: BaseException) -> TransientError:
        detail = f"{type(exc).__name__}: {exc}".strip()
        return TransientError(
            f"task registry {self.bucket}: {what} failed ({detail}); the task is retried "
            f"and never accepted unrecorded (a full bucket holds bus.max_bytes)"
        )

    async def lookup(self, task_id: str) -> TaskRecord | None:
        """The record of ``task_id``'s token, or ``None`` when it was never accepted
        (or its record expired).

        Raises:
            TransientError: the bucket cannot be read (missing, NATS down), or the
                record is not a :class:`TaskRecord` (the message says so).
        """
        try:
            kv = await self._bucket()
            entry = await asyncio.wait_for(kv.get(token(task_id)), KV_TIMEOUT_S)
        except KeyNotFoundError:
            return None
        except (APIError, TimeoutError, OSError) as exc:
            raise self._failed(f"reading {task_id!r}", exc) from exc
        return self._decode(task_id, entry.value or b"")

    def _decode(self, task_id: str, data: bytes) -> TaskRecord:
        try:
            return _DECODER.decode(data)
        except msgspec.MsgspecError as exc:
            raise TransientError(
                f"task registry {self.bucket}: the record of {task_id!r} is not a task "
                f"record ({exc}); fix or delete key {token(task_id)!r}"
            ) from exc

    async def claim(self, record: TaskRecord) -> TaskRecord:
        """Record ``record`` unless its id's token is recorded already.

        Returns:
            ``record`` when it is now the record, else the record that was there
            (compare ``stream_seq``: the same one is a redelivery of ``record``'s
            message).

        Raises:
            TransientError: the bucket cannot be written (full, missing, NATS down).
        """
        key = token(record.task_id)
        try:
            kv = await self._bucket()
            await asyncio.wait_for(kv.create(key, _ENCODER.encode(record)), KV_TIMEOUT_S)
            return record
        except KeyWrongLastSequenceError:
            pass  # recorded before: by this message's earlier delivery, or another
        except (APIError, TimeoutError, OSError) as exc:
            raise self._failed(f"recording {record.task_id!r}", exc) from exc
        existing = await self.lookup(record.task_id)
        if existing is None:  # expired in between: a create again decides
            return await self.claim(record)
        return existing

    async def reclaim(self, record: TaskRecord, previous: TaskRecord) -> TaskRecord:
        """Move the id's record from ``previous`` to ``record`` (a redriven dead letter
        of the accepted task), unless someone changed it meanwhile.

        Returns:
            ``record`` when it is now the record, else the current one.

        Raises:
            TransientError: the bucket cannot be written.
        """
        key = token(record.task_id)
        try:
            kv = await self._bucket()
            entry = await asyncio.wait_for(kv.get(key), KV_TIMEOUT_S)
            if entry.value is None or self._decode(record.task_id, entry.value) != previous:
                return self._decode(record.task_id, entry.value or b"")
            await asyncio.wait_for(
                kv.update(key, _ENCODER.encode(record), last=entry.revision), KV_TIMEOUT_S
            )
            return record
        except KeyNotFoundError:
            return await self.claim(record)
        except KeyWrongLastSequenceError:
            return await self.lookup(record.task_id) or await self.claim(record)
        except (APIError, TimeoutError, OSError) as exc:
            raise self._failed(f"re-recording {record.task_id!r}", exc) from exc

    async def answer_state(self, task_id: str) -> AnswerState:
        """Where ``task_id`` stands: its final answer, else a failure or a pending
        approval among its events, else ``in_progress``.

        Fail-soft: ``unknown`` when ``EVENTS_<site>`` cannot be read (logged).
        """
        events = self._subjects.events_stream
        try:
            raw = await asyncio.wait_for(
                self._js.get_last_msg(events, self._subjects.task_answer(task_id)), KV_TIMEOUT_S
            )
            return AnswerState(status="answered", seq=raw.seq, at=raw.time)
        except NotFoundError:
            pass
        except (APIError, TimeoutError, OSError) as exc:
            log.warning("answer of %r unreadable: %s", task_id, type(exc).__name__)
            return AnswerState(status="unknown")
        state = AnswerState(status="unknown")
        seq = 1
        try:
            for _ in range(MAX_EVENTS_SCANNED):
                raw = await asyncio.wait_for(
                    self._js.get_msg(
                        events, seq=seq, subject=self._subjects.task_events(task_id), next=True
                    ),
                    KV_TIMEOUT_S,
                )
                seq = (raw.seq or seq) + 1
                try:
                    ev = EVENT_DECODER.decode(raw.data or b"")
                except msgspec.MsgspecError:
                    continue  # a newer event type: not what is looked for
                if isinstance(ev, FinalAnswer):  # before answers had a subject of their own
                    return AnswerState(status="answered", seq=raw.seq, at=raw.time)
                if isinstance(ev, TaskFailed):
                    return AnswerState(status="failed", seq=raw.seq, at=raw.time)
                # the latest progress event says it: parked, or moving on
                waiting = isinstance(ev, ApprovalRequested)
                state = AnswerState(status="awaiting_approval" if waiting else "in_progress")
        except NotFoundError:
            pass  # no more events
        except (APIError, TimeoutError, OSError) as exc:
            log.warning("events of %r unreadable: %s", task_id, type(exc).__name__)
        return state
