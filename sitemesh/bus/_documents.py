"""Versioned configuration documents in a NATS KV bucket, followed live.

The policy rules and the workflows are both such documents: a TOML text stored
exactly as published under a key (``rules``, ``workflows``) with an optional
per-site override (``<key>.<site>``, which replaces the global one there), parsed
and validated by every reader, and picked up without a restart by a
:class:`LiveDocument` watching the bucket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Generic, Protocol, Self, TypeVar

import msgspec
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
)
from nats.js.errors import NoKeysError as _NoKeysError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from ..errors import SitemeshError

log = logging.getLogger("sitemesh.bus")

CONFIG_BUCKET: Final = "sitemesh_policy"
"""The KV bucket holding the policy rules and the workflows (one bucket, so one
``nats kv`` view and one set of permissions for a site's configuration)."""

CONFIG_HISTORY: Final = 10
"""Revisions kept per key (``nats kv history sitemesh_policy rules``); at least 5."""

_BUCKET_MAX_BYTES: Final = 8 * 1024 * 1024
"""Size limit of the bucket in bytes (a document is a few KiB)."""

MAX_DOCUMENT_BYTES: Final = 256 * 1024
"""Largest document accepted, in bytes."""


H = TypeVar("H")


def load_toml(text: str, header: type[H], *, source: str, error: type[SitemeshError]) -> H:
    """Parse a TOML document into its ``header`` Struct (the shape every configuration
    document shares: the policy rules, the workflows).

    Args:
        text: the TOML text.
        header: the msgspec Struct of the document's top level.
        source: where it came from, for the message.
        error: the error class to raise (``PolicyError``, ``WorkflowError``).

    Raises:
        SitemeshError: of class ``error``: ``<source>: not valid TOML: ...`` or
            ``<source>: <msgspec message naming the field>``.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from exc
    try:
        return msgspec.convert(doc, header)
    except msgspec.ValidationError as exc:
        raise error(f"{source}: {exc}") from exc


class Document(Protocol):
    """What a parsed document offers: a content hash and its own label."""

    @property
    def version(self) -> str: ...

    @property
    def label(self) -> str: ...


D = TypeVar("D", bound=Document)

Parse = Callable[[str, str], D]
"""``parse(text, source) -> document``; raises a :class:`SitemeshError` when invalid."""


@dataclass(frozen=True, slots=True)
class Revision:
    """One stored revision of a document key.

    Attributes:
        key: ``<key>`` or ``<key>.<site>``.
        revision: the KV revision (the bucket stream's sequence number).
        version: the document's version hash, ``"deleted"`` for a delete marker,
            or ``"invalid"`` when the text does not validate.
        label: the document's own ``version`` label (``""`` when deleted or invalid).
        created: when it was stored (UTC), if known.
    """

    key: str
    revision: int
    version: str
    label: str
    created: datetime | None


async def open_kv(js: JetStreamContext, config: KeyValueConfig, *, create: bool = True) -> KeyValue:
    """KV bucket ``config.bucket``, created with ``config`` when it is missing. An
    existing bucket is used as it is, also one another process created meanwhile
    (with another configuration: the create is refused, the bucket is opened).

    Args:
        js: the JetStream context.
        config: the bucket's configuration, for a new bucket.
        create: create it when missing; ``False``: raise instead (an identity that may
            use the bucket but not create it).

    Raises:
        BucketNotFoundError: it is missing and ``create`` is false.
        nats.js.errors.APIError: the server refused (e.g. no permission to create it).
    """
    assert config.bucket is not None
    try:
        return await js.key_value(config.bucket)
    except BucketNotFoundError:
        if not create:
            raise
    try:
        return await js.create_key_value(config)
    except BadRequestError:  # created meanwhile by another process (another config)
        return await js.key_value(config.bucket)


async def config_bucket(
    js: JetStreamContext, bucket: str = CONFIG_BUCKET, history: int = CONFIG_HISTORY
) -> KeyValue:
    """The configuration bucket (policy rules, workflows), created if missing with
    ``history`` revisions per key. Whoever provisions a site creates it
    (:func:`sitemesh.bus.provision`), so no worker identity needs to create buckets;
    concurrent creators with the same configuration all succeed.

    Raises:
        nats.js.errors.APIError: the server refused (e.g. no permission to create it).
    """
    return await open_kv(
        js,
        KeyValueConfig(
            bucket=bucket,
            description="sitemesh configuration (TOML): rules[.<site>], workflows[.<site>]",
            history=history,
            max_bytes=_BUCKET_MAX_BYTES,
            max_value_size=MAX_DOCUMENT_BYTES,
        ),
    )


def pending_bucket(site: str) -> str:
    """Name of the site-local KV bucket of answers waiting for the cloud."""
    return f"sm_pending_{site}"


async def pending_kv(js: JetStreamContext, site: str) -> KeyValue:
    """The pending-answers bucket of ``site``, created if missing (file storage).

    :func:`sitemesh.bus.provision` creates it, so the escalation identity may use it
    without being allowed to create buckets.

    Raises:
        nats.js.errors.APIError: the server refused (e.g. no permission to create it).
    """
    return await open_kv(
        js, KeyValueConfig(bucket=pending_bucket(site), history=1, description="drafts")
    )


class DocumentStore(Generic[D]):
    """Publishes and reads one kind of document in a KV bucket.

    The bucket is created on first use (idempotent; concurrent creators with the
    same configuration all succeed).

    Args:
        js: a JetStream context.
        key: the document's key (``rules``, ``workflows``).
        parse: ``(text, source) -> document``, raising :class:`SitemeshError` subclasses.
        bundled: the text seeded under ``key`` when it is empty (the packaged default).
        bucket: the bucket name (tests use a unique one).
        history: revisions kept per key, 5-64.

    Raises:
        ValueError: ``history`` is outside 5-64.
    """

    def __init__(
        self,
        js: JetStreamContext,
        *,
        key: str,
        parse: Parse[D],
        bundled: str,
        bucket: str = CONFIG_BUCKET,
        history: int = CONFIG_HISTORY,
    ) -> None:
        if not 5 <= history <= 64:
            raise ValueError(f"history must be 5-64 revisions, got {history}")
        self._js = js
        self.key = key
        self.parse = parse
        self.bundled = bundled
        self.bucket = bucket
        self.max_history = history
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    def key_for(self, site: str | None = None) -> str:
        """The key of the document for ``site`` (``<key>.<site>``), or ``<key>``."""
        return self.key if site is None else f"{self.key}.{site}"

    async def kv(self) -> KeyValue:
        """The bucket, created with :attr:`max_history` revisions per key if missing."""
        if self._kv is not None:
            return self._kv
        async with self._lock:
            if self._kv is None:
                self._kv = await config_bucket(self._js, self.bucket, self.max_history)
        return self._kv

    async def seed(self) -> bool:
        """Store the bundled text under :attr:`key` if the key is empty.

        Safe to race: of several seeders exactly one writes.

        Returns:
            ``True`` if this call stored it.
        """
        kv = await self.kv()
        try:
            await kv.create(self.key, self.bundled.encode())
        except KeyWrongLastSequenceError:
            return False
        log.info("seeded %s/%s with the bundled default", self.bucket, self.key)
        return True

    async def publish(self, text: str, *, site: str | None = None) -> D:
        """Validate a document and store it; every :class:`LiveDocument` picks it up.

        Args:
            text: the TOML document.
            site: store it as the override of this site (``<key>.<site>``);
                ``None``: the document of every site.

        Returns:
            The stored document, parsed.

        Raises:
            SitemeshError: the document is invalid or too large; nothing is stored.
                The message names what is wrong (see the ``parse`` function).
        """
        key = self.key_for(site)
        doc = self.parse(text, f"{self.bucket}/{key}")
        data = text.encode()
        if len(data) > MAX_DOCUMENT_BYTES:
            raise SitemeshError(f"{self.bucket}/{key}: larger than {MAX_DOCUMENT_BYTES} B")
        kv = await self.kv()
        revision = await kv.put(key, data)
        log.info(
            "published %s %s (%s) to %s/%s revision %d",
            self.key,
            doc.version,
            doc.label,
            self.bucket,
            key,
            revision,
        )
        return doc

    async def current(self, site: str | None = None) -> D:
        """The document in force: ``<key>.<site>`` if set, else ``<key>`` (seeded if empty).

        Raises:
            SitemeshError: the stored text is invalid (written around :meth:`publish`).
        """
        kv = await self.kv()
        if site is not None:
            doc = await self._get(kv, self.key_for(site))
            if doc is not None:
                return doc
        doc = await self._get(kv, self.key)
        if doc is None:
            await self.seed()
            doc = await self._get(kv, self.key)
        if doc is None:  # deleted again between seed and get
            return self.parse(self.bundled, "<bundled>")
        return doc

    async def _get(self, kv: KeyValue, key: str) -> D | None:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        return self.parse((entry.value or b"").decode(), f"{self.bucket}/{key}@{entry.revision}")

    async def history(self, site: str | None = None) -> list[Revision]:
        """The stored revisions of ``<key>`` (or ``<key>.<site>``), oldest first.

        Returns:
            At most :attr:`max_history` revisions; empty if the key was never written.
        """
        kv = await self.kv()
        key = self.key_for(site)
        try:
            entries = await kv.history(key)
        except _NoKeysError:
            return []
        out: list[Revision] = []
        for e in entries:
            created = e.created if isinstance(e.created, datetime) else None
            if e.operation in (KV_DEL, KV_PURGE):
                out.append(Revision(key, e.revision or 0, "deleted", "", created))
                continue
            try:
                d = self.parse((e.value or b"").decode(), f"{self.bucket}/{key}")
            except SitemeshError:
                out.append(Revision(key, e.revision or 0, "invalid", "", created))
                continue
            out.append(Revision(key, e.revision or 0, d.version, d.label, created))
        return out

    async def find(self, version: str, site: str | None = None) -> D | None:
        """The stored document whose version hash is ``version``: searched in the history
        of ``<key>.<site>`` (newest first), then of ``<key>``; ``None`` if neither holds it
        (more than :attr:`max_history` revisions ago, or never stored)."""
        for key_site in (site, None) if site is not None else (None,):
            for rev in reversed(await self.history(key_site)):
                if rev.version == version:
                    text = await self.text(key_site, revision=rev.revision)
                    if text is not None:
                        return self.parse(text, f"{self.bucket}/{rev.key}@{rev.revision}")
        return None

    async def text(self, site: str | None = None, revision: int | None = None) -> str | None:
        """The stored text of ``<key>[.<site>]`` (at ``revision``), ``None`` if absent."""
        kv = await self.kv()
        try:
            entry = await kv.get(self.key_for(site), revision=revision)
        except KeyNotFoundError:
            return None
        return (entry.value or b"").decode()

    async def remove_override(self, site: str) -> None:
        """Delete ``<key>.<site>``, so the site follows ``<key>`` again."""
        kv = await self.kv()
        await kv.delete(self.key_for(site))


class LiveDocument(Generic[D]):
    """The document in force, kept current by a KV watcher; call it for a snapshot.

    A new revision of ``<key>`` (or of ``<key>.<site>``, which takes precedence)
    applies without a restart. The swap is one attribute assignment, so a reader in
    a worker thread sees either the old or the new document, never a mix.

    Failure behaviour (fail closed):

    * an invalid revision (written around :meth:`DocumentStore.publish`) is logged
      and ignored: the last valid document stays, :attr:`last_error` says why;
    * deleting ``<key>.<site>`` falls back to ``<key>``; deleting ``<key>`` falls
      back to the bundled default;
    * if the watcher fails (connection lost for good), it is restarted after
      ``retry_s`` seconds; the last document stays in force meanwhile.

    Lifecycle: ``async with live:`` or ``await live.start()`` (returns once the
    current revision is loaded); :meth:`run` waits until :meth:`shutdown`;
    :meth:`shutdown` is safe to call twice.

    Args:
        store: the store to follow.
        site: the site whose override applies; ``None``: only the global key.
        retry_s: seconds before a failed watcher is restarted.
    """

    def __init__(
        self, store: DocumentStore[D], *, site: str | None = None, retry_s: float = 1.0
    ) -> None:
        self.store = store
        self.site = site
        self.retry_s = retry_s
        self.last_error: str | None = None
        """Why the last revision seen was ignored (``None`` if it applied)."""
        self.revision: int = 0
        """KV revision of the entry that produced :attr:`document` (0: bundled)."""
        self._global: tuple[D, int] | None = None
        self._override: tuple[D, int] | None = None
        self._doc: D | None = None
        self._listeners: list[Callable[[D], None]] = []
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def document(self) -> D:
        """The document in force.

        Raises:
            RuntimeError: :meth:`start` has not completed yet.
        """
        doc = self._doc
        if doc is None:
            raise RuntimeError(f"live {self.store.key} is not started: await start() first")
        return doc

    def __call__(self) -> D:
        """The document in force."""
        return self.document

    @property
    def version(self) -> str:
        """Version hash of the document in force."""
        return self.document.version

    def on_change(self, callback: Callable[[D], None]) -> None:
        """Call ``callback(document)`` (in the event loop) after each change of version."""
        self._listeners.append(callback)

    async def wait_for_version(self, version: str, timeout_s: float = 10.0) -> D:
        """Wait until the document in force has ``version``.

        Raises:
            TimeoutError: another version is still in force after ``timeout_s`` seconds.
        """
        async with asyncio.timeout(timeout_s):
            while self._doc is None or self._doc.version != version:
                changed = self._changed
                await changed.wait()
        return self.document

    async def start(self, timeout_s: float = 10.0) -> Self:
        """Seed the bucket if empty, load the document in force and start watching.

        Raises:
            TimeoutError: the current revision was not received within ``timeout_s``.
            SitemeshError: the stored document is invalid and there is no earlier one.
        """
        if self._task is not None:
            return self
        await self.store.seed()
        self._task = asyncio.create_task(
            self._watch_forever(), name=f"sitemesh-{self.store.key}-watch"
        )
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except BaseException:
            await self.shutdown()
            raise
        if self._doc is None:
            await self.shutdown()
            raise SitemeshError(
                f"{self.store.bucket}: no valid {self.store.key}: {self.last_error}"
            )
        return self

    async def run(self) -> None:
        """Wait until :meth:`shutdown` (the watcher runs in the background)."""
        if self._task is None:
            await self.start()
        await self._stopped.wait()

    async def shutdown(self) -> None:
        """Stop watching. Safe to call more than once; the last document stays readable."""
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def _watch_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                await self._watch_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "%s watcher on %s failed: %s; retrying", self.store.key, self.store.bucket, exc
                )
                await asyncio.sleep(self.retry_s)

    async def _watch_once(self) -> None:
        kv = await self.store.kv()
        watcher = await kv.watch(">")
        try:
            async for entry in watcher:
                if entry is None:  # end of the initial values
                    self._ready.set()
                    continue
                self._apply(entry)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]

    def _apply(self, entry: Any) -> None:
        key: str = entry.key
        if key == self.store.key:
            is_override = False
        elif self.site is not None and key == self.store.key_for(self.site):
            is_override = True
        else:
            return
        doc: D | None = None
        if entry.operation not in (KV_DEL, KV_PURGE):
            source = f"{self.store.bucket}/{key}@{entry.revision}"
            try:
                doc = self.store.parse((entry.value or b"").decode(), source)
            except SitemeshError as exc:
                self.last_error = str(exc)
                log.error("ignoring invalid %s; keeping %r", source, self._doc)
                return
        self.last_error = None
        slot = None if doc is None else (doc, entry.revision or 0)
        if is_override:
            self._override = slot
        else:
            self._global = slot
        self._set()

    def _set(self) -> None:
        new, revision = (
            self._override or self._global or (self.store.parse(self.store.bundled, "<bundled>"), 0)
        )
        old = self._doc
        self.revision = revision
        self._doc = new
        if old is not None and old.version == new.version:
            return
        log.info("%s in force: %r", self.store.key, new)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for callback in self._listeners:
            try:
                callback(new)
            except Exception:
                log.exception("%s change listener failed", self.store.key)
