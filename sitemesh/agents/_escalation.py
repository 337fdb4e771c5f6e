"""The escalation agent: the final decision of a task (resolve, escalate, ask a human)."""

from __future__ import annotations

from typing import ClassVar, Final

from ..schemas import (
    Diagnosis,
    FinalAnswer,
    Outcome,
    Plan,
    RetrievalResult,
    SupportTicket,
    TelemetryAlert,
    ValidationReport,
    WorkItem,
)
from ._base import Agent, AgentContext, AgentOutput

MIN_RETRIEVAL_CONFIDENCE: Final = 0.30
"""Below this retrieval confidence the task is escalated.

From the retriever's calibration (``sitemesh.agents._retriever.CONFIDENCE_CALIBRATION``):
98 % of in-domain queries (runbook names) score at least 0.30, and 1 of 925
out-of-domain support tickets (IBM Twitter, Endava IT) does."""

ESCALATE_SEVERITIES: Final = frozenset({"major", "critical"})
"""Finding and alert severities that always go to a human team."""

HOLDING_MESSAGE: Final = (
    "Thank you for contacting us. A member of our team will review your request "
    "and get back to you."
)
"""Customer message used when the plan's own message cannot be sent (validation
failed, so it may contain PII or may not have been checked)."""

_RANK: Final[dict[Outcome, int]] = {"resolved": 0, "escalate": 1, "needs_human": 2}


class EscalationAgent(Agent):
    """Role ``escalation``: turn the enriched work item into the :class:`FinalAnswer`.

    Decision table (every matching row adds a reason; the strongest outcome wins,
    ``needs_human`` > ``escalate`` > ``resolved``):

    ============================================  ===============
    condition                                     outcome
    ============================================  ===============
    no plan, plan not validated, validation fails  ``needs_human``
    a diagnosis finding is major/critical          ``escalate``
    the alert's severity is major/critical         ``escalate``
    the ticket's urgency is 0 (critical)           ``escalate``
    no retrieval, or confidence < threshold        ``escalate``
    otherwise                                      ``resolved``
    ============================================  ===============

    The answer copies the plan, the diagnosis, and ``data_class`` and
    ``submitted_at`` from the envelope. Its ``customer_message`` is the plan's
    (validated PII-free) message, or :data:`HOLDING_MESSAGE` when validation did
    not pass.

    Args:
        min_confidence: retrieval confidence threshold, 0..1 (default
            :data:`MIN_RETRIEVAL_CONFIDENCE`).
    """

    role: ClassVar[str] = "escalation"
    output: ClassVar[type[FinalAnswer]] = FinalAnswer
    description: ClassVar[str] = "resolved / escalate / needs_human, and the final answer"

    def __init__(self, *, min_confidence: float = MIN_RETRIEVAL_CONFIDENCE) -> None:
        if not 0.0 <= min_confidence <= 1.0:
            raise ValueError("min_confidence must be within 0..1")
        self.min_confidence = min_confidence

    def decide(self, item: WorkItem) -> tuple[Outcome, list[str]]:
        """Apply the decision table.

        Args:
            item: the work item after validation.

        Returns:
            ``(outcome, reasons)``; reasons are PII-free and in table order.
        """
        found: list[tuple[Outcome, str]] = []
        plan, report = item.output(Plan), item.output(ValidationReport)
        diagnosis, retrieval = item.output(Diagnosis), item.output(RetrievalResult)
        if plan is None:
            found.append(("needs_human", "no plan was produced"))
        elif report is None:
            found.append(("needs_human", "plan was not validated"))
        elif not report.ok:
            codes = ", ".join(dict.fromkeys(i.code for i in report.issues))
            found.append(("needs_human", f"validation failed: {codes}"))
        if diagnosis is not None:
            for finding in diagnosis.findings:
                if finding.severity in ESCALATE_SEVERITIES:
                    found.append(("escalate", f"{finding.severity} finding: {finding.kind}"))
        match item.task:
            case TelemetryAlert(severity=severity) if severity in ESCALATE_SEVERITIES:
                found.append(("escalate", f"{severity} alert"))
            case SupportTicket(urgency=0):
                found.append(("escalate", "ticket urgency 0 (critical)"))
            case _:
                pass
        if retrieval is None:
            found.append(("escalate", "no retrieval result"))
        elif retrieval.confidence < self.min_confidence:
            found.append(
                (
                    "escalate",
                    f"low retrieval confidence {retrieval.confidence:.2f} "
                    f"< {self.min_confidence:.2f}",
                )
            )
        if not found:
            return "resolved", ["plan validated and grounded in a confident runbook match"]
        outcome = max((o for o, _ in found), key=_RANK.__getitem__)
        return outcome, list(dict.fromkeys(reason for _, reason in found))

    def answer(self, item: WorkItem) -> FinalAnswer:
        """The :class:`FinalAnswer` for ``item`` (the synchronous core of :meth:`handle`).

        Args:
            item: the work item after validation.

        Returns:
            The final answer.
        """
        outcome, reasons = self.decide(item)
        plan, report = item.output(Plan), item.output(ValidationReport)
        validated = report is not None and report.ok
        message = plan.customer_message if plan is not None and validated else ""
        if not validated and isinstance(item.task, SupportTicket):
            message = HOLDING_MESSAGE
        env = item.envelope
        return FinalAnswer(
            task_id=env.task_id,
            site=env.site,
            outcome=outcome,
            reasons=reasons,
            customer_message=message,
            plan=plan,
            diagnosis=item.output(Diagnosis),
            data_class=env.data_class,
            submitted_at=env.submitted_at,
        )

    async def handle(self, item: WorkItem, ctx: AgentContext) -> FinalAnswer:
        """Decide and answer.

        Args:
            item: the work item after validation.
            ctx: the agent context (unused).

        Returns:
            The :class:`FinalAnswer`.
        """
        return self.answer(item)

    def summarize(self, output: AgentOutput) -> str:
        """One PII-free line: outcome and reasons.

        Args:
            output: a :class:`FinalAnswer`.

        Returns:
            E.g. ``"escalate: low retrieval confidence 0.16 < 0.30"``.
        """
        if not isinstance(output, FinalAnswer):
            return type(output).__name__
        return f"{output.outcome}: {'; '.join(output.reasons)}"
