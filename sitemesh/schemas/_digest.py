"""The digest of a task's body: what "the same task" means for a task id.

A task id names one task for good (``docs/subjects.md``, "Task ids"): the router
refuses a second body under an id it accepted, and treats the same body again as a
duplicate. "The same body" is decided on the decoded task, not on its bytes, so a
client that re-encodes a task (other key order, in dicts too, other whitespace, a
default spelled out or left away, ``1`` for ``1.0``) submits the same task.
"""

from __future__ import annotations

import functools
import hashlib
from typing import Any, Final

import msgspec

from ._tasks import Task

_CANONICAL: Final = msgspec.json.Encoder(order="sorted")
"""Object keys sorted (struct fields and dict keys alike)."""


@functools.cache
def _fields(cls: type[msgspec.Struct]) -> tuple[tuple[str, str, Any, Any], ...]:
    """``(name, encode_name, default, default_factory)`` of ``cls``'s fields, once per
    class (``msgspec.structs.fields`` resolves the type hints on every call: most of a
    digest's time before this cache)."""
    return tuple(
        (f.name, f.encode_name, f.default, f.default_factory) for f in msgspec.structs.fields(cls)
    )


def _canonical(value: Any) -> Any:
    """``value`` as builtins, every struct field equal to its default left out at any
    depth (msgspec's ``omit_defaults`` compares some defaults by identity only, so a
    default spelled out in the JSON would still count)."""
    if isinstance(value, msgspec.Struct):
        out: dict[str, Any] = {}
        config = value.__struct_config__
        if isinstance(config.tag_field, str):
            out[config.tag_field] = config.tag
        for name, encode_name, default, factory in _fields(type(value)):
            v = getattr(value, name)
            if default is not msgspec.NODEFAULT and v == default:
                continue
            if factory is not msgspec.NODEFAULT and v == factory():
                continue
            out[encode_name] = _canonical(v)
        return out
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    return value


def task_digest(task: Task) -> str:
    """The SHA-256 of ``task``'s canonical JSON, without ``task_id`` and ``submitted_at``.

    The id is left out because it is the key the digest is stored under (given in
    the body or in the ``sm-task-id`` header alike); ``submitted_at`` because a
    client stamps it at each submission (:meth:`sitemesh.client.Client.submit`), so
    it says when, not what. Every other field counts, the schema tag included.
    Times count as written: ``10:00+01:00`` and ``09:00Z`` differ.

    Args:
        task: a decoded task.

    Returns:
        64 lower-case hex characters.
    """
    bare = msgspec.structs.replace(task, task_id=None, submitted_at=None)
    return hashlib.sha256(_CANONICAL.encode(_canonical(bare))).hexdigest()
