"""Ticket text as the classifiers see it, and the deterministic held-out split."""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Final

HELD_OUT_SHARE: Final = 0.2
"""Share of the examples :func:`held_out` sets aside by default (1 in 5)."""

_BUCKETS: Final = 10_000
"""Buckets of the split digest; a multiple of 5, so share 0.2 is exactly ``digest % 5 == 0``."""


def normalise(text: str) -> str:
    """The form of ``text`` the split hashes: Unicode NFKC, case-folded, every run of
    whitespace one space, no leading or trailing space.

    Args:
        text: any text.

    Returns:
        The normalised text (two texts that differ only in case or spacing give the
        same string, so duplicates fall on the same side of the split).
    """
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def ticket_text(title: str, body: str) -> str:
    """What the triage models classify for a ticket: title, a newline, body, stripped.

    The bundled Endava examples are built the same way from their ``title`` and
    ``body`` columns, so a ticket and its training example hash alike in
    :func:`held_out`.

    Args:
        title: the ticket's subject line (may be empty).
        body: the ticket text.
    """
    return f"{title}\n{body}".strip()


def split_digest(text: str) -> int:
    """SHA-256 of ``normalise(text)`` (UTF-8) as a non-negative integer."""
    return int.from_bytes(hashlib.sha256(normalise(text).encode("utf-8")).digest(), "big")


def held_out(text: str, *, share: float = HELD_OUT_SHARE) -> bool:
    """Whether ``text`` belongs to the held-out (test) part of a label set.

    The split is a pure function of the normalised text, the same in every process,
    run and machine: the bundled models train on the rest, ``bench/triage.py`` and
    the demo's labelled tickets use the held-out part, and ``sitemesh triage train``
    reports its figures on it. With the default share (0.2) a text is held out
    exactly when ``sha256(normalise(text)) % 5 == 0``. For another share the digest
    modulo 10 000 is ranked by ``(bucket % 5, bucket // 5)`` and the first
    ``share * 10 000`` ranks are held out, so a larger share only adds rows to a
    smaller share's held-out part.

    Args:
        text: the example or ticket text (see :func:`ticket_text`).
        share: the held-out share, 0..1.

    Returns:
        ``True`` for a held-out text.

    Raises:
        ValueError: ``share`` is outside 0..1.
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be within 0..1, not {share}")
    bucket = split_digest(text) % _BUCKETS
    rank = (bucket % 5) * (_BUCKETS // 5) + bucket // 5
    return rank < round(share * _BUCKETS)
