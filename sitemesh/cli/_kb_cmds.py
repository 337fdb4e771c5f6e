"""``sitemesh kb add|list|show|remove``: the site's own knowledge bases.

A site knowledge base is ingested here (Markdown, HTML, past cases, FAQ; cases are
pseudonymised before anything is stored), indexed and calibrated once to check it,
and stored as ``kb/<name>`` in the site's artifact bucket
(``sitemesh_knowledge_<site>``), from where every retriever of the site loads it and
reloads it on change. Bundled knowledge bases (``runbooks``, ``support-cases``,
``banking-faq``) cannot be removed; a site one of the same name overrides them.

The commands are plain async functions returning an exit code (0 ok, 1 not found,
2 error); :data:`kb_app` wires them into the ``sitemesh`` command line.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from ..bus import SiteArtifacts
    from ..config import Settings
    from ..knowledge import Document, KbSpec

EXIT_OK: Final = 0
EXIT_NOT_FOUND: Final = 1
EXIT_ERROR: Final = 2

BUNDLED_PREFIX: Final = "bundled:"
"""``kb add NAME bundled:<name>`` copies a bundled knowledge base's documents (to
re-route it, or to give the FAQ another ``--url-base``)."""

RUNBOOK_CALIBRATION: Final = "heuristic(runbooks: strength x coverage x margin)"
"""How the runbooks' confidence is computed (the retriever's ``RUNBOOK_CALIBRATION``)."""

SHOW_LIMIT: Final = 50
"""Documents listed by ``kb show NAME`` unless ``--limit`` says otherwise."""

kb_app = typer.Typer(
    help="Knowledge bases: add the site's own (Markdown, HTML, past cases, FAQ), list, "
    "show, remove.",
    no_args_is_help=True,
)


@contextlib.asynccontextmanager
async def _bucket(
    settings: Settings, console: Console, *, create: bool, inspect_only: bool = False
) -> AsyncIterator[SiteArtifacts | None]:
    """The site's artifact bucket (``None``: it does not exist yet, or, with
    ``inspect_only``, no NATS server runs here and none is started)."""
    from ..bus import ArtifactNotFound, SiteArtifacts
    from ..runtime import connect
    from ._nats import nats_url, running_nats_url

    if inspect_only:
        url = running_nats_url(settings)
        if url is None:
            yield None
            return
        urls: contextlib.AbstractAsyncContextManager[str] = contextlib.nullcontext(url)
    else:
        urls = nats_url(settings, console)
    async with urls as target:
        nc = await connect(settings, "operator", url=target, name="sitemesh-kb")
        try:
            js = nc.jetstream()
            try:
                bucket: SiteArtifacts | None = await SiteArtifacts.open(
                    js, settings.site, create=create
                )
            except ArtifactNotFound:
                bucket = None
            yield bucket
        finally:
            await nc.drain()


def _err(console: Console, message: str) -> int:
    console.print(Text(message, style="red"), soft_wrap=True)
    return EXIT_ERROR


def _bundled_source(name: str, url_base: str | None) -> tuple[list[Document], str]:
    from ..knowledge import FAQ_URL_BASE, bundled_docs, bundled_spec, intent_slug

    spec = bundled_spec(name)
    docs = bundled_docs(name)
    if url_base:
        import msgspec

        base = url_base.rstrip("/")
        docs = [
            msgspec.structs.replace(d, url=f"{base}/{intent_slug(d.intent)}")
            if d.doc_kind == "faq" and d.intent and (d.url or "").startswith(FAQ_URL_BASE)
            else d
            for d in docs
        ]
    return docs, spec.format


async def kb_add(
    settings: Settings,
    console: Console,
    name: str,
    source: str,
    *,
    kinds: Sequence[str],
    tenants: Sequence[str],
    fmt: str = "auto",
    url_base: str | None = None,
    description: str = "",
) -> int:
    """Ingest ``source``, check it, and store it as the site knowledge base ``name``.

    Args:
        settings: the site (``settings.site``) and how to reach its NATS.
        console: where to print.
        name: the knowledge base's name.
        source: a file or folder, or ``bundled:<name>``.
        kinds: task kinds routed to it (default by the caller: ``support_ticket``).
        tenants: tenant globs routed to it (``*``: all).
        fmt: ``auto``, ``markdown``, ``html``, ``cases`` or ``faq``.
        url_base: base of article URLs (see :func:`sitemesh.knowledge.ingest`).
        description: one line for ``kb list``.

    Returns:
        0 stored, 2 error (printed as one line).

    Raises:
        IngestError, KnowledgeError: invalid input or routing (printed by the CLI).
        BusConnectionError: NATS cannot be reached.
        PiiAnalyzerError: pseudonymising cases failed; nothing was stored.
    """
    from nats.errors import Error as NatsError

    from ..knowledge import BUNDLED, KbIndex, KbSpec, check_name, check_routing, ingest
    from ..knowledge import publish_kb as publish

    check_name(name)
    check_routing(kinds, tenants)
    if source.startswith(BUNDLED_PREFIX):
        docs, used = _bundled_source(source.removeprefix(BUNDLED_PREFIX), url_base)
    else:
        ingested = ingest(Path(source), fmt, url_base=url_base)
        docs, used = ingested.docs, ingested.format
    if not docs:
        return _err(console, f"{source}: no documents to store")
    probe = KbSpec(name=name, kinds=tuple(kinds), tenants=tuple(tenants), format=used)
    index = KbIndex(probe, docs)
    try:
        async with _bucket(settings, console, create=True) as bucket:
            assert bucket is not None  # created
            spec = await publish(
                bucket,
                name,
                docs,
                kinds=kinds,
                tenants=tenants,
                fmt=used,
                description=description,
                calibration=index.calibration.summary(),
            )
    except NatsError as exc:
        return _err(console, f"kb add: NATS refused: {type(exc).__name__}: {exc}")
    over = " (overrides the bundled one)" if name in BUNDLED else ""
    console.print(
        f"stored kb/{name} at site {settings.site}{over}: {spec.docs} document(s), "
        f"{spec.format}, kinds {', '.join(spec.kinds)}, tenants {', '.join(spec.tenants)}; "
        f"{index.calibration.summary()}; retrievers of the site load it now",
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_OK


def _row(spec: KbSpec, origin: str, calibration: str) -> dict[str, Any]:
    return {
        "name": spec.name,
        "origin": origin,
        "kinds": list(spec.kinds),
        "tenants": list(spec.tenants),
        "format": spec.format,
        "docs": spec.docs,
        "calibration": calibration,
        "description": spec.description,
        "sha256": spec.sha256,
    }


def _bundled_rows() -> list[dict[str, Any]]:
    from ..agents import default_kb
    from ..knowledge import BUNDLED, RUNBOOKS, bundled_calibration, bundled_spec

    rows = []
    for name in BUNDLED:
        spec = bundled_spec(name)
        if name == RUNBOOKS:
            kb = default_kb()
            import msgspec

            spec = msgspec.structs.replace(
                spec, docs=len({s.doc_id for s in kb.sections}), sha256=kb.index_version
            )
            calibration = RUNBOOK_CALIBRATION
        else:
            calibration = bundled_calibration(name)
        rows.append(_row(spec, "bundled", calibration))
    return rows


async def kb_list(settings: Settings, console: Console, *, as_json: bool = False) -> int:
    """Print the bundled and the site knowledge bases: origin, routing, documents,
    calibration (a site one overrides the bundled one of its name).

    Returns:
        0, or 2 when the site's knowledge bases could not be read (the bundled ones
        are printed anyway, then the reason).
    """
    from nats.errors import Error as NatsError

    from ..errors import SitemeshError
    from ..knowledge import list_site_kbs

    rows = _bundled_rows()
    problem = None
    site_rows: list[dict[str, Any]] = []
    try:
        async with _bucket(settings, console, create=False, inspect_only=True) as bucket:
            if bucket is not None:
                site_rows = [_row(s, "site", c) for s, c in await list_site_kbs(bucket)]
    except (SitemeshError, NatsError, OSError) as exc:
        problem = f"site knowledge bases not read: {exc}"
    overridden = {r["name"] for r in site_rows}
    for r in rows:
        if r["name"] in overridden:
            r["origin"] = "bundled (overridden by the site's)"
    rows += site_rows
    if as_json:
        console.print_json(
            json.dumps({"site": settings.site, "knowledge_bases": rows, "error": problem})
        )
        return EXIT_ERROR if problem else EXIT_OK
    table = Table(title=f"knowledge bases of site {settings.site}", title_justify="left")
    for col in ("name", "origin", "kinds", "tenants", "format", "docs", "calibration"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            Text(r["name"], "bold"),
            r["origin"],
            ", ".join(r["kinds"]),
            ", ".join(r["tenants"]),
            r["format"],
            str(r["docs"]),
            r["calibration"],
        )
    console.print(table)
    if problem:
        return _err(console, problem)
    return EXIT_OK


def _doc_json(doc: Document) -> dict[str, Any]:
    import msgspec

    out: dict[str, Any] = msgspec.to_builtins(doc)
    return out


async def _resolve(
    settings: Settings, console: Console, name: str
) -> tuple[KbSpec, list[Document], str]:
    """The knowledge base in force under ``name``: the site's, else the bundled one.

    Raises:
        KbNotFound: neither exists.
    """
    from nats.errors import Error as NatsError

    from ..errors import BusConnectionError
    from ..knowledge import (
        INDEXED,
        RUNBOOKS,
        KbNotFound,
        bundled_calibration,
        bundled_docs,
        bundled_spec,
        fetch_kb,
    )

    bundled = name in INDEXED or name == RUNBOOKS
    try:
        async with _bucket(settings, console, create=False, inspect_only=True) as bucket:
            if bucket is not None:
                try:
                    spec, docs = await fetch_kb(bucket, name)
                    calibration = next(
                        (
                            a.meta.get("calibration", "")
                            for a in await bucket.list("kb")
                            if a.short == name
                        ),
                        "",
                    )
                    return spec, docs, calibration
                except KbNotFound:
                    if not bundled:
                        raise
    except (BusConnectionError, NatsError, OSError) as exc:
        if not bundled:
            raise KbNotFound(name, f"site knowledge base {name!r} not read: {exc}") from exc
        console.print(Text(f"site not reachable ({exc}); showing the bundled {name}", "dim"))
    if not bundled:
        raise KbNotFound(name, f"no knowledge base {name!r} (bundled or at site {settings.site})")
    if name == RUNBOOKS:
        return bundled_spec(name), _runbook_docs(), RUNBOOK_CALIBRATION
    return bundled_spec(name), bundled_docs(name), bundled_calibration(name)


def _runbook_docs() -> list[Document]:
    from ..agents import default_kb
    from ..knowledge import Document

    return [
        Document(
            id=s.passage_id,
            doc_id=s.doc_id,
            doc_kind="runbook",
            title=s.title,
            section=s.section,
            text=s.text,
            source=s.source,
        )
        for s in default_kb().sections
    ]


async def kb_show(
    settings: Settings,
    console: Console,
    name: str,
    doc_id: str | None = None,
    *,
    as_json: bool = False,
    limit: int = SHOW_LIMIT,
) -> int:
    """Print one knowledge base (routing and its documents), or one document of it.

    Args:
        settings: the site.
        console: where to print.
        name: the knowledge base (the site's if it has one of that name, else bundled).
        doc_id: a document's ``id`` or ``doc_id`` (all documents of that ``doc_id``).
        as_json: print JSON.
        limit: documents listed at most (without ``doc_id``).

    Returns:
        0, or 1 when the knowledge base or the document does not exist.
    """
    from ..knowledge import KbNotFound

    try:
        spec, docs, calibration = await _resolve(settings, console, name)
    except KbNotFound as exc:
        console.print(Text(str(exc), style="red"))
        return EXIT_NOT_FOUND
    head = _row(spec, spec.origin, calibration)
    if doc_id is not None:
        chosen = [d for d in docs if doc_id in (d.id, d.doc_id)]
        if not chosen:
            console.print(Text(f"no document {doc_id!r} in knowledge base {name!r}", "red"))
            return EXIT_NOT_FOUND
        if as_json:
            console.print_json(
                json.dumps({"knowledge_base": head, "documents": [_doc_json(d) for d in chosen]})
            )
            return EXIT_OK
        for d in chosen:
            grid = Table.grid(padding=(0, 2))
            grid.add_column(style="bold")
            grid.add_column(overflow="fold")
            for key, value in _doc_json(d).items():
                if key == "questions":
                    value = (
                        f"{len(value)}: "
                        + " | ".join(value[:5])
                        + (" ..." if len(value) > 5 else "")
                    )
                grid.add_row(key, str(value))
            console.print(grid)
            console.print()
        return EXIT_OK
    if as_json:
        console.print_json(
            json.dumps({"knowledge_base": head, "documents": [_doc_json(d) for d in docs[:limit]]})
        )
        return EXIT_OK
    count = f"{len(docs)} document(s)"
    if any(d.doc_kind == "runbook" for d in docs):
        count = f"{len(docs)} sections of {len({d.doc_id for d in docs})} runbooks"
    console.print(
        f"[bold]{spec.name}[/bold] ({head['origin']}): {count}, {spec.format}, "
        f"kinds {', '.join(spec.kinds)}, tenants {', '.join(spec.tenants)}; {calibration}",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(title_justify="left")
    for col in ("id", "kind", "title", "tenant", "intent", "url"):
        table.add_column(col, overflow="fold")
    for d in docs[:limit]:
        table.add_row(d.id, d.doc_kind, d.title, d.tenant or "", d.intent or "", d.url or "")
    console.print(table)
    if len(docs) > limit:
        console.print(Text(f"... {len(docs) - limit} more (--limit N)", "dim"))
    return EXIT_OK


async def kb_remove(settings: Settings, console: Console, name: str) -> int:
    """Remove the site knowledge base ``name`` (a bundled one cannot be removed).

    Returns:
        0 removed, 1 no such site knowledge base, 2 a bundled one was named.
    """
    from nats.errors import Error as NatsError

    from ..knowledge import BUNDLED, KbNotFound, remove_kb

    try:
        async with _bucket(settings, console, create=False) as bucket:
            if bucket is None:
                raise KbNotFound(name)
            await remove_kb(bucket, name)
    except KbNotFound:
        if name in BUNDLED:
            return _err(
                console,
                f"{name} is a bundled knowledge base and cannot be removed; "
                f"a site knowledge base of the same name overrides it "
                f"(sitemesh kb add {name} SOURCE)",
            )
        console.print(Text(f"no site knowledge base {name!r} at site {settings.site}", "red"))
        return EXIT_NOT_FOUND
    except NatsError as exc:
        return _err(console, f"kb remove: NATS refused: {type(exc).__name__}: {exc}")
    again = f"; the bundled {name} applies again" if name in BUNDLED else ""
    console.print(f"removed kb/{name} from site {settings.site}{again}", highlight=False)
    return EXIT_OK


# -- the typer group ------------------------------------------------------------------

SiteOpt = Annotated[
    str | None, typer.Option("--site", help="Site name (default: SITEMESH_SITE or eu1).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _exit(coro: Any) -> None:
    from ._app import _run

    raise typer.Exit(_run(coro))


def _settings(site: str | None) -> Settings:
    from ._app import _settings as settings_of

    return settings_of(site)


def _console() -> Console:
    from ._app import console

    return console


@kb_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Knowledge-base name (a-z, 0-9, - and _).")],
    source: Annotated[
        str,
        typer.Argument(
            help="A .md/.html file or folder, a .jsonl of past cases or FAQ entries, an "
            "FAQ .csv, or bundled:<name>."
        ),
    ],
    kind: Annotated[
        list[str] | None,
        typer.Option("--kind", help="Task kind routed here (repeatable; default support_ticket)."),
    ] = None,
    tenant: Annotated[
        list[str] | None,
        typer.Option("--tenant", help="Tenant glob routed here (repeatable; default *)."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto, markdown, html, cases or faq.")
    ] = "auto",
    url_base: Annotated[
        str | None,
        typer.Option("--url-base", help="Base URL of the articles (Markdown/HTML, FAQ)."),
    ] = None,
    description: Annotated[str, typer.Option(help="One line for `kb list`.")] = "",
    site: SiteOpt = None,
) -> None:
    """Ingest SOURCE (cases are pseudonymised first), calibrate it, and store it as the
    site's knowledge base NAME; the site's retrievers load it at once."""
    _exit(
        kb_add(
            _settings(site),
            _console(),
            name,
            source,
            kinds=kind or ["support_ticket"],
            tenants=tenant or ["*"],
            fmt=fmt,
            url_base=url_base,
            description=description,
        )
    )


@kb_app.command("list")
def list_cmd(site: SiteOpt = None, as_json: JsonOpt = False) -> None:
    """The bundled and the site's knowledge bases: routing, documents, calibration."""
    _exit(kb_list(_settings(site), _console(), as_json=as_json))


@kb_app.command("show")
def show_cmd(
    name: str,
    doc_id: Annotated[str | None, typer.Argument(help="A document's id or doc_id.")] = None,
    site: SiteOpt = None,
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option(help="Documents listed at most.")] = SHOW_LIMIT,
) -> None:
    """One knowledge base (the site's, else the bundled one) and its documents, or one
    document."""
    _exit(kb_show(_settings(site), _console(), name, doc_id, as_json=as_json, limit=limit))


@kb_app.command("remove")
def remove_cmd(name: str, site: SiteOpt = None) -> None:
    """Remove the site's knowledge base NAME (bundled ones cannot be removed)."""
    _exit(kb_remove(_settings(site), _console(), name))
