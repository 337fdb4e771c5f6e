"""The escalation agent: the final decision of a task (resolve, escalate, ask a human)."""

from __future__ import annotations

from typing import ClassVar, Final

from ..knowledge import trim
from ..schemas import (
    Diagnosis,
    FinalAnswer,
    Outcome,
    Plan,
    RetrievalResult,
    SupportTicket,
    TelemetryAlert,
    Triage,
    ValidationReport,
    WorkItem,
)
from ..workflows import cloud_allowed, data_class_raised
from ._base import Agent, AgentContext, AgentOutput
from ._crm import customer_greeting
from ._planner import CUSTOMER

MIN_RETRIEVAL_CONFIDENCE: Final = 0.30
"""Below this retrieval confidence the task is escalated.

From the retriever's calibration (``sitemesh.agents._retriever.CONFIDENCE_CALIBRATION``):
98 % of in-domain queries (runbook names) score at least 0.30, and 1 of 925
out-of-domain support tickets (IBM Twitter, Endava IT) does."""

MIN_ANSWER_CONFIDENCE: Final = 0.80
"""A reply drafted from a knowledge-base document resolves a ticket on its own (no
triage label to confirm it) only when the retriever's calibrated confidence in the
document is at least this. The confidence is a Platt-scaled probability that the
document is the right one (see ``sitemesh.knowledge``), so 0.80 targets the
issue's precision goal for ``resolved`` (>= 0.9) with margin; measured in
``bench/resolve.py``."""

MIN_AGREED_CONFIDENCE: Final = 0.50
"""Retrieval confidence needed when the triage label confirms the document's intent."""

MIN_TRIAGE_CONFIDENCE: Final = 0.60
"""Below this calibrated triage confidence the label does not confirm a document."""

ESCALATE_SEVERITIES: Final = frozenset({"major", "critical"})
"""Finding and alert severities that always go to a human team."""

HOLDING_MESSAGE: Final = (
    "Thank you for contacting us. A member of our team will review your request "
    "and get back to you."
)
"""Customer message used when the plan's own message cannot be sent (validation
failed, so it may contain PII or may not have been checked)."""

UNCONFIRMED_SUMMARY_CHARS: Final = 600
"""At most this many characters of the diagnosis summary in the message that closes
an unconfirmed alert."""


_RANK: Final[dict[Outcome, int]] = {"resolved": 0, "escalate": 1, "needs_human": 2}


def _unconfirmed(task: object, diagnosis: Diagnosis | None) -> bool:
    """An info or minor alert whose telemetry was read and checked without a finding:
    the data does not confirm it, so it is closed without a runbook (a major or
    critical alert still goes to a human, by its own row)."""
    return (
        isinstance(task, TelemetryAlert)
        and task.severity not in ESCALATE_SEVERITIES
        and diagnosis is not None
        and bool(diagnosis.checks_run)
        and not diagnosis.findings
    )


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
    an alert's diagnosis ran no check (no data)    ``escalate``
    an info/minor alert whose telemetry was        ``resolved`` (not confirmed;
    checked and shows no anomaly                   no runbook needed)
    the ticket's urgency is 0 (critical)           ``escalate``
    the CRM did not answer (retrieval's customer)  ``escalate`` (its reason)
    no retrieval, or confidence < threshold        ``escalate``
    a ticket has no reply from the knowledge base  ``escalate``
    triage label and the document's intent differ  ``escalate``
    triage label uncertain (< 0.60)                ``escalate``
    reply not confirmed by triage and < 0.80       ``escalate``
    otherwise                                      ``resolved``
    ============================================  ===============

    For a ticket answered from the knowledge base (plan source ``knowledge``) the
    retrieval threshold is :data:`MIN_AGREED_CONFIDENCE` when the triage label names
    the document's intent and :data:`MIN_ANSWER_CONFIDENCE` otherwise; for runbook
    plans it is ``min_confidence``. A resolved ticket's message is the drafted reply
    with ``<CUSTOMER>`` filled in on the site; any other outcome gets
    :data:`HOLDING_MESSAGE`, which promises no work that was not done. When the
    retriever found the ticket's customer in the CRM, :meth:`handle` re-identifies the
    name and account number on the site (``ctx.tools.reidentify``): the reply greets
    the customer by name and cites the account's last four digits. An escalation that
    cannot leave the site because a tool raised the data class says so in its reasons.

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
        elif not report.ok and not self._expected_fallback(item, plan, report):
            codes = ", ".join(dict.fromkeys(i.code for i in report.issues))
            found.append(("needs_human", f"validation failed: {codes}"))
        if diagnosis is not None:
            for finding in diagnosis.findings:
                if finding.severity in ESCALATE_SEVERITIES:
                    found.append(("escalate", f"{finding.severity} finding: {finding.kind}"))
        if (isinstance(item.task, TelemetryAlert) and diagnosis is not None
                and not diagnosis.checks_run and not diagnosis.findings):
            found.append(("escalate", "no telemetry for the alert's device and window"))
        match item.task:
            case TelemetryAlert(severity=severity) if severity in ESCALATE_SEVERITIES:
                found.append(("escalate", f"{severity} alert"))
            case SupportTicket(urgency=0):
                found.append(("escalate", "ticket urgency 0 (critical)"))
            case _:
                pass
        if not found and _unconfirmed(item.task, diagnosis):
            assert diagnosis is not None  # _unconfirmed checked it
            return "resolved", [
                "alert not confirmed: telemetry checked ("
                + ", ".join(diagnosis.checks_run)
                + "), no anomaly in the window"
            ]
        triage = item.output(Triage)
        if triage is not None and triage.urgency == 0 and triage.urgency_source != "ticket":
            found.append(("escalate", f"triage urgency 0 (critical, {triage.urgency_source})"))
        ticket = isinstance(item.task, SupportTicket)
        customer = retrieval.customer if retrieval is not None else None
        if customer is not None and customer.status == "unavailable":
            found.append(("escalate", customer.reason or f"{customer.tool} unavailable"))
        if retrieval is None:
            found.append(("escalate", "no retrieval result"))
        elif ticket and plan is not None and plan.source != "knowledge":
            found.append(("escalate", "no knowledge-base answer for this ticket"))
        elif ticket and plan is not None and plan.resolution is not None:
            found += self._knowledge_reasons(plan.resolution.confidence, plan.resolution.intent,
                                             triage)
        elif retrieval.confidence < self.min_confidence:
            found.append(
                (
                    "escalate",
                    f"low retrieval confidence {retrieval.confidence:.2f} "
                    f"< {self.min_confidence:.2f}",
                )
            )
        if not found:
            if plan is not None and plan.resolution is not None:
                res = plan.resolution
                return "resolved", [
                    f"reply grounded in {res.doc_kind} {res.doc_id} ({res.kb}), "
                    f"confidence {res.confidence:.2f}"
                    + (f", triage agrees ({triage.label} {triage.confidence:.2f})"
                       if triage is not None and triage.label and triage.label == res.intent
                       else "")
                ]
            return "resolved", ["plan validated and grounded in a confident runbook match"]
        outcome = max((o for o, _ in found), key=_RANK.__getitem__)
        return outcome, list(dict.fromkeys(reason for _, reason in found))

    @staticmethod
    def _expected_fallback(item: WorkItem, plan: Plan, report: ValidationReport) -> bool:
        """A ticket's fallback plan ("gather details, hand over") cites nothing because
        nothing matched; that is the reason to escalate, not a broken plan."""
        return (
            isinstance(item.task, SupportTicket)
            and plan.source == "fallback"
            and all(i.code == "ungrounded_step" for i in report.issues)
        )

    @staticmethod
    def _knowledge_reasons(
        confidence: float, intent: str | None, triage: Triage | None
    ) -> list[tuple[Outcome, str]]:
        labelled = triage is not None and bool(triage.label)
        if labelled and intent is not None and triage is not None and triage.label != intent:
            return [("escalate", f"triage ({triage.label_set} {triage.label} "
                     f"{triage.confidence:.2f}) and knowledge (intent {intent}) disagree")]
        if labelled and intent is not None and triage is not None:
            out: list[tuple[Outcome, str]] = []
            if triage.confidence < MIN_TRIAGE_CONFIDENCE:
                out.append(("escalate", f"triage uncertain: {triage.label} "
                            f"{triage.confidence:.2f} < {MIN_TRIAGE_CONFIDENCE:.2f}"))
            if confidence < MIN_AGREED_CONFIDENCE:
                out.append(("escalate", f"low knowledge confidence {confidence:.2f} "
                            f"< {MIN_AGREED_CONFIDENCE:.2f}"))
            return out
        if confidence < MIN_ANSWER_CONFIDENCE:
            return [("escalate", f"low knowledge confidence {confidence:.2f} "
                     f"< {MIN_ANSWER_CONFIDENCE:.2f} (no triage label to confirm it)")]
        return []

    @staticmethod
    def address(item: WorkItem, message: str, name: str | None = None) -> str:
        """Fill the ``<CUSTOMER>`` placeholder of a drafted reply on the site: the
        customer's name from the CRM when given (re-identified on the site), else the
        ticket's ``@handle`` on Twitter, the customer as given elsewhere, else
        "there"."""
        task = item.task
        who = "there"
        if name:
            who = name
        elif isinstance(task, SupportTicket) and task.customer and task.customer.strip():
            who = task.customer.strip()
            if task.channel == "twitter" and not who.startswith("@"):
                who = f"@{who}"
        if name and message and CUSTOMER not in message:  # greet the customer by name
            message = f"Hello {CUSTOMER}, {message[0].lower()}{message[1:]}"
        return message.replace(CUSTOMER, who)

    def answer(self, item: WorkItem, *, name: str | None = None, last4: str = "") -> FinalAnswer:
        """The :class:`FinalAnswer` for ``item`` (the synchronous core of :meth:`handle`).

        Args:
            item: the work item after validation.
            name: the customer's name from the CRM, re-identified on the site (the
                reply addresses it instead of the ticket's handle).
            last4: the last four digits of the customer's account (the reply cites them).

        Returns:
            The final answer.
        """
        outcome, reasons = self.decide(item)
        raised = data_class_raised(item)
        if outcome == "escalate" and raised is not None and cloud_allowed(item.decision):
            reasons.append(
                f"kept on site: a tool response raised the data class to {raised} after "
                f"the policy decision ({item.decision.data_class})"
            )
        plan, report = item.output(Plan), item.output(ValidationReport)
        validated = report is not None and report.ok
        message = plan.customer_message if plan is not None and validated else ""
        if isinstance(item.task, SupportTicket):
            if not validated or (outcome != "resolved" and plan is not None
                                 and plan.source == "knowledge"):
                message = HOLDING_MESSAGE
            message = self.address(item, message, name)
            if last4 and message:
                message = f"{message} This concerns your account ending in {last4}."
        elif outcome == "resolved" and _unconfirmed(item.task, item.output(Diagnosis)):
            diagnosis = item.output(Diagnosis)
            assert diagnosis is not None
            message = (
                "The telemetry does not confirm this alert: "
                + trim(diagnosis.summary, UNCONFIRMED_SUMMARY_CHARS)
                + ". Closed without action; raise it again if the problem persists."
            )
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
            resolution=plan.resolution if plan is not None else None,
            triage=item.output(Triage),
        )

    async def handle(self, item: WorkItem, ctx: AgentContext) -> FinalAnswer:
        """Decide and answer; a ticket whose customer the CRM found is addressed by
        name and cites the account's last four digits, re-identified on the site.

        Args:
            item: the work item after validation.
            ctx: the agent context (``ctx.tools.reidentify``: the site vault).

        Returns:
            The :class:`FinalAnswer`.
        """
        retrieval = item.output(RetrievalResult)
        customer = retrieval.customer if retrieval is not None else None
        if customer is None or not isinstance(item.task, SupportTicket):
            return self.answer(item)
        tools = ctx.tools if ctx is not None else None
        name, last4 = await customer_greeting(customer, tools)
        return self.answer(item, name=name, last4=last4)

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
