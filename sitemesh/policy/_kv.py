"""The policy in a NATS KV bucket: one version for every router, updated live.

Layout of the bucket :data:`POLICY_BUCKET` (``sitemesh_policy``, history
:data:`POLICY_HISTORY` revisions per key):

* ``rules``: the TOML rules file every site applies;
* ``rules.<site>``: an optional override for one site (it replaces ``rules``
  there; it is not merged with it).

Values are the TOML text exactly as published, so ``nats kv get`` shows the
file with its comments. :meth:`PolicyStore.publish` validates before it stores
(an invalid file never reaches the bucket through sitemesh); a value written
around it (``nats kv put``) is still validated by every reader, and a
:class:`LivePolicy` keeps the last valid policy when it sees an invalid one.

```python
store = PolicyStore(js)
version = await store.publish(Path("rules.toml").read_text())
live = await store.live(site="eu1").start()       # seeds the bundled default if empty
router = PolicyRouter(live.policy, scanner, policy_source=live)
...
await live.shutdown()
```
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from types import TracebackType
from typing import Any, Final

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.errors import NoKeysError as _NoKeysError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from ..errors import PolicyError
from ._rules import BUNDLED_RULES, Policy

__all__ = [
    "POLICY_BUCKET",
    "POLICY_HISTORY",
    "POLICY_KEY",
    "LivePolicy",
    "PolicyRevision",
    "PolicyStore",
    "policy_key",
]

log = logging.getLogger("sitemesh.policy")

POLICY_BUCKET: Final = "sitemesh_policy"
"""The KV bucket holding the rules files."""

POLICY_KEY: Final = "rules"
"""The key of the rules file every site applies."""

POLICY_HISTORY: Final = 10
"""Revisions kept per key (``nats kv history sitemesh_policy rules``); at least 5."""

POLICY_MAX_BYTES: Final = 8 * 1024 * 1024
"""Size limit of the bucket in bytes (a rules file is a few KiB)."""

_MAX_VALUE_BYTES: Final = 256 * 1024
"""Largest rules file accepted, in bytes."""


def policy_key(site: str | None = None) -> str:
    """The KV key of the rules file for ``site`` (``rules.<site>``), or ``rules``."""
    return POLICY_KEY if site is None else f"{POLICY_KEY}.{site}"


def _bundled_text() -> str:
    ref = resources.files(__package__ or "sitemesh.policy") / BUNDLED_RULES
    return ref.read_text(encoding="utf-8")


@dataclass(frozen=True, slots=True)
class PolicyRevision:
    """One stored revision of a rules key.

    Attributes:
        key: ``rules`` or ``rules.<site>``.
        revision: the KV revision (the bucket stream's sequence number).
        version: :attr:`Policy.version` of the text, ``"deleted"`` for a delete
            marker, or ``"invalid"`` when the text does not validate.
        label: the file's ``version`` label (``""`` when deleted or invalid).
        created: when it was stored (UTC), if known.
    """

    key: str
    revision: int
    version: str
    label: str
    created: datetime | None


class PolicyStore:
    """Publishes and reads the rules files in the ``sitemesh_policy`` KV bucket.

    The bucket is created on first use (idempotent; concurrent creators with the
    same configuration all succeed).

    Args:
        js: a JetStream context.
        bucket: the bucket name (tests use a unique one).
        history: revisions kept per key, 5-64.

    Raises:
        ValueError: ``history`` is outside 5-64.
    """

    def __init__(
        self, js: JetStreamContext, *, bucket: str = POLICY_BUCKET, history: int = POLICY_HISTORY
    ) -> None:
        if not 5 <= history <= 64:
            raise ValueError(f"history must be 5-64 revisions, got {history}")
        self._js = js
        self.bucket = bucket
        self.max_history = history
        self._kv: KeyValue | None = None
        self._lock = asyncio.Lock()

    async def kv(self) -> KeyValue:
        """The bucket, created with :attr:`max_history` revisions per key if missing."""
        if self._kv is not None:
            return self._kv
        async with self._lock:
            if self._kv is None:
                try:
                    self._kv = await self._js.key_value(self.bucket)
                except BucketNotFoundError:
                    self._kv = await self._js.create_key_value(
                        bucket=self.bucket,
                        description="sitemesh policy rules (TOML); key rules[.<site>]",
                        history=self.max_history,
                        max_bytes=POLICY_MAX_BYTES,
                        max_value_size=_MAX_VALUE_BYTES,
                    )
        return self._kv

    async def seed(self) -> bool:
        """Store the bundled ``rules/default.toml`` under ``rules`` if the key is empty.

        Safe to race: of several seeders exactly one writes.

        Returns:
            ``True`` if this call stored it.
        """
        kv = await self.kv()
        try:
            await kv.create(POLICY_KEY, _bundled_text().encode())
        except KeyWrongLastSequenceError:
            return False
        log.info("seeded %s/%s with the bundled %s", self.bucket, POLICY_KEY, BUNDLED_RULES)
        return True

    async def publish(self, policy_text: str, *, site: str | None = None) -> str:
        """Validate a rules file and store it; every :class:`LivePolicy` picks it up.

        Args:
            policy_text: the TOML rules file.
            site: store it as the override of this site (``rules.<site>``);
                ``None``: the policy of every site (``rules``).

        Returns:
            The stored policy's :attr:`Policy.version`.

        Raises:
            PolicyError: the file is invalid; nothing is stored. The message names
                the rule index and id and the field (see :meth:`Policy.from_toml`).
        """
        key = policy_key(site)
        policy = Policy.from_toml(policy_text, source=f"{self.bucket}/{key}")
        data = policy_text.encode()
        if len(data) > _MAX_VALUE_BYTES:
            raise PolicyError(f"{self.bucket}/{key}: rules file larger than {_MAX_VALUE_BYTES} B")
        kv = await self.kv()
        revision = await kv.put(key, data)
        log.info(
            "published policy %s (%s) to %s/%s revision %d",
            policy.version,
            policy.label,
            self.bucket,
            key,
            revision,
        )
        return policy.version

    async def current(self, site: str | None = None) -> Policy:
        """The policy in force: ``rules.<site>`` if set, else ``rules`` (seeded if empty).

        Args:
            site: the site asking; ``None``: the global policy.

        Returns:
            The validated policy; its ``source`` names bucket, key and revision.

        Raises:
            PolicyError: the stored text is invalid (written around :meth:`publish`).
        """
        kv = await self.kv()
        if site is not None:
            policy = await self._get(kv, policy_key(site))
            if policy is not None:
                return policy
        policy = await self._get(kv, POLICY_KEY)
        if policy is None:
            await self.seed()
            policy = await self._get(kv, POLICY_KEY)
        if policy is None:  # deleted again between seed and get
            return Policy.load()
        return policy

    async def _get(self, kv: KeyValue, key: str) -> Policy | None:
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            return None
        return Policy.from_toml(
            (entry.value or b"").decode(), source=f"{self.bucket}/{key}@{entry.revision}"
        )

    async def history(self, site: str | None = None) -> list[PolicyRevision]:
        """The stored revisions of ``rules`` (or ``rules.<site>``), oldest first.

        Returns:
            At most :attr:`max_history` revisions; empty if the key was never written.
        """
        kv = await self.kv()
        key = policy_key(site)
        try:
            entries = await kv.history(key)
        except _NoKeysError:
            return []
        out: list[PolicyRevision] = []
        for e in entries:
            created = e.created if isinstance(e.created, datetime) else None
            if e.operation in (KV_DEL, KV_PURGE):
                out.append(PolicyRevision(key, e.revision or 0, "deleted", "", created))
                continue
            try:
                p = Policy.from_toml((e.value or b"").decode())
            except PolicyError:
                out.append(PolicyRevision(key, e.revision or 0, "invalid", "", created))
                continue
            out.append(PolicyRevision(key, e.revision or 0, p.version, p.label, created))
        return out

    async def remove_override(self, site: str) -> None:
        """Delete ``rules.<site>``, so the site follows ``rules`` again."""
        kv = await self.kv()
        await kv.delete(policy_key(site))

    def live(self, site: str | None = None) -> LivePolicy:
        """A :class:`LivePolicy` following this bucket for ``site`` (not started)."""
        return LivePolicy(self, site=site)


class LivePolicy:
    """The policy in force, kept current by a KV watcher; call it for a snapshot.

    ``live()`` (or :attr:`policy`) returns the current :class:`Policy`; pass the
    object as ``PolicyRouter(..., policy_source=live)``. A new revision of
    ``rules`` (or of ``rules.<site>``, which takes precedence) applies to the next
    decision without a restart. The swap is one attribute assignment, so a router
    running in a worker thread reads either the old or the new policy, never a mix.

    Failure behaviour (fail closed):

    * an invalid revision (written around :meth:`PolicyStore.publish`) is logged
      and ignored: the last valid policy stays, :attr:`last_error` says why;
    * deleting ``rules.<site>`` falls back to ``rules``; deleting ``rules`` falls
      back to the bundled ``rules/default.toml``;
    * if the watcher fails (connection lost for good), it is restarted after
      ``retry_s`` seconds; the last policy stays in force meanwhile.

    Lifecycle: ``async with live:`` or ``await live.start()`` (returns once the
    current revision is loaded); :meth:`run` waits until :meth:`shutdown` (a
    service for the role runner); :meth:`shutdown` is safe to call twice.

    Args:
        store: the bucket to follow.
        site: the site whose override (``rules.<site>``) applies; ``None``: only
            ``rules``.
        retry_s: seconds before a failed watcher is restarted.
    """

    def __init__(
        self, store: PolicyStore, *, site: str | None = None, retry_s: float = 1.0
    ) -> None:
        self.store = store
        self.site = site
        self.retry_s = retry_s
        self.last_error: str | None = None
        """Why the last revision seen was ignored (``None`` if it applied)."""
        self.revision: int = 0
        """KV revision of the entry that produced :attr:`policy` (0: bundled)."""
        self._global: tuple[Policy, int] | None = None
        self._override: tuple[Policy, int] | None = None
        self._policy: Policy | None = None
        self._listeners: list[Callable[[Policy], None]] = []
        self._ready = asyncio.Event()
        self._changed = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- reading -----------------------------------------------------------------------
    @property
    def policy(self) -> Policy:
        """The policy in force.

        Raises:
            RuntimeError: :meth:`start` has not completed yet.
        """
        policy = self._policy
        if policy is None:
            raise RuntimeError("LivePolicy is not started: await live.start() first")
        return policy

    def __call__(self) -> Policy:
        """The policy in force (a ``policy_source`` for :class:`PolicyRouter`)."""
        return self.policy

    @property
    def version(self) -> str:
        """:attr:`Policy.version` of the policy in force."""
        return self.policy.version

    def on_change(self, callback: Callable[[Policy], None]) -> None:
        """Call ``callback(policy)`` (in the event loop) after each change of version."""
        self._listeners.append(callback)

    async def wait_for_version(self, version: str, timeout_s: float = 10.0) -> Policy:
        """Wait until the policy in force has ``version``.

        Args:
            version: a :attr:`Policy.version`.
            timeout_s: seconds to wait.

        Returns:
            The policy.

        Raises:
            TimeoutError: another version is still in force after ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            while self._policy is None or self._policy.version != version:
                changed = self._changed
                await changed.wait()
        return self.policy

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self, timeout_s: float = 10.0) -> LivePolicy:
        """Seed the bucket if empty, load the policy in force and start watching.

        Args:
            timeout_s: seconds allowed for the initial load.

        Returns:
            ``self``.

        Raises:
            TimeoutError: the current revision was not received within ``timeout_s``.
            PolicyError: the stored policy is invalid and there is no earlier one.
        """
        if self._task is not None:
            return self
        await self.store.seed()
        self._task = asyncio.create_task(self._watch_forever(), name="sitemesh-policy-watch")
        try:
            async with asyncio.timeout(timeout_s):
                await self._ready.wait()
        except BaseException:
            await self.shutdown()
            raise
        if self._policy is None:
            await self.shutdown()
            raise PolicyError(f"{self.store.bucket}: no valid policy: {self.last_error}")
        return self

    async def run(self) -> None:
        """Wait until :meth:`shutdown` (the watcher runs in the background)."""
        if self._task is None:
            await self.start()
        await self._stopped.wait()

    async def shutdown(self) -> None:
        """Stop watching. Safe to call more than once; the last policy stays readable."""
        self._stopped.set()
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> LivePolicy:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    # -- watching ----------------------------------------------------------------------
    async def _watch_forever(self) -> None:
        while not self._stopped.is_set():
            try:
                await self._watch_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("policy watcher on %s failed: %s; retrying", self.store.bucket, exc)
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
        if key == POLICY_KEY:
            is_override = False
        elif self.site is not None and key == policy_key(self.site):
            is_override = True
        else:
            return
        policy: Policy | None = None
        if entry.operation not in (KV_DEL, KV_PURGE):
            source = f"{self.store.bucket}/{key}@{entry.revision}"
            try:
                policy = Policy.from_toml((entry.value or b"").decode(), source=source)
            except PolicyError as exc:
                self.last_error = str(exc)
                log.error("ignoring invalid policy %s; keeping %s", source, self._policy)
                return
        self.last_error = None
        slot = None if policy is None else (policy, entry.revision or 0)
        if is_override:
            self._override = slot
        else:
            self._global = slot
        self._set()

    def _set(self) -> None:
        new, revision = self._override or self._global or (Policy.load(), 0)
        old = self._policy
        self.revision = revision
        self._policy = new
        if old is not None and old.version == new.version:
            return
        log.info("policy in force: %r", new)
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()
        for callback in self._listeners:
            try:
                callback(new)
            except Exception:
                log.exception("policy change listener failed")
