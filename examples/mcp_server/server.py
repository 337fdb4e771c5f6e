"""An MCP server written the way a user would: spare parts in the site's stores.

Nothing here imports sitemesh: it is a plain server on the official MCP Python SDK
(``mcp`` 2.x, ``MCPServer``), reading ``inventory.json`` next to this file (or
``--data FILE``). sitemesh reaches it by configuration (``tools.toml`` here; see
README.md), and the example agent ``parts_agent.py`` calls it as
``ctx.tools.call("inventory.lookup", {"sku": ...})``.

Tools:

* ``lookup(sku)``: one part, its stock per store and in all, and whether it is at or
  under its reorder point. ``sku`` is 3-40 upper-case letters, digits and dashes; an
  unknown SKU is a tool error ``sku: no part ...``.
* ``list_parts(category?)``: every part (of one category: optic, psu, fan) with
  its total stock.

Run it yourself::

    python examples/mcp_server/server.py                     # stdio
    python examples/mcp_server/server.py --http 127.0.0.1:8931   # http://127.0.0.1:8931/mcp
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

DATA = Path(__file__).with_name("inventory.json")

Category = Literal["optic", "psu", "fan"]


class StoreStock(BaseModel):
    store: str
    quantity: int


class Part(BaseModel):
    sku: str
    category: Category
    description: str
    fits: list[str] = Field(description="device models the part fits")
    stock: list[StoreStock]
    total: int = Field(description="units over every store")
    reorder: bool = Field(description="total is at or under the reorder point")


class PartList(BaseModel):
    parts: list[Part]


def load(path: Path) -> dict[str, Part]:
    """The parts of an inventory file, by SKU."""
    raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    parts = {}
    for p in raw["parts"]:
        stock = [StoreStock(store=s, quantity=int(p["stock"].get(s, 0))) for s in raw["stores"]]
        total = sum(s.quantity for s in stock)
        parts[p["sku"]] = Part(
            sku=p["sku"],
            category=p["category"],
            description=p["description"],
            fits=p["fits"],
            stock=stock,
            total=total,
            reorder=total <= int(p["reorder_point"]),
        )
    return parts


def build(path: Path = DATA) -> MCPServer[Any]:
    """The inventory server over the inventory file at ``path``."""
    parts = load(path)
    server: MCPServer[Any] = MCPServer(
        "inventory", instructions="Spare parts of the site's stores."
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    def lookup(
        sku: Annotated[str, Field(pattern=r"^[A-Z0-9-]{3,40}$", description="QSFP-100G-SR4-S...")],
    ) -> Part:
        """One part and its stock per store."""
        part = parts.get(sku)
        if part is None:
            raise ToolError(f"sku: no part {sku!r} (known: {', '.join(sorted(parts))})")
        return part

    @server.tool(annotations=read_only)
    def list_parts(category: Category | None = None) -> PartList:
        """Every part, or those of one category, with their stock."""
        return PartList(
            parts=[p for _, p in sorted(parts.items()) if category in (None, p.category)]
        )

    return server


def main() -> None:
    p = argparse.ArgumentParser(description="MCP server: spare parts in the site's stores")
    p.add_argument("--data", type=Path, default=DATA, help="the inventory JSON file")
    p.add_argument("--http", metavar="HOST:PORT", help="serve streamable HTTP instead of stdio")
    args = p.parse_args()
    # stdout is the stdio transport: log to stderr only
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    server = build(args.data)
    if args.http:
        host, _, port = args.http.rpartition(":")
        server.run("streamable-http", host=host, port=int(port))
    else:
        server.run()


if __name__ == "__main__":
    main()
