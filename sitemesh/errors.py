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
