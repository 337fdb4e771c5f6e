"""The one way agents call models: route -> chain -> retries/breaker -> record.

For each call the :class:`ModelClient`

1. serves a recorded response when replay is on and the prompt hash is known;
2. asks the :class:`~sitemesh.models.Router` for the chain (privacy first);
3. per model: checks the backend's circuit breaker, reserves budget, calls with
   per-call timeout and retries (jittered backoff, ``Retry-After`` honoured), then
   settles or releases the reservation and records a :class:`ModelCall`;
4. moves down the chain on failure; when every model failed, returns the caller's
   deterministic fallback labelled ``source="fallback"`` or raises
   :class:`~sitemesh.errors.AllModelsFailed`.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, Generic, Literal, Self, TypeVar

import msgspec

from ..errors import (
    AllModelsFailed,
    CircuitOpen,
    InvalidModelOutput,
    ModelError,
    ModelRateLimited,
    ModelRequestError,
    ModelTimeout,
    ModelUnavailable,
    ReplayMiss,
    SitemeshError,
)
from ..schemas import ModelHealth, utcnow
from ..telemetry import model_call
from ._backends import AnthropicBackend, DeltaCallback, ModelBackend, OpenAIBackend
from ._hooks import Budget, NoBudget
from ._recorder import CallRecorder, NullRecorder
from ._resilience import CircuitBreaker, RetryPolicy
from ._routing import ModelRef, Router
from ._types import (
    CallContext,
    ChatMessage,
    ModelCall,
    ModelRequest,
    ModelResponse,
    Outcome,
    OutputSchema,
)

if TYPE_CHECKING:
    from ..config import ModelsSettings

T = TypeVar("T")

ReplayMode = Literal["off", "prefer", "strict"]

FALLBACK_MODEL = "deterministic"
"""``ModelResponse.model`` of a deterministic fallback (provider ``fallback``)."""

_LIVE_FAILURES: Final = frozenset({"rate_limited", "timeout", "unavailable", "rejected"})
_MAX_ERROR_CHARS: Final = 200


@dataclass(slots=True)
class _Tally:
    """A backend's live call counts, for :meth:`ModelClient.health`."""

    calls: int = 0
    ok: int = 0
    failed: int = 0
    circuit_open: int = 0
    last_error: str = ""
    last_error_at: datetime | None = None


REPAIR_PROMPT = (
    "Your previous answer is not valid JSON for the required schema: {error}. "
    "Reply again with only the corrected JSON value, nothing else."
)
"""The one repair turn sent after invalid structured output (``{error}``: msgspec's
message, naming the JSON path)."""


class InvalidOutput(Exception):
    """Structured output that does not decode (its class name is the ``error.type`` of
    the call's span and duration metric)."""

    def __init__(self, error: str, response: ModelResponse) -> None:
        super().__init__(error)
        self.error = error
        self.response = response


@dataclass(frozen=True, slots=True)
class Structured(Generic[T]):
    """A validated structured answer.

    Attributes:
        value: the decoded value of the requested type.
        response: the response it came from (provider, model, usage, source).
        repaired: it took the one repair turn.
    """

    value: T
    response: ModelResponse
    repaired: bool = False


def estimate_tokens(request: ModelRequest) -> int:
    """Rough prompt size in tokens: characters / 4, rounded up (OpenAI's rule of thumb).

    Args:
        request: the prompt.

    Returns:
        Estimated input tokens (messages, tool and output schemas).
    """
    chars = sum(len(m.content) for m in request.messages)
    chars += sum(len(c.arguments) for m in request.messages for c in m.tool_calls)
    chars += sum(len(msgspec.json.encode(t)) for t in request.tools)
    if request.output is not None:
        chars += len(msgspec.json.encode(request.output.schema))
    return math.ceil(chars / 4)


def _outcome(exc: BaseException) -> Outcome:
    match exc:
        case CircuitOpen():
            return "circuit_open"
        case ModelRateLimited():
            return "rate_limited"
        case ModelTimeout():
            return "timeout"
        case ModelRequestError():
            return "rejected"
        case _:
            return "unavailable"


class ModelClient:
    """Calls models for agents (see the module docstring).

    Args:
        backends: provider name (``vllm``/``openai``/``anthropic``) -> backend.
            Chain entries of a provider without a backend are skipped.
        router: chooses the chain per call.
        retry: retry policy per model (default :class:`RetryPolicy`).
        breaker_failures: consecutive failures that open a backend's breaker.
        breaker_reset_s: seconds an open breaker waits before half-opening.
        recorder: where calls are recorded (default: nowhere).
        budget: budget hook (default: :class:`~sitemesh.models.NoBudget`).
        replay: ``off``; ``prefer`` (recorded response when known, else live);
            ``strict`` (recorded only; a miss raises :class:`ReplayMiss`).
        max_tokens: output cap when a request sets none.
        sleep: the backoff sleep (inject a fake in tests).
        clock: monotonic clock for the breakers, in seconds.
    """

    def __init__(
        self,
        backends: Mapping[str, ModelBackend],
        router: Router,
        *,
        retry: RetryPolicy | None = None,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        recorder: CallRecorder | None = None,
        budget: Budget | None = None,
        replay: ReplayMode = "off",
        max_tokens: int = 1024,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backends = dict(backends)
        self.router = router
        self.retry = retry or RetryPolicy()
        self.recorder: CallRecorder = recorder or NullRecorder()
        self.budget: Budget = budget or NoBudget()
        self.replay = replay
        self.max_tokens = max_tokens
        self._sleep = sleep
        self.breakers = {
            name: CircuitBreaker(name, failures=breaker_failures, reset_s=breaker_reset_s,
                                 clock=clock)
            for name in self.backends
        }
        self._tallies = {name: _Tally() for name in self.backends}

    @classmethod
    def from_settings(
        cls,
        settings: ModelsSettings,
        *,
        recorder: CallRecorder | None = None,
        budget: Budget | None = None,
    ) -> ModelClient:
        """Build the client from the ``models`` settings group.

        Backends exist for what is configured: ``vllm`` when ``vllm_base_url`` is set
        (or ``vllm_launch``: ``http://<vllm_host>:<vllm_port>/v1``), ``openai`` /
        ``anthropic`` when their API key is set.

        Args:
            settings: ``load_settings().models``.
            recorder: where calls are recorded.
            budget: the budget hook.

        Raises:
            ConfigError: a chain entry is malformed.
        """
        s = settings
        backends: dict[str, ModelBackend] = {}
        vllm_url = s.vllm_base_url or (
            f"http://{s.vllm_host}:{s.vllm_port}/v1" if s.vllm_launch else None
        )
        if vllm_url:
            backends["vllm"] = OpenAIBackend(
                provider="vllm",
                base_url=vllm_url,
                api_key=s.vllm_api_key.get_secret_value() if s.vllm_api_key else None,
                timeout_s=s.vllm_timeout_s,
            )
        if s.openai_api_key is not None:
            backends["openai"] = OpenAIBackend(
                provider="openai",
                base_url=s.openai_base_url,
                api_key=s.openai_api_key.get_secret_value(),
                timeout_s=s.openai_timeout_s,
            )
        if s.anthropic_api_key is not None:
            backends["anthropic"] = AnthropicBackend(
                base_url=s.anthropic_base_url,
                api_key=s.anthropic_api_key.get_secret_value(),
                timeout_s=s.anthropic_timeout_s,
            )
        router = Router(
            s.site_chain,
            s.cloud_chain,
            complexity_threshold=s.complexity_threshold,
            small_kinds=s.small_kinds,
        )
        retry = RetryPolicy(
            max_attempts=s.max_attempts,
            base_s=s.backoff_base_s,
            max_s=s.backoff_max_s,
            max_retry_after_s=s.max_retry_after_s,
        )
        return cls(
            backends,
            router,
            retry=retry,
            breaker_failures=s.breaker_failures,
            breaker_reset_s=s.breaker_reset_s,
            recorder=recorder,
            budget=budget,
            replay=s.replay,
            max_tokens=s.max_tokens,
        )

    def health(self) -> list[ModelHealth]:
        """Each backend's breaker and live call counts since the client was built,
        by provider name (what the process reports next to its tool health)."""
        out = []
        for name, breaker in sorted(self.breakers.items()):
            t = self._tallies[name]
            out.append(ModelHealth(
                provider=name, breaker=breaker.state, retry_in_s=round(breaker.retry_in_s, 1),
                calls=t.calls, ok=t.ok, failed=t.failed, circuit_open=t.circuit_open,
                last_error=t.last_error, last_error_at=t.last_error_at,
            ))  # fmt: skip
        return out

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every backend's connections (safe to call twice)."""
        for backend in self.backends.values():
            await backend.aclose()

    @property
    def configured(self) -> bool:
        """At least one backend exists (else every call takes the fallback)."""
        return bool(self.backends)

    def chain(self, ctx: CallContext) -> list[ModelRef]:
        """The routed chain for ``ctx``, limited to configured backends."""
        return [r for r in self.router.chain(ctx) if r.provider in self.backends]

    async def complete(
        self,
        request: ModelRequest,
        ctx: CallContext | None = None,
        *,
        fallback: Callable[[], str] | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> ModelResponse:
        """Answer ``request`` with the first model of the chain that succeeds.

        Args:
            request: the prompt.
            ctx: routing facts (kind, complexity, policy action, tenant, agent, task);
                default: a site-pinned synthesis call.
            fallback: deterministic answer when every model fails; ``None`` raises.
            on_delta: streamed text fragments (with ``request.stream``); a retried
                attempt streams again from the start.

        Returns:
            The response; ``source`` is ``model``, ``replay`` or ``fallback``.

        Raises:
            AllModelsFailed: every model failed and no ``fallback`` was given.
            ReplayMiss: strict replay and the prompt hash is unknown.
        """
        try:
            return await self._run(request, ctx or CallContext(), on_delta, None)
        except AllModelsFailed as exc:
            if fallback is None:
                raise
            return await self._fallback(request, ctx or CallContext(), fallback, exc)

    async def structured(
        self,
        request: ModelRequest,
        type_: type[T],
        ctx: CallContext | None = None,
        *,
        check: Callable[[T], None] | None = None,
        on_delta: DeltaCallback | None = None,
    ) -> Structured[T]:
        """Ask for JSON matching ``type_`` and decode it; repair once if invalid.

        The request gets ``output=OutputSchema(type_.__name__, msgspec.json.schema(type_))``
        unless it already has one. Invalid output (bad JSON, wrong shape, or
        ``check`` raising ``ValueError``) is recorded ``invalid_output`` and sent back
        once with the validation error (:data:`REPAIR_PROMPT`).

        Args:
            request: the prompt.
            type_: a msgspec-decodable type (usually a ``msgspec.Struct``).
            ctx: routing facts.
            check: extra semantic checks on the decoded value; raise ``ValueError``
                with a precise message to reject it.
            on_delta: streamed text fragments.

        Returns:
            The decoded value and its response.

        Raises:
            InvalidModelOutput: still invalid after the repair turn.
            AllModelsFailed: no model answered.
        """
        ctx = ctx or CallContext()
        if request.output is None:
            schema = msgspec.json.schema(type_)
            request = msgspec.structs.replace(
                request, output=OutputSchema(name=getattr(type_, "__name__", "output"),
                                             schema=schema)
            )
        decoded: list[T] = []

        def accept(response: ModelResponse) -> None:
            try:
                value = msgspec.json.decode(response.text, type=type_)
                if check is not None:
                    check(value)
            except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as exc:
                raise InvalidOutput(str(exc), response) from exc
            decoded.append(value)

        try:
            response = await self._run(request, ctx, on_delta, accept)
            return Structured(decoded[-1], response)
        except InvalidOutput as first:
            repair = msgspec.structs.replace(
                request,
                messages=[
                    *request.messages,
                    ChatMessage(role="assistant", content=first.response.text[:4000]),
                    ChatMessage(role="user", content=REPAIR_PROMPT.format(error=first.error)),
                ],
            )
            try:
                response = await self._run(repair, ctx, on_delta, accept)
            except InvalidOutput as second:
                raise InvalidModelOutput(
                    second.error,
                    output=second.response.text,
                    provider=second.response.provider,
                    model=second.response.model,
                ) from None
            return Structured(decoded[-1], response, repaired=True)

    # --- internals -----------------------------------------------------------------

    async def _run(
        self,
        request: ModelRequest,
        ctx: CallContext,
        on_delta: DeltaCallback | None,
        accept: Callable[[ModelResponse], None] | None,
    ) -> ModelResponse:
        prompt_hash = request.prompt_hash
        if self.replay != "off":
            recorded = await self.recorder.lookup(prompt_hash)
            if recorded is None and accept is not None:
                recorded = await self._rejected(prompt_hash, ctx.task_id)
            if recorded is not None and recorded.response is not None:
                response = msgspec.structs.replace(
                    recorded.response, source="replay", prompt_hash=prompt_hash
                )
                await self._record(request, ctx, prompt_hash, "replayed", response=response,
                                   provider=response.provider, model=response.model)
                if accept is not None:
                    accept(response)  # a rejected answer is rejected again: same repair
                return response
            if self.replay == "strict":
                raise ReplayMiss(prompt_hash)
        failures: list[tuple[str, str]] = []
        for ref in self.router.chain(ctx):
            if ref.provider not in self.backends:
                failures.append((str(ref), "not configured"))
                continue
            try:
                return await self._call_model(ref, request, ctx, prompt_hash, on_delta, accept)
            except ModelError as exc:
                failures.append((str(ref), str(exc)))
        if not failures:
            # nothing the policy allows is configured: say so, never widen the route
            allowed = "site or cloud models" if ctx.cloud_allowed else "site models only"
            failures.append(
                (f"policy {ctx.action}", f"{allowed} allowed, and none is configured")
            )
        raise AllModelsFailed(failures)

    async def _rejected(self, prompt_hash: str, task_id: str) -> ModelCall | None:
        """The latest ``invalid_output`` record for ``prompt_hash``, for replay.

        Replaying it makes a structured call take the same repair turn (or fallback)
        as it did live. Found with the recorder's ``lookup_rejected(prompt_hash)``
        (:class:`InMemoryRecorder`), else among the task's records when the recorder
        lists them (``async calls(task_id)``, the site's ``StoreCallRecorder``); other
        recorders replay ``ok`` answers only.
        """
        find = getattr(self.recorder, "lookup_rejected", None)
        if find is not None:
            found: ModelCall | None = await find(prompt_hash)
            return found
        listed = getattr(self.recorder, "calls", None)
        if not callable(listed) or not task_id:
            return None
        for call in reversed(await listed(task_id)):
            if call.prompt_hash == prompt_hash and call.outcome == "invalid_output":
                return call  # type: ignore[no-any-return]
        return None

    async def _call_model(
        self,
        ref: ModelRef,
        request: ModelRequest,
        ctx: CallContext,
        prompt_hash: str,
        on_delta: DeltaCallback | None,
        accept: Callable[[ModelResponse], None] | None,
    ) -> ModelResponse:
        backend = self.backends[ref.provider]
        breaker = self.breakers[ref.provider]
        key = call_key(ctx, prompt_hash, ref)
        common: dict[str, Any] = {"provider": ref.provider, "model": ref.model, "call_key": key}
        if not breaker.allow():
            exc = CircuitOpen(
                f"{ref}: circuit open for another {breaker.retry_in_s:.1f} s",
                provider=ref.provider, model=ref.model,
            )
            await self._record(request, ctx, prompt_hash, "circuit_open", attempts=0,
                               error=str(exc), **common)
            raise exc
        try:
            reservation = await self.budget.reserve(
                key, ctx.tenant, ctx.agent, ctx.task_id, estimate_tokens(request),
                request.max_tokens or self.max_tokens, str(ref),
            )
        except SitemeshError as exc:
            await self._record(request, ctx, prompt_hash, "budget_denied", attempts=0,
                               error=f"{type(exc).__name__}: {exc}", **common)
            raise ModelRequestError(f"{ref}: budget refused: {exc}", provider=ref.provider,
                                    model=ref.model) from exc
        # the call's span and metrics (gen_ai tokens, cost, duration) when telemetry is on
        with model_call(provider=ref.provider, model=ref.model,
                        data_class=ctx.data_class) as observed:  # fmt: skip
            start = time.perf_counter()
            attempts = 0
            while True:
                attempts += 1
                try:
                    response = await backend.complete(
                        request, ref.model, max_tokens=self.max_tokens, on_delta=on_delta
                    )
                except asyncio.CancelledError:
                    await asyncio.shield(self.budget.release(reservation))
                    raise
                except ModelRequestError as exc:
                    error: ModelError = exc
                    break
                except ModelUnavailable as exc:
                    breaker.failure()
                    error = exc
                    delay = self.retry.delay_s(attempts, exc.retry_after_s)
                    if delay is None or not breaker.allow():
                        break
                    await self._sleep(delay)
                    continue
                breaker.success()
                response = msgspec.structs.replace(response, prompt_hash=prompt_hash)
                observed.record(input_tokens=response.usage.tokens_in,
                                output_tokens=response.usage.tokens_out)  # fmt: skip
                elapsed = (time.perf_counter() - start) * 1000
                if accept is not None:
                    try:
                        accept(response)
                    except InvalidOutput as bad:  # answered and paid for, then rejected
                        cost = await self.budget.settle(reservation, response.usage)
                        observed.cost_usd = cost or 0.0
                        await self._record(request, ctx, prompt_hash, "invalid_output",
                                           attempts=attempts, latency_ms=elapsed, response=response,
                                           cost_usd=cost, error=bad.error, **common)
                        raise
                cost = await self.budget.settle(reservation, response.usage)
                observed.cost_usd = cost or 0.0
                await self._record(request, ctx, prompt_hash, "ok", attempts=attempts,
                                   latency_ms=elapsed, response=response, cost_usd=cost, **common)
                return response
            await self.budget.release(reservation)
            await self._record(
                request, ctx, prompt_hash, _outcome(error), attempts=attempts,
                latency_ms=(time.perf_counter() - start) * 1000,
                error=f"{type(error).__name__}: {error}", **common,
            )
            raise error

    async def _fallback(
        self,
        request: ModelRequest,
        ctx: CallContext,
        fallback: Callable[[], str],
        exc: AllModelsFailed,
    ) -> ModelResponse:
        response = ModelResponse(
            text=fallback(),
            provider="fallback",
            model=FALLBACK_MODEL,
            source="fallback",
            fallback_reason=str(exc),
            prompt_hash=request.prompt_hash,
        )
        await self._record(request, ctx, request.prompt_hash, "fallback", response=response,
                           provider="fallback", model=FALLBACK_MODEL, attempts=0,
                           error=str(exc))
        return response

    async def _record(
        self,
        request: ModelRequest,
        ctx: CallContext,
        prompt_hash: str,
        outcome: Outcome,
        *,
        provider: str,
        model: str,
        call_key: str = "",
        attempts: int = 1,
        latency_ms: float = 0.0,
        response: ModelResponse | None = None,
        cost_usd: float | None = None,
        error: str = "",
    ) -> None:
        usage = response.usage if response is not None else None
        tally = self._tallies.get(provider)
        if tally is not None and outcome not in ("replayed", "fallback", "budget_denied"):
            tally.calls += 1  # a call that reached the backend's breaker
            if outcome in ("ok", "invalid_output"):
                tally.ok += 1
            elif outcome == "circuit_open":
                tally.circuit_open += 1
            elif outcome in _LIVE_FAILURES:
                tally.failed += 1
                tally.last_error = error[:_MAX_ERROR_CHARS]
                tally.last_error_at = utcnow()
        await self.recorder.record(
            ModelCall(
                call_id=uuid.uuid4().hex,
                call_key=call_key,
                prompt_hash=prompt_hash,
                provider=provider,
                model=model,
                outcome=outcome,
                attempts=attempts,
                tokens_in=usage.tokens_in if usage else 0,
                tokens_out=usage.tokens_out if usage else 0,
                latency_ms=round(latency_ms, 3),
                cost_usd=cost_usd,
                tenant=ctx.tenant,
                agent=ctx.agent,
                task_id=ctx.task_id,
                kind=ctx.kind,
                error=error[:1000],
                request=request,
                response=response,
            )
        )


def call_key(ctx: CallContext, prompt_hash: str, ref: ModelRef | str) -> str:
    """The deterministic budget key of one (task, agent, prompt, model).

    Args:
        ctx: the call's context (``task_id``, ``agent``).
        prompt_hash: :attr:`ModelRequest.prompt_hash`.
        ref: the model.

    Returns:
        32 hex digits of SHA-256 over the four fields.
    """
    raw = "\x00".join((ctx.task_id, ctx.agent, prompt_hash, str(ref)))
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
