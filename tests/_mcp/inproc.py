"""Targets of the ``python`` transport (``tests._mcp.inproc:<attr>``)."""

from __future__ import annotations

from mcp.server.mcpserver import Context, MCPServer

CALLS: list[str] = []
"""Every execution, in order (the count at the server)."""

server = MCPServer("sitemesh-test-inproc")


@server.tool()
def customer_record(customer_id: str) -> dict[str, str]:
    """A CRM record with real-looking personal data."""
    CALLS.append(customer_id)
    return {
        "customer_id": customer_id,
        "name": "Jane Doe",
        "email": "jane.doe@example.com",
        "note": "Call Jane Doe at jane.doe@example.com about the router.",
    }


@server.tool()
def contacts() -> dict[str, dict[str, str]]:
    """Contacts keyed by e-mail address (personal data in a key)."""
    CALLS.append("contacts")
    return {"jane.doe@example.com": {"role": "admin"}}


@server.tool()
def plain(topic: str) -> str:
    """A response without personal data."""
    CALLS.append(topic)
    return f"The {topic} runbook says: restart the BGP session."


@server.tool()
def key_seen(ctx: Context) -> str:
    """The idempotency key of the request's ``_meta``."""
    CALLS.append("key_seen")
    return str((ctx.request_context.meta or {}).get("sitemesh/idempotency-key", ""))


def word_count(text: str) -> int:
    """A plain function served as one tool."""
    CALLS.append("word_count")
    return len(text.split())
