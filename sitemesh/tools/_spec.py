"""Tool specs by configuration: the site's tools file (TOML) over the bundled one.

```toml
[[tools]]
name = "crm"                       # the server's name; its tools are "crm.<tool>"
transport = "stdio"                # stdio | http | python
command = "{python}"               # {python}: this interpreter (sys.executable)
args = ["-m", "sitemesh.tools.servers.crm"]
sitemesh_env = true                # pass this process's SITEMESH_* settings on
timeout_s = 10                     # per attempt, seconds
retries = 2                        # after the first attempt
side_effects = false
```

The effective specs are the bundled file's (:data:`BUNDLED_TOOLS_FILE`: sitemesh's own
servers) overlaid by the site's file (:func:`tools_file`): an entry of the site file
replaces the bundled entry of the same name, ``enabled = false`` switches one off,
and ``bundled = false`` at the top of the site file drops the bundled ones. Every
error names the file, the entry and the field (:class:`ToolConfigError`). See
``docs/tools.md`` for every key.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

import msgspec

from ._errors import ToolConfigError

if TYPE_CHECKING:
    from ..config import Settings

__all__ = [
    "BUNDLED_TOOLS_FILE",
    "TOOLS_FILE_NAME",
    "ToolSpec",
    "Transport",
    "load_tool_specs",
    "parse_tool_specs",
    "tools_file",
]

TOOLS_FILE_NAME: Final = "tools.toml"
"""The operator's tools file, looked up in ``Settings.state_dir`` when ``tools.file`` is unset."""

BUNDLED_TOOLS_FILE: Final = Path(__file__).with_name(TOOLS_FILE_NAME)
"""sitemesh's own tool servers (``sitemesh/tools/tools.toml``)."""

PYTHON_PLACEHOLDER: Final = "{python}"
"""A ``command`` (or argument) spelled so is replaced by ``sys.executable``."""

Transport = Literal["stdio", "http", "python"]
"""How a tool server is reached: a subprocess over stdin/stdout, streamable HTTP, or
an object in this process (:class:`ToolSpec`)."""

_Name = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
_Positive = Annotated[float, msgspec.Meta(gt=0)]
_NonNegative = Annotated[float, msgspec.Meta(ge=0)]
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class ToolSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One configured tool server (an ``[[tools]]`` entry of the tools file)."""

    name: _Name
    """The server's name, ``[a-z][a-z0-9_]{0,31}``; its tools are called
    ``<name>.<tool>`` (or ``<name>`` alone when it offers exactly one)."""
    transport: Transport
    """``stdio`` (``command`` + ``args`` + ``env``), ``http`` (``url``) or ``python``
    (``target``)."""
    description: str = ""
    """One line for ``sitemesh tools list``."""
    enabled: bool = True
    """``false``: configured but not used (a site file switching a bundled one off)."""
    command: str | None = None
    """stdio: the executable; ``{python}`` is this interpreter."""
    args: list[str] = []
    """stdio: its arguments (``{python}`` is replaced too)."""
    env: dict[str, str] = {}
    """stdio: extra environment variables (the SDK's safe default environment is
    passed otherwise: ``HOME``, ``PATH``, ``USER``...)."""
    cwd: str | None = None
    """stdio: the working directory (default: this process's)."""
    sitemesh_env: bool = False
    """stdio: pass this process's settings as ``SITEMESH_*`` variables
    (``Settings.to_env()``, secrets included): for sitemesh's own servers, which read
    the site database. Leave it off for anyone else's server."""
    url: str | None = None
    """http: the streamable HTTP endpoint, e.g. ``http://127.0.0.1:8931/mcp``."""
    headers: dict[str, str] = {}
    """http: extra request headers (e.g. an ``Authorization`` the server expects)."""
    target: str | None = None
    """python: ``module:attr`` of an ``MCPServer`` (``mcp.server.mcpserver``) or of a
    function, which is served as the single tool ``<name>`` with the schema the SDK
    derives from its type hints."""
    tools: list[str] = []
    """Only these of the server's tools are offered (empty: all of them)."""
    timeout_s: _Positive = 10.0
    """Seconds one attempt may take before it is cut (a cancel is sent)."""
    connect_timeout_s: _Positive = 30.0
    """Seconds to start/connect the server and complete the MCP handshake."""
    retries: Annotated[int, msgspec.Meta(ge=0, le=10)] = 2
    """Retries after the first attempt on transient errors (timeouts, 5xx, JSON-RPC
    internal errors, a dropped connection)."""
    backoff_base_s: _Positive = 0.2
    """Ceiling of the first retry delay in seconds; doubles per retry (full jitter)."""
    backoff_max_s: _Positive = 5.0
    """Ceiling of any retry delay, in seconds."""
    breaker_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Consecutive failed attempts that open a tool's circuit breaker."""
    breaker_reset_s: _Positive = 30.0
    """Seconds an open breaker refuses calls before letting one probe through."""
    side_effects: bool | None = None
    """The server's tools change something (create a ticket, send a mail): ``true``
    all of them, ``false`` none; unset: each tool's MCP annotations decide
    (``readOnlyHint: false`` is a side effect; no annotation is a read). A side
    effect's call is served from its record when a step is redelivered, and an
    attempt whose outcome is unknown (timed out, dropped) is not retried unless the
    tool is idempotent."""
    idempotent: bool | None = None
    """The server deduplicates side effects by the idempotency key it is passed, so an
    unknown outcome may be retried; unset: each tool's ``idempotentHint`` decides."""
    rate_limit_calls: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Local limit: at most this many calls per ``rate_limit_per_s`` seconds (token
    bucket); ``None``: no local limit (the server's 429s are still honoured)."""
    rate_limit_per_s: _Positive = 1.0
    """The window of ``rate_limit_calls``, in seconds."""
    max_rate_limit_wait_s: _NonNegative = 10.0
    """Longest total wait per call for rate limits (local slots and the tool's
    ``Retry-After``), in seconds; past it the call fails with :class:`ToolRateLimited`."""

    @property
    def argv(self) -> tuple[str, list[str]]:
        """stdio: ``(command, args)`` with ``{python}`` replaced by ``sys.executable``."""
        command = self.command or ""
        sub = [sys.executable if a == PYTHON_PLACEHOLDER else a for a in self.args]
        return (sys.executable if command == PYTHON_PLACEHOLDER else command), sub

    @property
    def endpoint(self) -> str:
        """Where it is reached, for listings: the command line, URL or target."""
        match self.transport:
            case "stdio":
                command, args = self.argv
                return " ".join([Path(command).name, *args])
            case "http":
                return self.url or ""
            case _:
                return self.target or ""


class _File(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    bundled: bool = True
    tools: list[dict[str, Any]] = []


_FIELD_PATH = re.compile(r"`\$\.([A-Za-z_]\w*)(.*)`")


def _entry_error(index: int, name: object, exc: msgspec.ValidationError) -> str:
    """``tools[1] 'crm': timeout_s: Expected `float` > 0.0`` from msgspec's message."""
    label = f"tools[{index}]" + (f" {name!r}" if isinstance(name, str) and name else "")
    text = str(exc)
    match = _FIELD_PATH.search(text)
    if match is None:
        return f"{label}: {text}"
    field = match.group(1) + match.group(2)
    message = text[: match.start()].rstrip(" -")
    return f"{label}: {field}: {message}"


def _check(index: int, spec: ToolSpec) -> None:
    label = f"tools[{index}] {spec.name!r}"
    required = {"stdio": "command", "http": "url", "python": "target"}[spec.transport]
    if not getattr(spec, required):
        raise ValueError(f"{label}: {required}: required for transport {spec.transport!r}")
    for other, owner in (("command", "stdio"), ("url", "http"), ("target", "python")):
        if other != required and getattr(spec, other):
            raise ValueError(f"{label}: {other}: only for transport {owner!r}")
    if spec.transport == "http" and not re.match(r"^https?://", spec.url or ""):
        raise ValueError(f"{label}: url: must start with http:// or https://")
    if spec.transport == "python" and not _TARGET.match(spec.target or ""):
        raise ValueError(f"{label}: target: expected 'module:attr', got {spec.target!r}")
    if spec.backoff_max_s < spec.backoff_base_s:
        raise ValueError(f"{label}: backoff_max_s: must be >= backoff_base_s")


def parse_tool_specs(
    text: str, *, path: str | None = None, site_file: bool = False
) -> tuple[list[ToolSpec], bool]:
    """Parse one tools file.

    Args:
        text: the TOML document.
        path: where it came from (named in errors).
        site_file: it is the site's file (``bundled`` is allowed); the bundled file
            may not set it.

    Returns:
        ``(specs, keep_bundled)``: the entries in file order, and the file's
        ``bundled`` flag (``True`` when absent).

    Raises:
        ToolConfigError: not TOML, an unknown key, a bad value, a transport missing
            its ``command``/``url``/``target``, or a name used twice (names the file,
            entry and field).
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ToolConfigError(f"not valid TOML: {exc}", path=path) from None
    if "bundled" in raw and not site_file:
        raise ToolConfigError("bundled: only a site's tools file may set it", path=path)
    try:
        doc = msgspec.convert(raw, _File)
    except msgspec.ValidationError as exc:
        raise ToolConfigError(str(exc).replace("`$.", "`"), path=path) from None
    specs: list[ToolSpec] = []
    seen: set[str] = set()
    for index, entry in enumerate(doc.tools):
        try:
            spec = msgspec.convert(entry, ToolSpec)
        except msgspec.ValidationError as exc:
            raise ToolConfigError(_entry_error(index, entry.get("name"), exc), path=path) from None
        try:
            _check(index, spec)
        except ValueError as exc:
            raise ToolConfigError(str(exc), path=path) from None
        if spec.name in seen:
            raise ToolConfigError(
                f"tools[{index}] {spec.name!r}: name: used by an earlier entry", path=path
            )
        seen.add(spec.name)
        specs.append(spec)
    return specs, doc.bundled


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ToolConfigError(f"cannot read it: {exc.strerror or exc}", path=str(path)) from None


def tools_file(settings: Settings) -> Path | None:
    """The site's tools file: ``tools.file``, else ``<state_dir>/tools.toml`` if it
    exists, else ``None`` (only the bundled tools)."""
    configured = settings.tools.file
    if configured is not None:
        return configured
    own = settings.state_dir / TOOLS_FILE_NAME
    return own if own.is_file() else None


def load_tool_specs(
    site_file: Path | None = None,
    *,
    bundled_file: Path | None = BUNDLED_TOOLS_FILE,
) -> list[ToolSpec]:
    """The effective tool specs: the bundled ones overlaid by the site file's.

    Args:
        site_file: the site's tools file (:func:`tools_file`); ``None``: none.
        bundled_file: the bundled file (default :data:`BUNDLED_TOOLS_FILE`);
            ``None``: none.

    Returns:
        The enabled specs: bundled ones first (in their order, a site entry of the
        same name in its place), then the site's own, in file order.

    Raises:
        ToolConfigError: a file is unreadable or invalid (names the file and field).
    """
    merged: dict[str, ToolSpec] = {}
    keep = True
    site: list[ToolSpec] = []
    if site_file is not None:
        site, keep = parse_tool_specs(_read(site_file), path=str(site_file), site_file=True)
    if bundled_file is not None and keep:
        bundled, _ = parse_tool_specs(_read(bundled_file), path=str(bundled_file))
        merged = {s.name: s for s in bundled}
    for spec in site:
        merged[spec.name] = spec
    return [s for s in merged.values() if s.enabled]


def specs_by_name(specs: Sequence[ToolSpec]) -> Mapping[str, ToolSpec]:
    """``specs`` keyed by name (the registry's lookup)."""
    return {s.name: s for s in specs}
