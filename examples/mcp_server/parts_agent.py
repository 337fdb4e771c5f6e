"""A custom sitemesh agent that uses the user's MCP server through ``ctx.tools``.

Role ``parts``, for device alerts: which spare part the alert's fault calls for, and
whether the site's stores have it, asked of the ``inventory`` server of this folder
(``server.py``, registered by ``tools.toml``) as
``ctx.tools.call("inventory.lookup", {"sku": ...})``. The agent never starts or
addresses the server itself: the site's tool registry does (timeouts, retries, the
circuit breaker, the scan of the response, recording for replay).

Name it by import path where the workers run::

    PYTHONPATH=examples/mcp_server sitemesh worker --agent parts_agent:PartsAgent --site eu1
"""

from __future__ import annotations

from typing import Final

import msgspec

from sitemesh.agents import Agent, AgentContext
from sitemesh.errors import PermanentError
from sitemesh.schemas import TelemetryAlert, WorkItem
from sitemesh.tools import ToolUnavailable

SPARES: Final[dict[str, tuple[str, str]]] = {
    "interface.": ("optic", "QSFP-100G-SR4-S"),
    "bfd.": ("optic", "QSFP-100G-SR4-S"),
    "power.": ("psu", "NC55-PWR-3KW-AC"),
    "environment.fan": ("fan", "NC55-5504-FAN"),
}
"""Metric prefix -> (part category, the SKU the site keeps for it): our site's rule."""


def spare_for(metric: str) -> tuple[str, str] | None:
    """The (category, SKU) a fault on ``metric`` calls for, or ``None``."""
    for prefix, spare in SPARES.items():
        if metric.startswith(prefix):
            return spare
    return None


class PartsCheck(msgspec.Struct, frozen=True, kw_only=True, tag="parts_check.v1"):
    """Whether the spare part for an alert is in the site's stores."""

    category: str | None = None
    """``optic``, ``psu`` or ``fan``; ``None``: no part applies to the alert's metric."""
    sku: str | None = None
    checked: bool = False
    """The inventory answered (``False``: see :attr:`reason`)."""
    in_stock: bool = False
    quantity: int = 0
    """Units over every store."""
    stores: list[str] = []
    """Stores holding at least one unit."""
    reason: str = ""
    """Why nothing was checked or found, in one line."""


class PartsAgent(Agent):
    """Looks the spare part of a device alert up in the ``inventory`` MCP server."""

    role = "parts"
    output = PartsCheck
    accepts = (TelemetryAlert,)
    description = "spare part for a device alert, from the inventory MCP server"

    async def handle(self, item: WorkItem, ctx: AgentContext) -> PartsCheck:
        """The parts check of ``item.task`` (a :class:`TelemetryAlert`).

        Raises:
            PermanentError: the task is not a device alert.
        """
        alert = item.task
        if not isinstance(alert, TelemetryAlert):
            raise PermanentError("parts reads device alerts only", field="$.task.type")
        spare = spare_for(alert.metric)
        if spare is None:
            return PartsCheck(reason=f"no spare part applies to metric {alert.metric!r}")
        category, sku = spare
        tools = ctx.tools
        if tools is None:
            return PartsCheck(category=category, sku=sku, reason="no tools are configured")
        try:
            result = await tools.call("inventory.lookup", {"sku": sku})
        except ToolUnavailable as exc:  # down, timed out, rate limited, breaker open
            return PartsCheck(category=category, sku=sku, reason=f"inventory: {exc.reason}")
        if result.is_error or not isinstance(result.structured, dict):
            return PartsCheck(category=category, sku=sku, reason=f"inventory: {result.text}")
        part = result.structured
        stores = [s["store"] for s in part["stock"] if s["quantity"] > 0]
        return PartsCheck(
            category=category,
            sku=sku,
            checked=True,
            in_stock=part["total"] > 0,
            quantity=part["total"],
            stores=stores,
            reason="" if stores else f"{sku} is out of stock in every store",
        )

    def summarize(self, output: PartsCheck) -> str:
        """``optic QSFP-100G-SR4-S: 16 in stock``: the part and the count."""
        if not output.checked:
            return f"not checked: {output.reason}"
        return f"{output.category} {output.sku}: {output.quantity} in stock"
