"""The retriever: BM25 over the knowledge bases routed to the task, with a calibrated
confidence.

Telemetry alerts search the packaged runbooks, as before; support tickets search the
site's own knowledge (``sitemesh.knowledge``): the bundled past cases and FAQ and
whatever the site added with ``sitemesh kb add``, chosen by the task's kind and
tenant.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final

import msgspec

from ..knowledge import (
    RUNBOOKS,
    KbHit,
    KbIndex,
    Library,
    LoadedKb,
    cap_query,
    scrub_contact_details,
)
from ..schemas import (
    TASK_KINDS,
    Passage,
    RetrievalResult,
    SupportTicket,
    Task,
    TelemetryAlert,
    Triage,
    WorkItem,
)
from ._base import Agent, AgentContext, AgentOutput, AgentResources
from ._crm import CRM_TOOL, customer_summary, lookup_customer
from ._kb import Hit, KnowledgeBase, default_kb, tokenize, trim

log = logging.getLogger("sitemesh.agent.retriever")

SCORE_SCALE: Final = 6.0
"""BM25 score at which the strength term of :func:`retrieval_confidence` is 0.5.

Chosen between the median top score of in-domain queries (the 368 runbook names
as queries, "etcd members down": 8.7) and of out-of-domain ones (first turns of
the 525 IBM Twitter dev conversations: 4.5; 400 Endava IT tickets: 4.8)."""

CONFIDENCE_CALIBRATION: Final = """\
query set (index 91a0a5df6114)      n    p10   p50   p90   share >= 0.30
runbook names ("etcd members down") 368  0.35  0.46  0.55  0.98
first sentence of each "Meaning"    354  0.48  0.60  0.71  1.00
IBM Twitter dev first turns         525  0.12  0.16  0.21  0.002 (1 ticket)
Endava IT tickets (first 400)       400  0.13  0.17  0.22  0.00
"""
"""Distribution of :func:`retrieval_confidence` measured on the runbooks (when every
task searched them, before routing: today tickets search the site's knowledge, see
``sitemesh.knowledge`` for its calibration); the escalation agent's threshold (0.30)
sits between the two groups (the one ticket above it asks about a "bandwidth
limit" and matches ODFNodeNICBandwidthSaturation)."""

ACTION_SECTIONS: Final = ("diagnos", "mitigat", "resolution", "remediat", "troubleshoot", "fix")
"""Heading prefixes (lower-case) of the sections a plan is built from."""

RUNBOOK_CALIBRATION: Final = "heuristic(runbooks: strength x coverage x margin)"
"""``RetrievalResult.calibration`` when the runbooks decide the confidence
(:func:`retrieval_confidence`, measured in :data:`CONFIDENCE_CALIBRATION`)."""

_ALERT_VOCABULARY: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(pattern), words)
    for pattern, words in (
        (r"bfd", "network link down interface"),
        (r"oper.?status|(interface|link|port).{0,20}down|if.?down", "network interface down link"),
        (r"flap", "network interface flapping"),
        (r"data.?rate|traffic|throughput|bandwidth", "network traffic receive transmit bytes"),
        (r"drop|discard|fib", "network packets dropped receive errors"),
        (r"error|crc", "network receive transmit errors"),
        (r"cpu", "cpu usage high"),
        (r"memory|mem\b", "memory usage high"),
        (r"disk|filesystem", "disk filesystem space filling up"),
        (r"clock|ntp", "clock skew not synchronising"),
    )
)
"""Telemetry patterns (on the lower-cased metric and summary) -> runbook words.

The runbooks are written for Kubernetes/OpenShift nodes, so device-level
telemetry terms ("BFD", "oper_status", "data_rate") are mapped onto the words the
node-network runbooks use."""


def scrub_query_text(text: str) -> str:
    """Remove @handles, URLs, e-mail addresses and phone numbers from ticket text.

    They carry no retrieval signal and are personal data, which must not end up in
    the query that travels on with the work item.

    Args:
        text: ticket title or body.

    Returns:
        The text with those tokens replaced by spaces, whitespace collapsed
        (:func:`sitemesh.knowledge.scrub_contact_details`).
    """
    return scrub_contact_details(text)


def build_query(task: Task) -> str:
    """The retrieval query for a task.

    * :class:`SupportTicket`: title and body, cut to
      :data:`~sitemesh.knowledge.MAX_QUERY_CHARS` (so a hostile body of any length
      costs milliseconds to scrub and rank, see there), then scrubbed by
      :func:`scrub_query_text` (the customer name and product fields are not used).
    * :class:`TelemetryAlert`: metric (dots/underscores as spaces), summary, and the
      runbook words for telemetry terms (:data:`_ALERT_VOCABULARY`); an alert that
      names an interface adds "network interface" if nothing network-related was
      added. Device and interface names are removed from the summary (they are not
      runbook vocabulary and would only dilute the query-term coverage).

    Args:
        task: the task.

    Returns:
        The query text (deterministic for the same task), at most
        :data:`~sitemesh.knowledge.MAX_QUERY_CHARS` characters.
    """
    match task:
        case SupportTicket(title=title, body=body):
            return scrub_query_text(cap_query(f"{title}\n{body}".strip()))
        case TelemetryAlert(metric=metric, summary=summary, device=device, interface=interface):
            summary = cap_query(summary)
            for name in (device, interface):
                if name:
                    summary = summary.replace(name, " ")
            lowered = f"{metric} {summary}".lower()
            extra = [words for pattern, words in _ALERT_VOCABULARY if pattern.search(lowered)]
            if interface and not any("network" in w for w in extra):
                extra.append("network interface")
            parts = [re.sub(r"[._/]+", " ", metric), " ".join(summary.split()), *extra]
            return cap_query(" ".join(p for p in parts if p))
    raise TypeError(f"unsupported task type {type(task).__name__}")  # pragma: no cover


def retrieval_confidence(hits: Sequence[Hit], query_terms: int) -> float:
    """How much to trust the top hit, 0..1.

    ``confidence = strength · (0.4 + 0.6 · coverage) · (0.7 + 0.3 · margin)`` where

    * ``strength = s1 / (s1 + SCORE_SCALE)``: the top BM25 score ``s1`` squashed to
      0..1 (0.5 at :data:`SCORE_SCALE`);
    * ``coverage``: the share of the distinct query terms that occur in the top
      section (terms unknown to the index count as missing), so a long ticket that
      matches a runbook on two incidental words scores low;
    * ``margin = (s1 - s2) / s1`` with ``s2`` the best score of a *different*
      runbook name (the two corpora share some runbooks, which is agreement, not
      ambiguity); 1 if there is none.

    Args:
        hits: ranked hits, best first.
        query_terms: number of distinct query tokens (after stop-word removal),
            including those not in the index vocabulary.

    Returns:
        The confidence rounded to 4 digits; 0.0 without hits.
    """
    if not hits or query_terms <= 0:
        return 0.0
    top = hits[0]
    s1 = top.score
    name = top.section.doc_id.rsplit("/", 1)[-1].lower()
    s2 = next(
        (h.score for h in hits[1:] if h.section.doc_id.rsplit("/", 1)[-1].lower() != name), 0.0
    )
    strength = s1 / (s1 + SCORE_SCALE)
    coverage = min(1.0, top.matched_terms / query_terms)
    margin = (s1 - s2) / s1 if s1 > 0 else 0.0
    value = strength * (0.4 + 0.6 * coverage) * (0.7 + 0.3 * margin)
    return round(max(0.0, min(1.0, value)), 4)


def _is_action_section(hit: Hit) -> bool:
    return any(h.lower().startswith(ACTION_SECTIONS) for h in hit.section.path[1:])


_KIND_OF: Final = {cls: kind for kind, cls in TASK_KINDS.items()}


def task_kind(item: WorkItem) -> str:
    """The kind token routing uses: the task type's (``support_ticket``), else the
    envelope's."""
    return _KIND_OF.get(type(item.task), item.envelope.kind)


def task_tenant(item: WorkItem) -> str:
    """The tenant routing uses: the envelope's, else (when that is ``default``) the task's."""
    if item.envelope.tenant != "default":
        return item.envelope.tenant
    return getattr(item.task, "tenant", "default") or "default"


@dataclass(frozen=True, slots=True)
class _KbResult:
    """What one knowledge base contributed."""

    name: str
    passages: list[Passage]
    confidence: float
    calibration: str
    version: str


def _passage(kb: str, hit: KbHit, *, section: str | None = None) -> Passage:
    doc = hit.doc
    return Passage(
        passage_id=doc.id,
        doc_id=doc.doc_id,
        title=doc.title,
        section=doc.section if section is None else section,
        text=trim(doc.text),
        source=doc.source,
        score=hit.score,
        kb=kb,
        doc_kind=doc.doc_kind,
        url=doc.url,
        intent=doc.intent,
        answer=trim(doc.answer),
    )


class RetrieverAgent(Agent):
    """Role ``retriever``: rank knowledge-base passages for the task with BM25.

    **Routing.** A task searches every knowledge base whose kinds include its kind
    and whose tenant globs match its tenant (:meth:`sitemesh.knowledge.Library.routed`;
    ``sitemesh kb list`` shows them): by default ``runbooks`` for
    ``telemetry_alert``, ``support-cases`` for every ``support_ticket`` and
    ``banking-faq`` for tickets of tenants ``bank*``, plus what the site added
    (``sitemesh kb add``, loaded at setup and reloaded live through
    :meth:`AgentResources.on_artifact_change`; a site knowledge base replaces a
    bundled one of its name). Documents that carry a tenant answer only that tenant.

    **Runbooks** (unchanged): the ``top_k`` best sections, then, if the best
    runbook's action sections (Diagnosis, Mitigation... see :data:`ACTION_SECTIONS`)
    are not among them, up to ``expand`` of those as well, so the planner can ground
    every step in a retrieved passage; confidence by :func:`retrieval_confidence`.

    **Other knowledge bases**: the ``top_k`` best distinct answers (one passage per
    article or intent), with ``kb``, ``doc_kind``, ``url``, ``intent`` and ``answer``
    set; confidence is the knowledge base's calibrated probability that its top
    answer is right (leave-one-out Platt scaling, ``sitemesh.knowledge``). For an FAQ
    knowledge base, when the triage step named an intent that has a document there,
    that document is included too; its ``section`` says whether BM25 ranked it top
    (``FAQ; triage intent, BM25 rank 1``) or where (``... not in the BM25 top 5``).

    **Result.** The knowledge bases are ordered by their confidence; the best one's
    passages come first and decide ``confidence``, ``top_score`` and
    ``calibration``; ``kbs`` lists every knowledge base searched. Output is
    deterministic for the same task and the same knowledge (ties are broken by
    corpus order); only ``took_ms`` varies.

    Args:
        kb: a runbook knowledge base to search for *every* task (the behaviour before
            routing; tests and tools). ``None``: route, with the packaged runbooks.
        top_k: how many best passages to return per knowledge base.
        expand: how many extra action sections of the best runbook to add (0 = off).
        library: the knowledge bases to route over; ``None``: the bundled ones, built
            on first use, plus the site's after :meth:`setup`.
    """

    role: ClassVar[str] = "retriever"
    output: ClassVar[type[RetrievalResult]] = RetrievalResult
    description: ClassVar[str] = "BM25 search over the knowledge bases routed to the task"

    def __init__(
        self,
        kb: KnowledgeBase | None = None,
        *,
        top_k: int = 5,
        expand: int = 4,
        library: Library | None = None,
    ) -> None:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        self._kb = kb
        self._runbooks_only = kb is not None and library is None
        self._library = library
        self._resources: AgentResources | None = None
        self.top_k = top_k
        self.expand = expand

    async def setup(self, resources: AgentResources) -> None:
        """Load and index the knowledge bases before the first message: the runbooks,
        the bundled ones, and the site's (from its artifact bucket), and follow the
        site's changes."""
        _ = self.kb
        await self._warm_crm(resources)
        if self._runbooks_only:
            return
        library = self.library
        self._resources = resources
        artifacts = await resources.artifacts()
        if artifacts is not None:
            loaded = await library.load_site(artifacts)
            if loaded:
                log.info("site knowledge bases: %s", ", ".join(loaded))
        resources.on_artifact_change(self._artifact_changed)

    @staticmethod
    async def _warm_crm(resources: AgentResources) -> None:
        """Start the site's ``crm`` tool and its response scanner before the first
        message (a cold start takes seconds and would stall the messages behind it).
        A CRM that cannot start is logged; its tickets then escalate with the reason."""
        registry = resources.tools
        if registry is None or CRM_TOOL not in registry.specs:
            return
        from ..tools import ToolError

        try:
            await registry.warm(CRM_TOOL)
        except ToolError as exc:
            log.warning("crm tool not started: %s", exc)

    async def _artifact_changed(self, name: str) -> None:
        resources = self._resources
        artifacts = await resources.artifacts() if resources is not None else None
        if artifacts is None:
            return
        if not name:  # "reload everything" (the runtime's follower, when its watch starts)
            await self.library.load_site(artifacts)
        else:
            await self.library.refresh(artifacts, name)

    @property
    def kb(self) -> KnowledgeBase:
        """The runbook knowledge base in use (loads the packaged one on first access)."""
        if self._kb is None:
            self._kb = default_kb()
        return self._kb

    @property
    def library(self) -> Library:
        """The knowledge bases routed over (the bundled ones on first access)."""
        if self._library is None:
            self._library = Library.bundled()
        return self._library

    def _runbook_passages(self, query: str) -> tuple[list[Passage], float]:
        kb = self.kb
        pool = max(self.top_k * 8, 40)
        hits, _ = kb.search(query, k=pool)
        distinct = len(set(tokenize(query)))
        confidence = retrieval_confidence(hits, distinct)
        chosen = hits[: self.top_k]
        if chosen and self.expand > 0:
            best_doc = chosen[0].section.doc_id
            have = {h.section.passage_id for h in chosen}
            extra = [
                h
                for h in hits[self.top_k :]
                if h.section.doc_id == best_doc
                and h.section.passage_id not in have
                and _is_action_section(h)
            ]
            chosen = chosen + extra[: self.expand]
        passages = [
            Passage(
                passage_id=h.section.passage_id,
                doc_id=h.section.doc_id,
                title=h.section.title,
                section=h.section.section,
                text=trim(h.section.text),
                source=h.section.source,
                score=h.score,
            )
            for h in chosen
        ]
        return passages, confidence

    def retrieve(self, task_id: str, query: str) -> RetrievalResult:
        """Rank runbook passages for a query (the runbook-only core of :meth:`handle`).

        Args:
            task_id: the task's id, copied into the result.
            query: the query text (see :func:`build_query`).

        Returns:
            The ranked passages with the confidence and index version.
        """
        started = time.perf_counter()
        passages, confidence = self._runbook_passages(query)
        return RetrievalResult(
            task_id=task_id,
            query=query,
            passages=passages,
            top_score=passages[0].score if passages else 0.0,
            confidence=confidence,
            index_version=self.kb.index_version,
            took_ms=round((time.perf_counter() - started) * 1000.0, 3),
            kbs=[RUNBOOKS],
            calibration=RUNBOOK_CALIBRATION,
        )

    def _index_result(
        self, kb: LoadedKb, index: KbIndex, query: str, tenant: str, triage: Triage | None
    ) -> _KbResult:
        ranking = index.search(query, tenant=tenant, k=self.top_k)
        passages = [_passage(kb.name, h) for h in ranking.hits]
        intent = triage.label if triage is not None and triage.label else None
        doc = index.by_label(intent) if intent else None
        if intent and doc is not None and doc.doc_kind == "faq":
            rank = next((h.rank for h in ranking.hits if h.doc.label == intent), None)
            if rank is not None:
                note = f"{doc.section}; triage intent, BM25 rank {rank}".lstrip("; ")
                passages[rank - 1] = _passage(kb.name, ranking.hits[rank - 1], section=note)
            else:
                note = f"{doc.section}; triage intent, not in the BM25 top {self.top_k}"
                score = index.score_of(query, intent, tenant=tenant)
                hit = KbHit(doc=doc, score=score, rank=len(ranking.hits) + 1, matched_terms=0)
                passages.append(_passage(kb.name, hit, section=note.lstrip("; ")))
        return _KbResult(
            name=kb.name,
            passages=passages,
            confidence=ranking.confidence if ranking.hits else 0.0,
            calibration=index.calibration.describe(),
            version=index.version,
        )

    def retrieve_routed(
        self,
        task_id: str,
        query: str,
        *,
        kind: str,
        tenant: str,
        triage: Triage | None = None,
    ) -> RetrievalResult:
        """Rank passages of every knowledge base routed to ``kind`` and ``tenant``.

        Args:
            task_id: the task's id, copied into the result.
            query: the query text (see :func:`build_query`).
            kind: the task kind (``support_ticket``).
            tenant: the task's tenant (``Envelope.tenant``).
            triage: the triage step's output, if any (its intent names an FAQ document).

        Returns:
            The result described in the class docstring; no passages and confidence
            0.0 when nothing is routed or nothing matches.
        """
        started = time.perf_counter()
        routed = self.library.routed(kind, tenant)
        results: list[_KbResult] = []
        for kb in routed:
            if kb.index is None and kb.name == RUNBOOKS:
                passages, confidence = self._runbook_passages(query)
                results.append(
                    _KbResult(
                        RUNBOOKS, passages, confidence, RUNBOOK_CALIBRATION, self.kb.index_version
                    )
                )
            elif kb.index is not None:
                results.append(self._index_result(kb, kb.index, query, tenant, triage))
        ranked = sorted(
            (r for r in results if r.passages),
            key=lambda r: (-r.confidence, [x.name for x in results].index(r.name)),
        )
        passages = [p for r in ranked for p in r.passages]
        best = ranked[0] if ranked else None
        digest = hashlib.sha256("\0".join(f"{r.name}:{r.version}" for r in results).encode())
        return RetrievalResult(
            task_id=task_id,
            query=query,
            passages=passages,
            top_score=passages[0].score if passages else 0.0,
            confidence=best.confidence if best is not None else 0.0,
            index_version=digest.hexdigest()[:12] if len(results) != 1 else results[0].version,
            took_ms=round((time.perf_counter() - started) * 1000.0, 3),
            kbs=[kb.name for kb in routed],
            calibration=best.calibration if best is not None else "",
        )

    async def handle(self, item: WorkItem, ctx: AgentContext) -> RetrievalResult:
        """Retrieve passages for ``item.task``, and ask the CRM about its customer.

        Args:
            item: the work item: its task, envelope (kind, tenant) and the triage
                output when there is one.
            ctx: the agent context: ``ctx.tools`` for the CRM lookup
                (:func:`lookup_customer`); without tools there is none.

        Returns:
            The :class:`RetrievalResult` for the task (``customer`` set when the CRM
            was asked).

        Raises:
            ToolResponseUnscanned: a CRM response could not be scanned for personal
                data (permanent: the task is dead-lettered; nothing passes unscanned).
        """
        query = build_query(item.task)
        if self._runbooks_only:
            result = self.retrieve(item.envelope.task_id, query)
        else:
            result = self.retrieve_routed(
                item.envelope.task_id,
                query,
                kind=task_kind(item),
                tenant=task_tenant(item),
                triage=item.output(Triage),
            )
        tools = ctx.tools if ctx is not None else None
        customer = await lookup_customer(item, tools)
        if customer is None:
            return result
        return msgspec.structs.replace(result, customer=customer)

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line: passage count, top passage, its knowledge base and score,
        confidence.

        Args:
            output: a :class:`RetrievalResult`.

        Returns:
            E.g. ``"5 passages, top 'etcdMembersDown#meaning' 6.55, confidence 0.52"``
            (``... top 'card_arrival#faq' (banking-faq) 14.10 ...`` outside the runbooks).
        """
        if not isinstance(output, RetrievalResult):
            return type(output).__name__
        crm = customer_summary(output.customer)
        if not output.passages:
            return "0 passages, confidence 0.00" + crm
        top = output.passages[0]
        label = top.passage_id.rsplit("/", 1)[-1]
        where = f" ({top.kb})" if top.kb != RUNBOOKS else ""
        return (
            f"{len(output.passages)} passages, top {label!r}{where} {top.score:.2f}, "
            f"confidence {output.confidence:.2f}{crm}"
        )
