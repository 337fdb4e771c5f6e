"""The built-in agents and the site's CRM tool: who the ticket's customer is.

The retriever asks the CRM (:func:`lookup_customer`) through ``ctx.tools``, the public
tool API any agent uses, when a support ticket names a customer and the site has the
``crm`` tool: ``crm.lookup_customer`` by the ticket's ``customer`` handle, then
``crm.get_account``, both with ``pseudonymise=True``. What it keeps
(:class:`~sitemesh.schemas.CustomerContext`) is placeholders, restored only on the
site: the escalation step re-identifies the name and the account number through the
site vault (:func:`customer_greeting`) for the final answer.

* Each result's ``data_class`` raises the task's class (the runtime carries it in the
  envelope); a class above the policy's decision keeps the task on site.
* A tool that is down, timed out, rate limited or behind an open breaker degrades the
  task: ``status="unavailable"`` with the reason (``crm unavailable: breaker open``),
  and the escalation agent escalates with it.
* A response that could not be scanned (:class:`~sitemesh.tools.ToolResponseUnscanned`)
  is not caught: the task is dead-lettered with the reason.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Final

from ..schemas import DATA_CLASS_ORDER, CustomerContext, SupportTicket, WorkItem

if TYPE_CHECKING:
    from ..schemas import DataClass
    from ..tools import ToolCalls, ToolResult

log = logging.getLogger("sitemesh.agent.crm")

CRM_TOOL: Final = "crm"
"""The tool server the built-in agents ask about customers (``docs/tools-bundled.md``)."""

CRM_ID: Final = re.compile(r"^[A-Za-z0-9_]{1,64}$")
"""A CRM customer id (the ``crm`` server's ``CUSTOMER_ID_PATTERN``): a ticket's handle
that does not fit is not looked up."""

_PLACEHOLDER: Final = re.compile(r"<[A-Z][A-Z0-9_]*?_[1-9][0-9]*>")
"""``sitemesh.policy.PLACEHOLDER_RE`` (not imported: the policy package loads Presidio)."""


def crm_handle(item: WorkItem) -> str | None:
    """The CRM id to look up for ``item``: the ticket's ``customer`` handle without a
    leading ``@``, when it is one; ``None`` for alerts and tickets without one."""
    task = item.task
    if not isinstance(task, SupportTicket) or not task.customer:
        return None
    handle = task.customer.strip().lstrip("@")
    return handle if CRM_ID.fullmatch(handle) else None


def unavailable_reason(exc: Exception) -> str:
    """Why a tool did not answer, PII-free: ``breaker open``, ``timed out after 0.5 s``,
    ``rate limited``, ``HTTP 503 after 3 attempts``..."""
    from ..tools import ToolCircuitOpen, ToolRateLimited, ToolUnavailable, UnknownTool

    match exc:
        case ToolCircuitOpen():
            return "breaker open"
        case ToolRateLimited():
            return "rate limited"
        case ToolUnavailable():
            return exc.reason
        case UnknownTool():
            return "no such tool"
        case _:
            return type(exc).__name__


def _max_class(results: list[ToolResult]) -> DataClass:
    return max((r.data_class for r in results), key=DATA_CLASS_ORDER.index, default="internal")


def _field(structured: Any, name: str) -> str:
    value = structured.get(name) if isinstance(structured, dict) else None
    return value if isinstance(value, str) else ""


def _last4(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return digits[-4:] if len(digits) >= 4 else ""


async def lookup_customer(item: WorkItem, tools: ToolCalls | None) -> CustomerContext | None:
    """Ask the site's CRM about the ticket's customer (see the module docstring).

    Args:
        item: the work item (its task's ``customer`` handle).
        tools: ``ctx.tools``; ``None`` (no tool configured): no lookup.

    Returns:
        ``None`` when there is nothing to ask (no handle, no ``crm`` tool); otherwise
        the pseudonymised facts, ``not_found``, or ``unavailable`` with the reason.

    Raises:
        ToolResponseUnscanned: a response could not be scanned (fail closed).
        ToolReplayMiss: strict replay and no recorded response.
    """
    from ..tools import InvalidToolArguments, ToolUnavailable, UnknownTool

    handle = crm_handle(item)
    if handle is None or tools is None or CRM_TOOL not in tools.registry.specs:
        return None
    results: list[ToolResult] = []
    try:
        found = await tools.call(
            f"{CRM_TOOL}.lookup_customer", {"customer_id": handle}, pseudonymise=True
        )
        results.append(found)
        if found.is_error:
            return CustomerContext(tool=CRM_TOOL, status="not_found", data_class=found.data_class)
        account = await tools.call(
            f"{CRM_TOOL}.get_account", {"customer_id": handle}, pseudonymise=True
        )
        results.append(account)
    except (ToolUnavailable, UnknownTool, InvalidToolArguments) as exc:
        reason = f"{CRM_TOOL} unavailable: {unavailable_reason(exc)}"
        log.warning("task %s: %s", item.envelope.task_id, reason)
        return CustomerContext(
            tool=CRM_TOOL, status="unavailable", reason=reason, data_class=_max_class(results)
        )
    entities: dict[str, int] = {}
    for r in results:
        for k, v in r.entities.items():
            entities[k] = entities.get(k, 0) + v
    number = "" if account.is_error else _field(account.structured, "account_number")
    placeholder = bool(number) and _PLACEHOLDER.fullmatch(number.strip()) is not None
    return CustomerContext(
        tool=CRM_TOOL,
        status="found",
        name=_field(found.structured, "name"),
        email=_field(found.structured, "email"),
        account=number.strip() if placeholder else "",
        account_last4="" if placeholder else _last4(number),
        data_class=_max_class(results),
        entities=dict(sorted(entities.items())),
    )


async def customer_greeting(
    customer: CustomerContext, tools: ToolCalls | None
) -> tuple[str | None, str]:
    """The customer's name and the account's last four digits, re-identified on the
    site through the vault (``ctx.tools.reidentify``), for the final answer.

    Args:
        customer: the retriever's :class:`~sitemesh.schemas.CustomerContext`.
        tools: ``ctx.tools`` at the escalation step.

    Returns:
        ``(name, last4)``: ``None`` / ``""`` for what cannot be restored (no vault, a
        placeholder left over); the reply then uses the ticket's handle.
    """
    if customer.status != "found" or tools is None:
        return None, customer.account_last4
    try:
        name = await tools.reidentify(customer.name) if customer.name else ""
        number = await tools.reidentify(customer.account) if customer.account else ""
    except Exception as exc:  # addressing only: the answer stands without the values
        log.warning("cannot re-identify the customer: %s", type(exc).__name__)
        return None, customer.account_last4
    name = " ".join(name.split())
    last4 = customer.account_last4 or ("" if _PLACEHOLDER.search(number) else _last4(number))
    if not name or _PLACEHOLDER.search(name):
        return None, last4
    return name, last4


def customer_summary(customer: CustomerContext | None) -> str:
    """``"; crm found (restricted)"`` for a step summary (PII-free), ``""`` without."""
    if customer is None:
        return ""
    if customer.status == "unavailable":
        return f"; {customer.reason}"
    return f"; {customer.tool} {customer.status.replace('_', ' ')} ({customer.data_class})"
