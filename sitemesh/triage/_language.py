"""The language of a ticket, with py3langid's offline model (inside its wheel)."""

from __future__ import annotations

import functools
from typing import Any, Final

MIN_LETTERS: Final = 3
"""Fewer letters than this (``"ok"``, ``"12345"``): ``und`` without asking the model."""

MIN_CONFIDENCE: Final = 0.5
"""Below this probability of the best language: ``und``. On the held-out parts of the
bundled sets (English) that gives ``en`` for 98.9% of banking77 (``und`` 1.1%, another
language 0%) and 97.6% of Endava (``und`` 1.2%, another language 1.1%), measured with
py3langid 0.4.0 by ``bench/triage.py``."""

MAX_CHARS: Final = 2000
"""Only the first this many characters are read (enough for a confident answer)."""

_NO_LANGUAGE: Final = "zxx"
"""The model's label for text without linguistic content (ISO 639-2 ``zxx``)."""


@functools.cache
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    ident = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    # the model also knows varieties without an ISO 639-1 code (pcm, yue, ...); leave
    # them out so every answer is a two-letter code, and keep zxx to abstain on
    ident.set_languages([code for code in ident.labels if len(code) == 2] + [_NO_LANGUAGE])
    return ident


def detect_language(text: str) -> tuple[str, float]:
    """The language of ``text`` and its probability.

    py3langid's naive Bayes over byte n-grams (Lui & Baldwin 2012, "langid.py: An
    Off-the-shelf Language Identification Tool", ACL), restricted to the languages
    with an ISO 639-1 code, with the probabilities normalised over them (py3langid's
    ``norm_probs``).

    Args:
        text: any text; only the first :data:`MAX_CHARS` characters are read.

    Returns:
        ``(code, p)``: an ISO 639-1 code (``en``) and its probability 0..1, rounded to 4
        digits; ``("und", p)`` when the best ``p`` is below :data:`MIN_CONFIDENCE` or the
        text has no linguistic content, ``("und", 0.0)`` with fewer than
        :data:`MIN_LETTERS` letters.
    """
    sample = text[:MAX_CHARS]
    if sum(ch.isalpha() for ch in sample) < MIN_LETTERS:
        return "und", 0.0
    code, p = _identifier().classify(sample)
    p = round(float(p), 4)
    if code == _NO_LANGUAGE or len(code) != 2 or p < MIN_CONFIDENCE:
        return "und", p
    return str(code), p
