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


def decode(data: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode ``data`` with ``decoder``, turning msgspec errors into :class:`SchemaError`.

    Raises:
        SchemaError: invalid JSON or a field of the wrong type/value; the message
            names the field (``... - at `$.body```) and ``field`` holds its path.
    """
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        text = str(exc)
        raise SchemaError(text, field=error_field(text)) from exc
    except msgspec.DecodeError as exc:
        raise SchemaError(f"invalid JSON: {exc}", field="$") from exc


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
