"""Site knowledge bases in the site's artifact bucket, against a real ``nats-server``:
store roundtrip, pseudonymisation of past cases before anything is stored, and the
retriever reloading a knowledge base live after ``kb add`` (through the follower)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.js import JetStreamContext
from rich.console import Console

from sitemesh.agents import AgentContext, AgentResources, RetrieverAgent
from sitemesh.bus import NatsServer, SiteArtifacts
from sitemesh.cli._kb_cmds import kb_add, kb_remove
from sitemesh.config import NatsSettings, Settings
from sitemesh.knowledge import (
    FaqRecord,
    KbIndex,
    KbNotFound,
    KnowledgeError,
    Library,
    LoadedKb,
    artifact_name,
    faq_to_docs,
    fetch_kb,
    ingest,
    list_site_kbs,
    publish_kb,
    remove_kb,
)
from sitemesh.schemas import Envelope, PolicyDecision, SupportTicket, WorkItem
from tests._items import work_item
from tests.conftest import assert_eventually

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
CTX = AgentContext(site="lab", worker="test:1")

RAW = {
    "email": "maria.gonzalez@example.org",
    "phone": "+1 415 555 0199",
    "handle": "@mgonzalez88",
    "person": "Maria Gonzalez",
}
CASE = {
    "text": f"{RAW['handle']} hi, this is {RAW['person']}. My parcel tracking page shows an "
    f"error since Monday. Mail me at {RAW['email']} or call {RAW['phone']}.",
    "reply": f"{RAW['handle']} Sorry {RAW['person']}! The tracking page needs a fresh login: "
    "https://help.acme.test/orders/track",
    "url": "https://help.acme.test/orders/track",
    "tenant": "acme",
    "customer": "mgonzalez88",
}


def _raw_values(text: str) -> list[str]:
    lowered = text.lower()
    values = [*RAW.values(), "mgonzalez88", "Gonzalez", "555 0199"]
    return [v for v in values if v.lower() in lowered]


def item(body: str, tenant: str) -> WorkItem:
    env = Envelope(task_id="t-1", site="lab", kind="support_ticket", tenant=tenant,
                   submitted_at=T0, accepted_at=T0)  # fmt: skip
    decision = PolicyDecision(task_id="t-1", action="pin_edge", rule_id="r1",
                              policy_version="0", data_class="internal")  # fmt: skip
    return work_item(env, SupportTicket(body=body, tenant=tenant), decision)


def settings_for(site: str, nats_server: NatsServer, tmp: Path) -> Settings:
    return Settings(site=site, state_dir=tmp, nats=NatsSettings(url=nats_server.client_url))


async def test_store_roundtrip_list_and_remove(js: JetStreamContext, site: str) -> None:
    bucket = await SiteArtifacts.open(js, site, create=True)
    docs = faq_to_docs(
        [FaqRecord("vpn_reset", "Quit the VPN client and start it again.", questions=["vpn down"])],
        url_base="https://help.acme.test",
    )
    spec = await publish_kb(bucket, "acme-faq", docs, kinds=["support_ticket"],
                            tenants=["acme*"], fmt="faq", calibration="heuristic(x)")  # fmt: skip
    assert (spec.docs, spec.origin, spec.tenants) == (1, "site", ("acme*",))
    got_spec, got = await fetch_kb(bucket, "acme-faq")
    assert got == docs
    assert got_spec == spec
    listed = await list_site_kbs(bucket)
    assert listed == [(spec, "heuristic(x)")]
    data, info = await bucket.get(artifact_name("acme-faq"))
    assert info.meta["kinds"] == "support_ticket"
    assert info.meta["sha256"] == spec.sha256
    await remove_kb(bucket, "acme-faq")
    with pytest.raises(KbNotFound):
        await fetch_kb(bucket, "acme-faq")
    with pytest.raises(KbNotFound):
        await remove_kb(bucket, "acme-faq")
    with pytest.raises(KnowledgeError, match="no documents"):
        await publish_kb(bucket, "empty", [], kinds=["support_ticket"], tenants=["*"], fmt="faq")
    # tampered content is refused, not silently indexed
    await bucket.put(artifact_name("bad"), data + b"\n", info.meta)
    with pytest.raises(KnowledgeError, match="does not match its sha256"):
        await fetch_kb(bucket, "bad")


async def test_a_case_with_contact_details_is_stored_and_found_without_them(
    js: JetStreamContext, site: str, tmp_path: Path
) -> None:
    src = tmp_path / "cases.jsonl"
    src.write_text(json.dumps(CASE) + "\n", "utf-8")
    docs = ingest(src).docs  # the real Presidio analyzer, offline
    (doc,) = docs
    assert _raw_values(doc.text) == []
    assert _raw_values(doc.answer) == []
    assert "<EMAIL_ADDRESS>" in doc.text
    assert "<PERSON>" in doc.text
    assert "<HANDLE>" in doc.text
    assert "<PHONE_NUMBER>" in doc.text
    assert doc.url == CASE["url"]
    assert CASE["url"] in doc.answer
    bucket = await SiteArtifacts.open(js, site, create=True)
    await publish_kb(bucket, "acme-cases", docs, kinds=["support_ticket"], tenants=["*"],
                     fmt="cases")  # fmt: skip
    data, info = await bucket.get(artifact_name("acme-cases"))
    assert _raw_values(data.decode()) == []
    assert _raw_values(json.dumps(info.meta)) == []
    spec, stored = await fetch_kb(bucket, "acme-cases")
    library = Library([LoadedKb(spec, KbIndex(spec, stored))])
    result = await RetrieverAgent(library=library).handle(
        item(f"my parcel tracking page shows an error, I am {RAW['person']}", "acme"), CTX
    )
    assert result.passages
    assert result.passages[0].url == CASE["url"]
    for p in result.passages:
        assert _raw_values(p.text + p.answer + p.title + p.section + p.passage_id) == []
    assert _raw_values(result.query) == [RAW["person"], "Gonzalez"]  # the ticket's own, kept


@contextlib.asynccontextmanager
async def following(resources: AgentResources, bucket: SiteArtifacts) -> AsyncIterator[None]:
    """Run the agent's artifact callbacks the way the runtime's follower does."""
    stop = asyncio.Event()

    async def changed(name: str) -> None:
        for callback in resources.followers:
            await callback(name)

    task = asyncio.create_task(bucket.follow(changed, stop=stop))
    try:
        yield
    finally:
        stop.set()
        await task


async def test_retriever_reloads_live_after_kb_add_and_remove(
    js: JetStreamContext, site: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    bucket = await SiteArtifacts.open(js, site, create=True)
    resources = AgentResources(site, js=js)
    retriever = RetrieverAgent()
    await retriever.setup(resources)
    assert resources.followers, "the retriever follows the site's artifacts"
    guide = tmp_path / "vpn.md"
    guide.write_text(
        "# VPN client keeps disconnecting\n\n## Fix\n\nQuit the VPN client, delete its "
        "profile and import the profile again from the portal.\n"
    )
    ticket = item("the VPN client keeps disconnecting every ten minutes", "acme")
    before = await retriever.handle(ticket, CTX)
    assert "acme-guides" not in before.kbs
    settings = settings_for(site, nats_server, tmp_path)
    console = Console(file=open(tmp_path / "out.txt", "w"))  # noqa: SIM115
    async with following(resources, bucket):
        await asyncio.sleep(0)  # the watch starts before the put
        code = await kb_add(settings, console, "acme-guides", str(guide),
                            kinds=["support_ticket"], tenants=["acme"],
                            url_base="https://help.acme.test/kb")  # fmt: skip
        assert code == 0

        async def found() -> bool:
            result = await retriever.handle(ticket, CTX)
            return bool(result.passages) and result.passages[0].kb == "acme-guides"

        await assert_eventually(found, timeout_s=20)
        after = await retriever.handle(ticket, CTX)
        assert "acme-guides" in after.kbs
        top = after.passages[0]
        assert (top.doc_kind, top.url) == ("article", "https://help.acme.test/kb/vpn#fix")
        other = await retriever.handle(item("the VPN client keeps disconnecting", "other"), CTX)
        assert "acme-guides" not in other.kbs  # routed to tenant acme only
        assert await kb_remove(settings, console, "acme-guides") == 0

        async def gone() -> bool:
            return "acme-guides" not in (await retriever.handle(ticket, CTX)).kbs

        await assert_eventually(gone, timeout_s=20)
    console.file.close()


async def test_setup_loads_what_the_site_already_has(js: JetStreamContext, site: str) -> None:
    bucket = await SiteArtifacts.open(js, site, create=True)
    jam = ["printer jammed", "paper stuck in printer"]
    docs = faq_to_docs(
        [FaqRecord("printer_jam", "Open tray 2 and remove the paper.", questions=jam)]
    )
    await publish_kb(bucket, "it-faq", docs, kinds=["support_ticket"], tenants=["*"], fmt="faq")
    retriever = RetrieverAgent()
    await retriever.setup(AgentResources(site, js=js))
    result = await retriever.handle(item("paper stuck in the printer again", "anyone"), CTX)
    assert result.passages[0].intent == "printer_jam"
    assert result.passages[0].kb == "it-faq"
