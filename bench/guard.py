"""The egress guard on ``cloud_incident.v2``: every string scanned vs the field spec, same run.

Corpus: the 1,500 labelled presidio-research records (``tests/data/pii-presidio``,
MIT) and the 292 real tickets of ``examples/data/tickets.jsonl`` (102 IBM Twitter
customer care, Apache-2.0; 150 BANKING77, CC BY 4.0; 40 Endava help desk, MIT), one
``SupportTicket`` each. Records are numbered in that order; **even numbers are the
development half** (looked at while writing the guard's placeholder rule), **odd
numbers are held out**: nothing was tuned on them. The field spec itself is derived
from the schemas, not from the corpus.

Every record goes through what a site runs, in process: ``PolicyRouter`` (real
scanner, an all-to-cloud test policy as in ``tests/test_boundary_e2e.py``, so every
escalated ticket is forwarded: the guard's worst case), then the bundled ``support``
workflow step by step as the runtime walks it (``first_step`` / ``next_step``:
``triage``, ``retrieve`` with the retriever routing the ticket to its tenant's
knowledge bases, ``plan``, ``validate`` with the real Presidio check, ``decide``),
the built-in agents set up as a process sets them up (``AgentResources``, no model
endpoint, no bus), then the real ``CloudForwarder`` with a real ``Pseudonymizer`` +
``Vault`` (temp SQLite), ``BoundaryRefs`` and the real ``EgressGuard``, wrapped so
that it keeps every incident it checks. What the forwarder did with each escalation
(forwarded, blocked by the guard, blocked by its own checks after the guard) is
printed; the kept incidents are then checked by each configuration below.

Task ids are caller-chosen, held-out style: ``ho-gl-<n>`` (5 in 10), ``ho-<n>``
(4 in 10) and name-bearing ones from the issue (1 in 10: ``maria-garcia-refund-2``,
``JohnSmith-ticket``, ``priya-raghunathan``, ``jdoe-at-example-com``, then suffixed);
the forwarder replaces them with the task's opaque reference.

Configurations (each with its own fresh scanner, timed in interleaved chunks of 64
incidents, on the same incidents):

* ``scan all``: ``EgressGuard(scanner, specs={})``, every string of the incident,
  dict keys included, given to the PII scanner (a detection counts unless it lies in
  a placeholder): the approach before field specs, applied to v2;
* ``field spec``: ``EgressGuard(scanner)`` as the forwarder runs it: the closed field
  spec of ``cloud_incident.v2`` (every field format-checked, the formats that could
  spell an identifier also scanned for non-NER types, any other field blocks).

A block is a **true block** when the incident carries a labelled value of its record:
for presidio records a span of a type that identifies a person (the e2e test's
``CHECKED`` set, values of 4+ characters, word-bounded); for the real tickets the
customer's handle and any e-mail address in the ticket (the only PII the corpus
documents). Any other block is a **false positive**; a *leak* is an incident that
passes although it carries such a value.

Planted: labelled values from held-out presidio records, round-robin over 8 types: the
first ones the scanner detects in their own record (``PLANT_TYPES``, 30 in all: what a
scanner-based guard is there to catch), then the first two of each type it misses there.
Each value is written into copies of a clean held-out incident (one both configurations
pass, with plan steps) once per field that could carry text if a bug put it there: every
string field of the v2 schema, enumerated from ``CloudIncident``'s type info
(placeholders, a step's action, grounding ids and placeholders, a finding's kind,
severity, device, interface and time, runbook, reason codes, the triage label, label set
and language, the resolution, the routing fields, the date-times), bare, as a builder
bug would write it (a list gets it appended; a missing finding, triage or resolution a
valid one to hold it); and three fields v2 no longer has, as v1 had them (``text``, a
step's ``description``, a finding's ``evidence``), inside a sentence. A plant counts as
blocked when the guard names its path (for a field the spec does not name: its key, as
``UNEXPECTED_FIELD``). What gets past the field spec is listed by field and type.

Usage: ``python bench/guard.py [--limit N]`` (N records of each source). No network;
about half a minute on two cores once the triage models are cached.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import msgspec

from sitemesh.agents import (
    AgentContext,
    AgentResources,
    EscalationAgent,
    PlannerAgent,
    RetrieverAgent,
    TriageAgent,
    ValidatorAgent,
)
from sitemesh.bus import MsgContext, Subjects
from sitemesh.edge_node import CloudForwarder
from sitemesh.errors import EgressBlocked
from sitemesh.policy import (
    UNEXPECTED_FIELD,
    BoundaryRefs,
    EgressGuard,
    PiiScanner,
    Policy,
    PolicyRouter,
    Pseudonymizer,
    Vault,
    build_analyzer,
)
from sitemesh.schemas import (
    CloudIncident,
    Envelope,
    FinalAnswer,
    FindingKind,
    IncidentFinding,
    IncidentResolution,
    IncidentTriage,
    RetrievalResult,
    SupportTicket,
    Triage,
    WorkItem,
    utcnow,
)
from sitemesh.workflows import first_step, new_item, next_step, step_of

ROOT = Path(__file__).parent.parent
CORPUS = ROOT / "tests" / "data" / "pii-presidio" / "synth_dataset_v2.json"
TICKETS = ROOT / "examples" / "data" / "tickets.jsonl"
SITE = "eu1"
KEY = hashlib.sha256(b"sitemesh bench/guard.py").digest()
"""Vault and reference key: fixed, so references (and the figures) repeat run to run."""
ALL_TO_CLOUD = """
version = "bench-all-to-cloud"
public_kinds = []

[[rule]]
id = "every-ticket-to-cloud"
description = "bench policy: send every ticket to the cloud, anonymised"
action = "allow_cloud"
match = { kinds = ["support_ticket"], backend_healthy = true }
"""
CHECKED = {
    "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "IBAN_CODE", "US_SSN",
    "IP_ADDRESS", "STREET_ADDRESS", "US_DRIVER_LICENSE",
}  # fmt: skip
"""Labelled types that identify a person (as in ``tests/test_boundary_e2e.py``)."""
NAMED_IDS = (
    "maria-garcia-refund-2",
    "JohnSmith-ticket",
    "priya-raghunathan",
    "jdoe-at-example-com",
)
PLANT_TYPES = {
    "PERSON": 5, "STREET_ADDRESS": 4, "EMAIL_ADDRESS": 4, "PHONE_NUMBER": 4,
    "CREDIT_CARD": 4, "IBAN_CODE": 3, "US_SSN": 3, "IP_ADDRESS": 3,
}  # fmt: skip
"""Planted types -> how many values the scanner detects (30 in all)."""
WARM_UP = ["warm-up: Ada Lovelace, ada@example.org, +1 212 555 0100"]
CHUNK = 64
"""Records per router batch, and incidents per timed chunk."""
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_INDEX = re.compile(r"\[\d+\]")


@dataclass
class Record:
    n: int
    task_id: str
    ticket: SupportTicket
    values: list[str]
    """Labelled personal values of the record."""
    held_out: bool = field(init=False)

    def __post_init__(self) -> None:
        self.held_out = self.n % 2 == 1


def task_id_for(n: int) -> str:
    """Record ``n``'s caller id; styles cycle over ``n // 2``, so both halves get each."""
    style = (n // 2) % 10
    if style < 5:
        return f"ho-gl-{n}"
    if style < 9:
        return f"ho-{n}"
    k = n // 20 * 2 + n % 2
    name = NAMED_IDS[k % len(NAMED_IDS)]
    return name if k < len(NAMED_IDS) else f"{name}-{k}"


def load(limit: int | None) -> tuple[list[Record], list[dict[str, Any]]]:
    """The records (presidio first, then the tickets) and the presidio corpus rows."""
    corpus = json.loads(CORPUS.read_text(encoding="utf-8"))[:limit]
    lines = TICKETS.read_text(encoding="utf-8").splitlines()
    tickets = [json.loads(line) for line in lines if line.strip()]
    records: list[Record] = []
    for r in corpus:
        n = len(records)
        values = [s["entity_value"].strip() for s in r["spans"] if s["entity_type"] in CHECKED]
        tid = task_id_for(n)
        ticket = SupportTicket(task_id=tid, body=r["full_text"], channel="email")
        records.append(Record(n, tid, ticket, [v for v in values if len(v) >= 4]))
    for t in tickets[:limit]:
        n = len(records)
        tid = task_id_for(n)
        ticket = msgspec.convert({**t, "task_id": tid}, SupportTicket)
        handle = (ticket.customer or "").strip()
        values = [handle, f"@{handle}"] if handle else []
        values += _EMAIL.findall(f"{ticket.title}\n{ticket.body}")
        records.append(Record(n, tid, ticket, [v for v in values if len(v) >= 4]))
    return records, corpus


# --- the site ----------------------------------------------------------------------


class _KeepingGuard:
    """The forwarder's guard: the real one, keeping the incident it last checked."""

    def __init__(self, guard: EgressGuard) -> None:
        self.guard = guard
        self.last: CloudIncident | None = None
        self.blocked = False

    def check(self, payload: msgspec.Struct) -> None:
        assert isinstance(payload, CloudIncident)
        self.last = payload
        try:
            self.guard.check(payload)
        except EgressBlocked:
            self.blocked = True
            raise


class _PendingKV:
    async def put(self, key: str, value: bytes) -> int:
        return 1


@dataclass
class Built:
    record: Record
    incident: CloudIncident


@dataclass
class SiteRun:
    built: list[Built]
    """Every incident the forwarder built (forwarded or not), in record order."""
    outcomes: Counter[str]
    """The escalation agent's outcomes."""
    forwarder: Counter[str]
    """What the forwarder did with the escalations: ``forwarded`` or where and why not."""
    triage: Counter[str]
    """Label sets the triage step used, over all records."""
    kbs: Counter[str]
    """Knowledge bases of the retriever's top passage, over all records."""
    seconds: float


class Site:
    """The support workflow's agents, as a process runs them (no broker)."""

    def __init__(self) -> None:
        self.agents = {
            "triage": TriageAgent(), "retriever": RetrieverAgent(), "planner": PlannerAgent(),
            "validator": ValidatorAgent(), "escalation": EscalationAgent(),
        }  # fmt: skip
        self.ctx = AgentContext(site=SITE, worker="bench:1")

    async def setup(self) -> None:
        resources = AgentResources(SITE)
        for agent in self.agents.values():
            await agent.setup(resources)

    async def run(self, item: WorkItem) -> tuple[WorkItem, FinalAnswer]:
        """The work item at the last step and the final answer."""
        step = first_step(item).step
        while step is not None:
            item = msgspec.structs.replace(item, step=step.name)
            out = await self.agents[step_of(item).role].handle(item, self.ctx)
            if isinstance(out, FinalAnswer):
                return item, out
            item = item.with_output(item.step, out)
            step = next_step(item, item.step).step
        raise AssertionError(f"workflow {item.workflow.name!r} ended without a final answer")


async def build(records: Sequence[Record], scanner: PiiScanner, db: str) -> SiteRun:
    started = time.perf_counter()
    router = PolicyRouter(Policy.from_toml(ALL_TO_CLOUD), scanner)
    site = Site()
    await site.setup()
    msg = MsgContext(
        subject="bench",
        headers={},
        stream="bench",
        stream_seq=1,
        num_delivered=1,
        site=SITE,
        role="escalation",
        worker="bench:1",
        data=b"",
    )
    guard = _KeepingGuard(EgressGuard(scanner))
    run = SiteRun([], Counter(), Counter(), Counter(), Counter(), 0.0)
    async with Vault(db, KEY) as vault:
        forwarder = CloudForwarder(
            Subjects(SITE),
            Pseudonymizer(scanner, vault),
            guard,
            _PendingKV(),  # type: ignore[arg-type]
            BoundaryRefs(KEY),
        )
        for start in range(0, len(records), CHUNK):
            chunk = records[start : start + CHUNK]
            decisions = router.decide_many([(r.ticket, r.task_id) for r in chunk])
            for record, decision in zip(chunk, decisions, strict=True):
                now = utcnow()
                env = Envelope(
                    task_id=record.task_id,
                    site=SITE,
                    kind="support_ticket",
                    tenant=record.ticket.tenant,
                    data_class=decision.data_class,
                    submitted_at=now,
                    accepted_at=now,
                )
                item, answer = await site.run(new_item(env, record.ticket, decision))
                run.outcomes[answer.outcome] += 1
                tri = item.output(Triage)
                run.triage[(tri.label_set if tri else "") or "(none)"] += 1
                found = item.output(RetrievalResult)
                run.kbs[found.passages[0].kb if found and found.passages else "(none)"] += 1
                guard.last, guard.blocked = None, False
                try:
                    sent = await forwarder(item, answer, msg)
                except EgressBlocked as exc:
                    types = ",".join(sorted({t for _, t in exc.findings}))
                    where = "guard" if guard.blocked else "forwarder"
                    run.forwarder[f"{'builder' if guard.last is None else where}: {types}"] += 1
                else:
                    if sent is None:
                        continue  # answered on the site
                    run.forwarder["forwarded"] += 1
                if guard.last is not None:
                    run.built.append(Built(record, guard.last))
    run.seconds = time.perf_counter() - started
    return run


# --- scoring ---------------------------------------------------------------------------


def _strings(node: Any) -> Iterator[str]:
    """Every string of a JSON-like tree, dict keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value)


def strings(payload: msgspec.Struct | dict[str, Any]) -> str:
    return "\n".join(_strings(msgspec.to_builtins(payload)))


def carries(payload: msgspec.Struct | dict[str, Any], values: Sequence[str]) -> bool:
    text = strings(payload)
    return any(re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text) for v in values)


def shape(path: str) -> str:
    """``$.steps[0].grounding[1]`` -> ``$.steps[*].grounding[*]``."""
    return _INDEX.sub("[*]", path)


Check = Callable[[msgspec.Struct | dict[str, Any]], list[tuple[str, str]]]


@dataclass
class Config:
    name: str
    check: Check
    seconds: float = 0.0
    results: list[list[tuple[str, str]]] = field(default_factory=list)


def run_configs(configs: Sequence[Config], built: Sequence[Built]) -> None:
    for start in range(0, len(built), CHUNK):
        part = built[start : start + CHUNK]
        for c in configs:
            t0 = time.perf_counter()
            c.results.extend(c.check(b.incident) for b in part)
            c.seconds += time.perf_counter() - t0


def report(configs: Sequence[Config], built: Sequence[Built], split: str) -> None:
    keep = [
        i
        for i, b in enumerate(built)
        if split == "all" or b.record.held_out == (split == "held-out")
    ]
    print(f"\n{split}: {len(keep)} incidents")
    print(f"{'':<40}" + "".join(f"{c.name:>14}" for c in configs))

    def row(label: str, fn: Callable[[Config, int], bool], pct: bool = False) -> None:
        cells = []
        for c in configs:
            k = sum(fn(c, i) for i in keep)
            cells.append(f"{k} ({100 * k / len(keep):.1f}%)" if pct and keep else str(k))
        print(f"{label:<40}" + "".join(f"{x:>14}" for x in cells))

    def blocked(c: Config, i: int) -> bool:
        return bool(c.results[i])

    def true(c: Config, i: int) -> bool:
        return blocked(c, i) and carries(built[i].incident, built[i].record.values)

    row("blocked", blocked, pct=True)
    row("false positives", lambda c, i: blocked(c, i) and not true(c, i), pct=True)
    row("true blocks", true)
    row(
        "leaks (passed, carries a value)",
        lambda c, i: not blocked(c, i) and carries(built[i].incident, built[i].record.values),
    )
    shapes = sorted({shape(p) for c in configs for i in keep for p, _ in c.results[i]})
    for s in shapes:
        row(f"  blocked at {s}", lambda c, i, s=s: any(shape(p) == s for p, _ in c.results[i]))
    row(
        "name-bearing caller ids that left",
        lambda c, i: (
            not blocked(c, i)
            and not built[i].record.task_id.startswith("ho-")
            and built[i].record.task_id in strings(built[i].incident)
        ),
    )


# --- planted values ---------------------------------------------------------------------


LABEL_TO_TYPE = {
    "PERSON": "PERSON", "STREET_ADDRESS": "LOCATION", "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN", "IP_ADDRESS": "IP_ADDRESS",
}  # fmt: skip
"""Corpus label -> the scanner type that finds it (no address recognizer: LOCATION)."""


def plant_values(
    corpus: Sequence[dict[str, Any]], scanner: PiiScanner, quota: dict[str, int]
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """``(type, value)`` from held-out records, round-robin over types: the first values
    the scanner detects in their own record (``quota`` of each type), and the first two
    of each type it does not detect there (beyond any scanner-based guard in free text).
    """
    found: dict[str, list[str]] = {t: [] for t in quota}
    missed: dict[str, list[str]] = {t: [] for t in quota}
    held = [r for n, r in enumerate(corpus) if n % 2 == 1]
    for r, spans in zip(held, scanner.scan_many([r["full_text"] for r in held]), strict=True):
        for s in r["spans"]:
            t, v = s["entity_type"], s["entity_value"].strip()
            if t not in quota or len(v) < 4 or v in found[t] or v in missed[t]:
                continue
            a, b = s["start_position"], s["end_position"]
            hit = any(
                e.entity_type == LABEL_TO_TYPE[t] and e.start < b and a < e.end for e in spans
            )
            if hit and len(found[t]) < quota[t]:
                found[t].append(v)
            elif not hit and len(missed[t]) < 2:
                missed[t].append(v)

    def interleave(by_type: dict[str, list[str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        while any(by_type.values()):
            for t in quota:
                if by_type[t]:
                    out.append((t, by_type[t].pop(0)))
        return out

    return interleave(found), interleave(missed)


def string_fields(info: msgspec.inspect.Type, at: str = "$") -> list[str]:
    """Shapes (``$.steps[*].action``) of every field of ``info`` that holds a string on
    the wire (strings, string literals, date-times), however deep."""
    ins = msgspec.inspect
    if isinstance(info, ins.StrType | ins.LiteralType | ins.DateTimeType):
        return [at]
    if isinstance(info, ins.UnionType):
        return [s for t in info.types for s in string_fields(t, at)]
    if isinstance(info, ins.ListType):
        return string_fields(info.item_type, f"{at}[*]")
    if isinstance(info, ins.StructType):
        return [s for f in info.fields for s in string_fields(f.type, f"{at}.{f.encode_name}")]
    return []


SCHEMA_FIELDS = string_fields(msgspec.inspect.type_info(CloudIncident))
"""Every string field of ``cloud_incident.v2``, from the schema (not from the guard's spec)."""
V1_FIELDS = {
    "$.text": "Customer {} asked for a call back.",
    "$.steps[*].description": "Contact {} before restarting.",
    "$.findings[*].evidence": "syslog: login failure for {}",
}
"""Fields v2 no longer has, as v1 filled them: the value inside a sentence."""
HOLDERS: dict[str, Callable[[], Any]] = {
    "$.findings[*]": lambda: IncidentFinding(kind=get_args(FindingKind)[0]),
    "$.triage": lambda: IncidentTriage(label="other"),
    "$.resolution": lambda: IncidentResolution(kb="banking-faq", doc_kind="faq", doc="a"),
}
"""A valid container for a plant where the host has none (or, for findings, always a
new one: a planted finding is appended)."""


def plant(incident: CloudIncident, where: str, value: str) -> tuple[dict[str, Any], str, str]:
    """A copy of ``incident`` (as JSON) with ``value`` at shape ``where``: appended to
    a list, replacing a field otherwise. Returns the tree, the value's path and its
    key's path (``$.steps[0]{key#4}``, how a closed spec names a field it lacks; empty
    for a list element)."""
    tree: dict[str, Any] = msgspec.to_builtins(incident)  # fresh containers
    text = V1_FIELDS[where].format(value) if where in V1_FIELDS else value
    *inner, leaf = re.findall(r"\.\w+|\[\*\]", where.removeprefix("$"))
    node: Any = tree
    path = done = "$"
    for seg in inner:
        done += seg
        if seg == "[*]":
            if done in HOLDERS:
                node.append(msgspec.to_builtins(HOLDERS[done]()))
            i = len(node) - 1 if done in HOLDERS else 0  # else: the host's first step
            node, path = node[i], f"{path}[{i}]"
        else:
            if node.get(seg[1:]) is None:  # left out as a default: an empty list, or none
                node[seg[1:]] = msgspec.to_builtins(HOLDERS[done]()) if done in HOLDERS else []
            node, path = node[seg[1:]], path + seg
    if leaf == "[*]":
        node.append(text)
        return tree, f"{path}[{len(node) - 1}]", ""
    key = list(node).index(leaf[1:]) if leaf[1:] in node else len(node)
    node[leaf[1:]] = text
    return tree, path + leaf, f"{path}{{key#{key}}}"


def planted(
    configs: Sequence[Config], hosts: Sequence[Built], values: Sequence[tuple[str, str]], title: str
) -> None:
    groups = {
        "v2's fields, the value bare": SCHEMA_FIELDS,
        "v1's prose fields, the value in a sentence": list(V1_FIELDS),
    }
    places = [p for group in groups.values() for p in group]
    print(f"\n{len(values)} {title}, each planted in {len(places)} fields")
    print(f"{'field':<40}" + "".join(f"{c.name:>14}" for c in configs))
    hits: dict[str, Counter[str]] = {c.name: Counter() for c in configs}
    by_type: dict[str, Counter[str]] = {c.name: Counter() for c in configs}
    missed: dict[str, Counter[tuple[str, str]]] = {c.name: Counter() for c in configs}
    for label, group in groups.items():
        print(f"  {label}")
        for where in group:
            for i, (etype, value) in enumerate(values):
                tree, path, key_path = plant(hosts[i % len(hosts)].incident, where, value)
                for c in configs:
                    hit = any(
                        p == path or (p == key_path and t == UNEXPECTED_FIELD)
                        for p, t in c.check(tree)
                    )
                    hits[c.name][where] += hit
                    by_type[c.name][etype] += hit
                    if not hit:
                        missed[c.name][where, etype] += 1
            cells = "".join(f"{f'{hits[c.name][where]}/{len(values)}':>14}" for c in configs)
            print(f"  {where:<38}{cells}")
    total = len(values) * len(places)
    cells = "".join(f"{f'{sum(hits[c.name].values())}/{total}':>14}" for c in configs)
    print(f"{'blocked':<40}{cells}")
    for etype, n in Counter(t for t, _ in values).items():
        cells = "".join(f"{f'{by_type[c.name][etype]}/{n * len(places)}':>14}" for c in configs)
        print(f"  {etype:<38}{cells}")
    last = configs[-1].name  # the guard as the forwarder runs it: list what got past it
    if missed[last]:
        print(f"{last} missed (field type count): " + ", ".join(
            f"{w} {t} {k}" for (w, t), k in sorted(missed[last].items())))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="records of each source")
    args = parser.parse_args()
    records, corpus = load(args.limit)
    analyzer = build_analyzer()
    scanner = PiiScanner(analyzer)
    scanner.scan_many(WARM_UP)
    with tempfile.TemporaryDirectory() as tmp:
        run = asyncio.run(build(records, scanner, f"sqlite+aiosqlite:///{tmp}/vault.db"))
    built = run.built
    held = sum(r.held_out for r in records)
    print(
        f"{len(records)} records ({len(records) - held} development, {held} held out) in "
        f"{run.seconds:.1f} s ({len(records) / run.seconds:.1f} records/s through router, "
        f"workflow, forwarder)\noutcomes {dict(run.outcomes)}; triage label sets "
        f"{dict(run.triage)}; top passage's knowledge base {dict(run.kbs)}\n"
        f"forwarder (real guard): {dict(run.forwarder)}; "
        f"{len(built)} incidents kept"
    )

    fresh = [PiiScanner(analyzer) for _ in range(2)]
    for s in fresh:
        s.scan_many(WARM_UP)
    configs = [
        Config("scan all", EgressGuard(fresh[0], specs={}).findings),
        Config("field spec", EgressGuard(fresh[1]).findings),
    ]
    run_configs(configs, built)
    for split in ("development", "held-out", "all"):
        report(configs, built, split)
    print(
        f"\n{'time per incident (ms)':<40}"
        + "".join(f"{1000 * c.seconds / max(1, len(built)):>14.3f}" for c in configs)
    )
    for c in configs:
        types = Counter(t for r in c.results for _, t in r)
        print(f"{c.name}: finding types {dict(types)}")

    hosts = [
        b
        for b, *res in zip(built, *(c.results for c in configs), strict=True)
        if b.record.held_out and not any(res) and b.incident.steps
    ]
    detected, undetected = plant_values(corpus, scanner, PLANT_TYPES)
    if not hosts or not detected:
        print("\nplanted: no clean held-out incident to plant into (raise --limit)")
        return
    print(
        f"\nplanted into {len(hosts)} held-out incidents that every configuration passes "
        "(blocked = the guard names the planted path)"
    )
    planted(configs, hosts, detected, "values the scanner detects in their own record")
    planted(configs, hosts, undetected, "values the scanner misses even in their own record")


if __name__ == "__main__":
    main()
