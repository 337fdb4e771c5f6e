"""Which worker processes of a site are ready: the ``sitemesh_workers_<site>`` KV bucket.

Layout of the bucket (:func:`workers_bucket`, one per site, history 1, direct gets):

* key ``<role>.<host>_<pid>`` (:func:`presence_key`), one per worker process;
* value: a :class:`WorkerRecord` as JSON (role, site, host, pid, state, origin of
  the agent, when it started, became ready and last beat).

A worker puts its record once its services are built and its agent's ``setup()``
ran, then again every heartbeat (:attr:`HealthSettings.heartbeat_s`, 5 s); the
bucket's TTL (``max_age``, :attr:`HealthSettings.ttl_s`, 20 s) removes the record of a
process that stopped beating (SIGKILL, a lost host). On SIGTERM the record turns
``stopping`` and is deleted once the worker drained. Every step is fail-soft: the
registry is a signal, and a KV failure never stops a worker from taking work.

The bucket helpers (:func:`kv_bucket`, :func:`bucket_keys`, :func:`read_entry`) serve
the tool health bucket too (:mod:`._tools`), which has the same layout.

```python
presence = WorkerPresence(js, WorkerRecord.now(site="eu1", role="planner"), health)
await presence.start()   # ready: registered, heartbeat running
...
await presence.stopping()
await presence.shutdown()  # record deleted
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
from collections.abc import Iterable
from datetime import datetime
from typing import Final, Literal, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    BucketNotFoundError,
    KeyDeletedError,
    KeyNotFoundError,
    NotFoundError,
)
from nats.js.kv import KeyValue

from ..bus import open_kv
from ..config import HealthSettings
from ..schemas import utcnow

log = logging.getLogger("sitemesh.health")

_T = TypeVar("_T")

WORKERS_BUCKET_PREFIX: Final = "sitemesh_workers_"
"""Prefix of the per-site worker registry bucket (``sitemesh_workers_<site>``)."""

WorkerState = Literal["ready", "stopping"]
"""``ready``: loaded and taking work; ``stopping``: finishing in-flight work (SIGTERM)."""

KV_TIMEOUT_S: Final = 2.0
"""Seconds one registry call may take before it is given up (and retried later)."""


def workers_bucket(site: str) -> str:
    """The KV bucket of ``site``'s worker registry: ``sitemesh_workers_<site>``."""
    return f"{WORKERS_BUCKET_PREFIX}{site}"


_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9-]")


def presence_key(role: str, host: str, pid: int) -> str:
    """The registry key of one process: ``<role>.<host>_<pid>``.

    ``host`` is reduced to ``[A-Za-z0-9-]`` (dots and underscores become ``-``), so the
    key has exactly two tokens and the pid follows the last ``_``.
    """
    return f"{role}.{_KEY_UNSAFE.sub('-', host)}_{pid}"


class ProcessRecord(msgspec.Struct, frozen=True, kw_only=True):
    """What names one process in a site's process buckets, the worker registry and
    the tool health (:class:`WorkerRecord`, ``ToolHealthReport``): its key there is
    ``<role>.<host>_<pid>``."""

    role: str
    """The role it runs (``planner``, ``router``, ``recorder``, ``synthesiser``...)."""
    site: str
    """The site it serves (``hub`` for the cloud agents)."""
    host: str
    """``socket.gethostname()`` of the process."""
    pid: int
    """Its process id on ``host``."""

    @property
    def key(self) -> str:
        """Its key in the bucket, :func:`presence_key`."""
        return presence_key(self.role, self.host, self.pid)


class WorkerRecord(ProcessRecord, frozen=True, kw_only=True):
    """One worker process in the registry (the JSON value of its key)."""

    state: WorkerState = "ready"
    """``ready`` or ``stopping``."""
    origin: str = ""
    """Where the role's code comes from: the agent's entry point or import path
    (``sitemesh 0.1.0, entry point planner``), or ``sitemesh service``."""
    started_at: datetime
    """When the process started (UTC)."""
    ready_at: datetime
    """When it finished loading (UTC); ``ready_at - started_at`` is its load time."""
    heartbeat_at: datetime | None = None
    """Its last heartbeat (UTC)."""

    @classmethod
    def now(
        cls, *, site: str, role: str, origin: str = "", started_at: datetime | None = None
    ) -> WorkerRecord:
        """The record of *this* process, ready now."""
        at = utcnow()
        return cls(
            role=role,
            site=site,
            host=socket.gethostname(),
            pid=os.getpid(),
            origin=origin,
            started_at=started_at or at,
            ready_at=at,
            heartbeat_at=at,
        )


_ENCODER = msgspec.json.Encoder()
_DECODER = msgspec.json.Decoder(WorkerRecord)


async def kv_bucket(
    js: JetStreamContext,
    name: str,
    *,
    description: str,
    ttl_s: float,
    max_value_size: int,
    create: bool = True,
) -> KeyValue:
    """The per-site KV bucket ``name`` of process reports (this worker registry, the
    tool health), created when it is missing: one value per key (history 1), a TTL
    that drops the report of a process that stopped, file storage (it survives a
    server restart: with identities, only the provisioner could create it again),
    direct gets. An existing bucket is used as it is (its TTL included), also one
    another process created meanwhile (with a different config).

    Args:
        js: the JetStream context.
        name: the bucket.
        description: its description, for a new bucket.
        ttl_s: its ``max_age`` in seconds, for a new bucket.
        max_value_size: its largest value in bytes, for a new bucket.
        create: create it when missing; ``False``: raise instead.

    Raises:
        BucketNotFoundError: it is missing and ``create`` is false.
        nats.js.errors.APIError: the server refused (e.g. no permission).
    """
    config = KeyValueConfig(
        bucket=name,
        description=description,
        history=1,
        ttl=ttl_s,
        storage=StorageType.FILE,
        direct=True,
        max_value_size=max_value_size,
    )
    return await open_kv(js, config, create=create)


async def bucket_keys(js: JetStreamContext, bucket: str) -> list[str]:
    """The keys stored in ``bucket`` now, sorted (none when it does not exist).

    Lists the bucket's subjects (``STREAM.INFO`` with a subjects filter): no consumer
    is created.

    Raises:
        nats.errors.Error: NATS failed (timeout, no permission).
    """
    prefix = f"$KV.{bucket}."
    try:
        info = await js.stream_info(f"KV_{bucket}", subjects_filter=f"{prefix}>")
    except NotFoundError:
        return []
    return sorted(s.removeprefix(prefix) for s in (info.state.subjects or {}))


async def read_entry(kv: KeyValue, key: str, decoder: msgspec.json.Decoder[_T]) -> _T | None:
    """The value stored under ``key``, decoded, or ``None``: no such key, deleted,
    expired, empty, or malformed (logged, by key and bucket).

    Raises:
        nats.errors.Error: NATS failed (timeout, no permission).
    """
    try:
        entry = await kv.get(key)
    except (KeyNotFoundError, KeyDeletedError, NotFoundError):
        return None
    if not entry.value:
        return None
    try:
        return decoder.decode(entry.value)
    except msgspec.ValidationError:
        log.warning("ignoring malformed entry %s of %s", key, entry.bucket)
        return None


async def provision_workers(
    js: JetStreamContext, site: str, health: HealthSettings | None = None
) -> KeyValue:
    """Create ``site``'s worker registry bucket if it is missing; returns it.

    Run by whoever provisions the site (``sitemesh edge`` as ``operator``, the
    ``provisioner``), and by the workers themselves on a site without identities.
    An existing bucket is used as it is (its TTL included).

    Args:
        js: a JetStream context allowed to create the bucket's stream.
        site: the site name.
        health: ``ttl_s`` for a new bucket (default :class:`HealthSettings`).

    Raises:
        nats.js.errors.APIError: the server refused (e.g. no permission).
    """
    return await kv_bucket(
        js,
        workers_bucket(site),
        description=f"ready worker processes of site {site} (sitemesh.runtime)",
        ttl_s=(health or HealthSettings()).ttl_s,
        max_value_size=4096,
    )


async def read_worker(js: JetStreamContext, site: str, key: str) -> WorkerRecord | None:
    """The record stored under ``key``, or ``None`` (no bucket, no key, deleted, expired,
    malformed: logged).

    Raises:
        nats.errors.Error: NATS failed (timeout, no permission).
    """
    try:
        kv = await js.key_value(workers_bucket(site))
    except (BucketNotFoundError, NotFoundError):
        return None
    return await read_entry(kv, key, _DECODER)


async def read_workers(js: JetStreamContext, site: str) -> list[WorkerRecord]:
    """Every live record of ``site``'s registry (none when the bucket does not exist).

    Lists the bucket's keys (:func:`bucket_keys`: no consumer is created) and reads
    each. Records of processes that stopped beating are gone after the bucket's TTL.

    Raises:
        nats.errors.Error: NATS failed (timeout, no permission).
    """
    keys = await bucket_keys(js, workers_bucket(site))
    found = await asyncio.gather(*(read_worker(js, site, k) for k in keys))
    return [r for r in found if r is not None]


def ready_by_role(records: Iterable[WorkerRecord]) -> dict[str, int]:
    """How many ``ready`` processes each role has."""
    out: dict[str, int] = {}
    for r in records:
        if r.state == "ready":
            out[r.role] = out.get(r.role, 0) + 1
    return out


class WorkerPresence:
    """Keeps this process's :class:`WorkerRecord` in the registry while it runs.

    Lifecycle: :meth:`start` (register, start the heartbeat) once the process is
    loaded, :meth:`stopping` on SIGTERM, :meth:`shutdown` after draining (safe to
    call twice). Failures are logged and retried on the next beat; none is raised.

    Args:
        js: the process's JetStream context.
        record: this process's record (:meth:`WorkerRecord.now`).
        health: heartbeat interval and, for a bucket this process creates, its TTL.
        create_bucket: create the bucket when it is missing (processes without an
            identity; with one the provisioner creates it).
    """

    def __init__(
        self,
        js: JetStreamContext,
        record: WorkerRecord,
        health: HealthSettings | None = None,
        *,
        create_bucket: bool = True,
    ) -> None:
        self._js = js
        self.record = record
        self._health = health or HealthSettings()
        self._create = create_bucket
        self._kv: KeyValue | None = None
        self._interval_s = self._health.heartbeat_s
        self._beat: asyncio.Task[None] | None = None
        self._failing = False
        self._stored = False
        self._closed = False

    @property
    def key(self) -> str:
        """This process's registry key."""
        return self.record.key

    async def _bucket(self) -> KeyValue:
        if self._kv is None:
            bucket = workers_bucket(self.record.site)
            if self._create:
                kv = await provision_workers(self._js, self.record.site, self._health)
            else:
                kv = await self._js.key_value(bucket)
            ttl_s = (await kv.status()).ttl
            if ttl_s:  # beat at least three times per TTL, whatever the bucket says
                self._interval_s = min(self._health.heartbeat_s, ttl_s / 3)
            self._kv = kv
        return self._kv

    async def _put(self) -> bool:
        """Store the record now; ``False`` (logged) if it could not be stored."""
        self.record = msgspec.structs.replace(self.record, heartbeat_at=utcnow())
        try:
            kv = await asyncio.wait_for(self._bucket(), KV_TIMEOUT_S)
            await asyncio.wait_for(kv.put(self.key, _ENCODER.encode(self.record)), KV_TIMEOUT_S)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a signal only: never stop the worker for it
            self._kv = None  # look the bucket up (or create it) again next time
            if not self._failing:
                log.warning(
                    "cannot register %s in %s (retrying every %.0f s): %r",
                    self.key, workers_bucket(self.record.site), self._interval_s, exc,
                )  # fmt: skip
            self._failing = True
            return False
        if self._failing:
            log.info("registered %s in %s again", self.key, workers_bucket(self.record.site))
        self._failing = False
        self._stored = True
        return True

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            await self._put()

    async def start(self) -> bool:
        """Register (state ``ready``) and start the heartbeat.

        Returns:
            Whether the first registration was stored (the heartbeat retries if not).
        """
        stored = await self._put()
        if self._beat is None and not self._closed:
            self._beat = asyncio.create_task(self._heartbeat(), name=f"heartbeat {self.key}")
        return stored

    async def stopping(self) -> None:
        """Mark the record ``stopping`` (finishing in-flight work); the beat goes on."""
        if self._closed or self.record.state == "stopping":
            return
        self.record = msgspec.structs.replace(self.record, state="stopping")
        await self._put()

    async def shutdown(self) -> None:
        """Stop the heartbeat and delete the record. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self._kv is None and not self._stored:
            return
        try:
            kv = self._kv
            if kv is None:  # the last beat failed: look the bucket up once more
                bucket = workers_bucket(self.record.site)
                kv = await asyncio.wait_for(self._js.key_value(bucket), KV_TIMEOUT_S)
            await asyncio.wait_for(kv.delete(self.key), KV_TIMEOUT_S)
        except Exception as exc:  # the TTL removes it anyway
            log.warning("cannot remove %s from the registry (it expires): %r", self.key, exc)
