"""Resolving support tickets from the site's knowledge: retrieval figures on held-out data.

Data (written by ``examples/make_kb.py``, never indexed or fitted on):

* ``bench/data/ibm-heldout.jsonl``: the 102 IBM Twitter customer-care conversations
  held out of the bundled ``support-cases`` knowledge base
  (``int(sha256(sessionID), 16) % 5 == 0``); the query is the first customer turn, the
  label the article the agent finally sent (IBM ``doc_id`` and URL);
* ``bench/data/banking77-heldout.jsonl``: the banking77 training rows held out of the
  ``banking-faq`` index (``sitemesh.triage.held_out``); the label is the intent.

Retrieval part (this file):

* IBM: article recall@1 and recall@5 (an answer counts when the ``doc_id`` or the
  article URL, Wayback prefix, scheme and ``www.`` ignored, of one of the top-k
  *distinct* articles is the label's) for the retriever as it runs on a site
  (``RetrieverAgent().handle`` on the work item the router would build: routing, the
  ticket's tenant only, calibrated confidence) and, in the same run, a baseline:
  plain BM25 (``bm25s``, same tokenizer) over the case texts of all tenants, no tenant filter, no
  calibration. Then the reliability of the retriever's confidence (bins: mean
  confidence vs accuracy of the top article) and, per threshold, the share of
  tickets at or above it and the precision there;
* banking77: intent recall@1 (and @3) of ``banking-faq`` for tenant ``bank``, with the
  same reliability and threshold tables.

End-to-end part (:func:`run_workflow`): every held-out ticket through the bundled
support workflow's real agents, in order, in this process (``TriageAgent``,
``RetrieverAgent``, ``PlannerAgent`` without a model, ``ValidatorAgent`` with the real
Presidio check, ``EscalationAgent``): the outcome mix, the resolved share, and the
precision of ``resolved`` (its document's article or intent is the label's), with the
reason codes of the rest. ``--no-workflow`` skips it.

Every figure comes from a function returning rows; :func:`main` only prints.

Usage: ``python bench/resolve.py``. No network; about 10 s for retrieval (index builds
included) and a minute or two for the workflow part (Presidio on every reply).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import msgspec
import numpy as np

from sitemesh.agents import AgentContext, RetrieverAgent
from sitemesh.knowledge import (
    Document,
    article_key,
    bundled_docs,
    index_text,
    scrub_contact_details,
    tokenize,
)
from sitemesh.schemas import (
    Envelope,
    PolicyDecision,
    RetrievalResult,
    SupportTicket,
    WorkItem,
    utcnow,
)
from sitemesh.workflows import new_item

DATA = Path(__file__).parent / "data"
IBM_HELDOUT = DATA / "ibm-heldout.jsonl"
BANKING_HELDOUT = DATA / "banking77-heldout.jsonl"
BINS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""Edges of the reliability bins (the last bin includes 1.0)."""
THRESHOLDS = (0.3, 0.5, 0.7, 0.8, 0.9)
"""Confidence thresholds of the coverage/precision table (``MIN_ANSWER_CONFIDENCE``
of the escalation agent is 0.80, its agreed-with-triage threshold 0.50)."""


@dataclass(frozen=True, slots=True)
class Judged:
    """One held-out query, scored.

    Attributes:
        confidence: the retriever's confidence, 0..1 (0.0 for the baseline).
        hit1: the top answer is the label.
        hitk: the label is among the top ``k`` distinct answers.
        tenant: the query's tenant.
    """

    confidence: float
    hit1: bool
    hitk: bool
    tenant: str = ""


CTX = AgentContext(site="bench", worker="bench:1")


def ticket_item(task_id: str, ticket: SupportTicket) -> WorkItem:
    """The retriever's work item for ``ticket``, built the way the router builds it
    (bundled workflows; envelope tenant = the ticket's)."""
    now = utcnow()
    env = Envelope(
        task_id=task_id,
        site="bench",
        kind="support_ticket",
        tenant=ticket.tenant,
        submitted_at=now,
        accepted_at=now,
    )
    decision = PolicyDecision(
        task_id=task_id,
        action="pin_edge",
        rule_id="bench",
        policy_version="bench",
        data_class="internal",
    )
    return new_item(env, ticket, decision)


def read_jsonl(path: Path) -> list[dict[str, str]]:
    """The records of a JSON Lines file."""
    return [json.loads(line) for line in path.read_text("utf-8").splitlines() if line.strip()]


def _article_ok(doc_id: str, url: str | None, row: dict[str, str]) -> bool:
    if doc_id == row["doc_id"]:
        return True
    return bool(url) and article_key(url or "") == article_key(row["url"])


def _distinct_articles(result: RetrievalResult, kb: str) -> list[tuple[str, str | None]]:
    seen: set[str] = set()
    out: list[tuple[str, str | None]] = []
    for p in result.passages:
        if p.kb != kb:
            continue
        key = article_key(p.url) if p.url else p.doc_id
        if key not in seen:
            seen.add(key)
            out.append((p.doc_id, p.url))
    return out


async def judge_ibm(
    retriever: RetrieverAgent, rows: Sequence[dict[str, str]], k: int = 5
) -> list[Judged]:
    """Our retriever (``handle``, as on a site) on the held-out IBM first turns (tenant =
    the company, customer = the handle)."""
    out = []
    for i, row in enumerate(rows):
        ticket = SupportTicket(
            body=row["body"], tenant=row["tenant"], channel="twitter", customer=row["customer"]
        )
        result = await retriever.handle(ticket_item(f"ibm-{i}", ticket), CTX)
        arts = _distinct_articles(result, "support-cases")[:k]
        out.append(
            Judged(
                confidence=result.confidence if arts else 0.0,
                hit1=bool(arts) and _article_ok(*arts[0], row),
                hitk=any(_article_ok(d, u, row) for d, u in arts),
                tenant=row["tenant"],
            )
        )
    return out


class PlainBm25:
    """The baseline: ``bm25s`` over every case's text, all tenants, no calibration.

    Args:
        docs: the ``support-cases`` documents.
    """

    def __init__(self, docs: Sequence[Document]) -> None:
        self.docs = list(docs)
        self._bm25 = bm25s.BM25()
        self._bm25.index(
            [tokenize(index_text(d.text)) or ["\0"] for d in self.docs], show_progress=False
        )
        self._vocab = self._bm25.vocab_dict

    def articles(self, query: str, k: int) -> list[tuple[str, str | None]]:
        """The top ``k`` distinct articles (``doc_id``, URL) for ``query``."""
        terms = sorted({t for t in tokenize(query) if t in self._vocab})
        if not terms:
            return []
        scores = np.asarray(self._bm25.get_scores(terms))
        order = np.lexsort((np.arange(len(scores)), -np.round(scores, 6)))
        out: list[tuple[str, str | None]] = []
        seen: set[str] = set()
        for i in order:
            if scores[i] <= 0 or len(out) >= k:
                break
            d = self.docs[int(i)]
            key = d.label or d.doc_id
            if key not in seen:
                seen.add(key)
                out.append((d.doc_id, d.url))
        return out


def judge_baseline(rows: Sequence[dict[str, str]], k: int = 5) -> list[Judged]:
    """The plain BM25 baseline on the same queries."""
    base = PlainBm25(bundled_docs("support-cases"))
    out = []
    for row in rows:
        arts = base.articles(scrub_contact_details(row["body"]), k)
        out.append(
            Judged(
                confidence=0.0,
                hit1=bool(arts) and _article_ok(*arts[0], row),
                hitk=any(_article_ok(d, u, row) for d, u in arts),
                tenant=row["tenant"],
            )
        )
    return out


async def judge_banking(
    retriever: RetrieverAgent, rows: Sequence[dict[str, str]], k: int = 3
) -> list[Judged]:
    """``banking-faq`` on the held-out banking77 rows (tenant ``bank``, no triage output)."""
    out = []
    for i, row in enumerate(rows):
        ticket = SupportTicket(body=row["text"], tenant="bank", channel="app")
        result = await retriever.handle(ticket_item(f"b77-{i}", ticket), CTX)
        intents = [p.intent for p in result.passages if p.kb == "banking-faq"][:k]
        out.append(
            Judged(
                confidence=result.confidence if intents else 0.0,
                hit1=bool(intents) and intents[0] == row["intent"],
                hitk=row["intent"] in intents,
                tenant="bank",
            )
        )
    return out


def reachable(rows: Sequence[dict[str, str]]) -> int:
    """How many held-out IBM records end in an article that some case of the knowledge
    base was answered with (the ceiling of recall@k)."""
    docs = bundled_docs("support-cases")
    ids = {d.doc_id for d in docs}
    keys = {article_key(d.url) for d in docs if d.url}
    return sum(1 for r in rows if r["doc_id"] in ids or article_key(r["url"]) in keys)


def recall(judged: Sequence[Judged]) -> tuple[float, float]:
    """``(recall@1, recall@k)`` over the queries, 0..1."""
    n = max(1, len(judged))
    return sum(j.hit1 for j in judged) / n, sum(j.hitk for j in judged) / n


def reliability(
    judged: Sequence[Judged], edges: Sequence[float] = BINS
) -> list[tuple[str, int, float, float]]:
    """Rows ``(bin, n, mean confidence, top-1 accuracy)`` over the bins of ``edges``."""
    rows = []
    for lo, hi in itertools.pairwise(edges):
        last = hi >= edges[-1]
        sel = [j for j in judged if lo <= j.confidence < hi or (last and j.confidence == hi)]
        if sel:
            conf = sum(j.confidence for j in sel) / len(sel)
            acc = sum(j.hit1 for j in sel) / len(sel)
            rows.append((f"{lo:.1f}-{hi:.1f}", len(sel), conf, acc))
        else:
            rows.append((f"{lo:.1f}-{hi:.1f}", 0, float("nan"), float("nan")))
    return rows


def expected_calibration_error(judged: Sequence[Judged]) -> float:
    """ECE over 10 equal-width bins (Naeini et al. 2015), 0..1."""
    edges = tuple(i / 10 for i in range(11))
    n = max(1, len(judged))
    return sum(r[1] * abs(r[2] - r[3]) for r in reliability(judged, edges) if r[1]) / n


def coverage(
    judged: Sequence[Judged], thresholds: Sequence[float] = THRESHOLDS
) -> list[tuple[float, float, int, float]]:
    """Rows ``(threshold, share at or above, n above, precision of those)``."""
    rows = []
    for t in thresholds:
        above = [j for j in judged if j.confidence >= t]
        prec = sum(j.hit1 for j in above) / len(above) if above else float("nan")
        rows.append((t, len(above) / max(1, len(judged)), len(above), prec))
    return rows


@dataclass(frozen=True, slots=True)
class RetrievalRun:
    """Everything :func:`run_retrieval` measured (for printing or for later parts)."""

    ibm: list[Judged]
    ibm_baseline: list[Judged]
    banking: list[Judged]
    calibrations: dict[str, str]
    load_s: float


async def run_retrieval(
    ibm_path: Path = IBM_HELDOUT, banking_path: Path = BANKING_HELDOUT, *, limit: int | None = None
) -> RetrievalRun:
    """Run the retrieval measurements (see the module docstring).

    Args:
        ibm_path: the held-out IBM records.
        banking_path: the held-out banking77 rows.
        limit: use only the first ``limit`` records of each (``None``: all).
    """
    started = time.perf_counter()
    retriever = RetrieverAgent()
    library = retriever.library
    calibrations = {
        kb.name: kb.calibration.summary() for kb in library.all() if kb.calibration is not None
    }
    load_s = time.perf_counter() - started
    ibm_rows = read_jsonl(ibm_path)[:limit]
    bank_rows = read_jsonl(banking_path)[:limit]
    return RetrievalRun(
        ibm=await judge_ibm(retriever, ibm_rows),
        ibm_baseline=judge_baseline(ibm_rows),
        banking=await judge_banking(retriever, bank_rows),
        calibrations=calibrations,
        load_s=load_s,
    )


@dataclass(frozen=True, slots=True)
class Outcome:
    """One held-out ticket through the whole support workflow.

    Attributes:
        corpus: ``ibm`` or ``banking77``.
        outcome: the final answer's outcome.
        right: for ``resolved``, whether its document matches the label.
        reasons: the reason codes (``sitemesh.schemas.reason_codes``) otherwise.
    """

    corpus: str
    outcome: str
    right: bool | None
    reasons: tuple[str, ...] = ()


async def run_workflow(
    ibm_path: Path = IBM_HELDOUT, banking_path: Path = BANKING_HELDOUT, *, limit: int | None = None
) -> list[Outcome]:
    """Run the held-out tickets through the support workflow's agents (module docstring).

    Args:
        ibm_path: the held-out IBM records (label: article ``doc_id`` / URL).
        banking_path: the held-out banking77 rows (label: intent).
        limit: only the first ``limit`` records of each (``None``: all).

    Returns:
        One :class:`Outcome` per ticket, IBM first.
    """
    from sitemesh.agents import (
        AgentResources,
        EscalationAgent,
        PlannerAgent,
        TriageAgent,
        ValidatorAgent,
    )
    from sitemesh.schemas import FinalAnswer, reason_codes
    from sitemesh.workflows import next_step

    resources = AgentResources("bench")
    agents = {
        "triage": TriageAgent(), "retrieve": RetrieverAgent(), "plan": PlannerAgent(),
        "validate": ValidatorAgent(), "decide": EscalationAgent(),
    }  # fmt: skip
    for agent in agents.values():
        await agent.setup(resources)

    async def answer(task_id: str, ticket: SupportTicket) -> FinalAnswer:
        item = ticket_item(task_id, ticket)
        while True:
            out = await agents[item.step].handle(item, CTX)
            if isinstance(out, FinalAnswer):
                return out
            item = item.with_output(item.step, out)
            nxt = next_step(item, item.step).step
            assert nxt is not None, f"workflow ended after {item.step} without an answer"
            item = msgspec.structs.replace(item, step=nxt.name)

    out: list[Outcome] = []
    for i, row in enumerate(read_jsonl(ibm_path)[:limit]):
        ticket = SupportTicket(
            body=row["body"], tenant=row["tenant"], channel="twitter", customer=row["customer"]
        )
        fa = await answer(f"ibm-{i}", ticket)
        res = fa.resolution
        right = (
            _article_ok(res.doc_id, res.url, row)
            if fa.outcome == "resolved" and res is not None
            else None
        )
        out.append(Outcome("ibm", fa.outcome, right, tuple(reason_codes(fa.reasons))))
    for i, row in enumerate(read_jsonl(banking_path)[:limit]):
        ticket = SupportTicket(body=row["text"], tenant="bank", channel="app")
        fa = await answer(f"b77-{i}", ticket)
        res = fa.resolution
        right = (
            res.intent == row["intent"] if fa.outcome == "resolved" and res is not None else None
        )
        out.append(Outcome("banking77", fa.outcome, right, tuple(reason_codes(fa.reasons))))
    return out


def _print_workflow(outcomes: Sequence[Outcome]) -> None:
    from collections import Counter

    print(f"  {'tickets':<10} {'n':>5} {'resolved':>9} {'share':>7} {'precision':>10} "
          f"{'escalate':>9} {'needs_human':>12}")  # fmt: skip
    groups = [*sorted({o.corpus for o in outcomes}), "all"]
    for corpus in groups:
        rows = [o for o in outcomes if corpus in ("all", o.corpus)]
        res = [o for o in rows if o.outcome == "resolved"]
        prec = sum(bool(o.right) for o in res) / len(res) if res else float("nan")
        esc = sum(o.outcome == "escalate" for o in rows)
        hum = sum(o.outcome == "needs_human" for o in rows)
        print(f"  {corpus:<10} {len(rows):>5} {len(res):>9} {len(res) / len(rows):>7.1%} "
              f"{prec:>10.3f} {esc:>9} {hum:>12}")  # fmt: skip
    codes = Counter(c for o in outcomes if o.outcome != "resolved" for c in o.reasons)
    print("  reason codes of the tickets not resolved: " + ", ".join(
        f"{c} {n}" for c, n in codes.most_common()))  # fmt: skip


def _print_reliability(judged: Sequence[Judged]) -> None:
    print(f"  {'confidence':<10} {'n':>5} {'mean conf':>10} {'accuracy':>9}")
    for name, n, conf, acc in reliability(judged):
        print(f"  {name:<10} {n:>5} {conf:>10.3f} {acc:>9.3f}")
    print(f"  ECE (10 bins) {expected_calibration_error(judged):.3f}")
    print(f"  {'threshold':<10} {'share >=':>9} {'n':>5} {'precision':>10}")
    for t, share, n, prec in coverage(judged):
        print(f"  {t:<10.2f} {share:>9.1%} {n:>5} {prec:>10.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N records of each set")
    parser.add_argument("--no-workflow", action="store_true", help="retrieval figures only")
    args = parser.parse_args()
    run = asyncio.run(run_retrieval(limit=args.limit))
    print(f"indexes built and calibrated in {run.load_s:.1f} s")
    for name, summary in sorted(run.calibrations.items()):
        print(f"  {name}: {summary}")
    ours, base = recall(run.ibm), recall(run.ibm_baseline)
    seen = reachable(read_jsonl(IBM_HELDOUT)[: args.limit])
    print(f"\nIBM held-out conversations: {len(run.ibm)} (first customer turn -> article)")
    print(f"  {'':<34} {'recall@1':>9} {'recall@5':>9}")
    print(f"  {'retriever (tenant, calibrated)':<34} {ours[0]:>9.3f} {ours[1]:>9.3f}")
    print(f"  {'baseline: plain BM25, all tenants':<34} {base[0]:>9.3f} {base[1]:>9.3f}")
    print(f"  (only {seen} of {len(run.ibm)} end in an article some past case was answered with)")
    print("  reliability of the retriever's confidence (top-1 article correct):")
    _print_reliability(run.ibm)
    b1, b3 = recall(run.banking)
    print(f"\nbanking77 held-out rows: {len(run.banking)} (text -> banking-faq intent)")
    print(f"  intent recall@1 {b1:.3f}, recall@3 {b3:.3f}")
    print("  reliability of the retriever's confidence (top-1 intent correct):")
    _print_reliability(run.banking)
    if not args.no_workflow:
        started = time.perf_counter()
        outcomes = asyncio.run(run_workflow(limit=args.limit))
        took = time.perf_counter() - started
        print(f"\nend to end (triage, retrieve, plan, validate, decide; {took:.0f} s, "
              f"{len(outcomes) / took:.1f} tickets/s): precision of resolved = its document's "
              "article or intent is the label's")  # fmt: skip
        _print_workflow(outcomes)


if __name__ == "__main__":
    main()
