"""The retriever: BM25 over the packaged runbooks, with a calibrated confidence."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import ClassVar, Final

from ..schemas import Passage, RetrievalResult, SupportTicket, Task, TelemetryAlert, WorkItem
from ._base import Agent, AgentContext, AgentOutput, AgentResources
from ._kb import Hit, KnowledgeBase, default_kb, tokenize, trim

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
"""Distribution of :func:`retrieval_confidence` measured on this corpus with the
default :class:`RetrieverAgent`; the escalation agent's default threshold (0.30)
sits between the two groups (the one ticket above it asks about a "bandwidth
limit" and matches ODFNodeNICBandwidthSaturation)."""

ACTION_SECTIONS: Final = ("diagnos", "mitigat", "resolution", "remediat", "troubleshoot", "fix")
"""Heading prefixes (lower-case) of the sections a plan is built from."""

_HANDLE = re.compile(r"(?<![\w.])@\w{1,30}")
_URL = re.compile(r"\b(?:https?://|www\.)\S+|\bhttps?\s*:\s*//\S+", re.IGNORECASE)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
_PHONE = re.compile(r"\+?\d[\d ()-]{7,}\d")

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
        The text with those tokens replaced by spaces, whitespace collapsed.
    """
    for pattern in (_EMAIL, _URL, _HANDLE, _PHONE):
        text = pattern.sub(" ", text)
    return " ".join(text.split())


def build_query(task: Task) -> str:
    """The retrieval query for a task.

    * :class:`SupportTicket`: title and body, scrubbed by :func:`scrub_query_text`
      (the customer name and product fields are not used).
    * :class:`TelemetryAlert`: metric (dots/underscores as spaces), summary, and the
      runbook words for telemetry terms (:data:`_ALERT_VOCABULARY`); an alert that
      names an interface adds "network interface" if nothing network-related was
      added. Device and interface names are removed from the summary (they are not
      runbook vocabulary and would only dilute the query-term coverage).

    Args:
        task: the task.

    Returns:
        The query text (deterministic for the same task).
    """
    match task:
        case SupportTicket(title=title, body=body):
            return scrub_query_text(f"{title}\n{body}".strip())
        case TelemetryAlert(metric=metric, summary=summary, device=device, interface=interface):
            for name in (device, interface):
                if name:
                    summary = summary.replace(name, " ")
            lowered = f"{metric} {summary}".lower()
            extra = [words for pattern, words in _ALERT_VOCABULARY if pattern.search(lowered)]
            if interface and not any("network" in w for w in extra):
                extra.append("network interface")
            parts = [re.sub(r"[._/]+", " ", metric), " ".join(summary.split()), *extra]
            return " ".join(p for p in parts if p)
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


class RetrieverAgent(Agent):
    """Role ``retriever``: rank runbook sections for the task with BM25.

    The result holds the ``top_k`` best sections, then, if the best runbook's
    action sections (Diagnosis, Mitigation... see :data:`ACTION_SECTIONS`) are not
    among them, up to ``expand`` of those as well (their scores are lower, so the
    list stays sorted best first). That lets the planner ground every step in a
    retrieved passage. Output is deterministic for the same task (ties are broken
    by corpus order); only ``took_ms`` varies.

    Args:
        kb: the knowledge base; ``None`` uses the packaged one, built lazily on the
            first task and cached for the process.
        top_k: how many best passages to return.
        expand: how many extra action sections of the best runbook to add (0 = off).
    """

    role: ClassVar[str] = "retriever"
    output: ClassVar[type[RetrievalResult]] = RetrievalResult
    description: ClassVar[str] = "BM25 search over the site's knowledge base"

    async def setup(self, resources: AgentResources) -> None:
        """Load and index the knowledge base before the first message."""
        del resources
        _ = self.kb

    def __init__(self, kb: KnowledgeBase | None = None, *, top_k: int = 5, expand: int = 4) -> None:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        self._kb = kb
        self.top_k = top_k
        self.expand = expand

    @property
    def kb(self) -> KnowledgeBase:
        """The knowledge base in use (loads the packaged one on first access)."""
        if self._kb is None:
            self._kb = default_kb()
        return self._kb

    def retrieve(self, task_id: str, query: str) -> RetrievalResult:
        """Rank passages for a query (the synchronous core of :meth:`handle`).

        Args:
            task_id: the task's id, copied into the result.
            query: the query text (see :func:`build_query`).

        Returns:
            The ranked passages with the confidence and index version.
        """
        started = time.perf_counter()
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
        return RetrievalResult(
            task_id=task_id,
            query=query,
            passages=passages,
            top_score=passages[0].score if passages else 0.0,
            confidence=confidence,
            index_version=kb.index_version,
            took_ms=round((time.perf_counter() - started) * 1000.0, 3),
        )

    async def handle(self, item: WorkItem, ctx: AgentContext) -> RetrievalResult:
        """Retrieve passages for ``item.task``.

        Args:
            item: the work item; only its task is read.
            ctx: the agent context (unused).

        Returns:
            The :class:`RetrievalResult` for the task.
        """
        return self.retrieve(item.envelope.task_id, build_query(item.task))

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line: passage count, top passage and score, confidence.

        Args:
            output: a :class:`RetrievalResult`.

        Returns:
            E.g. ``"5 passages, top 'etcdMembersDown#meaning' 6.55, confidence 0.52"``.
        """
        if not isinstance(output, RetrievalResult):
            return type(output).__name__
        if not output.passages:
            return "0 passages, confidence 0.00"
        top = output.passages[0]
        label = top.passage_id.rsplit("/", 1)[-1]
        return (
            f"{len(output.passages)} passages, top {label!r} {top.score:.2f}, "
            f"confidence {output.confidence:.2f}"
        )
