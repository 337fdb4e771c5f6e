"""Real MCP servers for the tool tests, written with the official SDK (``mcp``).

* :mod:`tests._mcp.stdio_server`: run as a subprocess over stdio
  (``python -m tests._mcp.stdio_server``); every tool execution is appended to the JSON
  lines file named by ``SITEMESH_TEST_CALLS`` (the count at the server).
* :mod:`tests._mcp.http_server`: an in-process streamable HTTP server on a free port
  (uvicorn), with an ASGI front that can answer ``tools/call`` with 5xx or 429.
* :mod:`tests._mcp.inproc`: targets of the ``python`` transport.
* :mod:`tests._mcp.helpers`: specs, scanners and a fake clock for the tests.
"""
