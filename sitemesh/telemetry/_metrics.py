"""The metric instruments: hops, queues, redeliveries, dead letters, models, tools.

Names follow the OpenTelemetry semantic conventions where one exists (messaging
metrics, ``gen_ai.client.*``) and ``sitemesh.*`` otherwise. Every instrument is
recorded with ``sitemesh.site`` and ``sitemesh.role`` (and the tool, model or
outcome where it applies): low-cardinality attributes only, never a task id.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Final

from opentelemetry.metrics import CallbackOptions, Meter, Observation

HOP_BUCKETS_S: Final = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Histogram buckets of the hop and processing durations, in seconds."""

BREAKER_VALUES: Final = {"closed": 0, "half_open": 1, "open": 2}
"""The value of ``sitemesh.breaker.state`` for each breaker state."""

BreakerSource = Callable[[], Iterable[tuple[str, str, str]]]
"""Returns ``(kind, name, state)`` per breaker: kind ``model`` (name: the provider) or
``tool`` (name: the tool), state ``closed``/``half_open``/``open``."""

log = logging.getLogger("sitemesh.telemetry")


class Instruments:
    """The metric instruments of one process, created once from ``meter``.

    Args:
        meter: the meter (from the process's ``MeterProvider``).
    """

    def __init__(self, meter: Meter) -> None:
        self.process_duration = meter.create_histogram(
            "messaging.process.duration",
            unit="s",
            description="Handling of one message: decode, handler, publish, settle.",
            explicit_bucket_boundaries_advisory=HOP_BUCKETS_S,
        )
        self.hop_latency = meter.create_histogram(
            "sitemesh.hop.latency",
            unit="s",
            description="From when the server stored a message to when it was settled.",
            explicit_bucket_boundaries_advisory=HOP_BUCKETS_S,
        )
        self.consumed = meter.create_counter(
            "messaging.client.consumed.messages",
            unit="{message}",
            description="Messages handled, by outcome (ack, nak, dead_letter).",
        )
        self.sent = meter.create_counter(
            "messaging.client.sent.messages", unit="{message}", description="Messages published."
        )
        self.send_duration = meter.create_histogram(
            "messaging.client.operation.duration",
            unit="s",
            description="Publishing a batch of messages until the last PubAck.",
            explicit_bucket_boundaries_advisory=HOP_BUCKETS_S,
        )
        self.redeliveries = meter.create_counter(
            "sitemesh.redeliveries",
            unit="{message}",
            description="Deliveries after the first (num_delivered > 1).",
        )
        self.dead_letters = meter.create_counter(
            "sitemesh.dead_letters",
            unit="{message}",
            description="Messages dead-lettered, by error.type (the dead letter's error class).",
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens per model call, by gen_ai.token.type (input, output).",
        )
        self.model_duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Model call duration.",
            explicit_bucket_boundaries_advisory=HOP_BUCKETS_S,
        )
        self.cost = meter.create_counter(
            "sitemesh.model.cost", unit="USD", description="Model spend in US dollars."
        )
        self.tool_duration = meter.create_histogram(
            "sitemesh.tool.duration",
            unit="s",
            description="Tool call duration, by tool and outcome.",
            explicit_bucket_boundaries_advisory=HOP_BUCKETS_S,
        )
        self.tool_errors = meter.create_counter(
            "sitemesh.tool.errors", unit="{call}", description="Failed tool calls, by error.type."
        )
        self.tool_rate_limited = meter.create_counter(
            "sitemesh.tool.rate_limited", unit="{call}", description="Rate-limited tool calls."
        )
        self._depth: dict[tuple[str, str, str], int] = {}
        meter.create_observable_gauge(
            "sitemesh.queue.depth",
            callbacks=[self._observe_depth],
            unit="{message}",
            description="Messages pending on a consumer, as last reported by the server.",
        )

        self._lag: dict[tuple[str, str, str], int] = {}
        meter.create_observable_gauge(
            "sitemesh.consumer.lag",
            callbacks=[self._observe_lag],
            unit="{message}",
            description="Messages in a stream after its consumer's ack floor (delivered "
            "but not acked, or not delivered yet), as last read from the consumer's info.",
        )

        self._breakers: list[tuple[str, str, BreakerSource]] = []
        self._breakers_failing: set[tuple[str, str]] = set()
        meter.create_observable_gauge(
            "sitemesh.breaker.state",
            callbacks=[self._observe_breakers],
            unit="1",
            description="Circuit breaker of a model backend or a tool: 0 closed, "
            "1 half-open, 2 open (by sitemesh.dependency.kind and sitemesh.dependency).",
        )

    def watch_breakers(self, site: str, role: str, source: BreakerSource) -> None:
        """Read ``source`` at each collection for ``role``'s breaker states (a source
        that raises is skipped; logged once until it reads again)."""
        self._breakers.append((site, role, source))

    def set_depth(self, site: str, role: str, stream: str, pending: int) -> None:
        """Remember the latest pending count of ``role``'s consumer on ``stream``."""
        self._depth[site, role, stream] = pending

    def set_lag(self, site: str, role: str, stream: str, lag: int) -> None:
        """Remember how many messages ``role``'s consumer on ``stream`` has not acked yet
        (``num_pending + num_ack_pending`` of its consumer info)."""
        self._lag[site, role, stream] = lag

    def _observe_depth(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return _observations(self._depth)

    def _observe_lag(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        return _observations(self._lag)


    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        del options
        out = []
        for site, role, source in list(self._breakers):
            try:
                states = list(source())
            except Exception:  # a metric, not a reason to fail the scrape
                if (site, role) not in self._breakers_failing:  # once, not every scrape
                    self._breakers_failing.add((site, role))
                    log.warning("cannot read the breaker states of %s", role, exc_info=True)
                continue
            self._breakers_failing.discard((site, role))
            for kind, name, state in states:
                attrs = {"sitemesh.site": site, "sitemesh.role": role,
                         "sitemesh.dependency.kind": kind, "sitemesh.dependency": name}  # fmt: skip
                out.append(Observation(BREAKER_VALUES.get(state, 2), attrs))
        return out


def _observations(values: dict[tuple[str, str, str], int]) -> list[Observation]:
    return [
        Observation(
            n, {"sitemesh.site": site, "sitemesh.role": role, "messaging.destination.name": s}
        )
        for (site, role, s), n in list(values.items())
    ]
