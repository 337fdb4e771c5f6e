"""sitemesh's bundled tools, each a real MCP server (official ``mcp`` SDK, ``MCPServer``).

Each runs as ``python -m sitemesh.tools.servers.<name>``, over stdio (what the tool
registry starts, see ``sitemesh/tools/tools.toml``) or streamable HTTP with
``--http HOST:PORT`` (endpoint ``http://HOST:PORT/mcp``); it logs to stderr only.

* :mod:`~sitemesh.tools.servers.crm`: customers and accounts of the site database
  (``lookup_customer``, ``get_account``, ``list_accounts``, and ``add_note``, stored
  once per idempotency key); :func:`seed_crm` fills it with deterministic synthetic
  records that carry real-looking personal data;
* :mod:`~sitemesh.tools.servers.ticket_history`: a customer's past tickets (``history``);
* :mod:`~sitemesh.tools.servers.kb_search`: the knowledge bases (``search``, ``list_kbs``);
* :mod:`~sitemesh.tools.servers.telemetry_query`: the telemetry sources
  (``list_sources``, ``describe_source``, ``query_series``, ``query_logs``).

The server factories are imported on first use, so starting one server does not
import the others' dependencies (pyarrow, the knowledge indexes). See
``docs/tools-bundled.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

from ._common import MCP_PATH, Database, HttpAddress, parse_http, serve
from ._crm_data import (
    COUNTRIES,
    CUSTOMER_ID_PATTERN,
    SyntheticAccount,
    SyntheticCustomer,
    SyntheticNote,
    aba_check_digit,
    elfproef,
    iban_check_digits,
    iban_is_valid,
    make_iban,
    rib_key,
    synthetic_customers,
    ticket_customers,
)

if TYPE_CHECKING:
    from ._crm_db import seed_crm
    from .crm import crm_server
    from .kb_search import kb_search_server, search_library
    from .telemetry_query import Sources, telemetry_query_server
    from .ticket_history import ticket_history_server

BUNDLED_SERVERS: Final[dict[str, str]] = {
    "crm": "sitemesh.tools.servers.crm",
    "kb_search": "sitemesh.tools.servers.kb_search",
    "telemetry_query": "sitemesh.tools.servers.telemetry_query",
    "ticket_history": "sitemesh.tools.servers.ticket_history",
}
"""Server name -> the module to run with ``python -m``."""

_LAZY: Final = {
    "seed_crm": "._crm_db",
    "crm_server": ".crm",
    "kb_search_server": ".kb_search",
    "search_library": ".kb_search",
    "Sources": ".telemetry_query",
    "telemetry_query_server": ".telemetry_query",
    "ticket_history_server": ".ticket_history",
}

__all__ = [
    "BUNDLED_SERVERS",
    "COUNTRIES",
    "CUSTOMER_ID_PATTERN",
    "MCP_PATH",
    "Database",
    "HttpAddress",
    "Sources",
    "SyntheticAccount",
    "SyntheticCustomer",
    "SyntheticNote",
    "aba_check_digit",
    "crm_server",
    "elfproef",
    "iban_check_digits",
    "iban_is_valid",
    "kb_search_server",
    "make_iban",
    "parse_http",
    "rib_key",
    "search_library",
    "seed_crm",
    "serve",
    "synthetic_customers",
    "telemetry_query_server",
    "ticket_customers",
    "ticket_history_server",
]


def __getattr__(name: str) -> Any:
    """Import a server factory on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
