"""PII masking for what a viewer sees: each entity Presidio finds becomes ``<TYPE>``.

Uses the same analyzer as the site's router (:func:`sitemesh.policy.find_pii`; loading
it takes a few seconds, once per process, so the console warms it in a thread at
start). Fails closed: when the analyzer fails, the whole text is withheld.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Final

log = logging.getLogger("sitemesh.console")

WITHHELD: Final = "[withheld: the PII analyzer failed, so this text cannot be shown masked]"


MASK_CACHE: Final = 4096
"""Masked texts kept per process (a queue page masks the same texts at every refresh)."""


def mask_text(text: str) -> str:
    """``text`` with every detected entity replaced by ``<ENTITY_TYPE>``, or
    :data:`WITHHELD` when the analyzer fails (not cached: the next view tries again)."""
    if not text.strip():
        return text
    try:
        return _masked(text)
    except Exception:  # fail closed: never show the raw text instead
        log.exception("PII analyzer failed; text withheld")
        return WITHHELD


@functools.lru_cache(maxsize=MASK_CACHE)
def _masked(text: str) -> str:
    from ..policy import find_pii

    entities = find_pii(text)
    out, last = [], 0
    for e in sorted(entities, key=lambda e: e.start):
        if e.start < last:  # overlapping spans: the first one already covers it
            continue
        out += [text[last : e.start], f"<{e.entity_type}>"]
        last = e.end
    out.append(text[last:])
    return "".join(out)


async def mask(text: str) -> str:
    """:func:`mask_text` off the event loop."""
    return await asyncio.to_thread(mask_text, text)


def warm() -> None:
    """Load the analyzer now (a thread at console start)."""
    mask_text("warm up the analyzer, Alice Smith")
