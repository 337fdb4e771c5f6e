"""Server URLs as they may be shown: credentials never reach a log line or a console."""

from __future__ import annotations

import re
from typing import Final

REDACTED: Final = "***"
"""What replaces each part of a URL's userinfo (user, password or token)."""

_SCHEME: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_PIECES: Final = re.compile(r"(\s+|,(?=\s*[A-Za-z][A-Za-z0-9+.-]*://))")
"""Where one URL ends: white space, or a comma that starts another ``scheme://``
entry (a raw ``,`` inside a password does not)."""


def redact_url(url: str) -> str:
    """``url`` with its credentials replaced by ``***``, for logs and consoles.

    NATS URLs carry credentials in their userinfo (RFC 3986 §3.2.1):
    ``nats://user:password@host:4222`` becomes ``nats://***:***@host:4222`` and a
    token URL ``nats://s3cr3t@host:4222`` becomes ``nats://***@host:4222`` (the user
    name is hidden too: with token authentication it *is* the secret).

    * A comma-separated server list is redacted entry by entry (an entry starts at
      ``scheme://``), and so is every URL inside a longer text such as an error
      message (URLs hold no white space).
    * Everything between the scheme (or the start of the entry, for
      ``user:pw@host:4222``) and the *last* ``@`` of the entry counts as userinfo, so
      a password holding a raw ``@``, ``/`` or ``,`` is hidden whole, erring towards
      hiding too much.
    * A string without ``@`` is returned unchanged.

    Args:
        url: a URL, a comma-separated list of URLs, or any text that may hold some.

    Returns:
        The same text with every userinfo replaced; scheme, host, port, path and
        query kept.
    """
    if "@" not in url:
        return url
    return "".join(
        piece if i % 2 else _redact_one(piece) for i, piece in enumerate(_PIECES.split(url))
    )


def _redact_one(entry: str) -> str:
    """One URL (or ``user:pw@host``) without white space, redacted."""
    scheme = _SCHEME.search(entry)
    head, rest = (entry[: scheme.end()], entry[scheme.end() :]) if scheme else ("", entry)
    userinfo, at, host = rest.rpartition("@")
    if not at or not userinfo:
        return entry
    hidden = f"{REDACTED}:{REDACTED}" if ":" in userinfo else REDACTED
    return f"{head}{hidden}@{host}"
