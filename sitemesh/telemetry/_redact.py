"""The attribute guard: no message text, and nothing that looks personal, in telemetry.

Spans only ever carry attributes the runtime sets itself (subjects, ids, roles,
counts), never message bodies; the guard makes that a checked rule rather than a
habit. Two places apply it:

* :func:`guard_attributes` when the middleware sets attributes (cheap: a length
  check and one regular expression per string value);
* :class:`RedactingSpanExporter` in front of every exporter, for attributes set
  by anyone else (a library, a model backend): it drops refused attributes from
  spans and events and replaces a refused status description, and counts what it
  dropped (:attr:`RedactingSpanExporter.refused`, expected to stay 0).

The patterns catch what is personal by its shape (e-mail addresses, phone, card,
account and social-security numbers, IPv4 addresses); names cannot be caught by
shape, which is why no free text may be set in the first place.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import Status

DEFAULT_MAX_CHARS: Final = 256
"""Longest string attribute accepted by default (``telemetry.max_attribute_chars``)."""

ALLOWED_ATTRIBUTES: Final[tuple[str, ...]] = (
    "messaging.",
    "sitemesh.",
    "gen_ai.",
    "error.type",
    "exception.type",
    "server.address",
    "server.port",
    "network.",
    "http.request.method",
    "http.response.status_code",
    "url.scheme",
    "otel.",
)
"""Attribute keys (exact, or prefixes ending in ``.``) a span may carry out of the
process: the OpenTelemetry messaging, GenAI, error, server/network and HTTP-method
conventions and sitemesh's own ``sitemesh.*``. Anything else (``url.full``,
``http.url``, ``db.statement``, ``exception.message``...) could hold free text or
credentials and is dropped by :class:`RedactingSpanExporter`, counted in
:attr:`RedactingSpanExporter.refused`."""


@functools.lru_cache(maxsize=1024)
def allowed_key(key: str) -> bool:
    """Whether attribute ``key`` is on :data:`ALLOWED_ATTRIBUTES`."""
    return any(key == a or (a.endswith(".") and key.startswith(a)) for a in ALLOWED_ATTRIBUTES)


REFUSED: Final = "[refused]"
"""What replaces a refused status description."""

_PERSONAL: Final = re.compile(
    r"[^\s@<>]+@[^\s@<>]+\.[A-Za-z]{2,}"  # e-mail address
    r"|\+?\d[\d \-().]{7,}\d"  # phone, card, SSN, account numbers: 9+ digits/separators
    r"|\b[A-Z]{2}\d{2}[A-Z0-9]{10,30}\b"  # IBAN
    r"|\b\d{1,3}(?:\.\d{1,3}){3}\b"  # IPv4 address
)


def refuses(value: object, max_chars: int = DEFAULT_MAX_CHARS) -> bool:
    """Whether ``value`` may not be a telemetry attribute.

    Args:
        value: an attribute value; only strings (and sequences of strings) are checked.
        max_chars: longest accepted string.

    Returns:
        ``True`` for a string longer than ``max_chars`` or one that looks personal.
    """
    if isinstance(value, str):
        return _refuses_text(value, max_chars)
    if isinstance(value, Sequence) and not isinstance(value, bytes):
        return any(refuses(v, max_chars) for v in value)
    return False


@functools.lru_cache(maxsize=8192)
def _refuses_text(value: str, max_chars: int) -> bool:
    """Cached: most values (subjects, roles, streams, classes) repeat on every message."""
    return len(value) > max_chars or _PERSONAL.search(value) is not None


def guard_attributes(
    attributes: Mapping[str, Any], max_chars: int = DEFAULT_MAX_CHARS
) -> dict[str, Any]:
    """``attributes`` without ``None`` values and without the values :func:`refuses`."""
    return {k: v for k, v in attributes.items() if v is not None and not refuses(v, max_chars)}


class RedactingSpanExporter(SpanExporter):
    """Wraps an exporter; spans leave without refused attributes or descriptions.

    Attribute keys must be on :data:`ALLOWED_ATTRIBUTES`. Spans of the
    ``trusted_scope`` instrumentation (the runtime's own, whose attributes already
    passed :func:`guard_attributes`) get only that key check.

    Args:
        inner: the exporter spans are passed on to.
        max_chars: longest accepted string attribute.
        trusted_scope: instrumentation scope name not re-checked; ``None``: check all.
    """

    def __init__(
        self,
        inner: SpanExporter,
        max_chars: int = DEFAULT_MAX_CHARS,
        *,
        trusted_scope: str | None = None,
    ) -> None:
        self.inner = inner
        self.max_chars = max_chars
        self.trusted_scope = trusted_scope
        self.refused = 0
        """Attributes, event attributes and descriptions dropped so far."""

    def _clean(self, span: ReadableSpan) -> ReadableSpan:
        scope = span.instrumentation_scope
        attrs = span.attributes or {}
        trusted = self.trusted_scope is not None and scope and scope.name == self.trusted_scope
        if trusted and all(allowed_key(k) for k in attrs):
            return span
        n = self.max_chars
        bad = [k for k, v in attrs.items() if not allowed_key(k) or refuses(v, n)]
        bad_events = [
            e for e in span.events if any(refuses(v, n) for v in (e.attributes or {}).values())
        ]
        desc = span.status.description
        bad_desc = desc is not None and refuses(desc, n)
        if not bad and not bad_events and not bad_desc:
            return span
        self.refused += len(bad) + len(bad_events) + int(bad_desc)
        events = [
            Event(e.name, guard_attributes(e.attributes or {}, n), e.timestamp)
            if e in bad_events
            else e
            for e in span.events
        ]
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes={k: v for k, v in attrs.items() if k not in bad},
            events=events,
            links=span.links,
            kind=span.kind,
            status=Status(span.status.status_code, REFUSED) if bad_desc else span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export ``spans`` through the inner exporter, cleaned."""
        return self.inner.export([self._clean(s) for s in spans])

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return self.inner.force_flush(timeout_millis)
