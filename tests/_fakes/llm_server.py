"""A scriptable fake LLM server speaking the real OpenAI and Anthropic wire formats.

Endpoints (one server serves both APIs):

* ``POST /v1/chat/completions``: OpenAI chat completions, JSON or SSE
  (``data: {chunk}`` lines, a usage chunk when ``stream_options.include_usage``,
  then ``data: [DONE]``), tool calls, usage.
* ``POST /v1/messages``: Anthropic messages, JSON or SSE (``message_start``,
  ``content_block_start/delta/stop``, ``message_delta``, ``message_stop``),
  ``tool_use`` blocks (a forced ``tool_choice`` answers with that tool), usage.
* ``GET /health`` and ``GET /v1/models``: vLLM's health check and model list.

Script replies per test with :meth:`FakeLLMServer.script`; when the script is empty
the server answers ``default``. Every request is kept in ``requests``.

Run as a program it mimics ``vllm serve MODEL --host H --port P`` (for the launcher
test): ``python -m tests._fakes.llm_server serve MODEL --port 8000``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One scripted answer.

    Attributes:
        status: HTTP status; non-2xx answers carry an API-shaped error body.
        headers: extra headers (e.g. ``{"retry-after": "1"}``).
        hang_s: seconds to wait before answering (cut short when the server stops).
        text: assistant text.
        json: a JSON value: OpenAI gets it as the message content, Anthropic as the
            input of the forced tool (or as text when no tool is forced).
        tool_calls: ``(name, arguments)`` pairs the model "calls".
        raw: a raw body sent as is with ``status`` (e.g. broken JSON).
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hang_s: float = 0.0
    text: str | None = None
    json: Any = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    raw: bytes | None = None


def rate_limited(retry_after: str | None = "0", *, ms: str | None = None) -> Reply:
    """A 429 with ``Retry-After`` (seconds or HTTP-date) and/or ``retry-after-ms``."""
    headers = {}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    if ms is not None:
        headers["retry-after-ms"] = ms
    return Reply(status=429, headers=headers)


def server_error(status: int = 500) -> Reply:
    """A 5xx."""
    return Reply(status=status)


@dataclass
class Seen:
    """A request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class FakeLLMServer:
    """The fake server in a background thread (``with FakeLLMServer() as srv: ...``).

    Args:
        host: listen address.
        port: listen port (0: a free one).
        models: ids listed at ``/v1/models``.
        ready_after_s: ``/health`` answers 503 for this long after start.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: tuple[str, ...] = ("fake-model",),
        ready_after_s: float = 0.0,
    ) -> None:
        self.models = models
        self.default = Reply(text="Hello from the fake model.")
        self.requests: list[Seen] = []
        self._script: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready_at = time.monotonic() + ready_after_s
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://host:port`` (Anthropic ``base_url``)."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def openai_url(self) -> str:
        """``http://host:port/v1`` (OpenAI ``base_url``)."""
        return f"{self.url}/v1"

    def script(self, *replies: Reply) -> None:
        """Queue replies, answered in order to the next model requests."""
        with self._lock:
            self._script.extend(replies)

    def next_reply(self) -> Reply:
        with self._lock:
            return self._script.popleft() if self._script else self.default

    @property
    def model_requests(self) -> list[Seen]:
        """Requests to the chat-completions / messages endpoints."""
        return [r for r in self.requests if r.method == "POST"]

    def start(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    @property
    def ready(self) -> bool:
        return time.monotonic() >= self._ready_at


def _usage_in(body: dict[str, Any]) -> int:
    return max(len(json.dumps(body.get("messages", []))) // 4, 1)


def _tokens(text: str) -> int:
    return max(len(text) // 4, 1)


def _chunks(text: str, size: int = 7) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _openai_error(status: int) -> dict[str, Any]:
    return {"error": {"message": f"fake error {status}", "type": "server_error", "code": status}}


def _anthropic_error(status: int) -> dict[str, Any]:
    kind = "rate_limit_error" if status == 429 else "api_error"
    return {"type": "error", "error": {"type": kind, "message": f"fake error {status}"}}


def openai_protocol_error(body: dict[str, Any]) -> str | None:
    """What the Chat Completions API rejects with a 400 in a tool conversation: an
    assistant message with ``tool_calls`` not followed by one ``tool`` message per call
    id, or a ``tool`` message answering no such call."""
    messages = body.get("messages") or []
    pending: set[str] = set()
    for m in messages:
        role = m.get("role")
        if role == "tool":
            if m.get("tool_call_id") not in pending:
                return "messages with role 'tool' must be a response to a preceding " \
                       "message with 'tool_calls'"
            pending.discard(m["tool_call_id"])
            continue
        if pending:
            return "An assistant message with 'tool_calls' must be followed by tool " \
                   "messages responding to each 'tool_call_id'"
        if role == "assistant" and m.get("tool_calls"):
            pending = {c["id"] for c in m["tool_calls"]}
    return None


def anthropic_protocol_error(body: dict[str, Any]) -> str | None:
    """What the Messages API rejects with a 400: ``tool_use`` / ``tool_result`` blocks
    without ``tools`` declared, or a ``tool_result`` not answering the previous turn's
    ``tool_use``."""
    uses: set[str] = set()
    for m in body.get("messages") or []:
        blocks = m.get("content") if isinstance(m.get("content"), list) else []
        kinds = {b.get("type") for b in blocks}
        if kinds & {"tool_use", "tool_result"} and not body.get("tools"):
            return "Requests which include `tool_use` or `tool_result` blocks must define tools."
        for b in blocks:
            if b.get("type") == "tool_result" and b.get("tool_use_id") not in uses:
                return "unexpected `tool_use_id` found in `tool_result` blocks"
        uses = {b["id"] for b in blocks if b.get("type") == "tool_use"}
    return None


def _handler(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)

        def _start_sse(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.end_headers()

        def _sse(self, data: Any, event: str | None = None) -> None:
            line = f"event: {event}\n" if event else ""
            text = data if isinstance(data, str) else json.dumps(data)
            self.wfile.write(f"{line}data: {text}\n\n".encode())
            self.wfile.flush()

        def do_GET(self) -> None:
            server.requests.append(Seen("GET", self.path, dict(self.headers), {}, time.time()))
            if self.path == "/health":
                if server.ready:
                    self.send_response(200)
                    self.send_header("content-length", "0")
                    self.end_headers()
                else:
                    self._send_json(503, {"status": "loading"})
            elif self.path == "/v1/models":
                data = [{"id": m, "object": "model", "owned_by": "fake"} for m in server.models]
                self._send_json(200, {"object": "list", "data": data})
            else:
                self._send_json(404, {"error": "not found"})

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                body = {}
            server.requests.append(Seen("POST", self.path, dict(self.headers), body, time.time()))
            reply = server.next_reply()
            if reply.hang_s:
                server.wait(reply.hang_s)
            with contextlib.suppress(OSError):
                if self.path == "/v1/chat/completions":
                    if (error := openai_protocol_error(body)) is not None:
                        self._send_json(400, {"error": {"message": error, "type":
                                                        "invalid_request_error"}})
                        return
                    self._openai(body, reply)
                elif self.path == "/v1/messages":
                    if (error := anthropic_protocol_error(body)) is not None:
                        self._send_json(400, {"type": "error", "error": {
                            "type": "invalid_request_error", "message": error}})
                        return
                    self._anthropic(body, reply)
                else:
                    self._send_json(404, {"error": "not found"})

        # --- OpenAI ------------------------------------------------------------------

        def _openai(self, body: dict[str, Any], reply: Reply) -> None:
            if reply.raw is not None:
                self.send_response(reply.status)
                self.send_header("content-length", str(len(reply.raw)))
                self.end_headers()
                self.wfile.write(reply.raw)
                return
            if reply.status != 200:
                self._send_json(reply.status, _openai_error(reply.status), reply.headers)
                return
            model = body.get("model", "")
            text = reply.text if reply.text is not None else (
                json.dumps(reply.json) if reply.json is not None else "")
            calls = [
                {"id": f"call_{i}", "type": "function",
                 "function": {"name": name, "arguments": json.dumps(args)}}
                for i, (name, args) in enumerate(reply.tool_calls)
            ]
            finish = "tool_calls" if calls else "stop"
            usage = {"prompt_tokens": _usage_in(body), "completion_tokens": _tokens(text)}
            usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
            base = {"id": "chatcmpl-fake", "created": int(time.time()), "model": model}
            if not body.get("stream"):
                message: dict[str, Any] = {"role": "assistant", "content": text or None}
                if calls:
                    message["tool_calls"] = calls
                self._send_json(200, {
                    **base, "object": "chat.completion",
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": usage,
                }, reply.headers)
                return
            chunk = {**base, "object": "chat.completion.chunk"}
            self._start_sse()

            def delta(d: dict[str, Any], finish_reason: str | None = None) -> None:
                self._sse({**chunk, "choices": [
                    {"index": 0, "delta": d, "finish_reason": finish_reason}]})

            delta({"role": "assistant", "content": ""})
            if text:
                for piece in _chunks(text):
                    delta({"content": piece})
            for i, call in enumerate(calls):
                delta({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                                       "function": {"name": call["function"]["name"],
                                                    "arguments": ""}}]})
                for piece in _chunks(call["function"]["arguments"]):
                    delta({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
            delta({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                self._sse({**chunk, "choices": [], "usage": usage})
            self._sse("[DONE]")

        # --- Anthropic ---------------------------------------------------------------

        def _anthropic(self, body: dict[str, Any], reply: Reply) -> None:
            if reply.raw is not None:
                self.send_response(reply.status)
                self.send_header("content-length", str(len(reply.raw)))
                self.end_headers()
                self.wfile.write(reply.raw)
                return
            if reply.status != 200:
                self._send_json(reply.status, _anthropic_error(reply.status), reply.headers)
                return
            model = body.get("model", "")
            forced = (body.get("tool_choice") or {}).get("name")
            blocks: list[dict[str, Any]] = []
            text = reply.text
            if reply.json is not None and forced is None:
                text = json.dumps(reply.json)
            if text:
                blocks.append({"type": "text", "text": text})
            tool_uses = list(reply.tool_calls)
            if forced is not None and reply.json is not None:
                tool_uses.append((forced, reply.json))
            for i, (name, args) in enumerate(tool_uses):
                blocks.append({"type": "tool_use", "id": f"toolu_{i}", "name": name,
                               "input": args})
            stop = "tool_use" if tool_uses else "end_turn"
            out_tokens = _tokens(json.dumps(blocks))
            usage = {"input_tokens": _usage_in(body), "output_tokens": out_tokens}
            message = {"id": "msg_fake", "type": "message", "role": "assistant", "model": model,
                       "stop_reason": None, "stop_sequence": None}
            if not body.get("stream"):
                self._send_json(200, {**message, "content": blocks, "stop_reason": stop,
                                      "usage": usage}, reply.headers)
                return
            self._start_sse()
            self._sse({"type": "message_start", "message": {
                **message, "content": [],
                "usage": {"input_tokens": usage["input_tokens"], "output_tokens": 1}}},
                "message_start")
            self._sse({"type": "ping"}, "ping")
            for i, block in enumerate(blocks):
                if block["type"] == "text":
                    start = {"type": "text", "text": ""}
                    pieces = [{"type": "text_delta", "text": p} for p in _chunks(block["text"])]
                else:
                    start = {"type": "tool_use", "id": block["id"], "name": block["name"],
                             "input": {}}
                    pieces = [{"type": "input_json_delta", "partial_json": p}
                              for p in _chunks(json.dumps(block["input"]))]
                self._sse({"type": "content_block_start", "index": i, "content_block": start},
                          "content_block_start")
                for piece in pieces:
                    self._sse({"type": "content_block_delta", "index": i, "delta": piece},
                              "content_block_delta")
                self._sse({"type": "content_block_stop", "index": i}, "content_block_stop")
            self._sse({"type": "message_delta",
                       "delta": {"stop_reason": stop, "stop_sequence": None},
                       "usage": {"output_tokens": out_tokens}}, "message_delta")
            self._sse({"type": "message_stop"}, "message_stop")

    return Handler


def main(argv: list[str] | None = None) -> int:
    """Serve like ``vllm serve MODEL --host H --port P [--served-model-name N]``.

    ``FAKE_VLLM_STARTUP_S`` (seconds) delays readiness, like weights loading.
    """
    parser = argparse.ArgumentParser(prog="vllm")
    parser.add_argument("command", choices=["serve"])
    parser.add_argument("model")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", default=None)
    args, _unknown = parser.parse_known_args(argv)
    startup = float(os.environ.get("FAKE_VLLM_STARTUP_S", "0"))
    srv = FakeLLMServer(args.host, args.port, models=(args.served_model_name or args.model,),
                        ready_after_s=startup)
    print(f"fake vllm serving {args.model} on {srv.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        srv._httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
