"""Opaque, site-scoped references: what crosses the boundary instead of a task id.

A caller chooses task ids, and callers put names in them (``maria-garcia-refund-2``,
``jdoe-at-example-com``). Nothing that leaves the site carries one: subjects,
headers, payloads and trace attributes use :meth:`BoundaryRefs.ref`, an HMAC-SHA256
(RFC 2104) of ``(site, task id)`` under a key derived from the site's vault key. It
is stable (a redelivered or replayed step gets the same reference, so JetStream
deduplication still works), unique per site (two sites using the same task id get
different references, so the hub never drops one site's escalation as a duplicate of
another's), and cannot be reversed or guessed without the key. The site maps it back
through the pending-answer entry it keeps under the reference.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

__all__ = ["REF_RE", "BoundaryRefs"]

_LABEL: Final = b"sitemesh boundary reference v1"
"""Domain separation: the reference key is HMAC(vault key, label), never the vault key."""

REF_RE: Final = re.compile(r"^r[a-z2-7]{26}$")
"""Format of a reference: ``r`` and 26 base32 characters (130 bits of the HMAC)."""


class BoundaryRefs:
    """Derives the opaque reference of a task at a site.

    Args:
        key: the site's 32-byte vault key (``sitemesh.policy.load_vault_key``); the
            reference key is derived from it, so no new secret needs managing.
    """

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the reference key needs at least 16 bytes")
        self._key = hmac.new(key, _LABEL, hashlib.sha256).digest()

    def ref(self, site: str, task_id: str) -> str:
        """The reference of ``task_id`` at ``site``: ``r`` + 26 of ``[a-z2-7]``.

        Deterministic for the same (key, site, task id); valid as a task id, a subject
        token and a KV key.
        """
        mac = hmac.new(self._key, f"{site}\x00{task_id}".encode(), hashlib.sha256).digest()
        return "r" + base64.b32encode(mac).decode("ascii").lower()[:26]

    @staticmethod
    def is_ref(value: str) -> bool:
        """Whether ``value`` has the format of a reference (:data:`REF_RE`)."""
        return REF_RE.match(value) is not None
