"""Article URLs and held-out splits: the identity of an answer, and which records a
knowledge base must never contain because they measure it."""

from __future__ import annotations

import hashlib
import re
from typing import Final

ARCHIVE_PREFIX_RE: Final = re.compile(r"^https?://web\.archive\.org/web/[0-9a-z_*]+/", re.I)
"""The Wayback Machine prefix ``https://web.archive.org/web/<timestamp>/`` the IBM
conversations wrap most article URLs in."""

HELD_OUT_MODULUS: Final = 5
"""A record is held out when ``int(sha256(key), 16) % 5 == 0``: about 20%."""


def article_url(url: str) -> str:
    """The article's own URL: the Wayback Machine prefix removed, else ``url`` as is.

    ``https://web.archive.org/web/20200401224734/https://support.google.com/youtube/answer/185111``
    -> ``https://support.google.com/youtube/answer/185111``.
    """
    return ARCHIVE_PREFIX_RE.sub("", url.strip())


def article_key(url: str) -> str:
    """The identity of an article URL, for "same article?" comparisons.

    :func:`article_url`, then the scheme, a leading ``www.``, the ``#fragment`` and
    trailing ``/`` dropped, the host lower-cased (the query string is kept: some
    articles are ``?v=<id>``). Two archived snapshots of one page get one key.
    """
    rest = re.sub(r"^[a-z][a-z0-9+.-]*://", "", article_url(url), flags=re.I)
    rest = rest.split("#", 1)[0]
    host, _, path = rest.partition("/")
    host = host.lower().removeprefix("www.")
    return f"{host}/{path}".rstrip("/")


def _hashed_out(key: str) -> bool:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest(), 16) % HELD_OUT_MODULUS == 0


def held_out(text: str) -> bool:
    """Whether a labelled utterance (a banking77 row) is held out of every index and fit.

    This is :func:`sitemesh.triage.held_out` (``int(sha256(normalise(text)), 16) % 5 ==
    0``, normalised = Unicode NFKC, case-folded, whitespace collapsed, stripped), so
    the FAQ index and the triage model leave out the same rows.
    """
    from ..triage import held_out as triage_held_out

    return bool(triage_held_out(text))


def held_out_session(session_id: str) -> bool:
    """Whether an IBM conversation (by its ``sessionID``) is held out of the case KB:
    ``int(sha256(session_id), 16) % 5 == 0`` (102 of the 525 dev conversations)."""
    return _hashed_out(session_id)
