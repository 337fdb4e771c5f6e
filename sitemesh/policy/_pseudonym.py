"""Reversible pseudonymisation: typed placeholders out, originals back in on the site.

:class:`Pseudonymizer` replaces every detected entity with a typed placeholder
(``<PERSON_1>``, ``<EMAIL_ADDRESS_2>``) before an event may leave for a cloud
agent (DESIGN.md section 6), and restores the originals in the cloud's answer.
Placeholders are stable per task: the mapping is loaded from the
:class:`~sitemesh.policy.Vault` first, so the same value gets the same
placeholder in every text and every call of the task.

Replacement is done here rather than with Presidio's ``AnonymizerEngine``: the
anonymizer's operators see one text at a time and know nothing of the task-wide
mapping, and the second pass below (exact re-occurrences) is outside its model.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ..errors import PiiAnalyzerError
from ._pii import DetectedEntity, PiiScanner
from ._vault import Vault

__all__ = ["PLACEHOLDER_RE", "Pseudonymized", "Pseudonymizer", "pick_spans", "restore"]

log = logging.getLogger(__name__)

PLACEHOLDER_RE: Final = re.compile(r"<([A-Z][A-Z0-9_]*?)_([1-9][0-9]*)>")
"""A placeholder: ``<`` entity type ``_`` positive index ``>``."""

MIN_RECALL_VALUE_CHARS: Final = 2
"""Values shorter than this (in characters) are not searched for again un-detected."""

_MAX_ATTEMPTS: Final = 5

_LOCK_STRIPES: Final = 64
"""In-process locks, by task id hash: calls for one task never interleave."""


@dataclass(frozen=True, slots=True)
class Pseudonymized:
    """The result of :meth:`Pseudonymizer.pseudonymize`."""

    texts: dict[str, str]
    """The input texts, same keys, with every detected value replaced."""
    mapping: dict[str, str] = field(repr=False)
    """placeholder → original value, for every placeholder of the task so far."""
    replaced: dict[str, int] = field(default_factory=dict)
    """entity type → number of spans replaced in these texts (no values)."""


def pick_spans(entities: Iterable[DetectedEntity]) -> list[DetectedEntity]:
    """Non-overlapping entities: the longest wins, then the highest score, then the first.

    Args:
        entities: detections of one text, possibly overlapping.

    Returns:
        The kept entities, ordered by start offset.
    """
    ranked = sorted(entities, key=lambda e: (-(e.end - e.start), -e.score, e.start))
    kept: list[DetectedEntity] = []
    for e in ranked:
        if all(e.end <= k.start or k.end <= e.start for k in kept):
            kept.append(e)
    kept.sort(key=lambda e: e.start)
    return kept


def restore(text: str, mapping: Mapping[str, str]) -> tuple[str, list[str]]:
    """Replace known placeholders in ``text`` with their originals.

    Args:
        text: text that may contain placeholders (e.g. a cloud model's answer).
        mapping: placeholder → original value.

    Returns:
        ``(restored text, unknown placeholders)``; unknown placeholders are left
        in the text as they are and listed once each, in order of appearance.
    """
    unknown: list[str] = []

    def sub(m: re.Match[str]) -> str:
        ph = m.group(0)
        value = mapping.get(ph)
        if value is None:
            if ph not in unknown:
                unknown.append(ph)
            return ph
        return value

    return PLACEHOLDER_RE.sub(sub, text), unknown


def _recall_pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    """One alternation of every known value, longest first, not inside longer words."""
    parts = []
    wanted = {v for v in values if len(v.strip()) >= MIN_RECALL_VALUE_CHARS}
    for v in sorted(wanted, key=len, reverse=True):
        left = r"(?<!\w)" if (v[0].isalnum() or v[0] == "_") else ""
        right = r"(?!\w)" if (v[-1].isalnum() or v[-1] == "_") else ""
        parts.append(f"{left}{re.escape(v)}{right}")
    return re.compile("|".join(parts)) if parts else None


def _occurrences(text: str, known: Mapping[str, Sequence[str]]) -> list[DetectedEntity]:
    """Spans of every occurrence of each known value in ``text`` (score 1.0)."""
    spans: list[DetectedEntity] = []
    for entity_type, values in known.items():
        for value in values:
            if not value:
                continue
            start = text.find(value)
            while start != -1:
                spans.append(DetectedEntity(entity_type, start, start + len(value), 1.0))
                start = text.find(value, start + len(value))
    return spans


class Pseudonymizer:
    """Replaces PII with stable, typed placeholders and restores it afterwards.

    Args:
        scanner: finds the entities (its entity set and score floors decide what
            is replaced).
        vault: where mappings live; ``None``: an in-process dict (tests and
            development only: mappings are lost on restart).

    Scanning is synchronous CPU work (a few ms per text); call from a worker
    thread if the event loop must stay responsive.
    """

    def __init__(self, scanner: PiiScanner, vault: Vault | None = None) -> None:
        self._scanner = scanner
        self._vault = vault
        self._memory: dict[str, dict[str, str]] = {}
        self._locks = [asyncio.Lock() for _ in range(_LOCK_STRIPES)]

    async def _load(self, task_id: str) -> dict[str, str]:
        if self._vault is None:
            return dict(self._memory.get(task_id, {}))
        return await self._vault.get(task_id)

    async def _store(self, task_id: str, new: dict[str, str]) -> dict[str, str]:
        if self._vault is None:
            mem = self._memory.setdefault(task_id, {})
            for ph, value in new.items():
                mem.setdefault(ph, value)
            return dict(mem)
        await self._vault.put(task_id, new)
        return await self._vault.get(task_id)

    async def pseudonymize(
        self,
        task_id: str,
        texts: Mapping[str, str],
        *,
        known: Mapping[str, Sequence[str]] | None = None,
    ) -> Pseudonymized:
        """Replace detected PII in ``texts`` with placeholders stable within the task.

        Detected spans are replaced (overlaps: longest, then highest score wins);
        then every other exact occurrence of any value known for the task (this
        call's or an earlier one's) is replaced too, so a name detected once is
        caught where the model missed it.

        Args:
            task_id: the task; placeholders are numbered per task and type.
            texts: field name → text, e.g. ``{"title": ..., "body": ...}``.
            known: entity type → values that are personal data whatever the model
                says (structured identifiers such as a ticket's ``customer`` handle:
                ``{"CUSTOMER_ID": ["jsmith"]}``); every occurrence is replaced.

        Returns:
            The pseudonymised texts and the task's mapping.

        Raises:
            PiiAnalyzerError: the scanner failed; nothing is returned (fail closed).
            VaultKeyError: the task's stored mapping cannot be decrypted.
            sqlalchemy.exc.SQLAlchemyError: the vault's database failed.
        """
        keys = list(texts)
        values = [texts[k] for k in keys]
        try:
            detections = self._scanner.scan_many(values)
        except PiiAnalyzerError:
            raise
        except Exception as exc:
            raise PiiAnalyzerError(
                f"PII analysis failed ({type(exc).__name__}); the task stays on site"
            ) from exc
        if known:
            detections = [
                [*found, *_occurrences(text, known)]
                for text, found in zip(values, detections, strict=True)
            ]
        picks = [
            _outside_placeholders(text, pick_spans(found))
            for text, found in zip(values, detections, strict=True)
        ]
        lock = self._locks[hash(task_id) % _LOCK_STRIPES]
        async with lock:
            mapping = await self._load(task_id)
            for _ in range(_MAX_ATTEMPTS):
                new = self._assign(mapping, values, picks)
                if not new:
                    break
                stored = await self._store(task_id, new)
                if all(stored.get(ph) == v for ph, v in new.items()):
                    mapping = stored
                    break
                mapping = stored  # another writer took some placeholders: renumber
            else:
                raise RuntimeError(f"could not store the pseudonym mapping of task {task_id}")
        by_value: dict[str, str] = {}
        for ph, v in sorted(mapping.items(), key=lambda kv: _order(kv[0])):
            by_value.setdefault(v, ph)
        pattern = _recall_pattern(by_value)
        replaced: dict[str, int] = {}
        out: dict[str, str] = {}
        for key, text, spans in zip(keys, values, picks, strict=True):
            out[key] = _rewrite(text, spans, by_value, pattern, replaced)
        return Pseudonymized(texts=out, mapping=mapping, replaced=replaced)

    @staticmethod
    def _assign(
        mapping: Mapping[str, str], texts: Sequence[str], picks: Sequence[list[DetectedEntity]]
    ) -> dict[str, str]:
        """Placeholders for detected values not yet in ``mapping`` (numbered per type)."""
        known = set(mapping.values())
        counters: dict[str, int] = {}
        for ph in mapping:
            m = PLACEHOLDER_RE.fullmatch(ph)
            if m:
                counters[m.group(1)] = max(counters.get(m.group(1), 0), int(m.group(2)))
        new: dict[str, str] = {}
        for text, spans in zip(texts, picks, strict=True):
            for e in spans:
                value = text[e.start : e.end]
                if value in known:
                    continue
                known.add(value)
                counters[e.entity_type] = counters.get(e.entity_type, 0) + 1
                new[f"<{e.entity_type}_{counters[e.entity_type]}>"] = value
        return new

    async def reidentify(self, task_id: str, text: str) -> str:
        """Put the task's original values back in place of its placeholders.

        Args:
            task_id: the task whose mapping to use.
            text: e.g. a cloud agent's answer.

        Returns:
            The text with every known placeholder replaced by its original value;
            unknown placeholders are left as they are and logged (names only).

        Raises:
            VaultKeyError: the task's mapping cannot be decrypted.
            sqlalchemy.exc.SQLAlchemyError: the vault's database failed.
        """
        if PLACEHOLDER_RE.search(text) is None:
            return text
        restored, unknown = restore(text, await self._load(task_id))
        if unknown:
            log.warning(
                "task %s: %d unknown placeholder(s) left as-is: %s",
                task_id,
                len(unknown),
                ", ".join(unknown[:10]),
            )
        return restored


def _outside_placeholders(text: str, spans: list[DetectedEntity]) -> list[DetectedEntity]:
    """``spans`` minus those overlapping a placeholder already in ``text``."""
    taken = [m.span() for m in PLACEHOLDER_RE.finditer(text)]
    if not taken:
        return spans
    return [e for e in spans if not any(e.start < b and a < e.end for a, b in taken)]


def _order(placeholder: str) -> tuple[str, int]:
    m = PLACEHOLDER_RE.fullmatch(placeholder)
    return (m.group(1), int(m.group(2))) if m else (placeholder, 0)


def _rewrite(
    text: str,
    spans: list[DetectedEntity],
    by_value: Mapping[str, str],
    pattern: re.Pattern[str] | None,
    replaced: dict[str, int],
) -> str:
    """``text`` with detected spans and re-occurrences of known values replaced, in one pass."""
    cuts: list[tuple[int, int, str]] = []
    for e in spans:
        ph = by_value[text[e.start : e.end]]
        cuts.append((e.start, e.end, ph))
    if pattern is not None:
        taken = [(s, t) for s, t, _ in cuts]
        taken.extend(m.span() for m in PLACEHOLDER_RE.finditer(text))
        for m in pattern.finditer(text):
            s, t = m.span()
            if any(s < b and a < t for a, b in taken):
                continue
            cuts.append((s, t, by_value[m.group(0)]))
    if not cuts:
        return text
    cuts.sort()
    parts: list[str] = []
    pos = 0
    for s, t, ph in cuts:
        parts.append(text[pos:s])
        parts.append(ph)
        pos = t
        kind = _order(ph)[0]
        replaced[kind] = replaced.get(kind, 0) + 1
    parts.append(text[pos:])
    return "".join(parts)
