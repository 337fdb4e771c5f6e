"""Tool arguments against the tool's input JSON Schema (``jsonschema``, the dialect the
schema's ``$schema`` names; Draft 2020-12 when it names none, as MCP specifies).

Messages name the argument's JSON path and what the schema expects, never the value
passed (it may be personal data): ``crm.lookup_customer: argument $.customer_id:
expected type 'string'``.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from ._errors import InvalidToolArguments

__all__ = ["validate_arguments"]


@functools.lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    from jsonschema import Draft202012Validator
    from jsonschema.validators import validator_for

    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def _path(parts: Any) -> str:
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def _describe(error: Any) -> tuple[str, str]:
    """``(json path, what is wrong)`` of a ``jsonschema.ValidationError``, value-free."""
    path = _path(error.absolute_path)
    kind = error.validator
    expected = error.validator_value
    if kind == "required":
        have = error.instance if isinstance(error.instance, dict) else {}
        missing = [p for p in expected if p not in have] or list(expected)
        return f"{path}.{missing[0]}", "required argument missing"
    if kind == "additionalProperties":
        props = error.schema.get("properties", {})
        extra = sorted(k for k in (error.instance or {}) if k not in props)
        return path, "unexpected argument(s): " + ", ".join(extra)
    if kind == "type":
        return path, f"expected type {expected!r}"
    if kind in {"enum", "const"}:
        return path, "not one of the allowed values"
    shown = repr(expected)
    return path, f"fails {kind!r} ({shown[:80]})"


def validate_arguments(tool: str, schema: dict[str, Any], arguments: dict[str, Any]) -> None:
    """Check ``arguments`` against ``schema``.

    Args:
        tool: the tool as called (for the message).
        schema: its input JSON Schema (an empty one accepts anything).
        arguments: the arguments to send.

    Raises:
        InvalidToolArguments: the first (most relevant, ``jsonschema.best_match``)
            error, naming the argument's path in ``field``; or the schema itself is
            invalid (``field`` ``$``).
    """
    if not schema:
        return
    from jsonschema.exceptions import SchemaError, best_match

    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except SchemaError:
        raise InvalidToolArguments(
            f"{tool}: the tool's input schema is invalid; it was not called", tool=tool
        ) from None
    error = best_match(validator.iter_errors(arguments))
    if error is None:
        return
    field, what = _describe(error)
    raise InvalidToolArguments(f"{tool}: argument {field}: {what}", tool=tool, field=field)
