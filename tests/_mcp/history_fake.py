"""A ``ticket_history`` MCP server for the model planner's function-calling tests.

``history`` answers one past ticket of the customer, with personal data in it (the
registry must pseudonymise it before a model reads it); ``add_note`` declares a side
effect (``destructiveHint``), so a planner must never offer it to a model. ``CALLS``
counts executions, in order, with their arguments.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import Field

CALLS: list[tuple[str, dict[str, Any]]] = []

server = MCPServer("ticket_history")


@server.tool(annotations=ToolAnnotations(read_only_hint=True))
async def history(
    customer_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_]{1,64}$")],
    limit: Annotated[int, Field(ge=1, le=50)] = 10,
) -> dict[str, Any]:
    """The customer's past tickets, newest first."""
    CALLS.append(("history", {"customer_id": customer_id, "limit": limit}))
    return {
        "customer_id": customer_id,
        "entries": [{
            "at": "2026-11-20T09:00:00Z",
            "note": "Jane Doe (jane.doe@example.com) had the same declined card payment; "
                    "the card issuer had flagged the merchant, resolved by whitelisting it.",
            "task_id": "t-old-1",
        }],
    }


@server.tool(annotations=ToolAnnotations(destructive_hint=True, read_only_hint=False))
async def add_note(customer_id: str, note: str) -> str:
    """Store a note on the customer (a side effect)."""
    CALLS.append(("add_note", {"customer_id": customer_id}))
    return "stored"
