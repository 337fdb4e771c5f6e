"""MCP server ``telemetry_query``: the site's telemetry sources, queried.

Run it over stdio (what the tool registry starts) or streamable HTTP::

    python -m sitemesh.tools.servers.telemetry_query [--source NAME=LOCATION ...]
        [--source-spec SPEC.json ...] [--http HOST:PORT]

The sources are those of :mod:`sitemesh.sources`: the ones given on the command line
(``--source NAME=LOCATION``, the kind inferred from the location as ``sitemesh
telemetry add`` does; ``--source-spec`` a ``SourceSpec`` JSON file) and, when
``SITEMESH_NATS_URL`` is set, the site's registered sources (``sitemesh telemetry
add``; the spec is read from the site's artifact bucket at each call, so a source
added or changed is seen at once). A command-line source shadows a site source of
its name. The bundled ``cisco-leaf7`` capture is read by the diagnostics agent's
state-transition checks, not through a reader, and is not offered here.

Tools (times are RFC 3339; naive ones are UTC; a window is ``start <= t < end``):

* ``list_sources()`` -> :class:`SourceList`: name, kind, origin, location.
* ``describe_source(source)`` -> :class:`SourceInfo`: devices, series and log line
  counts, first and last data time (reads the whole source once).
* ``query_series(source, start, end, device?, metric?, max_points=100)`` ->
  :class:`SeriesResult`: per series (at most 32, the reader's cap) a summary over the
  window (count, min, max, mean, last) and its newest ``max_points`` points (1-1,000).
  ``metric`` is a glob on the series name (``interface.*``).
* ``query_logs(source, start, end, device?, contains?, limit=100)`` -> :class:`LogResult`:
  the newest ``limit`` lines (1-1,000) in time order, of at most 5,000 read (the
  reader's cap), each at most 2,000 characters; ``contains`` filters
  case-insensitively first. Log lines may hold personal data (user names,
  addresses): the registry scans every response before an agent sees it.

``device`` omitted: every device; a device also gets the data that names no device
(the sources' device rule). Errors (tool errors, the field first): ``source: no
telemetry source 'x' (known: ...)``, ``end: must be after start``, ``source: <file>:<line>:
<what is wrong>`` for data that cannot be read; schema violations name the field.
Logs go to stderr only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fnmatch
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import msgspec
from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from ...schemas import MAX_INLINE_SERIES, MAX_LOG_LINES, SOURCE_NAME_PATTERN
from ...sources import (
    SourceError,
    SourceNotFound,
    SourceSpec,
    TelemetryReader,
    check_spec,
    fetch_source,
    infer_kind,
    open_source,
    parse_spec,
)
from ...sources import (
    list_sources as site_sources,
)
from . import _common as common

if TYPE_CHECKING:
    from ...bus import SiteArtifacts

NAME: Final = "telemetry_query"
MAX_POINTS: Final = 1000
MAX_LINES: Final = 1000

SourceName = Annotated[str, Field(pattern=SOURCE_NAME_PATTERN, description="a source's name")]
Device = Annotated[
    str | None,
    Field(min_length=1, max_length=128, description="one device (default: every device)"),
]


class SourceEntry(BaseModel):
    """A source offered."""

    name: str
    kind: str = Field(description="series, prometheus_text, logs or prometheus_api")
    origin: str = Field(description="local (command line) or site (registered)")
    location: str
    device_label: str


class SourceList(BaseModel):
    """Every source offered, by name."""

    sources: list[SourceEntry]


class SourceInfo(BaseModel):
    """What one read of a whole source found."""

    name: str
    kind: str
    devices: list[str]
    series: int
    log_lines: int
    first: str | None = Field(description="oldest data time, RFC 3339, UTC")
    last: str | None = Field(description="newest data time, RFC 3339, UTC")


class SeriesSummary(BaseModel):
    """One series over the window: its summary and its newest points."""

    name: str
    labels: dict[str, str]
    count: int = Field(description="samples in the window")
    first_at: str
    last_at: str
    min: float
    max: float
    mean: float
    last: float
    timestamps: list[str] = Field(description="the newest max_points sample times, in order")
    values: list[float]
    truncated: bool = Field(description="points were left out (older than the ones given)")


class SeriesResult(BaseModel):
    """The series of a source (and device) over a window."""

    source: str
    device: str | None
    start: str
    end: str
    series: list[SeriesSummary]
    series_capped: bool = Field(description=f"the reader's cap of {MAX_INLINE_SERIES} was hit")


class LogEntry(BaseModel):
    """One log line (may carry personal data)."""

    at: str | None
    line: str


class LogResult(BaseModel):
    """The log lines of a source (and device) over a window."""

    source: str
    device: str | None
    start: str
    end: str
    matched: int = Field(description=f"lines that matched, of at most {MAX_LOG_LINES} read")
    lines: list[LogEntry]


class Sources:
    """The sources a server offers: local specs, then the site's registered ones.

    Args:
        local: specs given on the command line.
        bucket: the site's artifact bucket (``None``: local sources only).
    """

    def __init__(self, local: list[SourceSpec], bucket: SiteArtifacts | None = None) -> None:
        self.local = {s.name: s for s in local}
        self.bucket = bucket
        self._readers: dict[str, tuple[bytes, TelemetryReader]] = {}

    async def entries(self) -> list[SourceEntry]:
        """Every source offered, by name."""
        specs = {n: (s, "local") for n, s in self.local.items()}
        if self.bucket is not None:
            for spec, _ in await site_sources(self.bucket):
                specs.setdefault(spec.name, (spec, "site"))
        return [
            SourceEntry(
                name=n, kind=s.kind, origin=o, location=s.location, device_label=s.device_label
            )
            for n, (s, o) in sorted(specs.items())
        ]

    async def reader(self, name: str) -> TelemetryReader:
        """The reader of source ``name`` (reopened when its spec changed).

        Raises:
            ToolError: no such source, or it cannot be opened.
        """
        spec = self.local.get(name)
        if spec is None and self.bucket is not None:
            try:
                spec = await fetch_source(self.bucket, name)
            except SourceNotFound:
                spec = None
            except SourceError as exc:
                common.tool_error("source", str(exc))
        if spec is None:
            known = common.join([e.name for e in await self.entries()])
            common.tool_error("source", f"no telemetry source {name!r} (known: {known})")
        encoded = msgspec.json.encode(spec)
        cached = self._readers.get(name)
        if cached is not None and cached[0] == encoded:
            return cached[1]
        try:
            reader = open_source(spec)
        except SourceError as exc:
            common.tool_error("source", str(exc))
        self._readers[name] = (encoded, reader)
        return reader


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = _utc(start), _utc(end)
    if end <= start:
        common.tool_error("end", "must be after start")
    return start, end


async def _read(fn: Any, *args: Any) -> Any:
    try:
        return await asyncio.to_thread(fn, *args)
    except SourceError as exc:
        common.tool_error("source", str(exc))


def telemetry_query_server(sources: Sources) -> MCPServer[Any]:
    """The ``telemetry_query`` MCP server over ``sources``."""
    server: MCPServer[Any] = MCPServer(
        NAME,
        instructions="The site's telemetry sources: metric series (summaries and points) "
        "and log lines of a device over a time window.",
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    async def list_sources() -> SourceList:
        """The telemetry sources offered, by name."""
        return SourceList(sources=await sources.entries())

    @server.tool(annotations=read_only)
    async def describe_source(source: SourceName) -> SourceInfo:
        """Devices, series and log lines of a whole source, and its time span."""
        reader = await sources.reader(source)
        s = await _read(reader.describe)
        return SourceInfo(
            name=source, kind=s.kind, devices=s.devices, series=s.series, log_lines=s.log_lines,
            first=s.first.isoformat() if s.first else None,
            last=s.last.isoformat() if s.last else None,
        )  # fmt: skip

    @server.tool(annotations=read_only)
    async def query_series(
        source: SourceName,
        start: Annotated[datetime, Field(description="window start (inclusive), RFC 3339")],
        end: Annotated[datetime, Field(description="window end (exclusive), RFC 3339")],
        device: Device = None,
        metric: Annotated[
            str | None,
            Field(min_length=1, max_length=128, description="glob on the series name"),
        ] = None,
        max_points: Annotated[
            int, Field(ge=1, le=MAX_POINTS, description="newest points per series")
        ] = 100,
    ) -> SeriesResult:
        """Metric series of a source over a window: summaries and the newest points."""
        t0, t1 = _window(start, end)
        reader = await sources.reader(source)
        found = await _read(reader.series, device, t0, t1)
        out = []
        for s in found:
            if metric is not None and not fnmatch.fnmatchcase(s.name, metric):
                continue
            pairs = [
                (t, v) for t, v in zip(s.timestamps, s.values, strict=True) if math.isfinite(v)
            ]
            if not pairs:
                continue
            values = [v for _, v in pairs]
            kept = pairs[-max_points:]
            out.append(
                SeriesSummary(
                    name=s.name,
                    labels=dict(s.labels),
                    count=len(pairs),
                    first_at=_utc(pairs[0][0]).isoformat(),
                    last_at=_utc(pairs[-1][0]).isoformat(),
                    min=min(values),
                    max=max(values),
                    mean=round(sum(values) / len(values), 6),
                    last=values[-1],
                    timestamps=[_utc(t).isoformat() for t, _ in kept],
                    values=[v for _, v in kept],
                    truncated=len(kept) < len(pairs),
                )
            )
        return SeriesResult(
            source=source, device=device, start=t0.isoformat(), end=t1.isoformat(), series=out,
            series_capped=len(found) >= MAX_INLINE_SERIES,
        )  # fmt: skip

    @server.tool(annotations=read_only)
    async def query_logs(
        source: SourceName,
        start: Annotated[datetime, Field(description="window start (inclusive), RFC 3339")],
        end: Annotated[datetime, Field(description="window end (exclusive), RFC 3339")],
        device: Device = None,
        contains: Annotated[
            str | None,
            Field(min_length=1, max_length=256, description="only lines with this text (any case)"),
        ] = None,
        limit: Annotated[int, Field(ge=1, le=MAX_LINES, description="newest lines")] = 100,
    ) -> LogResult:
        """Log lines of a source over a window, the newest ``limit`` in time order."""
        t0, t1 = _window(start, end)
        reader = await sources.reader(source)
        lines = await _read(reader.logs, device, t0, t1)
        if contains is not None:
            needle = contains.casefold()
            lines = [ln for ln in lines if needle in ln.line.casefold()]
        kept = lines[-limit:]
        return LogResult(
            source=source, device=device, start=t0.isoformat(), end=t1.isoformat(),
            matched=len(lines),
            lines=[
                LogEntry(at=_utc(ln.at).isoformat() if ln.at else None, line=ln.line) for ln in kept
            ],
        )  # fmt: skip

    return server


# -- command line ------------------------------------------------------------------------
def local_spec(value: str) -> SourceSpec:
    """``NAME=LOCATION`` (kind inferred) as a checked spec.

    Raises:
        argparse.ArgumentTypeError: not ``NAME=LOCATION``, or a bad name or location.
    """
    name, sep, location = value.partition("=")
    if not sep or not name or not location:
        raise argparse.ArgumentTypeError(f"--source: expected NAME=LOCATION, got {value!r}")
    try:
        return check_spec(SourceSpec(name=name, kind=infer_kind(location), location=location))
    except SourceError as exc:
        raise argparse.ArgumentTypeError(f"--source {name}: {exc}") from None


def spec_file(value: str) -> SourceSpec:
    """A ``SourceSpec`` JSON file.

    Raises:
        argparse.ArgumentTypeError: unreadable, or not a valid spec.
    """
    try:
        return parse_spec(Path(value).read_bytes())
    except (OSError, SourceError) as exc:
        raise argparse.ArgumentTypeError(f"--source-spec {value}: {exc}") from None


async def _serve(args: argparse.Namespace) -> None:
    async with contextlib.AsyncExitStack() as stack:
        bucket = await stack.enter_async_context(common.site_bucket("diagnostics"))
        sources = Sources([*args.source, *args.source_spec], bucket)
        common.log.info("local telemetry sources: %s", common.join(sorted(sources.local)))
        await common.serve(telemetry_query_server(sources), args.http)


def main(argv: list[str] | None = None) -> None:
    """``python -m sitemesh.tools.servers.telemetry_query`` (see the module docstring)."""
    p = common.parser(
        "python -m sitemesh.tools.servers.telemetry_query",
        "MCP server: the site's telemetry sources",
        db=False,
    )
    p.add_argument(
        "--source", type=local_spec, action="append", default=[], metavar="NAME=LOCATION",
        help="offer a source (a file or directory; the kind is inferred); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--source-spec", type=spec_file, action="append", default=[], metavar="SPEC.json",
        help="offer a source given as SourceSpec JSON; repeatable",
    )  # fmt: skip
    args = p.parse_args(argv)
    common.configure_logging(args.log_level)
    common.run(_serve(args))


if __name__ == "__main__":
    main()
