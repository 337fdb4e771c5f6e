"""Tool responses are scanned with the site's real PII scanner before an agent sees them:
the data class is raised, the content pseudonymised through the vault when asked, and
a failing scanner withholds the response (fail closed)."""

from __future__ import annotations

import pytest

from sitemesh.policy import PiiScanner, Pseudonymizer, Vault
from sitemesh.tools import (
    InMemoryToolRecorder,
    ToolRegistry,
    ToolResponseUnscanned,
    ToolSpec,
)
from tests._mcp import inproc

pytestmark = pytest.mark.timeout(120)

SPEC = ToolSpec(name="crm", transport="python", target="tests._mcp.inproc:server")


async def test_personal_data_raises_the_data_class_and_is_counted(scanner: PiiScanner) -> None:
    async with ToolRegistry([SPEC], scanner=scanner) as tools:
        record = await tools.call(
            "crm.customer_record",
            {"customer_id": "c-1"},
            task_id="t-1",
            step="retrieve",
            call_index=0,
        )
        plain = await tools.call(
            "crm.plain", {"topic": "bgp"}, task_id="t-1", step="retrieve", call_index=1
        )
    assert record.data_class == "confidential"
    assert record.entities["EMAIL_ADDRESS"] >= 2
    assert record.entities["PERSON"] >= 1
    assert record.raises("internal") == "confidential"
    assert record.raises("restricted") == "restricted"
    assert not record.pseudonymised
    assert "jane.doe@example.com" in record.text  # on the site, unpseudonymised on request
    assert (plain.data_class, plain.entities) == ("internal", {})
    assert plain.raises("public") == "internal"


async def test_content_for_a_cloud_step_is_pseudonymised_through_the_vault(
    scanner: PiiScanner, vault: Vault
) -> None:
    pseudo = Pseudonymizer(scanner, vault)
    # the task's ticket was pseudonymised first: the tool's values get the same placeholders
    ticket = await pseudo.pseudonymize("t-2", {"body": "Jane Doe cannot reach the portal."})
    assert "Jane Doe" not in ticket.texts["body"]
    async with ToolRegistry([SPEC], scanner=scanner, pseudonymizer=pseudo) as tools:
        result = await tools.call(
            "crm.customer_record",
            {"customer_id": "c-2"},
            task_id="t-2",
            step="retrieve",
            call_index=0,
            pseudonymise=True,
        )
    assert result.pseudonymised
    assert result.data_class == "confidential"
    everything = result.text + repr(result.structured)
    assert "jane.doe@example.com" not in everything
    assert "Jane Doe" not in everything
    mapping = await vault.get("t-2")
    person = next(ph for ph, v in mapping.items() if v == "Jane Doe")
    email = next(ph for ph, v in mapping.items() if v == "jane.doe@example.com")
    assert person in ticket.texts["body"]
    assert person in result.structured["name"]
    assert result.structured["email"] == email
    assert result.structured["customer_id"] == "c-2"  # not personal data: left alone
    # re-identification happens on the site, from the vault
    back = await pseudo.reidentify("t-2", result.structured["note"])
    assert back == "Call Jane Doe at jane.doe@example.com about the router."


async def test_personal_data_in_a_key_is_found_and_replaced(scanner: PiiScanner) -> None:
    pseudo = Pseudonymizer(scanner)
    async with ToolRegistry([SPEC], scanner=scanner, pseudonymizer=pseudo) as tools:
        result = await tools.call(
            "crm.contacts", {}, task_id="t-5", step="s", call_index=0, pseudonymise=True
        )
    assert result.entities.get("EMAIL_ADDRESS", 0) >= 1
    assert result.structured == {"<EMAIL_ADDRESS_1>": {"role": "admin"}}


async def test_pseudonymisation_without_a_vault_or_task_is_refused(scanner: PiiScanner) -> None:
    async with ToolRegistry([SPEC], scanner=scanner) as tools:
        with pytest.raises(ToolResponseUnscanned) as no_vault:
            await tools.call(
                "crm.customer_record",
                {"customer_id": "c-3"},
                task_id="t-3",
                step="s",
                call_index=0,
                pseudonymise=True,
            )
    async with ToolRegistry([SPEC], scanner=scanner, pseudonymizer=Pseudonymizer(scanner)) as t:
        with pytest.raises(ToolResponseUnscanned) as no_task:
            await t.call(
                "crm.customer_record",
                {"customer_id": "c-3"},
                task_id="",
                step="s",
                call_index=0,
                pseudonymise=True,
            )
        clean = await t.call(
            "crm.plain", {"topic": "ospf"}, task_id="", step="s", call_index=1, pseudonymise=True
        )
    assert no_vault.value.reason == "pseudonymisation_failed"
    assert no_task.value.reason == "no_task"
    assert "@" not in str(no_vault.value) + str(no_task.value)
    assert not clean.pseudonymised
    assert clean.text.startswith("The ospf runbook")


async def test_a_replayed_response_is_scanned_too(scanner: PiiScanner) -> None:
    recorder = InMemoryToolRecorder()
    async with ToolRegistry([SPEC], scanner=scanner, recorder=recorder) as live:
        await live.call(
            "crm.customer_record", {"customer_id": "c-4"}, task_id="t-4", step="s", call_index=0
        )
    executed = len(inproc.CALLS)

    class Failing:
        def scan_many(self, texts: object) -> object:
            raise RuntimeError("spaCy broke")

    async with ToolRegistry([SPEC], scanner=scanner, recorder=recorder, replay="strict") as r:
        replayed = await r.call(
            "crm.customer_record", {"customer_id": "c-4"}, task_id="t-4", step="s", call_index=0
        )
    async with ToolRegistry(
        [SPEC],
        scanner=Failing(),
        recorder=recorder,
        replay="strict",  # type: ignore[arg-type]
    ) as broken:
        with pytest.raises(ToolResponseUnscanned, match=r"\(RuntimeError\)"):
            await broken.call(
                "crm.customer_record", {"customer_id": "c-4"}, task_id="t-4", step="s", call_index=0
            )
    assert replayed.source == "replay"
    assert replayed.data_class == "confidential"
    assert len(inproc.CALLS) == executed  # replay called nothing
