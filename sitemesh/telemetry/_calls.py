"""Model and tool calls: spans and metrics for model backends and tool adapters.

Called by the runtime's model client and tool adapters, never by agents. A call
made while a message is processed is a child of its process span and carries its
site and role.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.trace import SpanKind, Status, StatusCode

from . import _setup
from ._metrics import BreakerSource
from ._middleware import _PROCESS
from ._redact import guard_attributes

GENAI_OPT_IN: Final = "gen_ai_latest_experimental"
"""The ``OTEL_SEMCONV_STABILITY_OPT_IN`` value that turns GenAI attributes on."""


@dataclass(slots=True)
class ModelCall:
    """What a model backend reports about one call (see :func:`model_call`).

    Attributes:
        input_tokens: prompt tokens.
        output_tokens: completion tokens.
        cost_usd: what the call cost, in US dollars.
        response_model: the model that answered, if it differs from the request.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    response_model: str | None = None

    def record(
        self,
        *,
        input_tokens: int,
        output_tokens: int,
        cost_usd: float = 0.0,
        response_model: str | None = None,
    ) -> None:
        """Report the call's usage (token counts, cost in US dollars)."""
        self.input_tokens, self.output_tokens = input_tokens, output_tokens
        self.cost_usd, self.response_model = cost_usd, response_model


@contextlib.contextmanager
def model_call(
    *,
    provider: str,
    model: str,
    operation: str = "chat",
    policy_version: str | None = None,
    data_class: str | None = None,
    route: str | None = None,
) -> Iterator[ModelCall]:
    """A span and metrics around one model call.

    ``gen_ai.*`` attributes (OpenTelemetry GenAI conventions, experimental) are set
    only when ``telemetry.semconv_stability_opt_in`` names
    ``gen_ai_latest_experimental``; ``sitemesh.*`` ones (cost, tokens, policy
    version, data class, route) always. Prompts and completions are never recorded.

    Args:
        provider: ``openai``, ``anthropic``, ``vllm``... (``gen_ai.provider.name``).
        model: the requested model.
        operation: ``chat``, ``embeddings``... (``gen_ai.operation.name``).
        policy_version: version of the policy that allowed the call.
        data_class: data class of the task.
        route: ``edge`` or ``cloud``.

    Yields:
        A :class:`ModelCall` to :meth:`~ModelCall.record` the usage on.
    """
    call = ModelCall()
    t = _setup.active()
    if t is None:
        yield call
        return
    genai = GENAI_OPT_IN in t.settings.semconv_stability_opt_in
    attrs: dict[str, Any] = {
        "sitemesh.model.provider": provider,
        "sitemesh.model.name": model,
        "sitemesh.policy_version": policy_version,
        "sitemesh.data_class": data_class,
        "sitemesh.route": route,
    }
    if genai:
        attrs.update(
            {
                "gen_ai.operation.name": operation,
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
            }
        )
    max_chars = t.settings.max_attribute_chars
    started = time.perf_counter()
    error_type: str | None = None
    with t.tracer.start_as_current_span(
        f"{operation} {model}",
        kind=SpanKind.CLIENT,
        attributes=guard_attributes(attrs, max_chars),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield call
        except BaseException as exc:
            error_type = type(exc).__name__
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            raise
        finally:
            done: dict[str, Any] = {
                "sitemesh.tokens.input": call.input_tokens,
                "sitemesh.tokens.output": call.output_tokens,
                "sitemesh.cost_usd": call.cost_usd,
            }
            if genai:
                done["gen_ai.usage.input_tokens"] = call.input_tokens
                done["gen_ai.usage.output_tokens"] = call.output_tokens
                done["gen_ai.response.model"] = call.response_model or model
            span.set_attributes(guard_attributes(done, max_chars))
            proc = _PROCESS.get()
            labels: dict[str, Any] = {
                "gen_ai.provider.name": provider,
                "gen_ai.request.model": model,
                "gen_ai.operation.name": operation,
            }
            if proc is not None:
                labels.update({"sitemesh.site": proc.site, "sitemesh.role": proc.role})
            m = t.instruments
            m.model_duration.record(
                time.perf_counter() - started,
                {**labels, "error.type": error_type} if error_type else labels,
            )
            if error_type is None or call.input_tokens or call.output_tokens:
                # an answer rejected afterwards (invalid structured output) used its tokens
                m.tokens.record(call.input_tokens, {**labels, "gen_ai.token.type": "input"})
                m.tokens.record(call.output_tokens, {**labels, "gen_ai.token.type": "output"})
            if call.cost_usd:
                m.cost.add(call.cost_usd, labels)


@contextlib.contextmanager
def tool_call(tool: str) -> Iterator[None]:
    """A span and tool-health metrics (latency, errors, rate limits) around one tool call.

    Args:
        tool: the tool's name (``gen_ai.tool.name``), low cardinality.

    Yields:
        Nothing; an exception raised inside is recorded by class name and re-raised.
        A class name containing ``RateLimit`` counts as a rate limit.
    """
    t = _setup.active()
    if t is None:
        yield
        return
    proc = _PROCESS.get()
    labels: dict[str, Any] = {"gen_ai.tool.name": tool}
    if proc is not None:
        labels.update({"sitemesh.site": proc.site, "sitemesh.role": proc.role})
    started = time.perf_counter()
    with t.tracer.start_as_current_span(
        f"execute_tool {tool}",
        kind=SpanKind.INTERNAL,
        attributes=guard_attributes(
            {**labels, "gen_ai.operation.name": "execute_tool"}, t.settings.max_attribute_chars
        ),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        m = t.instruments
        try:
            yield
        except BaseException as exc:
            error_type = type(exc).__name__
            span.set_attribute("error.type", error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
            failed = {**labels, "error.type": error_type}
            m.tool_duration.record(time.perf_counter() - started, failed)
            m.tool_errors.add(1, failed)
            if "RateLimit" in error_type:
                m.tool_rate_limited.add(1, labels)
            raise
        m.tool_duration.record(time.perf_counter() - started, labels)


def watch_breakers(site: str, role: str, source: BreakerSource) -> bool:
    """Export ``role``'s breaker states as ``sitemesh.breaker.state`` (0 closed,
    1 half-open, 2 open), read from ``source`` at each collection (every Prometheus
    scrape of ``/metrics``, every OTLP export).

    Args:
        site: the process's site.
        role: its role.
        source: returns ``(kind, name, state)`` per breaker (kind ``model`` or ``tool``).

    Returns:
        ``False`` when telemetry is not set up in this process (nothing is watched).
    """
    t = _setup.active()
    if t is None:
        return False
    t.instruments.watch_breakers(site, role, source)
    return True
