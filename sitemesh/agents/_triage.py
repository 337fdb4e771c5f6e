"""The triage agent: what a support ticket is about, how urgent, in what language."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from ..errors import PermanentError
from ..schemas import SupportTicket, Task, Triage, WorkItem
from ..triage import (
    ARTIFACT_KIND,
    ExamplesError,
    LabelSet,
    ModelCache,
    Route,
    Triager,
    bundled_label_sets,
    detect_language,
    published_label_set,
    ticket_text,
)
from ._base import Agent, AgentContext, AgentOutput, AgentResources

log = logging.getLogger("sitemesh.agent.triage")


class TriageAgent(Agent):
    """Role ``triage``: label, urgency and language of a support ticket, offline.

    In :meth:`setup` it loads the model of every label set from the disk cache
    (training the ones that are not cached, see :class:`sitemesh.triage.ModelCache`):
    the bundled ``banking77`` and ``endava`` and the site's published ones (artifacts
    ``triage/<name>`` in the site's bucket, JSONL examples with the metadata
    ``tenants``). It follows the bucket and retrains or drops a published label set
    when its artifact is put or deleted (training runs in a thread; tickets keep
    being classified with the previous models meanwhile).

    :meth:`handle` classifies ``title + body`` with the model of the ticket's tenant
    (published label sets first, see :class:`sitemesh.triage.Triager`); a tenant no
    label set serves gets an empty label and confidence 0, with language and urgency
    still set. The output is deterministic for the same models and ticket.

    Args:
        cache: the model cache; ``None``: ``ModelCache(settings.cache_dir)`` when the
            settings have that field, else ``ModelCache()`` (``$SITEMESH_CACHE_DIR``,
            default ``~/.cache/sitemesh``).
        bundled: the label sets to serve besides the published ones; ``None``:
            :func:`sitemesh.triage.bundled_label_sets`.
    """

    role: ClassVar[str] = "triage"
    output: ClassVar[type[Triage]] = Triage
    accepts: ClassVar[tuple[type[Task], ...] | None] = (SupportTicket,)
    description: ClassVar[str] = (
        "intent or category, urgency and language of a ticket (TF-IDF + logistic regression)"
    )

    def __init__(
        self, *, cache: ModelCache | None = None, bundled: Sequence[LabelSet] | None = None
    ) -> None:
        self._cache = cache
        self._bundled = None if bundled is None else tuple(bundled)
        self._resources: AgentResources | None = None
        self._sync = asyncio.Lock()
        self.triager = Triager()
        """The routes in force (replaced, never mutated, on a reload)."""

    @property
    def cache(self) -> ModelCache:
        """The model cache in use."""
        if self._cache is None:
            self._cache = ModelCache()
        return self._cache

    async def setup(self, resources: AgentResources) -> None:
        """Load or train every label set's model and the language model, then follow the
        site's artifacts.

        Raises:
            ExamplesError: a bundled label set cannot be trained (a bug). A published
                one that cannot be read or trained is logged and skipped.
        """
        if self._cache is None:
            # a settings field ``cache_dir`` (SITEMESH_CACHE_DIR, passed on to the children
            # of `sitemesh edge`) wins over the environment of this process
            root = getattr(resources.settings, "cache_dir", None)
            self._cache = ModelCache(Path(root) if root else None)
        sets = self._bundled
        if sets is None:
            sets = await asyncio.to_thread(bundled_label_sets)
        routes = []
        for label_set in sets:
            model = await asyncio.to_thread(self.cache.load_or_train, label_set)
            routes.append(Route.of(label_set, model))
        self.triager = Triager(routes)
        await asyncio.to_thread(detect_language, "load the language model now")
        self._resources = resources
        await self.sync_published()
        resources.on_artifact_change(self._artifact_changed)

    async def _artifact_changed(self, name: str) -> None:
        # "triage/<name>" changed; a name without a kind ("") means "look at everything"
        if name.startswith(f"{ARTIFACT_KIND}/") or "/" not in name:
            await self.sync_published()

    async def sync_published(self) -> None:
        """Bring the published label sets in line with the site's bucket: train (or load
        from the cache) new and changed ones, drop deleted ones. A set that does not
        parse or train is logged and the previous model of that name kept."""
        resources = self._resources
        if resources is None:
            return
        async with self._sync:
            artifacts = await resources.artifacts()
            if artifacts is None:
                return
            stored = {a.short: a for a in await artifacts.list(ARTIFACT_KIND)}
            triager = self.triager
            current = {r.name: r for r in triager.routes if r.source == "published"}
            for name in current.keys() - stored.keys():
                triager = triager.replaced("published", name)
                log.info("triage label set %s was deleted; dropped", name)
            for name, info in stored.items():
                have = current.get(name)
                if have is not None and have.label_set.digest == info.digest:
                    continue
                try:
                    data, info = await artifacts.get(info.name)
                    label_set = published_label_set(name, data, info.meta, digest=info.digest)
                    model = await asyncio.to_thread(self.cache.load_or_train, label_set)
                except ExamplesError as exc:
                    log.warning("triage label set %s not loaded: %s", name, exc)
                    continue
                triager = triager.replaced("published", name, Route.of(label_set, model))
                log.info(
                    "triage label set %s loaded: %d examples, %d labels, tenants %s",
                    name, len(label_set.examples), len(model.labels),
                    ",".join(label_set.tenants) or "(none)",
                )  # fmt: skip
            self.triager = triager

    async def handle(self, item: WorkItem, ctx: AgentContext) -> Triage:
        """Triage ``item.task``.

        Args:
            item: the work item; its task must be a :class:`SupportTicket`.
            ctx: the agent context (unused).

        Returns:
            The :class:`~sitemesh.schemas.Triage` of the ticket.

        Raises:
            PermanentError: the task is not a support ticket (``$.task.type``).
        """
        ticket = item.task
        if not isinstance(ticket, SupportTicket):
            raise PermanentError("triage reads support tickets only", field="$.task.type")
        return self.triager.triage(
            task_id=item.envelope.task_id,
            text=ticket_text(ticket.title, ticket.body),
            tenant=ticket.tenant,
            urgency=ticket.urgency,
        )

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line: label, confidence, label set, urgency, language.

        Returns:
            E.g. ``"card_arrival 0.93 (banking77), urgency 3, en"``, or
            ``"no label set for the tenant, urgency 3, en"``.
        """
        if not isinstance(output, Triage):
            return type(output).__name__
        tail = f"urgency {output.urgency}, {output.language}"
        if not output.label_set:
            return f"no label set for the tenant, {tail}"
        return f"{output.label} {output.confidence:.2f} ({output.label_set}), {tail}"
