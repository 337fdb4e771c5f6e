"""What a site registers: :class:`SourceSpec`, its JSON form and its checks."""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, Literal, NoReturn, get_args
from urllib.parse import urlsplit

import msgspec

from ..schemas import SOURCE_NAME_PATTERN
from ._errors import SourceError

SourceKind = Literal["series", "prometheus_text", "logs", "prometheus_api"]
"""What a source holds and how it is read (see ``docs/telemetry-sources.md``)."""

SOURCE_KINDS: Final[tuple[SourceKind, ...]] = get_args(SourceKind)
"""Every :data:`SourceKind`, in documentation order."""

_NAME = re.compile(SOURCE_NAME_PATTERN)
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
"""A Prometheus label name (Prometheus data model, "Metric names and labels")."""


class SourceSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A telemetry source of a site: where its data is and how to read it.

    Stored as JSON (``telemetry/<name>`` in the site's artifact bucket); check one
    with :func:`parse_spec` or :func:`check_spec`.
    """

    name: str
    """The name alerts use (``telemetry_source``): ``^[a-z0-9][a-z0-9_.-]{0,63}$``."""
    kind: SourceKind
    """``series``, ``prometheus_text``, ``logs`` or ``prometheus_api``
    (:func:`~sitemesh.sources.infer_kind` guesses it from the location)."""
    location: str
    """A file or directory path (read recursively), or the ``http(s)://`` base URL of
    a Prometheus server for ``prometheus_api`` (userinfo gives basic auth)."""
    device_label: str = "device"
    """The label (Prometheus), column (CSV / Parquet) or JSON field (JSON logs) that
    names the device. For ``prometheus_api`` a Prometheus label name."""
    queries: list[str] = msgspec.field(default_factory=list)
    """``prometheus_api`` only: PromQL expressions, each run with ``query_range``.
    ``{device}`` is replaced by the device name, escaped for a PromQL string literal.
    Empty: every series of the device, ``{<device_label>="{device}"}``."""
    step_seconds: float = 60.0
    """``prometheus_api``: the ``query_range`` step in seconds (raised for long
    windows so that no series has more than ``MAX_SERIES_POINTS`` points)."""
    time_pattern: str | None = None
    """``logs``: a regex matched at the start of each line, with a ``(?P<time>...)``
    group; optional ``(?P<message>...)`` and ``(?P<device>...)`` (or ``host``)
    groups. ``None``: common formats are detected per file."""
    time_format: str | None = None
    """``logs``: the ``strptime`` format of the time (``None``: ISO 8601, epoch
    seconds or milliseconds, or one of the detected formats). Without
    ``time_pattern`` the time is the line's first words (as many as the format has)."""
    timeout_seconds: float = 10.0
    """``prometheus_api``: the HTTP timeout in seconds (connect, read, write each)."""


_DECODER = msgspec.json.Decoder(SourceSpec)
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_UNKNOWN = re.compile(r"unknown field `([^`]+)`")
_MISSING = re.compile(r"missing required field `([^`]+)`")


SPEC_SCHEMA_FILE: Final = Path(__file__).parent / "telemetry_source.schema.json"
"""The checked-in JSON Schema of a source spec (``sitemesh schemas`` writes it)."""


def spec_json_schema() -> str:
    """The JSON Schema (draft 2020-12) of :class:`SourceSpec`, as deterministic JSON
    text: what ``sitemesh telemetry add`` stores as ``telemetry/<name>``.

    The name pattern, the kind list and the defaults are the struct's; the checks
    :func:`check_spec` adds (a regex that compiles, a URL for ``prometheus_api``)
    are not expressible in it.
    """
    schema: dict[str, Any] = msgspec.json.schema(SourceSpec)
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "telemetry_source",
        **schema,
    }
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def parse_spec(data: bytes | str) -> SourceSpec:
    """A spec from its JSON form, checked (:func:`check_spec`).

    Args:
        data: a JSON object with :class:`SourceSpec`'s fields.

    Returns:
        The spec.

    Raises:
        SourceError: not JSON, an unknown, missing or mistyped field, or a value
            :func:`check_spec` rejects; ``field`` names the field.
    """
    try:
        spec = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT.search(text) or _UNKNOWN.search(text) or _MISSING.search(text)
        field = (m.group(1).split(".")[0].split("[")[0] or None) if m else None
        if field == "kind":
            text += f" (expected one of {', '.join(SOURCE_KINDS)})"
        raise SourceError(f"source spec: {text}", field=field) from None
    except msgspec.DecodeError as exc:
        raise SourceError(f"source spec: not JSON ({exc})") from None
    return check_spec(spec)


def check_spec(spec: SourceSpec) -> SourceSpec:
    """Check the fields of ``spec`` (not its location: :func:`open_source` does).

    Returns:
        ``spec`` itself.

    Raises:
        SourceError: a bad field; the message starts with the field's name and says
            what was expected.
    """
    if not _NAME.match(spec.name):
        _bad(
            "name",
            f"{spec.name!r} is not a source name: 1-64 characters, lower-case letters, "
            "digits, '_', '.' and '-', starting with a letter or digit",
        )
    if spec.kind not in SOURCE_KINDS:
        _bad("kind", f"{spec.kind!r}: expected one of {', '.join(SOURCE_KINDS)}")
    if not spec.location.strip():
        _bad("location", "empty: expected a file or directory path, or an http(s) URL")
    if not spec.device_label or len(spec.device_label) > 64:
        _bad("device_label", "expected 1-64 characters")
    api = spec.kind == "prometheus_api"
    if api:
        check_url(spec.location)
        if not _LABEL_NAME.match(spec.device_label):
            _bad("device_label", f"{spec.device_label!r} is not a Prometheus label name")
    elif "://" in spec.location:
        _bad("location", f"a URL is only read by kind prometheus_api, not {spec.kind}")
    if spec.queries and not api:
        _bad("queries", f"only for kind prometheus_api, not {spec.kind}")
    for i, query in enumerate(spec.queries):
        if not query.strip():
            _bad("queries", f"query {i} is empty")
    for key, value in (
        ("step_seconds", spec.step_seconds),
        ("timeout_seconds", spec.timeout_seconds),
    ):
        if not (math.isfinite(value) and value > 0):
            _bad(key, f"{value}: expected a positive number of seconds")
    if spec.kind != "logs" and (spec.time_pattern is not None or spec.time_format is not None):
        _bad(
            "time_pattern" if spec.time_pattern is not None else "time_format",
            f"only for kind logs, not {spec.kind}",
        )
    if spec.time_pattern is not None:
        try:
            regex = re.compile(spec.time_pattern)
        except re.error as exc:
            _bad("time_pattern", f"not a valid regex: {exc}")
        if "time" not in regex.groupindex:
            _bad("time_pattern", "expected a named group (?P<time>...)")
    if spec.time_format is not None:
        check_time_format(spec.time_format)
    return spec


def check_url(location: str) -> str:
    """Check a Prometheus base URL.

    Returns:
        The URL without userinfo and trailing ``/`` (for messages).

    Raises:
        SourceError: not ``http(s)://host[:port][/path]``.
    """
    try:
        parts = urlsplit(location)
        _ = parts.port  # a bad port raises here
    except ValueError as exc:
        _bad("location", f"not a URL: {exc}")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        _bad("location", f"{safe_url(location)!r}: expected an http(s)://host[:port] URL")
    if parts.query or parts.fragment:
        _bad("location", "expected a base URL without query or fragment")
    return safe_url(location)


def safe_url(location: str) -> str:
    """``location`` without userinfo (credentials) and trailing ``/``."""
    try:
        parts = urlsplit(location)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<bad URL>"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}{parts.path}".rstrip("/")


def check_time_format(fmt: str) -> None:
    """Check a ``strptime`` format by formatting a date with it and parsing it back.

    Raises:
        SourceError: no ``%`` directive, or one ``strptime`` rejects.
    """
    if "%" not in fmt:
        _bad("time_format", f"{fmt!r} has no strptime directive (%Y, %H...)")
    sample = datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as exc:
        _bad("time_format", f"{fmt!r} is not a strptime format: {exc}")


def _bad(field: str, message: str) -> NoReturn:
    raise SourceError(f"{field}: {message}", field=field)
