"""Text processing shared by every knowledge base: BM25 tokens, slugs, trimming, and
the patterns of contact details that must not reach an index or a query."""

from __future__ import annotations

import re
from typing import Final

from bm25s.stopwords import STOPWORDS_EN_PLUS

MAX_PASSAGE_CHARS: Final = 1200
"""Passage text sent on the wire is cut to this many characters (at a word boundary)."""

MAX_QUERY_CHARS: Final = 2000
"""Longest retrieval query, in characters (about 300 English words): a ticket's text is
cut to it before it is scrubbed, tokenised and ranked (:func:`cap_query`), so the cost
of a query is bounded whatever the task carries. The retrieval signal of a ticket is in
its title and first paragraphs; BM25 gains nothing from more, and every scrubbing
pattern and the ranking are linear (or worse) in the text's length."""

_CAMEL_1 = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_CAMEL_2 = re.compile(r"(?<=[A-Z])(?=[A-Z][a-z])")
_TOKEN = re.compile(r"[a-z0-9]+")
_KEEP: Final = frozenset({"down", "up", "off", "out", "over", "under", "above", "below"})
_STOPWORDS: Final = (frozenset(STOPWORDS_EN_PLUS) - _KEEP) | frozenset(
    {"please", "thanks", "thank", "hi", "hello", "hey", "dear", "regards"}
)
"""bm25s' extended English list, minus direction words that matter in alert names
("members down", "filling up"), plus greetings common in tickets."""

HANDLE_RE: Final = re.compile(r"(?<!\w)@\w{1,30}")
"""A social-media handle (``@AcmeSupport``, also Twitter's ``.@hulu``): ``@`` and 1-30
word characters not preceded by a word character (Twitter allows 15; other channels
more). Match :data:`EMAIL_RE` first: an address's domain would match here too."""

URL_RE: Final = re.compile(r"\b(?:https?://|www\.)\S+|\bhttps?\s*:\s*//\S+", re.IGNORECASE)
"""A URL, also the ``https: //host`` form that tweets and copied text contain."""

EMAIL_RE: Final = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
"""An e-mail address (RFC 5322's common subset: ``local@domain.tld``). A match starts
only where a run of local-part characters starts (the look-behind): one starting at
every word boundary inside the run, as ``\b`` would, rescans the run to its end from
each, which is quadratic (``"1." * 8192``, no ``@``, took 11 s)."""

PHONE_RE: Final = re.compile(r"\+?\d[\d ()-]{7,}\d")
"""A phone number: 9 or more digits with spaces, dashes or brackets between them."""

PLACEHOLDER_RE: Final = re.compile(r"<[A-Z][A-Z0-9_]*>")
"""A typed placeholder left by pseudonymisation (``<PERSON>``, ``<EMAIL_ADDRESS>``)."""


def split_camel(text: str) -> str:
    """Split CamelCase alert names into words: ``etcdMembersDown`` -> ``etcd Members Down``.

    Args:
        text: any text.

    Returns:
        ``text`` with a space at each lower->upper and acronym->word boundary.
    """
    return _CAMEL_2.sub(" ", _CAMEL_1.sub(" ", text))


def stem(word: str) -> str:
    """A small suffix-stripping stemmer (lower-case input).

    ``bm25s`` only stems through the optional PyStemmer package, which is not a
    dependency, so this strips the common English inflections (a subset of
    Porter's step 1, Porter 1980): plural ``-ies/-es/-s``, ``-ing``, ``-ed``, and
    ``-ly``, keeping stems of at least three letters (``restarting`` ->
    ``restart``, ``members`` -> ``member``). Stems need not be words; queries go
    through the same function, so only consistency matters.

    Args:
        word: one lower-case token.

    Returns:
        The stem.
    """
    if len(word) <= 3 or word.isdigit():
        return word
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)] + repl
            break
    else:
        if word.endswith("es") and word[-3:-2] in {"s", "x", "z"} and len(word) > 4:
            word = word[:-2]
        elif word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]
    if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # "running" -> "runn" -> "run"
    return word


def tokenize(text: str) -> list[str]:
    """Tokens for BM25: CamelCase split, lower-cased, English stop words removed, stemmed.

    Args:
        text: any text.

    Returns:
        Stemmed tokens of at least two characters, in text order (repeats kept).
    """
    words = _TOKEN.findall(split_camel(text).lower())
    return [stem(w) for w in words if len(w) > 1 and w not in _STOPWORDS]


def slugify(text: str) -> str:
    """A URL-style slug: ``"General etcd health"`` -> ``"general-etcd-health"``."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug or "section"


def trim(text: str, limit: int = MAX_PASSAGE_CHARS) -> str:
    """Cut ``text`` to at most ``limit`` characters at a word boundary, adding ``…``."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def cap_query(text: str, limit: int = MAX_QUERY_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters, at a whitespace if there is one in
    its last quarter (so no word is cut in half), without an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[:limit]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    return cut[:space] if space > limit * 3 // 4 else cut


def scrub_contact_details(text: str) -> str:
    """Remove @handles, URLs, e-mail addresses and phone numbers, collapse whitespace.

    Args:
        text: ticket title or body.

    Returns:
        The text with those tokens replaced by spaces, whitespace collapsed.
    """
    for pattern in (EMAIL_RE, URL_RE, HANDLE_RE, PHONE_RE):
        text = pattern.sub(" ", text)
    return " ".join(text.split())


def index_text(text: str) -> str:
    """What of a stored text goes into BM25: placeholders and contact details removed
    (``<PERSON>`` would otherwise match every pseudonymised case through "person")."""
    return scrub_contact_details(PLACEHOLDER_RE.sub(" ", text))
