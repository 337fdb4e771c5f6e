"""Hypothesis strategies derived from msgspec's type info, honouring field constraints."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

_AWARE = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)


def for_type(t: mi.Type) -> st.SearchStrategy[Any]:
    """A strategy producing valid values of the msgspec type ``t``."""
    match t:
        case mi.StrType(pattern=str() as pattern):
            return st.from_regex(pattern, fullmatch=True).filter(
                lambda s: (t.min_length or 0) <= len(s) <= (t.max_length or 10**9)
            )
        case mi.StrType():
            return st.text(min_size=t.min_length or 0, max_size=min(t.max_length or 12, 12))
        case mi.IntType():
            return st.integers(
                min_value=t.ge if t.ge is not None else -(2**31),
                max_value=t.le if t.le is not None else 2**31,
            )
        case mi.FloatType():
            return st.floats(allow_nan=False, allow_infinity=False, width=64)
        case mi.BoolType():
            return st.booleans()
        case mi.BytesType():
            return st.binary(max_size=32)
        case mi.NoneType():
            return st.none()
        case mi.DateTimeType():
            return _AWARE
        case mi.LiteralType():
            return st.sampled_from(t.values)
        case mi.ListType():
            return st.lists(for_type(t.item_type), max_size=3)
        case mi.DictType():
            return st.dictionaries(for_type(t.key_type), for_type(t.value_type), max_size=3)
        case mi.UnionType():
            return st.one_of([for_type(x) for x in t.types])
        case mi.StructType():
            return for_struct(t.cls)
        case mi.RawType():  # an earlier step's output, kept as JSON
            json_values = st.recursive(
                st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                lambda inner: st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                max_leaves=6,
            )
            return json_values.map(lambda v: msgspec.Raw(msgspec.json.encode(v)))
        case _:
            raise NotImplementedError(f"no strategy for {t!r}")


def for_struct(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Build ``cls`` from strategies of its fields; values that the class's own
    ``__post_init__`` rejects (e.g. a reversed alert window) are filtered out."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {f.name: for_type(f.type) for f in info.fields}

    def build(kwargs: dict[str, Any]) -> Any:
        try:
            return cls(**kwargs)
        except ValueError:
            return None

    return st.fixed_dictionaries(fields).map(build).filter(lambda x: x is not None)
