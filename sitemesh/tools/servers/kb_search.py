"""MCP server ``kb_search``: the site's knowledge bases, searched with BM25.

Run it over stdio (what the tool registry starts) or streamable HTTP::

    python -m sitemesh.tools.servers.kb_search [--http HOST:PORT]

The knowledge bases are those of :mod:`sitemesh.knowledge`: the bundled ones
(``runbooks``, ``support-cases``, ``banking-faq``) and, when ``SITEMESH_NATS_URL`` is
set (the registry passes the site's settings on), the site's own from its artifact
bucket (``sitemesh kb add``), loaded at start and reloaded live when one is added,
replaced or removed. A site knowledge base replaces a bundled one of its name.
Without NATS only the bundled ones are searched.

Tools:

* ``search(query, kind?, tenant?, kb?, top_k=5)`` -> :class:`SearchResult`: the
  knowledge bases a task of ``kind`` and ``tenant`` is routed to (``kind`` omitted:
  every one; ``kb``: only that one), each ranked by BM25; ``tenant`` also hides the
  documents of other tenants. Contact details are scrubbed from the query first.
  ``query`` 1-2,000 characters; ``kind`` ``support_ticket`` or ``telemetry_alert``;
  ``top_k`` 1-20 passages in all, ordered by their knowledge base's calibrated
  confidence, then rank. Passages have the fields of ``sitemesh.schemas.Passage``
  (text and answer trimmed to its passage length).
* ``list_kbs()`` -> :class:`KbList`: name, origin, routing and size of each.

Errors (tool errors, the field first): ``kb: no knowledge base 'x' (known: ...)``;
schema violations name the field. Past cases are pseudonymised at ingest, but a site
knowledge base may hold anything: the registry scans every response. Logs go to
stderr only, never with the query.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from mcp.server.mcpserver import MCPServer
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field

from ...knowledge import Library, LoadedKb, scrub_contact_details, trim
from . import _common as common

if TYPE_CHECKING:
    from ...bus import SiteArtifacts

NAME: Final = "kb_search"
MAX_TOP_K: Final = 20
MAX_QUERY_CHARS: Final = 2000

TaskKind = Literal["support_ticket", "telemetry_alert"]


class KbPassage(BaseModel):
    """One ranked passage (the fields of ``sitemesh.schemas.Passage``, plus its rank)."""

    passage_id: str
    doc_id: str
    title: str
    section: str
    text: str
    source: str = Field(description="where the document came from, for attribution")
    score: float = Field(description="BM25 score in its knowledge base (not normalised)")
    kb: str
    doc_kind: str = Field(description="runbook, article, case or faq")
    url: str | None = None
    intent: str | None = None
    answer: str = Field(default="", description="cases and FAQs: the reply that resolved it")
    rank: int = Field(description="1-based rank in its knowledge base")


class KbSearched(BaseModel):
    """What one knowledge base gave."""

    name: str
    confidence: float | None = Field(
        description="calibrated P(its top passage is right), 0..1; null for the runbooks"
    )
    hits: int
    terms: list[str] = Field(description="query terms its index knows")


class SearchResult(BaseModel):
    """Passages of every knowledge base searched, best first."""

    passages: list[KbPassage]
    kbs: list[KbSearched]


class KbInfo(BaseModel):
    """A knowledge base in force."""

    name: str
    origin: str = Field(description="bundled or site")
    kinds: list[str]
    tenants: list[str] = Field(description="tenant globs it serves")
    docs: int
    description: str


class KbList(BaseModel):
    """Every knowledge base in force, by name."""

    kbs: list[KbInfo]


def _search_one(
    kb: LoadedKb, query: str, tenant: str | None, k: int
) -> tuple[KbSearched, list[KbPassage]]:
    if kb.index is None:  # the runbooks: sitemesh.agents' index of runbook sections
        from ...agents import default_kb

        hits, terms = default_kb().search(query, k=k)
        passages = [
            KbPassage(
                passage_id=h.section.passage_id, doc_id=h.section.doc_id, title=h.section.title,
                section=h.section.section, text=trim(h.section.text), source=h.section.source,
                score=h.score, kb=kb.name, doc_kind="runbook", rank=i,
            )
            for i, h in enumerate(hits, start=1)
        ]  # fmt: skip
        return KbSearched(name=kb.name, confidence=None, hits=len(hits), terms=terms), passages
    ranking = kb.index.search(query, tenant=tenant, k=k)
    passages = [
        KbPassage(
            passage_id=h.doc.id, doc_id=h.doc.doc_id, title=h.doc.title, section=h.doc.section,
            text=trim(h.doc.text), source=h.doc.source, score=h.score, kb=kb.name,
            doc_kind=h.doc.doc_kind, url=h.doc.url, intent=h.doc.intent,
            answer=trim(h.doc.answer), rank=h.rank,
        )
        for h in ranking.hits
    ]  # fmt: skip
    searched = KbSearched(
        name=kb.name, confidence=round(ranking.confidence, 4), hits=len(passages),
        terms=ranking.terms,
    )  # fmt: skip
    return searched, passages


def search_library(
    library: Library,
    query: str,
    *,
    kind: str | None = None,
    tenant: str | None = None,
    kb: str | None = None,
    top_k: int = 5,
) -> SearchResult:
    """Search the knowledge bases of ``library`` (what the ``search`` tool does).

    Raises:
        ToolError: ``kb`` names no knowledge base in force.
    """
    if kb is not None:
        found = library.get(kb)
        if found is None:
            known = common.join([k.name for k in library.all()])
            common.tool_error("kb", f"no knowledge base {kb!r} (known: {known})")
        kbs = [found]
    elif kind is not None:
        kbs = library.routed(kind, tenant or "default")
    else:
        kbs = library.all()
    text = scrub_contact_details(query)
    searched, passages = [], []
    for one in kbs:
        s, p = _search_one(one, text, tenant, top_k)
        searched.append(s)
        passages.extend(p)
    confidence = {s.name: s.confidence if s.confidence is not None else 0.0 for s in searched}
    passages.sort(key=lambda p: (-confidence[p.kb], p.rank, p.kb))
    return SearchResult(passages=passages[:top_k], kbs=searched)


def kb_search_server(library: Library) -> MCPServer[Any]:
    """The ``kb_search`` MCP server over ``library`` (reloaded by whoever owns it)."""
    server: MCPServer[Any] = MCPServer(
        NAME,
        instructions="The site's knowledge bases (help articles, past cases, FAQs, "
        "runbooks), searched with BM25. Give the task kind and tenant to search what "
        "that task would.",
    )
    read_only = ToolAnnotations(read_only_hint=True, open_world_hint=False)

    @server.tool(annotations=read_only)
    async def search(
        query: Annotated[
            str, Field(min_length=1, max_length=MAX_QUERY_CHARS, description="free text")
        ],
        kind: Annotated[
            TaskKind | None, Field(description="the task kind: routes to its knowledge bases")
        ] = None,
        tenant: Annotated[
            str | None,
            Field(min_length=1, max_length=256, description="only this tenant's documents"),
        ] = None,
        kb: Annotated[
            str | None,
            Field(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$", description="only this knowledge base"),
        ] = None,
        top_k: Annotated[int, Field(ge=1, le=MAX_TOP_K, description="passages in all")] = 5,
    ) -> SearchResult:
        """Search the site's knowledge bases; passages best first."""
        return await asyncio.to_thread(
            search_library, library, query, kind=kind, tenant=tenant, kb=kb, top_k=top_k
        )

    @server.tool(annotations=read_only)
    async def list_kbs() -> KbList:
        """The knowledge bases in force: name, origin, routing, size."""
        out = []
        for one in library.all():
            spec = one.spec
            if one.index is not None:
                docs = len(one.index.docs)
            else:  # the runbooks
                from ...agents import default_kb

                docs = len(default_kb().sections)
            out.append(
                KbInfo(
                    name=one.name,
                    origin=spec.origin,
                    kinds=list(spec.kinds),
                    tenants=list(spec.tenants),
                    docs=docs,
                    description=spec.description,
                )
            )
        return KbList(kbs=out)

    return server


async def _serve(args: argparse.Namespace) -> None:
    library = await asyncio.to_thread(Library.bundled)
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as stack:
        bucket: SiteArtifacts | None = await stack.enter_async_context(
            common.site_bucket("retriever")
        )
        follow: asyncio.Task[None] | None = None
        if bucket is not None:
            loaded = await library.load_site(bucket)
            common.log.info("site knowledge bases: %s", common.join(loaded))

            async def refresh(name: str) -> None:
                await library.refresh(bucket, name)

            follow = asyncio.create_task(bucket.follow(refresh, stop=stop))
        try:
            await common.serve(kb_search_server(library), args.http)
        finally:
            stop.set()
            if follow is not None:
                await follow


def main(argv: list[str] | None = None) -> None:
    """``python -m sitemesh.tools.servers.kb_search`` (see the module docstring)."""
    p = common.parser(
        "python -m sitemesh.tools.servers.kb_search",
        "MCP server: the site's knowledge bases",
        db=False,
    )
    args = p.parse_args(argv)
    common.configure_logging(args.log_level)
    common.run(_serve(args))


if __name__ == "__main__":
    main()
