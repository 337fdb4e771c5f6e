"""Wire messages: round trips, schema evolution, precise errors, fresh JSON Schemas."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sitemesh.errors import SchemaError
from sitemesh.schemas import (
    ALL_MESSAGES,
    TASK_DECODER,
    SupportTicket,
    decode,
    encode,
    json_schemas,
)
from sitemesh.schemas._codec import error_field
from sitemesh.schemas._jsonschema import SCHEMA_DIR
from tests._strategies import for_struct


@pytest.mark.parametrize("cls", ALL_MESSAGES, ids=lambda c: c.__name__)
# health checks judge how fast examples are generated, which a loaded 2-core CI machine
# cannot promise; the property itself is unaffected
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_round_trip(cls: type[msgspec.Struct], data: st.DataObject) -> None:
    msg = data.draw(for_struct(cls))
    assert msgspec.json.decode(encode(msg), type=cls) == msg


def test_old_decoder_reads_newer_message() -> None:
    """A v1 reader ignores fields a newer producer added (msgspec schema evolution)."""

    class TicketV1Old(msgspec.Struct, kw_only=True, tag_field="type", tag="support_ticket.v1"):
        body: str

    newer = SupportTicket(body="router down", customer="x", urgency=1)
    raw = encode(newer)[:-1] + b',"added_later":{"x":1}}'
    assert msgspec.json.decode(raw, type=TicketV1Old).body == "router down"
    assert decode(raw, TASK_DECODER) == newer


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b'{"type":"support_ticket.v1","body":5}', "$.body"),
        (b'{"type":"support_ticket.v9","body":"x"}', "$.type"),
        (b'{"type":"support_ticket.v1"}', "$.body"),
        (b'{"type":"support_ticket.v1","body":"x"', "$"),
        (
            b'{"type":"telemetry_alert.v1","device":"a","window_start":"no",'
            b'"window_end":"2019-05-19T08:00:00Z"}',
            "$.window_start",
        ),
        (
            b'{"type":"telemetry_alert.v1","device":"a","window_start":"2019-05-19T09:00:00Z",'
            b'"window_end":"2019-05-19T08:00:00Z"}',
            "$.window_end",
        ),
        (b'{"type":"support_ticket.v1","body":"x","urgency":7}', "$.urgency"),
    ],
)
def test_errors_name_the_field(raw: bytes, field: str) -> None:
    with pytest.raises(SchemaError) as exc:
        decode(raw, TASK_DECODER)
    assert exc.value.field == field
    assert field.removeprefix("$.") in str(exc.value) or field == "$"


def test_error_field_nested_missing() -> None:
    assert error_field("Object missing required field `body` - at `$.task`") == "$.task.body"


def test_json_schemas_are_fresh() -> None:
    """The checked-in JSON Schemas equal what the code generates (`sitemesh schemas`)."""
    wanted = json_schemas()
    on_disk = {p.name: p.read_text("utf-8") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert on_disk == wanted, "stale JSON Schemas: run `sitemesh schemas`"


def test_every_message_is_tagged_and_versioned() -> None:
    tags = [str(c.__struct_config__.tag) for c in ALL_MESSAGES]
    assert len(set(tags)) == len(tags)
    assert all(t.rsplit(".", 1)[1].startswith("v") for t in tags)
