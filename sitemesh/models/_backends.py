"""Backends: one model API each, through its official SDK, no retries of their own.

* :class:`OpenAIBackend` speaks the OpenAI chat-completions API with the ``openai``
  SDK. With ``base_url`` it reaches any OpenAI-compatible server on the site (vLLM's
  ``vllm serve``, llama.cpp's ``llama-server``, Ollama's ``/v1``): provider ``vllm``.
* :class:`AnthropicBackend` speaks the Anthropic messages API with ``anthropic``.

The SDKs' own retries are switched off (``max_retries=0``): retries, breakers and
fallback are the client's (``sitemesh.models._client``). Each call is cut after
``timeout_s`` seconds; SDK errors are mapped onto the ``sitemesh.errors`` model tree.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

import anthropic
import openai

from ..errors import ModelError, ModelRateLimited, ModelRequestError, ModelTimeout, ModelUnavailable
from ._resilience import parse_retry_after
from ._types import ChatMessage, ModelRequest, ModelResponse, OutputSchema, ToolCall, Usage

DeltaCallback = Callable[[str], None]
"""Called with each text fragment of a streamed answer, in order."""

_RETRYABLE_STATUS = frozenset({408, 409, 429})

_SDK_ERRORS = (openai.OpenAIError, anthropic.AnthropicError, TimeoutError, ValueError)
"""What a backend maps to a model error: SDK errors, the per-call timeout, and
malformed streamed JSON. Anything else is a bug and propagates unchanged."""


class ModelBackend(Protocol):
    """One model API. Implementations raise only :class:`sitemesh.errors.ModelError`."""

    provider: str
    """``vllm``, ``openai`` or ``anthropic``."""
    timeout_s: float
    """Seconds one call may take."""

    async def complete(
        self,
        request: ModelRequest,
        model: str,
        *,
        max_tokens: int,
        on_delta: DeltaCallback | None = None,
    ) -> ModelResponse:
        """Run ``request`` on ``model`` once (no retry).

        Args:
            request: the prompt; ``request.stream`` selects the SSE wire format.
            model: the model name the server knows.
            max_tokens: output token cap used when the request sets none.
            on_delta: receives text fragments as they stream in.

        Returns:
            The assembled response (``latency_ms`` measured here).

        Raises:
            ModelTimeout: no complete answer within ``timeout_s``.
            ModelRateLimited: HTTP 429 (with the server's ``Retry-After``).
            ModelUnavailable: connection failure, 5xx, 408, 409.
            ModelRequestError: any other 4xx.
        """
        ...

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        ...


def object_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve a top-level ``$ref`` (msgspec's output) so the root is an object schema.

    Args:
        schema: a JSON Schema, e.g. ``msgspec.json.schema(Plan)``
            (``{"$ref": "#/$defs/Plan", "$defs": {...}}``).

    Returns:
        The referenced definition with ``$defs`` kept alongside (Anthropic requires
        ``input_schema`` to be ``{"type": "object", ...}``).
    """
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in defs:
        root = dict(defs[ref[8:]])
        root["$defs"] = defs
        return root
    return schema


def _status_error(
    exc: openai.APIStatusError | anthropic.APIStatusError, provider: str, model: str
) -> ModelError:
    status = exc.status_code
    retry_after = parse_retry_after(exc.response.headers)
    text = f"{provider}/{model}: HTTP {status}: {exc.message[:200]}"
    if status == 429:
        return ModelRateLimited(
            text, provider=provider, model=model, status=status, retry_after_s=retry_after
        )
    if status >= 500 or status in _RETRYABLE_STATUS:
        return ModelUnavailable(
            text, provider=provider, model=model, status=status, retry_after_s=retry_after
        )
    return ModelRequestError(text, provider=provider, model=model, status=status)


def map_sdk_error(exc: BaseException, provider: str, model: str, timeout_s: float) -> ModelError:
    """Map an ``openai`` / ``anthropic`` SDK exception onto the sitemesh model errors.

    Args:
        exc: the exception raised by the SDK call (or ``TimeoutError``).
        provider: the backend's provider name.
        model: the model called.
        timeout_s: the backend's timeout, in seconds (for :class:`ModelTimeout`).

    Returns:
        The mapped error (raise it ``from exc``).
    """
    if isinstance(exc, (TimeoutError, openai.APITimeoutError, anthropic.APITimeoutError)):
        return ModelTimeout(
            f"{provider}/{model}: no answer within {timeout_s:g} s",
            provider=provider,
            model=model,
            timeout_s=timeout_s,
        )
    if isinstance(exc, (openai.APIStatusError, anthropic.APIStatusError)):
        return _status_error(exc, provider, model)
    if isinstance(exc, (openai.APIConnectionError, anthropic.APIConnectionError)):
        return ModelUnavailable(f"{provider}/{model}: connection failed: {exc}",
                                provider=provider, model=model)
    if isinstance(exc, (openai.APIResponseValidationError, anthropic.APIResponseValidationError)):
        return ModelUnavailable(f"{provider}/{model}: malformed response: {exc}",
                                provider=provider, model=model)
    return ModelUnavailable(
        f"{provider}/{model}: malformed answer: {type(exc).__name__}: {exc}",
        provider=provider, model=model,
    )


def _openai_message(m: ChatMessage) -> dict[str, Any]:
    """One message in the Chat Completions format (``tool_calls`` / ``role: tool``)."""
    if m.role == "tool":
        return {"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}
    out: dict[str, Any] = {"role": m.role, "content": m.content}
    if m.tool_calls:
        out["content"] = m.content or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.arguments}}
            for c in m.tool_calls
        ]
    return out


def _anthropic_messages(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """The non-system messages in the Messages API format: an assistant turn's calls
    become ``tool_use`` blocks, and consecutive ``tool`` messages one user turn of
    ``tool_result`` blocks (the API wants the results together, right after the calls).
    """
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role == "system":
            continue
        if m.role == "tool":
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = out[-1] if out else None
            if last is not None and last["role"] == "user" and isinstance(last["content"], list):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
            continue
        if m.tool_calls:
            blocks: list[dict[str, Any]] = (
                [{"type": "text", "text": m.content}] if m.content else []
            )
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name,
                 "input": _json_object(c.arguments)}
                for c in m.tool_calls
            ]
            out.append({"role": "assistant", "content": blocks})
            continue
        out.append({"role": m.role, "content": m.content})
    return out


def _json_object(text: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object (``{}`` when they are not one: the
    caller has already rejected such a call, and the API needs an object)."""
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


class OpenAIBackend:
    """The OpenAI chat-completions API, or any server that speaks it.

    Args:
        provider: ``"openai"`` for the OpenAI API, ``"vllm"`` for a site server.
        base_url: API base including ``/v1`` (``http://127.0.0.1:8000/v1``);
            ``None``: the SDK default (api.openai.com).
        api_key: the key; vLLM accepts any unless started with ``--api-key``.
        timeout_s: seconds one call may take, streaming included.
    """

    def __init__(
        self,
        *,
        provider: str = "openai",
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 60.0,
    ) -> None:
        self.provider = provider
        self.timeout_s = timeout_s
        kwargs: dict[str, Any] = {}
        if base_url is not None:
            kwargs["base_url"] = base_url
        self._client = openai.AsyncOpenAI(
            api_key=api_key or "EMPTY", max_retries=0, timeout=timeout_s, **kwargs
        )

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self._client.close()

    def _params(self, request: ModelRequest, model: str, max_tokens: int) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": model,
            "messages": [_openai_message(m) for m in request.messages],
            "max_tokens": request.max_tokens or max_tokens,
            "temperature": request.temperature,
        }
        if request.tools:
            params["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters or {"type": "object", "properties": {}},
                    },
                }
                for t in request.tools
            ]
            if request.tool_choice is not None:
                params["tool_choice"] = request.tool_choice
        if request.output is not None:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": request.output.name,
                    "schema": object_schema(request.output.schema),
                    "strict": False,
                },
            }
        return params

    async def complete(
        self,
        request: ModelRequest,
        model: str,
        *,
        max_tokens: int,
        on_delta: DeltaCallback | None = None,
    ) -> ModelResponse:
        """Run ``request`` once; see :meth:`ModelBackend.complete`."""
        params = self._params(request, model, max_tokens)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                if request.stream:
                    response = await self._stream(params, on_delta)
                else:
                    response = self._convert(await self._client.chat.completions.create(**params))
        except _SDK_ERRORS as exc:
            raise map_sdk_error(exc, self.provider, model, self.timeout_s) from exc
        return _finish(response, self.provider, model, start)

    @staticmethod
    def _convert(r: Any) -> ModelResponse:
        choice = r.choices[0] if r.choices else None
        message = choice.message if choice else None
        calls = [
            ToolCall(id=tc.id, name=tc.function.name, arguments=tc.function.arguments or "")
            for tc in (message.tool_calls or [] if message else [])
        ]
        usage = r.usage
        return ModelResponse(
            text=(message.content or "") if message else "",
            tool_calls=calls,
            usage=Usage(
                tokens_in=usage.prompt_tokens if usage else 0,
                tokens_out=usage.completion_tokens if usage else 0,
            ),
            provider="",
            model=r.model or "",
            finish_reason=choice.finish_reason if choice else None,
        )

    async def _stream(
        self, params: dict[str, Any], on_delta: DeltaCallback | None
    ) -> ModelResponse:
        stream = await self._client.chat.completions.create(
            **params, stream=True, stream_options={"include_usage": True}
        )
        text: list[str] = []
        calls: dict[int, dict[str, str]] = {}
        usage = Usage()
        finish: str | None = None
        model = ""
        async with stream:
            async for chunk in stream:
                model = chunk.model or model
                if chunk.usage is not None:
                    usage = Usage(
                        tokens_in=chunk.usage.prompt_tokens,
                        tokens_out=chunk.usage.completion_tokens,
                    )
                for choice in chunk.choices:
                    delta = choice.delta
                    if delta.content:
                        text.append(delta.content)
                        if on_delta is not None:
                            on_delta(delta.content)
                    for tc in delta.tool_calls or []:
                        call = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
                        call["id"] = tc.id or call["id"]
                        if tc.function is not None:
                            call["name"] += tc.function.name or ""
                            call["arguments"] += tc.function.arguments or ""
                    finish = choice.finish_reason or finish
        return ModelResponse(
            text="".join(text),
            tool_calls=[ToolCall(**calls[i]) for i in sorted(calls)],
            usage=usage,
            provider="",
            model=model,
            finish_reason=finish,
        )


class AnthropicBackend:
    """The Anthropic messages API.

    ``system`` messages are joined into the ``system`` parameter; structured output
    is a forced tool call whose input is the JSON (see :class:`OutputSchema`).
    ``temperature`` is not sent: the pinned SDK (2.x) no longer takes sampling
    parameters on ``messages.create``.

    Args:
        base_url: API base (``https://api.anthropic.com``, no ``/v1``); ``None``: the
            SDK default.
        api_key: the API key.
        timeout_s: seconds one call may take, streaming included.
    """

    provider = "anthropic"

    def __init__(
        self, *, base_url: str | None = None, api_key: str | None = None, timeout_s: float = 60.0
    ) -> None:
        self.timeout_s = timeout_s
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or "missing", base_url=base_url, max_retries=0, timeout=timeout_s
        )

    async def aclose(self) -> None:
        """Close the SDK client's connections."""
        await self._client.close()

    @staticmethod
    def _params(request: ModelRequest, model: str, max_tokens: int) -> dict[str, Any]:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        params: dict[str, Any] = {
            "model": model,
            "messages": _anthropic_messages(request.messages),
            "max_tokens": request.max_tokens or max_tokens,
        }
        if system:
            params["system"] = system
        tools = [
            {
                "name": t.name,
                "description": t.description,
                "input_schema": t.parameters or {"type": "object", "properties": {}},
            }
            for t in request.tools
        ]
        if request.output is not None:
            tools.append(
                {
                    "name": request.output.name,
                    "description": "Return the answer as this tool's input.",
                    "input_schema": object_schema(request.output.schema),
                }
            )
            params["tool_choice"] = {"type": "tool", "name": request.output.name}
        elif request.tools and request.tool_choice is not None:
            params["tool_choice"] = {"type": request.tool_choice}
        if tools:
            params["tools"] = tools
        return params

    async def complete(
        self,
        request: ModelRequest,
        model: str,
        *,
        max_tokens: int,
        on_delta: DeltaCallback | None = None,
    ) -> ModelResponse:
        """Run ``request`` once; see :meth:`ModelBackend.complete`."""
        params = self._params(request, model, max_tokens)
        start = time.perf_counter()
        try:
            async with asyncio.timeout(self.timeout_s):
                if request.stream:
                    blocks, usage, finish, got_model = await self._stream(params, on_delta)
                else:
                    r = await self._client.messages.create(**params)
                    blocks = [
                        {"type": "text", "text": b.text}
                        if b.type == "text"
                        else {"type": b.type, "id": getattr(b, "id", ""),
                              "name": getattr(b, "name", ""),
                              "input": json.dumps(getattr(b, "input", {}), sort_keys=True)}
                        for b in r.content
                    ]
                    usage = Usage(tokens_in=r.usage.input_tokens, tokens_out=r.usage.output_tokens)
                    finish, got_model = r.stop_reason, r.model
        except _SDK_ERRORS as exc:
            raise map_sdk_error(exc, self.provider, model, self.timeout_s) from exc
        response = _assemble(blocks, request.output, usage, finish, got_model)
        return _finish(response, self.provider, model, start)

    async def _stream(
        self, params: dict[str, Any], on_delta: DeltaCallback | None
    ) -> tuple[list[dict[str, str]], Usage, str | None, str]:
        stream = await self._client.messages.create(**params, stream=True)
        blocks: dict[int, dict[str, str]] = {}
        tokens_in = tokens_out = 0
        finish: str | None = None
        model = ""
        async with stream:
            async for event in stream:
                match event.type:
                    case "message_start":
                        model = event.message.model
                        tokens_in = event.message.usage.input_tokens
                        tokens_out = event.message.usage.output_tokens
                    case "content_block_start":
                        b = event.content_block
                        blocks[event.index] = {
                            "type": b.type,
                            "text": getattr(b, "text", "") or "",
                            "id": getattr(b, "id", "") or "",
                            "name": getattr(b, "name", "") or "",
                            "input": "",
                        }
                    case "content_block_delta":
                        block = blocks[event.index]
                        if event.delta.type == "text_delta":
                            block["text"] += event.delta.text
                            if on_delta is not None:
                                on_delta(event.delta.text)
                        elif event.delta.type == "input_json_delta":
                            block["input"] += event.delta.partial_json
                    case "message_delta":
                        finish = event.delta.stop_reason or finish
                        tokens_out = event.usage.output_tokens
        for block in blocks.values():
            if block["type"] == "tool_use":
                block["input"] = json.dumps(json.loads(block["input"] or "{}"), sort_keys=True)
        ordered = [blocks[i] for i in sorted(blocks)]
        return ordered, Usage(tokens_in=tokens_in, tokens_out=tokens_out), finish, model


def _assemble(
    blocks: list[dict[str, str]],
    output: OutputSchema | None,
    usage: Usage,
    finish: str | None,
    model: str,
) -> ModelResponse:
    """Turn Anthropic content blocks into a response; the forced output tool -> text."""
    text = "".join(b.get("text", "") for b in blocks if b["type"] == "text")
    calls: list[ToolCall] = []
    for b in blocks:
        if b["type"] != "tool_use":
            continue
        if output is not None and b["name"] == output.name:
            text = b["input"]
        else:
            calls.append(ToolCall(id=b["id"], name=b["name"], arguments=b["input"]))
    return ModelResponse(
        text=text, tool_calls=calls, usage=usage, provider="", model=model, finish_reason=finish
    )


def _finish(response: ModelResponse, provider: str, model: str, start: float) -> ModelResponse:
    return ModelResponse(
        text=response.text,
        tool_calls=response.tool_calls,
        usage=response.usage,
        provider=provider,
        model=model,
        finish_reason=response.finish_reason,
        latency_ms=round((time.perf_counter() - start) * 1000, 3),
    )
