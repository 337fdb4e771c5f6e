"""The egress guard: false positives before and after the field spec, same run.

Corpus: the 1,500 labelled presidio-research records (``tests/data/pii-presidio``,
MIT) and the 360 real tickets of ``examples/data/tickets.jsonl`` (IBM Twitter
customer care, Apache-2.0; Endava help desk, MIT), one ``SupportTicket`` each.
Records are numbered in that order; **even numbers are the development half**
(looked at while writing the guard's placeholder rule), **odd numbers are held
out**: nothing was tuned on them. The field spec itself is derived from the schemas,
not from the corpus.

Every record goes through what a site runs, in process: ``PolicyRouter`` (real
scanner, an all-to-cloud test policy as in ``tests/test_boundary_e2e.py``, so every
escalated ticket is forwarded: the guard's worst case), the built-in retriever,
planner, validator and escalation agents over the packaged knowledge base, then the
real ``CloudForwarder`` with a real ``Pseudonymizer`` + ``Vault`` (temp SQLite) and
``BoundaryRefs``. Its guard is replaced by one that records the finished incident,
which is then checked by each configuration below.

Task ids are caller-chosen, held-out style: ``ho-gl-<n>`` (5 in 10), ``ho-<n>``
(4 in 10) and name-bearing ones from the issue (1 in 10: ``maria-garcia-refund-2``,
``JohnSmith-ticket``, ``priya-raghunathan``, ``jdoe-at-example-com``, then suffixed).

Configurations (each with its own fresh scanner, timed in interleaved chunks):

* ``before``: the caller's task id in ``task_id``; the guard as in git HEAD (every
  string scanned; a detection counts unless it lies inside a placeholder), copied
  here as :func:`head_findings`;
* ``ref only``: the opaque reference in ``task_id``, HEAD's guard (what wiring the
  reference without a field spec would do);
* ``after``: the reference, and ``EgressGuard`` as it is now (field spec of
  ``cloud_incident.v1``, placeholder rule).

A block is a **true block** when the incident carries a labelled value of its record:
for presidio records a span of a type that identifies a person (the e2e test's
``CHECKED`` set, values of 4+ characters, word-bounded); for the real tickets the
customer's handle and any e-mail address in the ticket (the only PII the corpus
documents). Any other block is a **false positive**; a *leak* is an incident that
passes although it carries such a value.

Planted: 30 labelled values of 8 types from held-out presidio records, the first of
each type that the scanner detects in their own record (what a scanner-based guard
is there to catch), are written into copies of held-out incidents that every
configuration passes: 18 into free text (``text``, ``reasons``, a step description,
a finding's evidence, inside a sentence), 12 as platform fields (``runbook``,
``rule_id``, a step's ``action``, a grounding id, bare). A plant counts as blocked
when the guard names its path. Then the same for the first values of each type the
scanner misses even in their own record: no scanner catches those in free text, the
field formats still do.

Usage: ``python bench/guard.py [--limit N]`` (N records of each source). No network.
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
from typing import Any

import msgspec

from sitemesh.agents import (
    AgentContext,
    EscalationAgent,
    PlannerAgent,
    RetrieverAgent,
    ValidatorAgent,
    default_kb,
)
from sitemesh.bus import MsgContext, Subjects
from sitemesh.edge_node import CloudForwarder
from sitemesh.errors import EgressBlocked
from sitemesh.policy import (
    PLACEHOLDER_RE,
    BoundaryRefs,
    EgressGuard,
    PiiScanner,
    Policy,
    PolicyRouter,
    Pseudonymizer,
    Vault,
    build_analyzer,
)
from sitemesh.schemas import CloudIncident, Envelope, Finding, SupportTicket, utcnow
from sitemesh.workflows import new_item

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
PLACES = ("text", "reasons", "step", "evidence", "runbook", "rule_id", "reasons", "step",
          "evidence", "rule_id", "text", "runbook", "step", "action", "grounding")  # fmt: skip
"""Where the i-th planted value goes (cycled): per 15, 9 in free text and 6 in platform fields."""
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")


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
    corpus = json.loads(CORPUS.read_text(encoding="utf-8"))[:limit]
    tickets = [json.loads(line) for line in TICKETS.read_text(encoding="utf-8").splitlines()]
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


# --- the guard as in git HEAD ------------------------------------------------------


def _head_walk(node: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for i, (key, value) in enumerate(node.items()):
            name = str(key)
            seg = f".{name}" if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}", name) else f"[#{i}]"
            yield f"{path}{{key#{i}}}", name
            yield from _head_walk(value, path + seg)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from _head_walk(value, f"{path}[{i}]")


def head_findings(scanner: PiiScanner, payload: msgspec.Struct) -> list[tuple[str, str]]:
    """``EgressGuard.findings`` as in git HEAD (fd870f3): every string scanned."""
    pairs = [
        (p, t)
        for p, t in _head_walk(msgspec.to_builtins(payload), "$")
        if PLACEHOLDER_RE.sub("", t).strip()
    ]
    out = []
    for (path, text), found in zip(pairs, scanner.scan_many([t for _, t in pairs]), strict=True):
        spans = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
        for e in found:
            if not any(a <= e.start and e.end <= b for a, b in spans):
                out.append((path, e.entity_type))
    return out


# --- building the incidents ----------------------------------------------------------


class _Recorder:
    """Stands in for the forwarder's guard: keeps the finished incident."""

    def __init__(self) -> None:
        self.last: CloudIncident | None = None

    def check(self, payload: msgspec.Struct) -> None:
        assert isinstance(payload, CloudIncident)
        self.last = payload


class _PendingKV:
    async def put(self, key: str, value: bytes) -> int:
        return 1


@dataclass
class Built:
    record: Record
    after: CloudIncident
    before: CloudIncident
    forwarder_blocked: bool


async def build(
    records: Sequence[Record], scanner: PiiScanner, db: str
) -> tuple[list[Built], dict[str, int]]:
    router = PolicyRouter(Policy.from_toml(ALL_TO_CLOUD), scanner)
    kb = default_kb()
    agents = [
        ("retrieve", RetrieverAgent(kb)),
        ("plan", PlannerAgent(kb=kb)),
        ("validate", ValidatorAgent()),
    ]
    escalation = EscalationAgent()
    ctx = AgentContext(site=SITE, worker="bench:1")
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
    key = KEY
    recorder = _Recorder()
    outcomes: Counter[str] = Counter()
    built: list[Built] = []
    async with Vault(db, key) as vault:
        forwarder = CloudForwarder(
            Subjects(SITE),
            Pseudonymizer(scanner, vault),
            recorder,
            _PendingKV(),  # type: ignore[arg-type]
            BoundaryRefs(key),
        )
        refs = BoundaryRefs(key)
        for start in range(0, len(records), 64):
            chunk = records[start : start + 64]
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
                item = new_item(env, record.ticket, decision)
                for step, agent in agents:
                    item = item.with_output(step, await agent.handle(item, ctx))
                answer = await escalation.handle(item, ctx)
                outcomes[answer.outcome] += 1
                recorder.last = None
                blocked = False
                try:
                    await forwarder(item, answer, msg)
                except EgressBlocked:
                    blocked = True  # a structured identifier in the wire: the forwarder's check
                if recorder.last is None:
                    continue
                after = recorder.last
                if after.task_id == record.task_id:  # a forwarder not yet using references
                    after = msgspec.structs.replace(after, task_id=refs.ref(SITE, record.task_id))
                before = msgspec.structs.replace(after, task_id=record.task_id)
                built.append(Built(record, after, before, blocked))
    return built, dict(outcomes)


# --- scoring ---------------------------------------------------------------------------


def strings(payload: msgspec.Struct) -> str:
    return "\n".join(t for _, t in _head_walk(msgspec.to_builtins(payload), "$"))


def carries(payload: msgspec.Struct, values: Sequence[str]) -> bool:
    text = strings(payload)
    return any(re.search(rf"(?<!\w){re.escape(v)}(?!\w)", text) for v in values)


def path_class(path: str) -> str:
    if path == "$.task_id":
        return "task_id"
    if re.fullmatch(r"\$\.steps\[\d+\]\.description", path):
        return "runbook text"
    if path == "$.runbook":
        return "runbook id"
    return "other"


Check = Callable[[msgspec.Struct], list[tuple[str, str]]]


@dataclass
class Config:
    name: str
    check: Check
    pick: Callable[[Built], CloudIncident]
    seconds: float = 0.0
    results: list[list[tuple[str, str]]] = field(default_factory=list)


def run_configs(configs: Sequence[Config], built: Sequence[Built], chunk: int = 64) -> None:
    for start in range(0, len(built), chunk):
        part = built[start : start + chunk]
        for c in configs:
            t0 = time.perf_counter()
            c.results.extend(c.check(c.pick(b)) for b in part)
            c.seconds += time.perf_counter() - t0


def report(configs: Sequence[Config], built: Sequence[Built], split: str) -> None:
    keep = [
        i
        for i, b in enumerate(built)
        if split == "all" or b.record.held_out == (split == "held-out")
    ]
    print(f"\n{split}: {len(keep)} incidents")
    head = f"{'':<34}" + "".join(f"{c.name:>12}" for c in configs)
    print(head)

    def row(label: str, fn: Callable[[Config, int], bool], pct: bool = False) -> None:
        cells = []
        for c in configs:
            k = sum(fn(c, i) for i in keep)
            cells.append(f"{k} ({100 * k / len(keep):.1f}%)" if pct and keep else str(k))
        print(f"{label:<34}" + "".join(f"{x:>12}" for x in cells))

    def blocked(c: Config, i: int) -> bool:
        return bool(c.results[i])

    def true(c: Config, i: int) -> bool:
        return blocked(c, i) and carries(c.pick(built[i]), built[i].record.values)

    row("blocked", blocked, pct=True)
    row("false positives", lambda c, i: blocked(c, i) and not true(c, i), pct=True)
    row("true blocks", true)
    row(
        "leaks (passed, carries a value)",
        lambda c, i: not blocked(c, i) and carries(c.pick(built[i]), built[i].record.values),
    )

    def at(cls: str) -> Callable[[Config, int], bool]:
        return lambda c, i: any(path_class(p) == cls for p, _ in c.results[i])

    for cls in ("task_id", "runbook text", "runbook id", "other"):
        row(f"  blocked at {cls}", at(cls))
    row(
        "name-bearing caller ids that left",
        lambda c, i: (
            not blocked(c, i)
            and not built[i].record.task_id.startswith("ho-")
            and built[i].record.task_id in strings(c.pick(built[i]))
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


def plant(incident: CloudIncident, place: str, value: str) -> tuple[CloudIncident, str]:
    """A copy of ``incident`` with ``value`` smuggled in at ``place``; its JSON path."""
    replace = msgspec.structs.replace
    steps = incident.steps or []
    if place == "text":
        return replace(incident, text=f"{incident.text} (customer: {value})"), "$.text"
    if place == "reasons":
        return replace(
            incident, reasons=[f"customer {value} asked for a call back", *incident.reasons]
        ), "$.reasons[0]"
    if place == "evidence":
        extra = Finding(
            kind="log_pattern", device="leaf7", evidence=f"syslog: login failure for {value}"
        )
        k = len(incident.findings)
        return replace(incident, findings=[*incident.findings, extra]), f"$.findings[{k}].evidence"
    if place == "runbook":
        return replace(incident, runbook=value), "$.runbook"
    if place == "rule_id":
        return replace(incident, rule_id=value), "$.rule_id"
    first = steps[0]
    if place == "step":
        s = replace(first, description=f"{first.description} Contact {value} before restarting.")
        return replace(incident, steps=[s, *steps[1:]]), "$.steps[0].description"
    if place == "action":
        return replace(
            incident, steps=[replace(first, action=value), *steps[1:]]
        ), "$.steps[0].action"
    s = replace(first, grounding=[value])
    return replace(incident, steps=[s, *steps[1:]]), "$.steps[0].grounding[0]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="records of each source")
    args = parser.parse_args()
    records, corpus = load(args.limit)
    analyzer = build_analyzer()
    scanner = PiiScanner(analyzer)
    scanner.scan_many(["warm-up: Ada Lovelace, ada@example.org, +1 212 555 0100"])
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        built, outcomes = asyncio.run(
            build(records, scanner, f"sqlite+aiosqlite:///{tmp}/vault.db")
        )
        build_s = time.perf_counter() - t0
    held = sum(r.held_out for r in records)
    print(
        f"{len(records)} records ({len(records) - held} development, {held} held out): "
        f"outcomes {outcomes}; {len(built)} incidents built in {build_s:.1f} s "
        f"({len(records) / build_s:.0f} records/s through router, agents, forwarder); "
        f"forwarder's structured-id check blocked {sum(b.forwarder_blocked for b in built)}"
    )

    fresh = [PiiScanner(analyzer) for _ in range(4)]
    for s in fresh:
        s.scan_many(["warm-up: Ada Lovelace, ada@example.org, +1 212 555 0100"])
    kb = default_kb()
    words = EgressGuard.vocabulary_of(f"{s.title}\n{s.section}\n{s.text}" for s in kb.sections)
    configs = [
        Config("before", lambda p: head_findings(fresh[0], p), lambda b: b.before),
        Config("ref only", lambda p: head_findings(fresh[1], p), lambda b: b.after),
        Config("after", EgressGuard(fresh[2]).findings, lambda b: b.after),
        Config("after+vocab", EgressGuard(fresh[3], vocabulary=words).findings, lambda b: b.after),
    ]
    run_configs(configs, built)
    for split in ("development", "held-out", "all"):
        report(configs, built, split)
    print(
        f"\n{'throughput (incidents/s)':<34}"
        + "".join(f"{len(built) / c.seconds:>12.0f}" for c in configs)
    )
    for c in configs:
        types = Counter(t for r in c.results for _, t in r)
        print(f"{c.name}: finding types {dict(types)}")

    hosts = [
        b
        for b, *res in zip(built, *(c.results for c in configs), strict=True)
        if b.record.held_out and not any(res) and b.after.steps
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


def planted(
    configs: Sequence[Config], hosts: Sequence[Built], values: Sequence[tuple[str, str]], title: str
) -> None:
    print(f"\n{len(values)} {title}")
    print(f"{'type':<16} {'place':<10}" + "".join(f"{c.name:>12}" for c in configs))
    totals: Counter[str] = Counter()
    places: Counter[str] = Counter()
    for i, (etype, value) in enumerate(values):
        host = hosts[i % len(hosts)]
        place = PLACES[i % len(PLACES)]
        places[place] += 1
        cells = []
        for c in configs:
            incident, path = plant(c.pick(host), place, value)
            hit = any(p == path for p, _ in c.check(incident))
            totals[c.name] += hit
            cells.append("blocked" if hit else "MISSED")
        print(f"{etype:<16} {place:<10}" + "".join(f"{x:>12}" for x in cells))
    print(f"{'blocked':<27}" + "".join(f"{f'{totals[c.name]}/{len(values)}':>12}" for c in configs))
    print(f"places: {dict(places)}")


if __name__ == "__main__":
    main()
