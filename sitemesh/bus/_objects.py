"""Site-local artifacts in a NATS object store: knowledge bases and triage examples.

A site's operators add knowledge (``sitemesh kb add``) and labelled examples
(``sitemesh triage train --publish``); the workers of that site read them from the
object-store bucket ``sitemesh_knowledge_<site>`` on their own site's JetStream (a
leaf node's local domain), so the content never crosses the boundary. Objects are
named ``<kind>/<name>`` (``kb/support-cases``, ``triage/banking77``) and carry string
metadata (the routing of a knowledge base, the hash of its content).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Final

from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import ObjectMeta
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import ObjectStore

from ..errors import SitemeshError

log = logging.getLogger("sitemesh.bus")

KNOWLEDGE_BUCKET_PREFIX: Final = "sitemesh_knowledge_"
"""Prefix of a site's artifact bucket (``sitemesh_knowledge_<site>``)."""

_MAX_BYTES: Final = 512 * 1024 * 1024
"""Size limit of the bucket in bytes."""


def knowledge_bucket(site: str) -> str:
    """The object-store bucket of ``site``'s artifacts: ``sitemesh_knowledge_<site>``."""
    return f"{KNOWLEDGE_BUCKET_PREFIX}{site}"


class ArtifactNotFound(SitemeshError):
    """No artifact of that name in the site's bucket."""


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """One stored artifact.

    Attributes:
        name: ``<kind>/<name>`` as stored.
        size: bytes.
        digest: the object store's ``SHA-256=...`` digest of the content.
        meta: string metadata given at :meth:`SiteArtifacts.put`.
    """

    name: str
    size: int
    digest: str
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """The part before the first ``/`` (``kb``)."""
        return self.name.split("/", 1)[0]

    @property
    def short(self) -> str:
        """The part after the first ``/`` (``support-cases``)."""
        return self.name.split("/", 1)[-1]


def _info(obj: object) -> ArtifactInfo:
    meta = dict(getattr(obj, "headers", None) or {})
    return ArtifactInfo(
        name=str(getattr(obj, "name", "")),
        size=int(getattr(obj, "size", 0) or 0),
        digest=str(getattr(obj, "digest", "") or ""),
        meta={str(k): str(v[0] if isinstance(v, list) and v else v) for k, v in meta.items()},
    )


class SiteArtifacts:
    """The artifacts of one site (a thin, typed view of its object-store bucket).

    Args:
        store: the nats-py object store (see :meth:`open`).
        site: the site name (for messages).
    """

    def __init__(self, store: ObjectStore, site: str) -> None:
        self._store = store
        self.site = site

    @classmethod
    async def open(cls, js: JetStreamContext, site: str, *, create: bool = False) -> SiteArtifacts:
        """Bind to ``site``'s bucket.

        Args:
            js: a JetStream context on the site's server.
            site: the site name.
            create: create the bucket when missing (operators, the provisioner).

        Raises:
            ArtifactNotFound: the bucket does not exist and ``create`` is false.
        """
        bucket = knowledge_bucket(site)
        try:
            return cls(await js.object_store(bucket), site)
        except (BucketNotFoundError, NotFoundError) as exc:
            if not create:
                raise ArtifactNotFound(f"no artifact bucket {bucket!r} on this server") from exc
        store = await js.create_object_store(
            bucket,
            description=f"sitemesh knowledge and triage data of site {site}",
            max_bytes=_MAX_BYTES,
        )
        return cls(store, site)

    async def put(self, name: str, data: bytes, meta: dict[str, str] | None = None) -> ArtifactInfo:
        """Store ``data`` under ``name`` (replacing an earlier version).

        Args:
            name: ``<kind>/<name>``.
            data: the content.
            meta: string metadata (header values; keep them short and PII-free).
        """
        headers = {k: v for k, v in (meta or {}).items()}
        info = await self._store.put(name, data, meta=ObjectMeta(name=name, headers=headers))
        return _info(info)

    async def get(self, name: str) -> tuple[bytes, ArtifactInfo]:
        """Content and info of ``name``.

        Raises:
            ArtifactNotFound: no such artifact.
        """
        try:
            res = await self._store.get(name)
        except (ObjectNotFoundError, NotFoundError) as exc:
            raise ArtifactNotFound(f"no artifact {name!r} at site {self.site}") from exc
        return bytes(res.data or b""), _info(res.info)

    async def list(self, kind: str | None = None) -> list[ArtifactInfo]:
        """Stored artifacts (``kind``: only ``<kind>/...``), sorted by name."""
        try:
            found = await self._store.list()
        except NotFoundError:
            return []
        out = [_info(o) for o in found if not getattr(o, "deleted", False)]
        if kind is not None:
            out = [a for a in out if a.kind == kind]
        return sorted(out, key=lambda a: a.name)

    async def delete(self, name: str) -> None:
        """Remove ``name``.

        Raises:
            ArtifactNotFound: no such artifact.
        """
        try:
            await self._store.get_info(name)
            await self._store.delete(name)
        except (ObjectNotFoundError, NotFoundError) as exc:
            raise ArtifactNotFound(f"no artifact {name!r} at site {self.site}") from exc

    async def follow(
        self, on_change: Callable[[str], Awaitable[None]], *, stop: asyncio.Event
    ) -> None:
        """Call ``on_change(name)`` for every later put or delete, until ``stop`` is set.

        Errors of ``on_change`` are logged and do not end the watch.
        """
        watcher = await self._store.watch(updates_only=True, include_history=False)
        try:
            while not stop.is_set():
                try:
                    info = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                except TimeoutError:
                    continue
                except NatsError as exc:
                    log.warning("artifact watch of site %s: %s", self.site, exc)
                    await asyncio.sleep(1.0)
                    continue
                if info is None:
                    continue
                name = str(getattr(info, "name", ""))
                try:
                    await on_change(name)
                except Exception:
                    log.exception("reloading artifact %s failed", name)
        finally:
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]
