"""The knowledge bases a process searches: the bundled ones and the site's, by routing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._bundled import INDEXED, RUNBOOKS, RUNBOOKS_SPEC, bundled_index
from ._calibrate import Calibration
from ._docs import KbSpec
from ._errors import KbNotFound
from ._index import KbIndex
from ._routing import routes
from ._store import fetch_kb, kb_name, list_site_kbs

if TYPE_CHECKING:
    from ..bus import SiteArtifacts

log = logging.getLogger("sitemesh.knowledge")


@dataclass(frozen=True, slots=True)
class LoadedKb:
    """A knowledge base ready to search.

    Attributes:
        spec: its routing and provenance.
        index: its index; ``None`` for the runbooks, which the retriever searches
            with :class:`sitemesh.agents.KnowledgeBase`.
    """

    spec: KbSpec
    index: KbIndex | None = None

    @property
    def name(self) -> str:
        """The knowledge base's name."""
        return self.spec.name

    @property
    def calibration(self) -> Calibration | None:
        """The index's calibration (``None`` for the runbooks)."""
        return self.index.calibration if self.index is not None else None


class Library:
    """Bundled and site knowledge bases; a site one overrides a bundled one of its name.

    Args:
        kbs: the bundled knowledge bases to start from (see :meth:`bundled`).
    """

    def __init__(self, kbs: Iterable[LoadedKb] = ()) -> None:
        self._bundled: dict[str, LoadedKb] = {k.name: k for k in kbs}
        self._site: dict[str, LoadedKb] = {}

    @classmethod
    def bundled(cls, names: Iterable[str] | None = None) -> Library:
        """A library of the bundled knowledge bases (indexes built once per process).

        Args:
            names: which (default: all, the runbooks included).
        """
        wanted = list(names) if names is not None else [RUNBOOKS, *INDEXED]
        kbs = [
            LoadedKb(RUNBOOKS_SPEC)
            if n == RUNBOOKS
            else LoadedKb(bundled_index(n).spec, bundled_index(n))
            for n in wanted
        ]
        return cls(kbs)

    def all(self) -> list[LoadedKb]:
        """Every knowledge base in force (site ones replacing bundled ones), by name."""
        merged = self._bundled | self._site
        return [merged[n] for n in sorted(merged)]

    def get(self, name: str) -> LoadedKb | None:
        """The knowledge base in force under ``name``, or ``None``."""
        return self._site.get(name) or self._bundled.get(name)

    def routed(self, kind: str, tenant: str) -> list[LoadedKb]:
        """The knowledge bases a task of ``kind`` and ``tenant`` searches, by name."""
        return [kb for kb in self.all() if routes(kb.spec, kind, tenant)]

    @property
    def site_names(self) -> list[str]:
        """Names of the site knowledge bases loaded."""
        return sorted(self._site)

    def put_site(self, kb: LoadedKb) -> None:
        """Use ``kb`` as the site knowledge base of its name."""
        self._site[kb.name] = kb

    def drop_site(self, name: str) -> bool:
        """Stop using the site knowledge base ``name`` (a bundled one applies again)."""
        return self._site.pop(name, None) is not None

    async def load_site(self, artifacts: SiteArtifacts) -> list[str]:
        """Load every site knowledge base (indexing in a worker thread).

        A knowledge base that fails to load is logged and skipped.

        Returns:
            The names loaded.
        """
        loaded = []
        for spec, _ in await list_site_kbs(artifacts):
            if await self.refresh(artifacts, f"kb/{spec.name}"):
                loaded.append(spec.name)
        return loaded

    async def refresh(self, artifacts: SiteArtifacts, artifact: str) -> bool:
        """Reload one artifact after a put or delete (the ``on_artifact_change`` hook).

        Args:
            artifacts: the site's bucket.
            artifact: the changed object's name; anything but ``kb/<name>`` is ignored.

        Returns:
            Whether the library changed (loaded or dropped a knowledge base).
        """
        name = kb_name(artifact)
        if name is None:
            return False
        try:
            spec, docs = await fetch_kb(artifacts, name)
        except KbNotFound:
            dropped = self.drop_site(name)
            if dropped:
                log.info("site knowledge base %s removed", name)
            return dropped
        except Exception:
            log.exception("site knowledge base %s does not load; keeping what was loaded", name)
            return False
        index = await asyncio.to_thread(KbIndex, spec, docs)
        self.put_site(LoadedKb(spec, index))
        log.info(
            "site knowledge base %s loaded: %d docs, %s",
            name,
            len(docs),
            index.calibration.describe(),
        )
        return True
