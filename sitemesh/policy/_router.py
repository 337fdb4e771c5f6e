"""The policy router: scan a task for PII, classify it, apply the rules."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..schemas import TASK_KINDS, EntityCount, PolicyDecision, SupportTicket, Task
from ._classify import classify
from ._complexity import estimate_complexity, task_lines, task_text
from ._machinescan import MachineDataScanner
from ._pii import DetectedEntity, PiiScanner
from ._rules import DecisionFacts, Policy

if TYPE_CHECKING:
    from ..config import PolicySettings

__all__ = ["PolicyRouter", "count_entities", "structured_identifiers", "task_kind"]

Scan = Callable[[Sequence[str]], list[list[DetectedEntity]]]

_KIND_OF: Mapping[type, str] = MappingProxyType({cls: kind for kind, cls in TASK_KINDS.items()})


def task_kind(task: Task) -> str:
    """The subject kind token of a task (``support_ticket``, ``telemetry_alert``)."""
    return _KIND_OF[type(task)]


def count_entities(entities: Sequence[DetectedEntity]) -> list[EntityCount]:
    """Entity counts per type with the highest score, sorted by type (no values).

    Args:
        entities: detections in one task.

    Returns:
        One :class:`~sitemesh.schemas.EntityCount` per entity type.
    """
    counts: dict[str, tuple[int, float]] = {}
    for e in entities:
        n, best = counts.get(e.entity_type, (0, 0.0))
        counts[e.entity_type] = (n + 1, max(best, e.score))
    return [
        EntityCount(entity_type=t, count=n, max_score=round(s, 4))
        for t, (n, s) in sorted(counts.items())
    ]


def structured_identifiers(task: Task) -> list[DetectedEntity]:
    """Identifiers a task carries in structured fields, whatever the NER model says.

    A ticket's ``customer`` (a handle or name given by the channel) identifies a
    natural person by definition (GDPR Art. 4(1): "an online identifier"), so it is
    reported as ``CUSTOMER_ID`` with score 1.0 at its position in :func:`task_text`
    (which starts with the customer field).

    Args:
        task: the task.

    Returns:
        Zero or one ``CUSTOMER_ID`` entity.
    """
    if isinstance(task, SupportTicket) and task.customer and task.customer.strip():
        return [DetectedEntity("CUSTOMER_ID", 0, len(task.customer), 1.0)]
    return []


def _always_healthy() -> bool:
    return True


class PolicyRouter:
    """Decides where each task may run: PII scan -> data class -> first matching rule.

    What is scanned, per task kind:

    * a kind in the policy's ``machine_kinds`` (default ``telemetry_alert``): its
      :func:`~sitemesh.policy.task_text` (an alert's summary) with
      :meth:`MachineDataScanner.scan_many` (machine tokens masked, NER, user names)
      and each of its :func:`~sitemesh.policy.task_lines` (inline log lines, sample
      labels) with :meth:`MachineDataScanner.scan_lines` (no NER);
    * any other kind (``support_ticket``): ``task_text`` with ``scanner`` as is, and
      its lines, if it has any, with ``scanner`` too, one text per line.

    Fails closed: any analyzer error propagates as
    :class:`~sitemesh.errors.PiiAnalyzerError` (a ``PermanentError``), so the worker
    dead-letters the task instead of forwarding it. Decisions carry entity types,
    counts and scores, never the detected values.

    Not thread-safe (the spaCy pipeline is not); run it in one worker thread.

    Args:
        policy: the rules (used when ``policy_source`` is ``None``).
        scanner: the PII scanner.
        machine_scanner: the scanner of machine-data kinds; ``None``: a
            :class:`MachineDataScanner` over ``scanner`` with no device networks.
        tenant_tiers: tenant -> tier (``standard`` when absent).
        backend_healthy: called once per decision (or batch) for the
            ``backend_healthy`` fact; ``None``: always healthy.
        policy_source: called once per decision (or batch) for the policy to
            apply, e.g. a :class:`~sitemesh.policy.LivePolicy` that follows the
            ``sitemesh_policy`` KV bucket; ``None``: always ``policy``. One
            snapshot is used per decision/batch, so a decision's
            ``policy_version`` is always the version of the rules that made it.
    """

    def __init__(
        self,
        policy: Policy,
        scanner: PiiScanner,
        *,
        machine_scanner: MachineDataScanner | None = None,
        tenant_tiers: Mapping[str, str] | None = None,
        backend_healthy: Callable[[], bool] | None = None,
        policy_source: Callable[[], Policy] | None = None,
    ) -> None:
        self._policy = policy
        self._source = policy_source
        self.scanner = scanner
        self.machine_scanner = (
            machine_scanner if machine_scanner is not None else MachineDataScanner(scanner)
        )
        self._tiers = dict(tenant_tiers or {})
        self._healthy = backend_healthy or _always_healthy

    @property
    def policy(self) -> Policy:
        """The policy the next decision applies (from ``policy_source`` if given)."""
        return self._policy if self._source is None else self._source()

    @policy.setter
    def policy(self, policy: Policy) -> None:
        self._policy = policy
        self._source = None

    @classmethod
    def from_settings(cls, settings: PolicySettings) -> PolicyRouter:
        """A router with ``settings.rules_file`` (bundled rules when ``None``),
        ``settings.min_score`` and ``settings.device_networks``.

        Raises:
            PolicyError: the rules file is invalid.
        """
        scanner = PiiScanner.from_settings(settings)
        return cls(
            Policy.load(settings.rules_file),
            scanner,
            machine_scanner=MachineDataScanner.from_settings(settings, scanner),
        )

    def decide(
        self, task: Task, task_id: str, *, latency_budget_ms: float | None = None
    ) -> PolicyDecision:
        """Decide one task.

        Args:
            task: the task.
            task_id: its id (recorded on the decision).
            latency_budget_ms: the task's latency budget in milliseconds, if any.

        Returns:
            The decision with rule, action, data class, entity counts, policy
            version, reasons and analyzer time in milliseconds.

        Raises:
            PiiAnalyzerError: the analyzer failed (dead-letter the task).
        """
        policy = self.policy
        self.scanner.load()
        start = time.perf_counter()
        entities = self._scan([task], policy)[0]
        analyzer_ms = (time.perf_counter() - start) * 1000
        return self._decide(
            policy, task, task_id, entities, analyzer_ms, latency_budget_ms, self._healthy()
        )

    def decide_many(self, items: Sequence[tuple[Task, str]]) -> list[PolicyDecision]:
        """Decide many tasks with one batched PII scan.

        Args:
            items: ``(task, task_id)`` pairs.

        Returns:
            One decision per pair, in order; ``analyzer_ms`` is the batch's scan
            time divided evenly among its tasks.

        Raises:
            PiiAnalyzerError: the analyzer failed on any task (dead-letter the batch,
                or retry its tasks one by one to isolate the failing one).
        """
        if not items:
            return []
        policy = self.policy
        self.scanner.load()
        start = time.perf_counter()
        found = self._scan([task for task, _ in items], policy)
        analyzer_ms = (time.perf_counter() - start) * 1000 / len(items)
        healthy = self._healthy()
        return [
            self._decide(policy, task, task_id, entities, analyzer_ms, None, healthy)
            for (task, task_id), entities in zip(items, found, strict=True)
        ]

    def _scan(self, tasks: Sequence[Task], policy: Policy) -> list[list[DetectedEntity]]:
        """Every detection of each task (its text, its lines, its structured fields).

        Offsets are per scanned text (the task text or one line); only the types,
        counts and scores are used.
        """
        machine = [task_kind(task) in policy.machine_kinds for task in tasks]
        out: list[list[DetectedEntity]] = [structured_identifiers(task) for task in tasks]
        texts: list[tuple[bool, Scan]] = [
            (False, self.scanner.scan_many),
            (True, self.machine_scanner.scan_many),
        ]
        for is_machine, scan in texts:
            idx = [i for i, m in enumerate(machine) if m is is_machine]
            if idx:
                found = scan([task_text(tasks[i]) for i in idx])
                for i, entities in zip(idx, found, strict=True):
                    out[i] = entities + out[i]
        lines: list[tuple[bool, Scan]] = [
            (False, self.scanner.scan_many),
            (True, self.machine_scanner.scan_lines),
        ]
        for is_machine, scan in lines:
            owners: list[int] = []
            todo: list[str] = []
            for i, task in enumerate(tasks):
                if machine[i] is is_machine:
                    mine = task_lines(task)
                    owners.extend([i] * len(mine))
                    todo.extend(mine)
            if todo:
                for i, entities in zip(owners, scan(todo), strict=True):
                    out[i].extend(entities)
        return out

    def _decide(
        self,
        policy: Policy,
        task: Task,
        task_id: str,
        entities: list[DetectedEntity],
        analyzer_ms: float,
        latency_budget_ms: float | None,
        healthy: bool,
    ) -> PolicyDecision:
        kind = task_kind(task)
        data_class = classify(entities, public=kind in policy.public_kinds)
        facts = DecisionFacts(
            kind=kind,
            data_class=data_class,
            entity_types=frozenset(e.entity_type for e in entities),
            tenant_tier=self._tiers.get(task.tenant, "standard"),
            tenant=task.tenant,
            latency_budget_ms=latency_budget_ms,
            complexity=estimate_complexity(task),
            backend_healthy=healthy,
        )
        match = policy.decide(facts)
        return PolicyDecision(
            task_id=task_id,
            action=match.action,
            rule_id=match.rule_id,
            policy_version=policy.version,
            data_class=data_class,
            entities=count_entities(entities),
            reasons=list(match.reasons),
            analyzer_ms=round(analyzer_ms, 3),
        )
