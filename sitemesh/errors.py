"""The sitemesh error tree.

Every error sitemesh raises derives from :class:`SitemeshError` and also from the
builtin that fits it, so callers can catch either. The class of an error decides
what the worker runtime does with the message that caused it (see
``sitemesh.bus._acking``):

* :class:`TransientError` -> ``nak`` with a backoff delay; redelivered later.
* :class:`PermanentError` -> ``term`` + a ``DeadLetter`` with the reason.
* any other exception -> treated as transient until ``max_deliver`` is exhausted,
  then dead-lettered with the last error.
"""

from __future__ import annotations


class SitemeshError(Exception):
    """Root of every error sitemesh raises."""


class ConfigError(SitemeshError, ValueError):
    """A setting is missing or invalid.

    Attributes:
        key: the settings key, e.g. ``"nats.url"`` (env ``SITEMESH_NATS_URL``).
    """

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


class TransientError(SitemeshError, RuntimeError):
    """The operation may succeed if retried later (broker busy, backend down).

    Attributes:
        retry_after_s: a hint for the redelivery delay in seconds, or ``None``.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(SitemeshError, ValueError):
    """Retrying the same message can never succeed; it is dead-lettered.

    Attributes:
        field: the JSON path of the offending field (``"$.body"``), or ``None``.
    """

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class SchemaError(PermanentError):
    """A message does not match its schema (bad JSON, wrong type, unknown version).

    The message names the field and what was expected, e.g.
    ``"Expected `str`, got `int` - at `$.body`"`` (msgspec's wording).
    """


class MessageTooLarge(PermanentError):
    """A message is larger than the configured limit.

    Attributes:
        size: the message size in bytes.
        max_size: the limit in bytes.
    """

    def __init__(self, size: int, max_size: int, *, field: str | None = "$") -> None:
        super().__init__(
            f"message is {size} bytes, larger than the limit of {max_size} bytes",
            field=field,
        )
        self.size = size
        self.max_size = max_size


class StreamFull(TransientError):
    """A stream refused a message because it is at its size limit (``max_bytes`` or
    ``max_msgs``; sitemesh streams discard *new* messages, never unprocessed old ones).

    The worker runtime holds the input it was handling (never acks it) and publishes
    again with backoff until there is room; ``sitemesh publish`` reports it.

    Attributes:
        subject: the subject the refused message was published on.
        limit: the server's reason, e.g. ``"maximum bytes exceeded"``.
    """

    def __init__(self, subject: str, limit: str) -> None:
        super().__init__(
            f"the stream of {subject} is full ({limit}): nothing was lost, the message "
            "was refused; retry once its consumers have caught up (their processed "
            "history is trimmed) or the stream's limit is raised (bus.max_bytes)",
            retry_after_s=1.0,
        )
        self.subject = subject
        self.limit = limit


class HandlerTimeout(PermanentError):
    """A handler ran past its time budget (``bus.handler_timeout_s``) and was cancelled;
    the message is dead-lettered with reason ``handler_timeout``.

    Attributes:
        budget_s: the budget in seconds.
    """

    def __init__(self, budget_s: float) -> None:
        super().__init__(
            f"handler_timeout: the handler ran longer than its budget of {budget_s:g} s "
            "(bus.handler_timeout_s) and was cancelled"
        )
        self.budget_s = budget_s


class PolicyDenied(PermanentError):
    """The policy router denied the message.

    Attributes:
        rule_id: the id of the rule that denied it.
    """

    def __init__(self, message: str, *, rule_id: str) -> None:
        super().__init__(message)
        self.rule_id = rule_id


class PolicyError(SitemeshError, ValueError):
    """The policy rules file is invalid (names the rule and field)."""


class WorkflowError(SitemeshError, ValueError):
    """A workflows document is invalid: the message names the workflow, the step and
    the field (``workflow 'support' step 'plan' role: unknown role 'plannr'``)."""


class NoWorkflow(PermanentError):
    """No workflow in force serves a task's kind (dead-lettered with field ``kind``)."""


class AgentError(SitemeshError, ValueError):
    """An agent cannot be registered or loaded: a bad entry point or import path, a
    duplicate role, or a class that is not an agent. The message names the source."""


class NatsServerError(SitemeshError, RuntimeError):
    """The embedded ``nats-server`` could not be found or started."""


class BusConnectionError(SitemeshError, ConnectionError):
    """NATS could not be reached.

    Attributes:
        url: the server URL that was tried.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(f"cannot connect to NATS at {url}: {message}")
        self.url = url


class NotReadyError(SitemeshError, TimeoutError):
    """Worker processes did not report ready in time (``sitemesh edge``/``up``/``demo``).

    Attributes:
        missing: the processes still loading, ``<role>`` or ``<site>/<role>``, with
            the count when several of a role are missing (``planner x2``).
        timeout_s: the seconds waited.
    """

    def __init__(self, missing: list[str], timeout_s: float) -> None:
        super().__init__(
            f"not ready after {timeout_s:.0f} s: {', '.join(missing)} (see their logs)"
        )
        self.missing = missing
        self.timeout_s = timeout_s


class PiiAnalyzerError(PermanentError):
    """The PII analyzer failed to load or to analyse a text.

    The privacy path fails closed: the task is dead-lettered, never forwarded
    unscanned. The message names the failing step and the exception class but never
    the analysed text; the original exception is chained as ``__cause__``.
    """


class VaultKeyError(SitemeshError, ValueError):
    """The pseudonym vault key is malformed or is not the key the rows were sealed with.

    Raised instead of returning garbage or partial mappings: a task whose mapping
    cannot be decrypted is not re-identified (its answer keeps the placeholders).

    Attributes:
        task_id: the task whose rows failed to decrypt, or ``None`` for a malformed key.
    """

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class EgressBlocked(PermanentError):
    """The egress guard found PII left in an outgoing payload; nothing is sent.

    The message names the JSON path and the entity type, never the value.

    Attributes:
        field: JSON path of the first offending string, e.g. ``"$.context.notes[2]"``.
        entity_type: Presidio entity type found there, e.g. ``"EMAIL_ADDRESS"``.
        findings: every ``(json_path, entity_type)`` pair found, in walk order.
    """

    def __init__(self, findings: list[tuple[str, str]]) -> None:
        path, entity_type = findings[0]
        more = f" (and {len(findings) - 1} more)" if len(findings) > 1 else ""
        super().__init__(f"egress blocked: {entity_type} detected at {path}{more}", field=path)
        self.entity_type = entity_type
        self.findings = list(findings)


class UnknownModelPrice(PermanentError, LookupError):
    """The price table has no entry for a model, so its calls cannot be costed.

    Calls to an unpriced model are refused rather than recorded at zero cost: a
    budget that cannot count a call cannot bound it.

    Attributes:
        model: the model id that was looked up, e.g. ``"openai/gpt-4o-mini"``.
        source: where the price table came from (a file path), or ``None``.
        known: the models the table does price (listed in the message).
    """

    def __init__(
        self, model: str, *, source: str | None = None, known: tuple[str, ...] = ()
    ) -> None:
        where = f" in {source}" if source else ""
        listed = f"; priced models: {', '.join(known)}" if known else ""
        super().__init__(
            f"no price for model {model!r}{where}: add "
            f'[models."{model}"] input_per_mtok = ..., output_per_mtok = ...{listed}'
        )
        self.model = model
        self.source = source


class BudgetExceeded(PermanentError):
    """A model call was refused before it was made: it would overrun a budget.

    Raised by :meth:`sitemesh.models.BudgetLedger.reserve` when the spent amount,
    plus what concurrent calls hold, plus this call's estimate would pass a limit.
    Nothing was charged or held for the refused call.

    Attributes:
        scope: ``"tenant"``, ``"agent"`` or ``"task"``.
        name: the tenant, agent or task id the budget belongs to.
        period: the budget period, e.g. ``"2026-11-22"`` for a daily budget, or
            ``None`` for a budget without period (a task's whole life).
        resource: ``"tokens"`` or ``"cost"``.
        limit: the limit (tokens as ``int``, cost as ``Decimal`` in the price
            table's currency).
        spent: already charged in this budget (same unit as ``limit``).
        held: reserved by calls in flight (same unit).
        requested: this call's estimate (same unit).
    """

    def __init__(
        self,
        *,
        scope: str,
        name: str,
        period: str | None,
        resource: str,
        limit: object,
        spent: object,
        held: object,
        requested: object,
        unit: str = "",
    ) -> None:
        per = f" for {period}" if period else ""
        u = f" {unit}" if unit else ""
        super().__init__(
            f"{scope} budget of {name!r}{per} exceeded: {resource} limit {limit}{u}, "
            f"spent {spent}{u}, held by calls in flight {held}{u}, this call needs {requested}{u}"
        )
        self.scope = scope
        self.name = name
        self.period = period
        self.resource = resource
        self.limit = limit
        self.spent = spent
        self.held = held
        self.requested = requested


class ModelError(SitemeshError, RuntimeError):
    """A model call failed. Base of the model errors (``sitemesh.models``).

    Attributes:
        provider: ``"vllm"``, ``"openai"`` or ``"anthropic"``, or ``None`` when no single
            backend is at fault.
        model: the model name, or ``None``.
    """

    def __init__(self, message: str, *, provider: str | None = None, model: str | None = None):
        super().__init__(message)
        self.provider = provider
        self.model = model


class ModelUnavailable(ModelError, TransientError):
    """A backend did not answer usefully (connection refused, 5xx): retryable.

    Attributes:
        status: the HTTP status, or ``None`` for a connection failure.
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str | None = None,
        model: str | None = None,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        ModelError.__init__(self, message, provider=provider, model=model)
        self.retry_after_s = retry_after_s
        self.status = status


class ModelRateLimited(ModelUnavailable):
    """The backend answered 429; ``retry_after_s`` carries its ``Retry-After``."""


class ModelTimeout(ModelUnavailable, TimeoutError):
    """A call took longer than the backend's ``timeout_s`` and was cut.

    Attributes:
        timeout_s: the limit that was exceeded, in seconds.
    """

    def __init__(
        self, message: str, *, provider: str | None = None, model: str | None = None,
        timeout_s: float,
    ) -> None:
        super().__init__(message, provider=provider, model=model)
        self.timeout_s = timeout_s


class CircuitOpen(ModelUnavailable):
    """The backend's circuit breaker is open: the call was refused without trying."""


class ModelRequestError(ModelError, PermanentError):
    """The backend rejected the request itself (4xx other than 408/409/429): not retried.

    Attributes:
        status: the HTTP status.
    """

    def __init__(
        self, message: str, *, provider: str | None = None, model: str | None = None,
        status: int | None = None,
    ) -> None:
        ModelError.__init__(self, message, provider=provider, model=model)
        self.field = None
        self.status = status


class InvalidModelOutput(ModelError, PermanentError):
    """Structured output failed validation, also after the one repair attempt.

    Attributes:
        validation_error: the last validation message (msgspec's wording, naming the
            JSON path).
        output: the last raw output text, cut to 2,000 characters.
    """

    def __init__(
        self, validation_error: str, *, output: str, provider: str | None = None,
        model: str | None = None,
    ) -> None:
        ModelError.__init__(
            self,
            f"model output is invalid after one repair attempt: {validation_error}",
            provider=provider,
            model=model,
        )
        self.field = None
        self.validation_error = validation_error
        self.output = output[:2000]


class AllModelsFailed(ModelUnavailable):
    """Every model of the routed chain failed or was refused; nothing answered.

    Callers use their deterministic fallback (and label it) when they catch this.

    Attributes:
        attempts: ``(model_ref, error)`` per model tried, in chain order, e.g.
            ``[("openai/gpt-4.1", "circuit open"), ("vllm/qwen2.5-7b", "timeout")]``.
    """

    def __init__(self, attempts: list[tuple[str, str]]) -> None:
        detail = "; ".join(f"{ref}: {err}" for ref, err in attempts) or "no model configured"
        super().__init__(f"every model failed ({detail})")
        self.attempts = list(attempts)


class ReplayMiss(ModelError, PermanentError):
    """Strict replay found no recorded response for a prompt hash.

    Attributes:
        prompt_hash: the SHA-256 hex digest that was looked up.
    """

    def __init__(self, prompt_hash: str) -> None:
        ModelError.__init__(self, f"no recorded model call for prompt {prompt_hash[:16]}")
        self.field = None
        self.prompt_hash = prompt_hash
