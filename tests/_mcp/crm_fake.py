"""A ``crm`` MCP server with the bundled one's two lookups, for the built-in agents' tests.

``MODE`` (in-process: set the attribute; over stdio: ``CRM_FAKE_MODE``) picks what it
does: ``ok`` answers one fixed customer, ``hang`` never answers (a cut attempt is a
timeout), ``error`` fails like a backend that is down (JSON-RPC internal error).
Run over stdio as ``python -m tests._mcp.crm_fake`` from the checkout.
"""

from __future__ import annotations

import os
from typing import Any, Final

import anyio
from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.types import INTERNAL_ERROR

MODE: str = os.environ.get("CRM_FAKE_MODE", "ok")

CUSTOMER: Final = {
    "customer_id": "jdoe",
    "tenant": "default",
    "name": "Jane Doe",
    "given_name": "Jane",
    "family_name": "Doe",
    "email": "jane.doe@example.com",
    "phone": "+442079460123",
    "phone_national": "020 7946 0123",
}
ACCOUNT: Final = {
    "account_id": "ACC-0000000001",
    "customer_id": "jdoe",
    "kind": "checking",
    "iban": "GB33BUKB20201555555555",
    "account_number": "55555555",
    "currency": "GBP",
    "status": "active",
}
CALLS: list[str] = []
"""Every execution, in order (the count at the server, in-process)."""

server = MCPServer("crm")


async def _behave(tool: str) -> None:
    CALLS.append(tool)
    if MODE == "hang":
        await anyio.sleep(3600)
    if MODE == "error":
        raise MCPError(INTERNAL_ERROR, "crm backend is down")


@server.tool()
async def lookup_customer(customer_id: str) -> dict[str, Any]:
    """The customer record (personal data)."""
    await _behave("lookup_customer")
    return {**CUSTOMER, "customer_id": customer_id}


@server.tool()
async def get_account(customer_id: str) -> dict[str, Any]:
    """The customer's account (personal data: IBAN, account number)."""
    await _behave("get_account")
    return {**ACCOUNT, "customer_id": customer_id}


if __name__ == "__main__":
    server.run()
