"""The validator: checks a plan before anything acts on it or a customer sees it."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable, Collection
from typing import ClassVar, Final

import msgspec

from ..schemas import (
    Diagnosis,
    Passage,
    Plan,
    RetrievalResult,
    ValidationIssue,
    ValidationReport,
    WorkItem,
)
from ._actions import ALLOWED_ACTIONS
from ._base import Agent, AgentContext, AgentOutput, AgentResources

PiiCheck = Callable[[str], list[str]]
"""Takes a text, returns the entity types found in it (``["PERSON", "EMAIL_ADDRESS"]``)."""

CHECKS: Final = (
    "schema", "non_empty", "numbering", "allowed_actions", "grounding", "reply", "pii"
)
"""The checks, in the order they run (reported in ``ValidationReport.checks``)."""

_SENTENCES: Final = re.compile(r"(?<=[.!?])\s+")
_OPENING: Final = re.compile(r"^(?:hi <CUSTOMER>,|hello,)\s*", re.IGNORECASE)

_PLAN_DECODER: Final = msgspec.json.Decoder(Plan)


def default_pii_check(text: str) -> list[str]:
    """PII entity types in ``text`` using :func:`sitemesh.policy.find_pii` (imported lazily).

    Results are memoised per text by the process-wide default scanner (most customer
    messages come from a few templates).

    Args:
        text: the text to scan.

    Returns:
        The entity types found, one per detection.

    Raises:
        ImportError: the policy package (and its analyzer) is not available.
        AttributeError: ``sitemesh.policy`` has no ``find_pii``.
    """
    policy = importlib.import_module("sitemesh.policy")  # lazy: the analyzer loads spaCy
    return [str(entity.entity_type) for entity in policy.find_pii(text)]


class ValidatorAgent(Agent):
    """Role ``validator``: schema, allowed actions, grounding and PII checks of the plan.

    Checks (see :data:`CHECKS`); each failure adds a :class:`ValidationIssue`:

    * ``schema``: the plan survives a msgspec JSON round trip unchanged
      (``schema_invalid``); a missing plan is ``no_plan``.
    * ``non_empty``: at least one step (``empty_plan``).
    * ``numbering``: steps are numbered 1..n in order (``bad_step_number``).
    * ``allowed_actions``: every action is in the allow-list (``action_not_allowed``).
    * ``grounding``: every step names at least one grounding (``ungrounded_step``)
      and each is either a ``passage_id`` of the retrieval result's passages or
      ``diagnosis#<n>`` with ``1 <= n <=`` the number of findings in
      the diagnosis, or the ``ref`` of an ``ok`` tool result of the plan
      (:attr:`~sitemesh.schemas.Plan.tools`, ``tool#<k>``) (``unknown_grounding``).
    * ``reply``: a reply drafted from the knowledge base (plan source ``knowledge``)
      names a retrieved document and carries its URL (``ungrounded_reply``).
    * ``pii``: ``customer_message`` contains no PII (``pii``, naming the entity
      types only, never the text). The check fails closed: if the PII detector
      cannot be loaded or raises, the issue ``pii_check_failed`` makes the report
      not ok, so the message is never shown unchecked.

    Args:
        pii_check: PII detector; ``None`` uses :func:`default_pii_check`.
        allowed_actions: the action allow-list (default
            :data:`~sitemesh.agents._actions.ALLOWED_ACTIONS`).
    """

    role: ClassVar[str] = "validator"
    output: ClassVar[type[ValidationReport]] = ValidationReport
    description: ClassVar[str] = "allowed actions, grounding, no PII in customer-facing text"

    def __init__(
        self,
        pii_check: PiiCheck | None = None,
        *,
        allowed_actions: Collection[str] = ALLOWED_ACTIONS,
    ) -> None:
        self._pii_check: PiiCheck = pii_check if pii_check is not None else default_pii_check
        self.allowed_actions = frozenset(allowed_actions)

    def warm_up(self) -> None:
        """Load the PII detector now (spaCy model and all), not on the first message.

        Raises:
            Exception: whatever the detector raises; at start-up that should stop
                the worker rather than have every plan fail the PII check.
        """
        self._pii_check("Warm-up text for the PII detector.")

    async def setup(self, resources: AgentResources) -> None:
        """Load the PII detector before the first message (see :meth:`warm_up`)."""
        del resources
        self.warm_up()

    def validate(self, item: WorkItem) -> ValidationReport:
        """Run every check on the plan (the synchronous core of :meth:`handle`).

        Args:
            item: the work item with the plan, retrieval and diagnosis.

        Returns:
            The report; ``ok`` is true when there are no issues.
        """
        task_id = item.envelope.task_id
        plan = item.output(Plan)
        if plan is None:
            issue = ValidationIssue(code="no_plan", message="the work item carries no plan")
            return ValidationReport(task_id=task_id, ok=False, issues=[issue], checks=["schema"])
        issues: list[ValidationIssue] = []
        issues += self._check_schema(plan)
        if not plan.steps:
            issues.append(ValidationIssue(code="empty_plan", message="the plan has no steps"))
        for position, step in enumerate(plan.steps, start=1):
            if step.n != position:
                issues.append(
                    ValidationIssue(
                        code="bad_step_number",
                        message=f"step at position {position} is numbered {step.n}",
                        step=step.n,
                    )
                )
        for step in plan.steps:
            if step.action not in self.allowed_actions:
                issues.append(
                    ValidationIssue(
                        code="action_not_allowed",
                        message=f"action {step.action!r} is not in the allow-list",
                        step=step.n,
                    )
                )
        issues += self._check_grounding(item, plan)
        cited = self._cited(item, plan) if plan.source == "knowledge" else None
        issues += self._check_reply(plan, cited)
        issues += self._check_pii(self._unvetted(plan, cited))
        return ValidationReport(task_id=task_id, ok=not issues, issues=issues, checks=list(CHECKS))

    @staticmethod
    def _check_schema(plan: Plan) -> list[ValidationIssue]:
        try:
            again = _PLAN_DECODER.decode(msgspec.json.encode(plan))
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
            return [ValidationIssue(code="schema_invalid", message=f"plan does not encode: {exc}")]
        if again != plan:
            return [ValidationIssue(code="schema_invalid", message="plan changes in a round trip")]
        return []

    @staticmethod
    def _check_grounding(item: WorkItem, plan: Plan) -> list[ValidationIssue]:
        retrieval, diagnosis = item.output(RetrievalResult), item.output(Diagnosis)
        known = {p.passage_id for p in retrieval.passages} if retrieval else set()
        findings = len(diagnosis.findings) if diagnosis else 0
        known |= {f"diagnosis#{n}" for n in range(1, findings + 1)}
        known |= {u.ref for u in plan.tools if u.outcome == "ok" and u.ref}
        issues = []
        for step in plan.steps:
            if not step.grounding:
                issues.append(
                    ValidationIssue(
                        code="ungrounded_step",
                        message="step cites no retrieved passage or finding",
                        step=step.n,
                    )
                )
            issues.extend(
                ValidationIssue(
                    code="unknown_grounding",
                    message=f"grounding {ref!r} is not among the retrieved passages, findings or "
                    "tool results",
                    step=step.n,
                )
                for ref in step.grounding
                if ref not in known
            )
        return issues

    def _check_pii(self, text: str) -> list[ValidationIssue]:
        if not text.strip():
            return []
        try:
            found = self._pii_check(text)
        except Exception as exc:  # fail closed: an unchecked message never passes
            return [
                ValidationIssue(
                    code="pii_check_failed",
                    message=f"PII check failed ({type(exc).__name__}); message withheld",
                )
            ]
        if not found:
            return []
        types = ", ".join(sorted(set(found)))
        return [ValidationIssue(code="pii", message=f"customer message contains PII: {types}")]

    @staticmethod
    def _cited(item: WorkItem, plan: Plan) -> Passage | None:
        retrieval, res = item.output(RetrievalResult), plan.resolution
        if retrieval is None or res is None:
            return None
        return next(
            (p for p in retrieval.passages if p.kb == res.kb and p.doc_id == res.doc_id), None
        )

    @staticmethod
    def _check_reply(plan: Plan, cited: Passage | None) -> list[ValidationIssue]:
        if plan.source != "knowledge":
            return []
        if cited is None:
            return [ValidationIssue(code="ungrounded_reply",
                                    message="the reply's document is not among the retrieved")]
        if cited.url and cited.url not in plan.customer_message:
            return [ValidationIssue(code="ungrounded_reply",
                                    message="the reply does not cite its document's URL")]
        return []

    @staticmethod
    def _unvetted(plan: Plan, cited: Passage | None) -> str:
        """The part of the customer message the PII check must read.

        A reply drafted from the knowledge base copies sentences of the cited
        document's answer, which was pseudonymised when it was ingested
        (``sitemesh kb add``) or written by the site (FAQ); those sentences and the
        document's own URL are taken out, so the check reads the rest. Presidio
        flags every URL and product names such as "Photoshop" (PERSON), so scanning
        vetted text again only turns correct replies into false positives.
        """
        message = plan.customer_message
        if cited is None:
            return message
        if cited.url:
            message = message.replace(cited.url, " ")
        vetted = " ".join(cited.answer.split()).lower()
        kept = []
        for sentence in _SENTENCES.split(message):
            bare = _OPENING.sub("", sentence.strip()).lower()
            if bare and bare not in vetted:
                kept.append(sentence)
        return " ".join(kept)

    async def handle(self, item: WorkItem, ctx: AgentContext) -> ValidationReport:
        """Validate the plan.

        Args:
            item: the work item.
            ctx: the agent context (unused).

        Returns:
            The :class:`ValidationReport`.
        """
        return self.validate(item)

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line: ok or the issue codes.

        Args:
            output: a :class:`ValidationReport`.

        Returns:
            E.g. ``"ok, 6 checks"`` or ``"2 issues: ungrounded_step, pii"``.
        """
        if not isinstance(output, ValidationReport):
            return type(output).__name__
        if output.ok:
            return f"ok, {len(output.checks)} checks"
        codes = ", ".join(dict.fromkeys(i.code for i in output.issues))
        return f"{len(output.issues)} issue{'s' if len(output.issues) != 1 else ''}: {codes}"
