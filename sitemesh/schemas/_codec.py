"""One reusable typed decoder/encoder per subject family."""

from __future__ import annotations

import re
from typing import Any, Final, TypeVar

import msgspec

from ..errors import SchemaError
from ._cloud import CloudAnswer, CloudIncident
from ._events import DeadLetter, Event
from ._outputs import WorkItem
from ._tasks import Task

T = TypeVar("T")

ENCODER: Final = msgspec.json.Encoder()
"""Shared JSON encoder (thread-safe for encoding, reused to avoid allocation)."""

TASK_DECODER: Final = msgspec.json.Decoder(Task)
WORK_DECODER: Final = msgspec.json.Decoder(WorkItem)
EVENT_DECODER: Final = msgspec.json.Decoder(Event)
DLQ_DECODER: Final = msgspec.json.Decoder(DeadLetter)
INCIDENT_DECODER: Final = msgspec.json.Decoder(CloudIncident)
ANSWER_DECODER: Final = msgspec.json.Decoder(CloudAnswer)


def encode(msg: msgspec.Struct) -> bytes:
    """Encode a message to JSON bytes."""
    return ENCODER.encode(msg)


MAX_NESTING: Final = 64
"""Deepest JSON nesting (objects and arrays) a message from outside may have: a task
on ``TASKS_<site>`` is checked with :func:`check_nesting` before it is decoded. Far
deeper than any sitemesh schema (about a dozen levels), far shallower than where
msgspec gives up (it recurses, and a few hundred levels short of the interpreter's
recursion limit of 1,000 it raises ``RecursionError``)."""


def decode(data: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode ``data`` with ``decoder``, turning msgspec errors into :class:`SchemaError`.

    Raises:
        SchemaError: invalid JSON, invalid UTF-8, nesting too deep for the decoder, or
            a field of the wrong type/value; the message names the field
            (``... - at `$.body```) and ``field`` holds its path.
    """
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise SchemaError(text, field=error_field(text)) from exc
    except msgspec.DecodeError as exc:
        raise SchemaError(f"invalid JSON: {exc}", field="$") from exc
    except (RecursionError, UnicodeDecodeError) as exc:
        raise hostile_json_error(exc, data) from exc


def hostile_json_error(exc: RecursionError | UnicodeDecodeError, data: bytes) -> SchemaError:
    """The :class:`SchemaError` for what msgspec raises on hostile JSON, with the byte
    offset and the JSON path where it goes wrong.

    msgspec raises ``UnicodeDecodeError`` (offset within the string, not the
    message) for invalid UTF-8 in a string, and ``RecursionError`` for nesting too
    deep to decode; both are permanent: the same bytes fail the same way every time.

    Args:
        exc: what the decoder raised.
        data: the message it was decoding.
    """
    if isinstance(exc, UnicodeDecodeError):
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as whole:
            offset = whole.start
        else:  # pragma: no cover - msgspec only raises it for invalid UTF-8
            offset = 0
        path = json_path_at(data, offset)
        return SchemaError(
            f"invalid UTF-8 at byte {offset} (a JSON text is UTF-8) - at `{path}`", field=path
        )
    offset, path = _too_deep_at(data, MAX_NESTING)
    return SchemaError(
        f"JSON nests too deeply to decode (more than {MAX_NESTING} levels from byte "
        f"{offset}) - at `{path}`",
        field=path,
    )


def check_nesting(data: bytes, limit: int = MAX_NESTING) -> None:
    """Refuse JSON that nests objects/arrays deeper than ``limit`` (brackets inside
    strings do not count).

    Cheap, so it can run on every message from outside: byte counts for a message
    with at most ``limit`` brackets; else a few C-speed passes (escapes and
    everything but brackets and quotes dropped, strings cut out, innermost ``{}``/``[]``
    pairs removed once per level, at most ``limit`` times; about 0.1 ms per KiB).
    Only a message found too deep is tokenised, to name where.

    Raises:
        SchemaError: too deep; names the byte offset and JSON path of the first
            container past the limit (``field``).
    """
    if data.count(b"[") + data.count(b"{") <= limit or not _deeper_than(data, limit):
        return
    offset, path = _too_deep_at(data, limit)
    if offset >= 0:
        raise SchemaError(
            f"JSON nests deeper than {limit} levels (at byte {offset}) - at `{path}`",
            field=path,
        )


_NOT_STRUCTURE: Final = bytes(range(256)).translate(None, b'[]{}"')


def _deeper_than(data: bytes, limit: int) -> bool:
    """Whether ``data`` nests deeper than ``limit`` (unbalanced JSON: ``False``, the
    decoder reports it). JSON escapes are a backslash and one character, so removing
    escaped backslashes, then escaped quotes, leaves quotes that delimit strings."""
    b = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _NOT_STRUCTURE)
    b = b"".join(b.split(b'"')[::2])  # outside the strings
    for _ in range(limit):
        if not b:
            return False
        n = len(b)
        b = b.replace(b"{}", b"").replace(b"[]", b"")
        if len(b) == n:
            return False
    return bool(b)


_TOKEN: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}:,]')


class _Frame:
    __slots__ = ("index", "is_object", "key", "want_key")

    def __init__(self, is_object: bool) -> None:
        self.is_object = is_object
        self.key: str | None = None
        self.index = 0
        self.want_key = is_object


def _path(stack: list[_Frame]) -> str:
    parts = ["$"]
    for frame in stack:
        if frame.is_object:
            if frame.key is not None:
                parts.append(f".{frame.key}")
        else:
            parts.append(f"[{frame.index}]")
    return "".join(parts)


def _walk(data: bytes, stop: int | None, limit: int | None) -> tuple[int, str]:
    """Tokenise ``data`` tracking the JSON path: up to byte ``stop``, or to the first
    container deeper than ``limit``; ``(offset, path)`` there (``-1`` if none)."""
    stack: list[_Frame] = []
    for m in _TOKEN.finditer(data, 0, len(data) if stop is None else stop):
        tok = m.group()
        c = tok[:1]
        top = stack[-1] if stack else None
        if c == b'"':
            if top is not None and top.is_object and top.want_key:
                top.key = tok[1:-1].decode("utf-8", "replace")[:64]
                top.want_key = False
        elif c in (b"{", b"["):
            stack.append(_Frame(c == b"{"))
            if limit is not None and len(stack) > limit:
                stack.pop()
                return m.start(), _path(stack)
        elif c in (b"}", b"]"):
            if stack:
                stack.pop()
        elif c == b"," and top is not None:
            if top.is_object:
                top.want_key, top.key = True, None
            else:
                top.index += 1
    return (-1 if stop is None else stop), _path(stack)


def json_path_at(data: bytes, offset: int) -> str:
    """Best-effort JSON path (``$.body``, ``$.outputs.plan.steps[2]``) of byte
    ``offset`` of ``data``, from the text before it (which need not be valid JSON)."""
    return _walk(data, offset, None)[1]


def _too_deep_at(data: bytes, limit: int) -> tuple[int, str]:
    return _walk(data, None, limit)


_AT = re.compile(r" - at `(?P<path>[^`]*)`$")
_MISSING = re.compile(r"missing required field `(?P<name>[^`]+)`")
_NAMED = re.compile(r"^`(?P<name>[A-Za-z_][A-Za-z0-9_]*)`")


def error_field(text: str) -> str:
    """The JSON path a msgspec validation message points at.

    ``"Expected `str`, got `int` - at `$.body`"`` -> ``"$.body"``;
    ``"Object missing required field `body` - at `$.task`"`` -> ``"$.task.body"``;
    a ``__post_init__`` message that starts with a back-quoted field name
    (```window_end` must be later ...``) -> that field under the path.
    """
    at = _AT.search(text)
    path = at["path"] if at else "$"
    if (missing := _MISSING.search(text)) is not None:
        return f"{path}.{missing['name']}"
    if (named := _NAMED.match(text)) is not None:
        return f"{path}.{named['name']}"
    return path


def schema_tag(msg: Any) -> str:
    """The ``<type>.v<N>`` tag of a message instance, for the ``sm-schema`` header."""
    return str(msg.__struct_config__.tag)
