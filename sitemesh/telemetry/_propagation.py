"""W3C Trace Context in NATS headers: the only place the runtime reads or writes it.

The ``traceparent``/``tracestate`` headers (W3C Trace Context, Level 1, sections 3.2
and 3.3) travel with every sitemesh message. JetStream stores headers with the
message, stream sourcing copies them to the hub, and the inbox relay keeps every
header but JetStream's own ``Nats-*`` ones, so one task's context survives every
hop and both directions of the site/cloud boundary.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Final

from opentelemetry.context import Context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ..bus import HDR_TRACEPARENT, HDR_TRACESTATE

_PROPAGATOR: Final = TraceContextTextMapPropagator()


def inject(headers: MutableMapping[str, str], context: Context | None = None) -> None:
    """Write the trace context of ``context`` (default: the current one) into ``headers``.

    Args:
        headers: outgoing NATS headers; ``traceparent`` (and ``tracestate`` when not
            empty) are set in place. Nothing is written when there is no valid span.
        context: the context to propagate; ``None``: the current context.
    """
    _PROPAGATOR.inject(headers, context=context)


def extract(headers: Mapping[str, str] | None) -> Context:
    """The remote trace context carried by ``headers``.

    Args:
        headers: incoming NATS headers (``None`` or empty: no parent).

    Returns:
        A context whose span is the remote parent, or an empty context when the
        headers carry no valid ``traceparent`` (a new trace starts there).
    """
    if not headers or HDR_TRACEPARENT not in headers:
        return Context()
    carrier = {HDR_TRACEPARENT: headers[HDR_TRACEPARENT]}
    if HDR_TRACESTATE in headers:
        carrier[HDR_TRACESTATE] = headers[HDR_TRACESTATE]
    return _PROPAGATOR.extract(carrier, context=Context())
