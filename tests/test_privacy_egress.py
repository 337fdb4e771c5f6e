"""Egress guard: blocks leftover PII anywhere in a payload; fails closed."""

from __future__ import annotations

import msgspec
import pytest

from sitemesh.errors import EgressBlocked, PermanentError, PiiAnalyzerError
from sitemesh.policy import EgressGuard, PiiScanner, Pseudonymizer, build_analyzer


class Note(msgspec.Struct, frozen=True, kw_only=True):
    author: str
    text: str


class Outgoing(msgspec.Struct, frozen=True, kw_only=True, tag="outgoing.v1"):
    task_id: str
    body: str
    notes: list[Note] = []
    extra: dict[str, str] = {}


@pytest.fixture(scope="session")
def scanner() -> PiiScanner:
    return PiiScanner(build_analyzer())


@pytest.fixture(scope="session")
def guard(scanner: PiiScanner) -> EgressGuard:
    return EgressGuard(scanner)


def test_blocks_an_email_in_a_nested_dict(guard: EgressGuard) -> None:
    payload = {
        "task_id": "t-1",
        "context": {"notes": ["router rebooted", "customer wrote from ada@example.org"]},
    }
    with pytest.raises(EgressBlocked) as info:
        guard.check(payload)
    err = info.value
    assert isinstance(err, PermanentError)
    assert err.field == "$.context.notes[1]"
    assert err.entity_type == "EMAIL_ADDRESS"
    assert "ada@example.org" not in str(err)
    assert "example" not in str(err)


def test_blocks_a_credit_card_in_a_struct(guard: EgressGuard) -> None:
    payload = Outgoing(
        task_id="t-1",
        body="Please check the refund.",
        notes=[Note(author="agent", text="card on file 4111 1111 1111 1111")],
    )
    with pytest.raises(EgressBlocked) as info:
        guard.check(payload)
    assert ("$.notes[0].text", "CREDIT_CARD") in info.value.findings
    assert "4111" not in str(info.value)


def test_dict_keys_are_scanned_without_naming_them(guard: EgressGuard) -> None:
    with pytest.raises(EgressBlocked) as info:
        guard.check({"by_sender": {"bob@example.com": "3 tickets"}})
    assert info.value.field == "$.by_sender{key#0}"
    assert "bob" not in str(info.value)


async def test_a_pseudonymised_payload_passes(scanner: PiiScanner, guard: EgressGuard) -> None:
    texts = {
        "body": "Maria Garcia (maria@example.org, +1 212 555 0199) says card "
        "4111 1111 1111 1111 was charged twice; IBAN DE89370400440532013000.",
        "note": "Customer Maria Garcia is in a hurry.",
    }
    out = await Pseudonymizer(scanner).pseudonymize("t-1", texts)
    payload = Outgoing(
        task_id="t-1",
        body=out.texts["body"],
        notes=[Note(author="triage", text=out.texts["note"])],
        extra={"summary": "<PERSON_1> wants a refund for <CREDIT_CARD_1>"},
    )
    guard.check(payload)  # nothing left
    guard.check("<PERSON_1>")
    guard.check({"plain": "The router needs a firmware update.", "n": 3, "ok": True})


def test_scanner_failure_blocks_everything(guard: EgressGuard) -> None:
    class Broken(PiiScanner):
        def scan_many(self, texts: object) -> list[object]:  # type: ignore[override]
            raise RuntimeError("boom on secret@example.com")

    with pytest.raises(PiiAnalyzerError) as info:
        EgressGuard(Broken(build_analyzer())).check({"a": "hello"})
    assert "secret@example.com" not in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)
