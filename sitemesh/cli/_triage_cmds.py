"""``sitemesh triage train|models|classify``: the triage label sets.

``train`` checks a CSV of labelled tickets, trains on all but the held-out share
(:func:`sitemesh.triage.held_out`), prints the held-out figures and, with
``--publish``, stores the examples as ``triage/<name>`` in the site's artifact bucket,
where every triage worker of the site picks them up. Errors are one line, no
traceback, exit code 2. scikit-learn loads only when a command needs it.
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config import Settings, load_settings
from ..errors import SitemeshError

if TYPE_CHECKING:
    from ..triage import Evaluation, LabelSet, TriageModel

EXIT_OK: Final = 0
EXIT_ERROR: Final = 2

console = Console()
err_console = Console(stderr=True)

triage_app = typer.Typer(
    help="Triage label sets: train and publish examples, list them, classify a text.",
    no_args_is_help=True,
)

SiteOpt = Annotated[
    str | None, typer.Option("--site", help="Site name (default: SITEMESH_SITE or eu1).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _settings(site: str | None) -> Settings:
    return load_settings(site=site) if site else load_settings()


def _fail(message: str) -> int:
    err_console.print(f"[bold red]error:[/bold red] {escape(message)}", soft_wrap=True)
    return EXIT_ERROR


def _progress_bar() -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
        console=err_console, transient=True,
    )  # fmt: skip


def _train_with_bar(label_set: LabelSet, *, cached: bool) -> TriageModel:
    """Train (or with ``cached`` load from the model cache) under a progress bar."""
    from ..triage import ModelCache, train_model

    with _progress_bar() as bar:
        task = bar.add_task(f"{label_set.name}: training", total=4)

        def progress(stage: str, done: int, total: int) -> None:
            bar.update(task, description=stage, completed=done, total=total)

        if cached:
            return ModelCache().load_or_train(label_set, progress=progress)
        return train_model(label_set, progress=progress)


def default_name(path: Path) -> str:
    """A label set name from a file name: ``"My Tickets.csv"`` -> ``"my_tickets"``."""
    return re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_")[:64] or "examples"


def _support(label_set: LabelSet) -> dict[str, Any]:
    counts = Counter(e.label for e in label_set.examples)
    sizes = sorted(counts.values())
    return {
        "labels": len(counts),
        "min": sizes[0],
        "median": statistics.median(sizes),
        "max": sizes[-1],
        "under_5": sorted(label for label, n in counts.items() if n < 5),
    }


def _report(
    label_set: LabelSet, test_n: int, evaluation: Evaluation | None, took_s: float,
    share: float,
) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {
        "name": label_set.name,
        "tenants": list(label_set.tenants),
        "train_examples": len(label_set.examples),
        "held_out_examples": test_n,
        "test_share": share,
        "train_s": round(took_s, 1),
        "support": _support(label_set),
        "urgency_model": label_set.has_urgency,
    }
    if evaluation is not None:
        out |= {
            "accuracy": round(evaluation.accuracy, 4),
            "macro_f1": round(evaluation.macro_f1, 4),
            "ece": round(evaluation.ece, 4),
            "confusions": [
                {"true": t, "predicted": p, "count": n} for (t, p), n in evaluation.confusions
            ],
        }
    return out


def _print_report(r: dict[str, Any]) -> None:
    s = r["support"]
    console.print(
        f"trained [bold]{escape(r['name'])}[/bold] on {r['train_examples']} examples, "
        f"{s['labels']} labels, in {r['train_s']} s; held out {r['held_out_examples']} "
        f"(share {r['test_share']}, sitemesh.triage.held_out)",
        soft_wrap=True,
    )
    if "accuracy" not in r:
        console.print("no held-out examples: no figures (raise --test-share)")
    else:
        console.print(
            f"held-out accuracy {r['accuracy']:.3f}, macro-F1 {r['macro_f1']:.3f}, "
            f"calibration error (ECE) {r['ece']:.3f}"
        )
    few = s["under_5"]
    console.print(
        f"support per label (training): min {s['min']}, median {s['median']:g}, "
        f"max {s['max']}" + (f"; under 5: {escape(', '.join(few[:10]))}" if few else ""),
        soft_wrap=True,
    )
    if r.get("confusions"):
        console.print("top confusions (true → predicted: count):")
        for c in r["confusions"]:
            console.print(
                f"  {escape(c['true'])} → {escape(c['predicted'])}: {c['count']}",
                soft_wrap=True, highlight=False,
            )  # fmt: skip


@triage_app.command("train")
def train_cmd(
    examples: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="CSV file with a header row.")
    ],
    name: Annotated[
        str | None, typer.Option(help="Label set name (default: from the file name).")
    ] = None,
    text_column: Annotated[
        str, typer.Option(help="Text column; several comma-separated are joined.")
    ] = "text",
    label_column: Annotated[str, typer.Option(help="Label column.")] = "category",
    urgency_column: Annotated[
        str | None, typer.Option(help="Urgency column (0..3, empty: none).")
    ] = None,
    tenant: Annotated[
        list[str] | None,
        typer.Option("--tenant", metavar="GLOB", help="Tenants served (repeatable; NAME*)."),
    ] = None,
    test_share: Annotated[float, typer.Option(help="Held-out share for the figures.")] = 0.2,
    publish: Annotated[
        bool, typer.Option(help="Store the examples as triage/NAME at the site.")
    ] = False,
    as_json: JsonOpt = False,
    site: SiteOpt = None,
) -> None:
    """Check EXAMPLES.csv, train on all but the held-out share, print held-out accuracy,
    macro-F1, calibration, label support and top confusions; --publish stores every
    example at the site, where the triage workers train on them."""
    raise typer.Exit(
        run_train(examples, name=name, text_column=text_column, label_column=label_column,
                  urgency_column=urgency_column, tenants=tuple(tenant or ()),
                  test_share=test_share, publish=publish, as_json=as_json,
                  settings=_settings(site) if publish else None)
    )  # fmt: skip


def run_train(
    path: Path,
    *,
    name: str | None,
    text_column: str,
    label_column: str,
    urgency_column: str | None,
    tenants: Sequence[str],
    test_share: float,
    publish: bool,
    as_json: bool,
    settings: Settings | None,
) -> int:
    """``sitemesh triage train``.

    Returns:
        0, or 2 with a one-line error (bad file, column, share, name; too few labels;
        the site's NATS not reachable when publishing).
    """
    from ..triage import LabelSet, check_name, evaluate, held_out, read_examples_csv

    if not 0.0 <= test_share < 1.0:
        return _fail(f"--test-share must be within 0..1 (exclusive of 1), not {test_share}")
    try:
        read = read_examples_csv(
            path, text_column=text_column, label_column=label_column,
            urgency_column=urgency_column,
        )  # fmt: skip
        label_name = check_name(name or default_name(path))
        globs = tuple(tenants) or (f"{label_name}*",)
        test = tuple(e for e in read.examples if held_out(e.text, share=test_share))
        rest = tuple(e for e in read.examples if not held_out(e.text, share=test_share))
        train_set = LabelSet(label_name, globs, rest, source="published")
        started = time.perf_counter()
        model = _train_with_bar(train_set, cached=False)
        took = time.perf_counter() - started
    except SitemeshError as exc:
        return _fail(str(exc))
    evaluation = evaluate(model, test) if test else None
    report = _report(train_set, len(test), evaluation, took, test_share)
    report |= {"file": str(path), "rows": read.rows, "skipped_rows": read.skipped}
    if not as_json:
        if read.skipped:
            console.print(f"[dim]{read.skipped} of {read.rows} rows lack text or label[/dim]")
        _print_report(report)
    if publish:
        assert settings is not None
        full = LabelSet(label_name, globs, read.examples, source="published")
        try:
            report["published"] = asyncio.run(_publish(settings, full))
        except (SitemeshError, OSError) as exc:
            return _fail(f"publish failed: {type(exc).__name__}: {exc}")
        if not as_json:
            console.print(
                f"published {report['published']['artifact']} ({len(full.examples)} examples, "
                f"tenants {', '.join(globs)}) at site {settings.site}; its triage workers "
                "train on every example and serve it from now on",
                soft_wrap=True,
            )
    if as_json:
        console.print_json(json.dumps(report))
    return EXIT_OK


async def _publish(settings: Settings, label_set: LabelSet) -> dict[str, Any]:
    from nats.errors import Error as NatsError

    from ..bus import SiteArtifacts
    from ..runtime import connect
    from ..triage import artifact_meta, artifact_name, examples_to_jsonl
    from ._nats import nats_url

    name = artifact_name(label_set.name)
    try:
        async with nats_url(settings, err_console) as url:
            nc = await connect(settings, "operator", url=url, name="sitemesh-triage")
            try:
                artifacts = await SiteArtifacts.open(nc.jetstream(), settings.site, create=True)
                info = await artifacts.put(
                    name, examples_to_jsonl(label_set.examples), artifact_meta(label_set)
                )
            finally:
                await nc.drain()
    except NatsError as exc:  # one line, no traceback
        raise OSError(f"NATS refused: {type(exc).__name__}: {exc}") from None
    return {"artifact": info.name, "site": settings.site, "bytes": info.size, "meta": info.meta}


def warm_models(settings: Settings, out: Console) -> dict[str, TriageModel]:
    """Train or load the bundled label sets' models into ``settings.cache_dir`` under a
    progress bar, so triage workers start fast (what ``make demo`` / ``make test`` run
    first). Returns the models by label set name."""
    from ..triage import ModelCache, bundled_label_sets

    cache = ModelCache(settings.cache_dir)
    models: dict[str, TriageModel] = {}
    t0 = time.monotonic()
    with _progress_bar() as bar:
        for label_set in bundled_label_sets():
            task = bar.add_task(f"{label_set.name}: loading", total=4)

            def progress(stage: str, done: int, total: int, task: Any = task) -> None:
                bar.update(task, description=stage, completed=done, total=total)

            models[label_set.name] = cache.load_or_train(label_set, progress=progress)
    out.print(
        f"triage models ready in {time.monotonic() - t0:.1f} s: "
        + ", ".join(f"{n} ({len(m.labels)} labels)" for n, m in models.items()),
        highlight=False,
    )
    return models


@triage_app.command("warm")
def warm_cmd(site: SiteOpt = None) -> None:
    """Train (first time) or load the bundled models into the model cache."""
    try:
        warm_models(_settings(site), console)
    except (SitemeshError, OSError) as exc:
        raise typer.Exit(_fail(str(exc))) from None


@triage_app.command("models")
def models_cmd(as_json: JsonOpt = False, site: SiteOpt = None) -> None:
    """The label sets: bundled ones and those published at the site (when its NATS is
    reachable), with tenants, examples, labels and urgency source."""
    raise typer.Exit(asyncio.run(run_models(_settings(site), as_json=as_json)))


async def _published_rows(settings: Settings) -> tuple[list[dict[str, Any]], str | None]:
    from nats.errors import Error as NatsError

    from ..bus import ArtifactNotFound, SiteArtifacts
    from ..runtime import connect
    from ..triage import ARTIFACT_KIND, parse_tenants
    from ._nats import running_nats_url

    url = running_nats_url(settings)
    if url is None:
        return [], "no NATS server running (set SITEMESH_NATS_URL): published sets not shown"
    try:
        nc = await connect(settings, "operator", url=url, name="sitemesh-triage")
        try:
            artifacts = await SiteArtifacts.open(nc.jetstream(), settings.site)
            infos = await artifacts.list(ARTIFACT_KIND)
        finally:
            await nc.drain()
    except ArtifactNotFound:
        return [], None
    except (SitemeshError, NatsError, OSError) as exc:
        return [], f"published sets not shown: {type(exc).__name__}: {exc}"
    return [
        {
            "name": a.short, "source": "published", "tenants": list(parse_tenants(
                a.meta.get("tenants", ""))), "examples": a.meta.get("examples", "?"),
            "held_out": 0, "labels": a.meta.get("labels", "?"),
            "urgency": "model" if a.meta.get("urgency") == "yes" else "default",
            "cached": None,
        }
        for a in infos
    ], None  # fmt: skip


async def run_models(settings: Settings, *, as_json: bool) -> int:
    """``sitemesh triage models``: 0, or 2 when the site's NATS is configured but
    cannot be read (the bundled sets are still listed)."""
    from ..triage import URGENCY_RULES, ModelCache, bundled_label_sets

    cache = ModelCache()
    rows: list[dict[str, Any]] = []
    for ls in bundled_label_sets():
        urgency = "model" if ls.has_urgency else "rule" if ls.name in URGENCY_RULES else "default"
        rows.append({
            "name": ls.name, "source": "bundled", "tenants": list(ls.tenants),
            "examples": len(ls.training_examples), "held_out": len(ls.held_out_examples),
            "labels": len(ls.labels), "urgency": urgency,
            "cached": cache.path_for(ls).exists(),
        })  # fmt: skip
    published, problem = await _published_rows(settings)
    rows = published + rows  # routing order: published first
    if as_json:
        console.print_json(json.dumps({"site": settings.site, "label_sets": rows}))
    else:
        table = Table(title=f"triage label sets of site {settings.site}", title_justify="left")
        table.add_column("label set", no_wrap=True)
        for col in ("from", "tenants", "examples", "held out", "labels", "urgency", "cached"):
            table.add_column(col, overflow="fold")
        for r in rows:
            cached = "" if r["cached"] is None else "yes" if r["cached"] else "no"
            table.add_row(
                r["name"], r["source"], ", ".join(r["tenants"]), str(r["examples"]),
                str(r["held_out"]), str(r["labels"]), r["urgency"], cached,
            )  # fmt: skip
        console.print(table)
        console.print(f"[dim]cache: {cache.dir}[/dim]", soft_wrap=True)
    if problem is not None:
        err_console.print(f"[yellow]{escape(problem)}[/yellow]", soft_wrap=True)
        if settings.nats.url:
            return EXIT_ERROR
    return EXIT_OK


@triage_app.command("classify")
def classify_cmd(
    text: Annotated[str, typer.Argument(help="The ticket text.")],
    tenant: Annotated[
        str | None, typer.Option(help="Route as this tenant's ticket (bundled sets).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify TEXT with the bundled models (each, or the one --tenant routes to);
    trains and caches them on first use."""
    raise typer.Exit(run_classify(text, tenant=tenant, as_json=as_json))


def run_classify(text: str, *, tenant: str | None, as_json: bool) -> int:
    """``sitemesh triage classify``: 0, or 2 when ``tenant`` matches no bundled set."""
    import msgspec

    from ..triage import Route, Triager, bundled_label_sets

    sets = bundled_label_sets()
    if tenant is not None:
        chosen = [ls for ls in sets if ls.matches(tenant)][:1]
        if not chosen:
            globs = "; ".join(f"{ls.name}: {', '.join(ls.tenants)}" for ls in sets)
            return _fail(f"no bundled label set serves tenant {tenant!r} ({globs})")
        sets = tuple(chosen)
    results = []
    for ls in sets:
        triager = Triager([Route.of(ls, _train_with_bar(ls, cached=True))])
        results.append(triager.triage(task_id="cli", text=text, tenant=ls.tenants[0]))
    if as_json:
        console.print_json(msgspec.json.encode(results).decode())
        return EXIT_OK
    table = Table(title="triage", title_justify="left")
    for col in ("label set", "label"):
        table.add_column(col, no_wrap=True)
    for col in ("confidence", "alternatives", "urgency", "language"):
        table.add_column(col, overflow="fold")
    for t in results:
        alts = ", ".join(f"{a.label} {a.p:.2f}" for a in t.alternatives)
        table.add_row(
            t.label_set, t.label, f"{t.confidence:.2f}", alts,
            f"{t.urgency} ({t.urgency_source})", f"{t.language} {t.language_confidence:.2f}",
        )  # fmt: skip
    console.print(table)
    return EXIT_OK
