"""Pseudonymisation at ingest: identifiers in past cases become typed placeholders.

Past cases are real customer messages. Before one is stored in a knowledge base
(bundled or ``sitemesh kb add``), every identifier in its text and its answer is
replaced by a placeholder naming its type (``<PERSON>``, ``<EMAIL_ADDRESS>``,
``<PHONE_NUMBER>``, ``<URL>``, ``<HANDLE>``...), without a number and without a
mapping: unlike the per-task :class:`sitemesh.policy.Pseudonymizer`, nothing here
is ever restored, so nothing is kept.

Two detectors, merged (overlaps: the longest span wins, then the highest score;
:func:`sitemesh.policy.pick_spans`):

* patterns, score 1.0: e-mail addresses, URLs (also ``https: //host``), @handles
  and phone numbers (the patterns of :mod:`sitemesh.knowledge`'s text module, the
  ones the retriever strips from queries), an identifier the customer states ("my
  online id is ...": :data:`SELF_ID_RE`, ``<USER_ID>``), plus every exact
  occurrence of values the caller knows to be identifiers (a case's customer handle
  written without ``@``);
* Presidio through :class:`sitemesh.policy.PiiScanner` (offline, its default entity
  set: PERSON, LOCATION, PHONE_NUMBER, CREDIT_CARD, IBAN_CODE, IP_ADDRESS, ...).

The article URL a case was resolved with is the one thing kept: spans that overlap
one of the ``keep`` strings are not replaced. The privacy path fails closed: an
analyzer error raises :class:`~sitemesh.errors.PiiAnalyzerError` and nothing is
stored.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Final

from ._text import EMAIL_RE, HANDLE_RE, PHONE_RE, URL_RE

if TYPE_CHECKING:
    from ..policy import DetectedEntity, PiiScanner

HANDLE: Final = "HANDLE"
"""Placeholder type of a social-media handle (Presidio has no such entity)."""

SELF_ID_RE: Final = re.compile(
    r"(?i)\bmy\s+(?:[\w-]+\s+)?(?:id|name|username|user\s?name|gamertag|gamer\s?tag|tag|"
    r"handle)\s+is\b\s*[:\"'“]?\s*([^\s\"'”,;!?]*[^\s\"'”,;!?.])"
)
"""A customer stating an identifier: "my online id is iamfunny10", "my name is X"; the
value (group 1) becomes ``<USER_ID>``."""

_PATTERNS: Final = (
    ("EMAIL_ADDRESS", EMAIL_RE),
    ("URL", URL_RE),
    (HANDLE, HANDLE_RE),
    ("PHONE_NUMBER", PHONE_RE),
)


class Pseudonymiser:
    """Replaces identifiers with typed placeholders (see the module docstring).

    Args:
        scanner: the Presidio scanner; ``None``: a :class:`sitemesh.policy.PiiScanner`
            with its defaults, built on first use (about 2 s).
    """

    def __init__(self, scanner: PiiScanner | None = None) -> None:
        self._scanner = scanner

    @property
    def scanner(self) -> PiiScanner:
        """The Presidio scanner (built on first access)."""
        if self._scanner is None:
            from ..policy import PiiScanner

            self._scanner = PiiScanner()
        return self._scanner

    def pseudonymise_many(
        self,
        texts: Sequence[str],
        *,
        keep: Sequence[Sequence[str]] | None = None,
        known: Sequence[Sequence[str]] | None = None,
    ) -> list[str]:
        """Pseudonymise many texts in one Presidio batch.

        Args:
            texts: the texts.
            keep: per text, substrings to leave as they are (the case's article URL).
            known: per text, values that are identifiers whatever the detectors say
                (replaced as ``<HANDLE>``), e.g. the customer's handle without ``@``.

        Returns:
            One text per input, in order, every detected span replaced by ``<TYPE>``.

        Raises:
            PiiAnalyzerError: Presidio failed (fail closed).
            ValueError: ``keep`` or ``known`` has another length than ``texts``.
        """
        from ..policy import DetectedEntity, pick_spans

        keeps = list(keep) if keep is not None else [() for _ in texts]
        knowns = list(known) if known is not None else [() for _ in texts]
        if len(keeps) != len(texts) or len(knowns) != len(texts):
            raise ValueError("keep and known need one entry per text")
        found = self.scanner.scan_many(list(texts))
        out: list[str] = []
        for text, detected, kept, values in zip(texts, found, keeps, knowns, strict=True):
            spans: list[DetectedEntity] = list(detected)
            for entity_type, pattern in _PATTERNS:
                spans += [
                    DetectedEntity(entity_type, m.start(), m.end(), 1.0)
                    for m in pattern.finditer(text)
                ]
            spans += [
                DetectedEntity("USER_ID", m.start(1), m.end(1), 1.0)
                for m in SELF_ID_RE.finditer(text)
            ]
            spans += _occurrences(text, values, HANDLE)
            protected = [r for k in kept if k for r in _ranges(text, k)]
            spans = [s for s in spans if not any(s.start < e and b < s.end for b, e in protected)]
            out.append(_rewrite(text, pick_spans(spans)))
        return out

    def pseudonymise(self, text: str, *, keep: Sequence[str] = ()) -> str:
        """One text (see :meth:`pseudonymise_many`)."""
        return self.pseudonymise_many([text], keep=[keep])[0]


def _ranges(text: str, value: str) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    start = text.find(value)
    while start != -1:
        out.append((start, start + len(value)))
        start = text.find(value, start + len(value))
    return out


def _occurrences(text: str, values: Sequence[str], entity_type: str) -> list[DetectedEntity]:
    from ..policy import DetectedEntity

    lowered = text.lower()
    spans = []
    for value in values:
        if len(value) < 3:
            continue
        for b, e in _ranges(lowered, value.lower()):
            before = text[b - 1] if b > 0 else " "
            after = text[e] if e < len(text) else " "
            if not (before.isalnum() or before == "_") and not (after.isalnum() or after == "_"):
                spans.append(DetectedEntity(entity_type, b, e, 1.0))
    return spans


def _rewrite(text: str, spans: Sequence[DetectedEntity]) -> str:
    parts: list[str] = []
    last = 0
    for s in spans:
        parts.append(text[last : s.start])
        parts.append(f"<{s.entity_type}>")
        last = s.end
    parts.append(text[last:])
    return "".join(parts)
