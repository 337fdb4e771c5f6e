"""The tool registry: the one way agents call tools (through ``AgentContext.tools``).

For each :meth:`ToolRegistry.call` the registry

1. derives the idempotency key from (task id, step, call index) and the call id from
   the key and the tool (:mod:`sitemesh.tools._types`);
2. with replay on (``tools.replay``), serves the recorded response of the call id when
   its arguments hash matches (``strict``: or raises :class:`ToolReplayMiss`, and no
   tool is ever called); for a tool that had side effects, serves the response
   recorded the first time a redelivered step made the call;
3. otherwise calls the tool live (:mod:`sitemesh.tools._attempts`): connects its server
   (lazily, once: :class:`ServerPool`), resolves the tool and its input schema, fills in
   ``idempotency_key`` when the schema declares it, validates the arguments
   (:class:`InvalidToolArguments` names the field), and tries it under its circuit
   breaker, local rate limit, per-attempt timeout, retries and the tool's rate limits;
4. records the call (any outcome) for replay, with latency and attempts;
5. scans the response for personal data before returning it (fail closed,
   :mod:`sitemesh.tools._privacy`): the result carries the data class and entity
   counts, and is pseudonymised through the site vault when asked.

Per-tool health (:meth:`ToolRegistry.health`) is what ``sitemesh tools health`` shows.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal, Self

from ._attempts import ToolGuard, run_attempts
from ._errors import (
    InvalidToolArguments,
    ToolCircuitOpen,
    ToolError,
    ToolRateLimited,
    ToolReplayMiss,
    ToolTimeout,
    ToolUnavailable,
    UnknownTool,
)
from ._pool import ServerPool
from ._privacy import ResponseScanner, protect_response
from ._recorder import NullToolRecorder, ToolCallRecorder
from ._spec import ToolSpec, load_tool_specs, tools_file
from ._types import (
    IDEMPOTENCY_ARGUMENT,
    IDEMPOTENCY_META_KEY,
    ToolCall,
    ToolCallOutcome,
    ToolHealth,
    ToolInfo,
    ToolResponse,
    ToolResult,
    ToolSource,
    arguments_hash,
    idempotency_key,
    tool_call_id,
)
from ._validate import validate_arguments

if TYPE_CHECKING:
    from ..config import Settings
    from ..models import CircuitBreaker
    from ..policy import Pseudonymizer
    from ..state import Store

__all__ = ["ReplayMode", "ToolRegistry"]

log = logging.getLogger("sitemesh.tools")

ReplayMode = Literal["off", "prefer", "strict"]


def _outcome(exc: BaseException) -> ToolCallOutcome:
    match exc:
        case ToolCircuitOpen():
            return "circuit_open"
        case ToolRateLimited():
            return "rate_limited"
        case ToolTimeout():
            return "timeout"
        case InvalidToolArguments():
            return "invalid_arguments"
        case UnknownTool():
            return "unknown_tool"
        case _:
            return "unavailable"


@dataclass(frozen=True, slots=True)
class _Keys:
    """What identifies one call in its records."""

    call_id: str
    idempotency_key: str
    tool: str
    server: str
    task_id: str
    step: str
    call_index: int
    agent: str
    arguments_hash: str


class ToolRegistry:
    """The site's tools, for the agents of one process (see the module docstring).

    Use as ``async with ToolRegistry(specs, ...) as tools:`` or call :meth:`aclose`
    on shutdown (MCP sessions end, stdio servers exit).

    Args:
        specs: the configured servers (:func:`~sitemesh.tools.load_tool_specs`).
        scanner: the site's PII scanner (``scan_many``); ``None``: a default
            :class:`sitemesh.policy.PiiScanner`, loaded on the first response.
        pseudonymizer: the site's pseudonymiser (scanner + vault) for
            ``pseudonymise=True`` calls, or a zero-argument factory building it on
            first use; ``None``: such calls are refused (fail closed).
        recorder: where calls are recorded and looked up (default: nowhere).
        replay: ``off``, ``prefer`` or ``strict`` (see ``ToolsSettings.replay``).
        env: extra environment of stdio servers with ``sitemesh_env`` (the process's
            ``SITEMESH_*`` settings).
        sleep: the backoff and rate-limit waits (inject a fake in tests), seconds.
        clock: monotonic clock of the breakers and the local rate limits, in seconds.
        rng: the backoff jitter's random source (seed it in tests).
        owned_store: a store this registry opened, closed by :meth:`aclose`.
    """

    def __init__(
        self,
        specs: Sequence[ToolSpec],
        *,
        scanner: ResponseScanner | None = None,
        pseudonymizer: Pseudonymizer | Callable[[], Pseudonymizer] | None = None,
        recorder: ToolCallRecorder | None = None,
        replay: ReplayMode = "off",
        env: Mapping[str, str] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        owned_store: Store | None = None,
    ) -> None:
        self.pool = ServerPool(specs, env=env)
        self.replay: ReplayMode = replay
        self.recorder: ToolCallRecorder = recorder or NullToolRecorder()
        self._scanner = scanner
        self._pseudonymizer = pseudonymizer
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - backoff jitter, not a secret
        self._owned_store = owned_store
        self._guards: dict[str, ToolGuard] = {}
        self._closed = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        store: Store | None = None,
        scanner: ResponseScanner | None = None,
        replay: ReplayMode | None = None,
        read_only: bool = False,
    ) -> ToolRegistry:
        """The registry of a process: the configured tools, recording in the site's
        database, scanning with the site's scanner, pseudonymising through its vault.

        Nothing is connected or loaded yet: servers start on their first call, the
        store is migrated on its first record, the scanner loads on the first response.

        Args:
            settings: ``tools`` (file, replay), ``policy`` (the scanner), ``privacy``
                and ``state_dir`` (the vault key), ``db_url``, ``site``.
            store: an open state store to record in instead of a new one.
            scanner: the scanner to use instead of ``PiiScanner.from_settings``.
            replay: the replay mode instead of ``settings.tools.replay``.
            read_only: look calls up in the site's database but keep this registry's
                own records in memory (:class:`ReadOnlyToolRecorder`), and never
                migrate the database: the replay sandbox writes nothing there.

        Raises:
            ToolConfigError: the tools file is unreadable or invalid (names the field).
        """
        from ..policy import PiiScanner
        from ..state import Store
        from ._recorder import ReadOnlyToolRecorder, StoreToolRecorder

        specs = load_tool_specs(tools_file(settings))
        owned = None
        if store is None:
            store = owned = Store(settings.db_url, auto_migrate=not read_only)
        recorder: ToolCallRecorder = StoreToolRecorder(
            store, site=settings.site, migrate=owned is not None and not read_only
        )
        if read_only:
            recorder = ReadOnlyToolRecorder(recorder)
        pii = scanner if scanner is not None else PiiScanner.from_settings(settings.policy)

        def pseudonymizer() -> Pseudonymizer:
            from ..policy import Pseudonymizer, Vault, load_vault_key

            key = load_vault_key(settings.privacy, settings.state_dir)
            return Pseudonymizer(pii, Vault(settings.db_url, key))  # type: ignore[arg-type]

        return cls(
            specs,
            scanner=pii,
            pseudonymizer=pseudonymizer,
            recorder=recorder,
            replay=replay if replay is not None else settings.tools.replay,
            env=settings.to_env(),
            owned_store=owned,
        )

    # -- lifecycle ----------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close every MCP session (stdio servers exit) and a store it opened. Safe twice."""
        if self._closed:
            return
        self._closed = True
        await self.pool.aclose()
        if self._owned_store is not None:
            await self._owned_store.close()

    # -- what is offered ---------------------------------------------------------------

    @property
    def specs(self) -> dict[str, ToolSpec]:
        """The configured servers by name, in configuration order."""
        return self.pool.specs

    async def list_tools(self, server: str | None = None) -> list[ToolInfo]:
        """The tools of one server, or of every configured server (connecting them).

        In a strict replay nothing is connected: listings are not recorded (a
        recorded call keeps the tool's name and response, not its description or
        input schema), so there is nothing to answer from, and the call raises
        :class:`ToolReplayMiss` without starting a server.

        Args:
            server: a configured server's name; ``None``: all of them.

        Returns:
            Their tools, by server in configuration order, then by name.

        Raises:
            UnknownTool: ``server`` is not configured (strict replay included).
            ToolUnavailable: a server could not be reached or listed (names it).
            ToolReplayMiss: a strict replay (names the first server; no server is
                started).
        """
        out: list[ToolInfo] = []
        for name in [server] if server is not None else list(self.specs):
            self.pool.split(name)  # UnknownTool first, as outside a replay
            self._refuse_in_strict_replay(name, "listed")
            out.extend(await self.pool.listing(name))
        return out

    async def warm(self, server: str) -> None:
        """Start ``server`` and load the response scanner now, so that the first call
        of a message does not pay for it (an agent's ``setup``, before its process
        reports ready). Replays (mode ``strict``) start nothing.

        Args:
            server: a configured server's name.

        Raises:
            UnknownTool: ``server`` is not configured.
            ToolUnavailable: it could not be started or listed (names it).
        """
        scanner = self._scanner_now()
        if (load := getattr(scanner, "load", None)) is not None:
            await asyncio.to_thread(load)
        if self.replay != "strict":
            await self.list_tools(server)

    async def describe(self, tool: str) -> ToolInfo:
        """The tool's description and input schema (connecting its server).

        In a strict replay its server is not started and nothing was recorded to
        describe it from (see :meth:`list_tools`): :class:`ToolReplayMiss`.

        Raises:
            UnknownTool: no such server (strict replay included), or no such tool.
            ToolUnavailable: its server could not be reached.
            ToolReplayMiss: a strict replay (names the tool; no server is started).
        """
        self.pool.split(tool)  # UnknownTool first, as outside a replay
        self._refuse_in_strict_replay(tool, "described")
        return await self.pool.describe(tool)

    def _refuse_in_strict_replay(self, name: str, verb: str) -> None:
        """Raise :class:`ToolReplayMiss` for ``name`` (a server or a tool) in a strict
        replay, which starts no tool server and has no recorded listing to answer from."""
        if self.replay != "strict":
            return
        raise ToolReplayMiss(
            f"{name}: not {verb} in a strict replay (it starts no tool server, and tool "
            "listings are not recorded; replay with --live-tools to list them)",
            tool=name,
            call_id="",
        )

    # -- health ------------------------------------------------------------------------

    def _guard(self, tool: str) -> ToolGuard:
        guard = self._guards.get(tool)
        if guard is None:
            spec, _ = self.pool.split(tool)
            guard = self._guards[tool] = ToolGuard(tool, spec, clock=self._clock, rng=self._rng)
        return guard

    def breaker(self, tool: str) -> CircuitBreaker:
        """The circuit breaker of ``tool`` (as called), created on first use.

        Raises:
            UnknownTool: its server is not configured.
        """
        return self._guard(tool).breaker

    def health(self) -> list[ToolHealth]:
        """Every called tool's health in this process, by name."""
        return [self._guards[k].health.snapshot() for k in sorted(self._guards)]

    # -- calls -------------------------------------------------------------------------

    async def call(
        self,
        tool: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        task_id: str,
        step: str,
        call_index: int,
        agent: str = "",
        pseudonymise: bool = False,
    ) -> ToolResult:
        """Call ``tool`` once for a step (see the module docstring for what happens).

        Args:
            tool: ``<server>.<tool>``, or ``<server>`` when it offers a single tool.
            arguments: the tool's arguments (JSON values), validated against its
                input schema; ``idempotency_key`` is added when the schema declares it.
                They are sent as given: placeholders in them are never re-identified
                here (do that on the site, before the call, if the tool needs values).
            task_id: the task the call serves.
            step: the workflow step making it (``item.step``).
            call_index: 0 for the step's first tool call, 1 for the next...
            agent: the role making it (recorded).
            pseudonymise: replace detected personal data in the response by the task's
                placeholders (for content that may reach a cloud step).

        Returns:
            The scanned answer (``is_error`` answers included: they are the tool's
            answer, e.g. "no such customer").

        Raises:
            UnknownTool: no such server or tool (permanent).
            InvalidToolArguments: the arguments fail the input schema; names the field.
            ToolTimeout: every attempt timed out (transient).
            ToolRateLimited: rate limited beyond the wait budget (transient).
            ToolCircuitOpen: the tool's breaker is open (transient).
            ToolUnavailable: the tool failed otherwise (transient).
            ToolReplayMiss: strict replay and no recorded response (permanent).
            ToolResponseUnscanned: the response could not be scanned or
                pseudonymised; it is withheld (permanent).
        """
        spec, _ = self.pool.split(tool)
        if self._closed:
            raise ToolUnavailable(
                f"{tool}: the tool registry is closed (the process is stopping)",
                tool=tool,
                reason="registry closed",
            )
        args = dict(arguments or {})
        key = idempotency_key(task_id, step, call_index)
        keys = _Keys(
            call_id=tool_call_id(key, tool),
            idempotency_key=key,
            tool=tool,
            server=spec.name,
            task_id=task_id,
            step=step,
            call_index=call_index,
            agent=agent,
            arguments_hash=arguments_hash(args),
        )
        guard = self._guard(tool)
        guard.health.call()
        if self.replay != "off" or spec.side_effects is not False:
            served = await self._recorded(keys, guard, pseudonymise)
            if served is not None:
                return served
        resolved: list[ToolInfo] = []

        def unsafe_to_repeat() -> bool:
            return bool(resolved) and resolved[0].side_effects and not resolved[0].idempotent

        started = time.perf_counter()
        try:
            response, attempts = await run_attempts(
                guard,
                lambda: self._attempt(tool, args, key, resolved),
                sleep=self._sleep,
                unsafe_to_repeat=unsafe_to_repeat,
            )
        except ToolError as exc:
            reason = getattr(exc, "reason", "") or str(exc)
            await self._record(
                keys,
                _outcome(exc),
                attempts=getattr(exc, "attempts", 0),
                latency_ms=(time.perf_counter() - started) * 1000,
                error=f"{type(exc).__name__}: {reason}",
                side_effects=bool(resolved) and resolved[0].side_effects,
            )
            raise
        latency_ms = (time.perf_counter() - started) * 1000
        await self._record(
            keys,
            "tool_error" if response.is_error else "ok",
            attempts=attempts,
            latency_ms=latency_ms,
            response=response,
            side_effects=resolved[0].side_effects,
        )
        return await self._result(keys, response, "live", latency_ms, attempts, pseudonymise)

    async def _recorded(
        self, keys: _Keys, guard: ToolGuard, pseudonymise: bool
    ) -> ToolResult | None:
        """The recorded answer of this call (replay, or a redelivered side effect)."""
        recorded = await self.recorder.lookup(keys.call_id)
        if (
            recorded is not None
            and recorded.response is not None
            and recorded.arguments_hash == keys.arguments_hash
            and (self.replay != "off" or recorded.side_effects)
        ):
            source: ToolSource = "replay" if self.replay != "off" else "deduplicated"
            guard.health.replayed += 1
            outcome: ToolCallOutcome = "replayed" if source == "replay" else "deduplicated"
            await self._record(
                keys,
                outcome,
                attempts=0,
                response=recorded.response,
                side_effects=recorded.side_effects,
            )
            return await self._result(keys, recorded.response, source, 0.0, 0, pseudonymise)
        if self.replay == "strict":
            why = "other arguments" if recorded is not None else "no recorded response"
            raise ToolReplayMiss(
                f"{keys.tool}: strict replay and {why} for call {keys.call_id[:16]} "
                f"(step {keys.step!r}, call {keys.call_index})",
                tool=keys.tool,
                call_id=keys.call_id,
            )
        return None

    async def _attempt(
        self, tool: str, arguments: dict[str, Any], key: str, resolved: list[ToolInfo]
    ) -> ToolResponse:
        """One attempt: connect, resolve (into ``resolved``), add the key, validate, call.

        Raises:
            AttemptFailed | UnknownTool | InvalidToolArguments: see :func:`run_attempts`.
        """
        spec, _ = self.pool.split(tool)
        conn, listing = await self.pool.connect(spec)
        info = self.pool.pick(tool, listing)
        resolved[:] = [info]
        sent = dict(arguments)
        if info.takes_idempotency_key:
            sent.setdefault(IDEMPOTENCY_ARGUMENT, key)
        validate_arguments(tool, info.input_schema, sent)
        return await conn.call(info.tool, sent, {IDEMPOTENCY_META_KEY: key})

    async def _result(
        self,
        keys: _Keys,
        response: ToolResponse,
        source: ToolSource,
        latency_ms: float,
        attempts: int,
        pseudonymise: bool,
    ) -> ToolResult:
        scanned = await protect_response(
            response,
            tool=keys.tool,
            scanner=self._scanner_now(),
            task_id=keys.task_id,
            pseudonymise=pseudonymise,
            pseudonymizer=self.pseudonymizer() if pseudonymise else None,
        )
        return ToolResult(
            tool=keys.tool,
            text="\n".join(scanned.texts),
            structured=scanned.structured,
            is_error=response.is_error,
            data_class=scanned.data_class,
            entities=scanned.entities,
            pseudonymised=scanned.pseudonymised,
            source=source,
            latency_ms=round(latency_ms, 3),
            attempts=attempts,
            idempotency_key=keys.idempotency_key,
            call_id=keys.call_id,
            omitted=response.omitted,
        )

    def _scanner_now(self) -> ResponseScanner:
        if self._scanner is None:
            from ..policy import PiiScanner

            self._scanner = PiiScanner()
        return self._scanner

    def pseudonymizer(self) -> Pseudonymizer | None:
        """The pseudonymiser (PII scanner + site vault) the registry pseudonymises
        responses with, and :meth:`ToolCalls.reidentify` restores placeholders with.

        A factory given to the registry is called on first use; what it builds is kept.

        Returns:
            The :class:`~sitemesh.policy.Pseudonymizer`, or ``None`` when the registry
            has none or its factory failed (e.g. no vault key: logged by exception
            class only, and tried again on the next use). ``pseudonymise=True`` calls
            whose response holds personal data then fail closed
            (:class:`ToolResponseUnscanned`).

        Raises:
            Nothing: a failing factory gives ``None``.
        """
        value = self._pseudonymizer
        if value is None:
            return None
        from ..policy import Pseudonymizer

        if not isinstance(value, Pseudonymizer):
            try:
                value = self._pseudonymizer = value()
            except Exception as exc:  # e.g. the vault key: fail closed (no pseudonymiser)
                log.warning("cannot build the pseudonymiser: %s", type(exc).__name__)
                return None
        return value

    async def _record(
        self,
        keys: _Keys,
        outcome: ToolCallOutcome,
        *,
        attempts: int = 1,
        latency_ms: float = 0.0,
        response: ToolResponse | None = None,
        error: str = "",
        side_effects: bool = False,
    ) -> None:
        call = ToolCall(
            side_effects=side_effects,
            record_id=uuid.uuid4().hex,
            outcome=outcome,
            attempts=attempts,
            latency_ms=round(latency_ms, 3),
            error=error[:1000],
            response=response,
            **asdict(keys),
        )
        try:
            await self.recorder.record(call)
        except Exception as exc:  # the answer stands; a replay of this call will miss
            log.warning(
                "cannot record tool call %s of %s: %s",
                call.call_id[:16],
                call.tool,
                type(exc).__name__,
            )
