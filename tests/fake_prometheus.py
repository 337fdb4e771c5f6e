"""A local fake Prometheus that speaks the HTTP API's wire format, for tests.

Endpoints (Prometheus docs, "HTTP API"):

* ``GET /api/v1/query_range?query=&start=&end=&step=``: evaluates the query at
  ``start, start + step, ... <= end`` like Prometheus does (the newest sample at or
  before each step, at most :attr:`FakePrometheus.lookback_s` old) and answers
  ``{"status": "success", "data": {"resultType": "matrix", "result": [...]}}`` with
  ``[<unix seconds>, "<value>"]`` pairs (``"NaN"``, ``"+Inf"`` as Prometheus writes
  them). More than 11,000 steps is a 400 ``bad_data``, as in Prometheus.
* ``GET /api/v1/label/<name>/values``: the label's distinct values.

Only trivial selectors are evaluated: ``name``, ``name{l="v", ...}`` or
``{l="v", ...}`` with ``=``, ``!=``, ``=~``, ``!~`` (regexes fully anchored, as in
Prometheus). Anything else (functions, operators, ranges) is a 400 ``bad_data``
parse error.

Failure modes (:attr:`FakePrometheus.mode`): ``"bad_data"`` (400), ``"unavailable"``
(503), ``"hang"`` (answers after :attr:`FakePrometheus.hang_s`, or when the server
stops), ``"malformed"`` (200 with truncated JSON). Every request is kept in
:attr:`FakePrometheus.requests`. With ``auth=(user, password)`` requests without
that basic auth get a 401.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

Mode = Literal["ok", "bad_data", "unavailable", "hang", "malformed"]

MAX_STEPS = 11_000
"""Prometheus refuses range queries of more points per series."""


@dataclass
class FakeSeries:
    """One stored series.

    Attributes:
        labels: its labels, ``__name__`` included.
        samples: ``(unix seconds, value)`` in time order.
    """

    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class Seen:
    """A request the server received."""

    path: str
    params: dict[str, str]
    headers: dict[str, str]


_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*')
_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*$", re.S)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), text)


def parse_selector(query: str) -> list[tuple[str, str, str]]:
    """``(label, op, value)`` matchers of a trivial selector.

    Raises:
        ValueError: not a trivial selector (the message is Prometheus-like).
    """
    m = _SELECTOR.match(query)
    if m is None or (m[1] is None and m[2] is None):
        raise ValueError(f'1:1: parse error: unexpected character in "{query[:40]}"')
    matchers = [("__name__", "=", m[1])] if m[1] else []
    body = (m[2] or "").strip()
    pos = 0
    while pos < len(body):
        mm = _MATCHER.match(body, pos)
        if mm is None:
            raise ValueError(f"1:{pos + 1}: parse error: unexpected character inside braces")
        matchers.append((mm[1], mm[2], _unescape(mm[3])))
        pos = mm.end()
        if pos < len(body):
            if body[pos] != ",":
                raise ValueError(f"1:{pos + 1}: parse error: expected comma")
            pos += 1
    if not any(op in ("=", "=~") and not re.fullmatch(v, "") for _, op, v in matchers):
        raise ValueError("vector selector must contain at least one non-empty matcher")
    return matchers


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        have = labels.get(name, "")
        ok = {
            "=": have == value,
            "!=": have != value,
            "=~": re.fullmatch(value, have) is not None,
            "!~": re.fullmatch(value, have) is None,
        }[op]
        if not ok:
            return False
    return True


def _format(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class FakePrometheus:
    """The fake server in a background thread (``with FakePrometheus(...) as prom:``).

    Args:
        series: the stored series.
        host: listen address.
        port: listen port (0: a free one).
        auth: ``(user, password)`` required as basic auth, or ``None``.
    """

    def __init__(
        self,
        series: list[FakeSeries] | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.series = list(series or [])
        self.auth = auth
        self.mode: Mode = "ok"
        self.hang_s = 30.0
        self.lookback_s = 300.0
        self.requests: list[Seen] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._httpd = ThreadingHTTPServer((host, port), _handler(self))
        self._httpd.daemon_threads = True
        # a client that gave up (a timeout test) makes the late answer fail: not an error
        self._httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def count(self) -> int:
        """Requests received so far."""
        with self._lock:
            return len(self.requests)

    def add(self, labels: dict[str, str], samples: list[tuple[float, float]]) -> None:
        """Store one more series."""
        self.series.append(FakeSeries(dict(labels), list(samples)))

    def start(self) -> FakePrometheus:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)

    def __enter__(self) -> FakePrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- evaluation ------------------------------------------------------------

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Any]:
        """The matrix of ``query`` (raises ``ValueError`` like a parse error)."""
        matchers = parse_selector(query)
        if step <= 0:
            raise ValueError("zero or negative query resolution step widths are not accepted")
        if (end - start) / step > MAX_STEPS:
            raise ValueError(
                "exceeded maximum resolution of 11,000 points per timeseries. Try "
                "decreasing the query resolution (?step=XX)"
            )
        steps = [start + k * step for k in range(int((end - start) // step) + 1)]
        out = []
        for s in self.series:
            if not _matches(s.labels, matchers):
                continue
            values = []
            for t in steps:
                seen = [(ts, v) for ts, v in s.samples if t - self.lookback_s < ts <= t]
                if seen:
                    values.append([round(t, 3), _format(seen[-1][1])])
            if values:
                out.append({"metric": dict(s.labels), "values": values})
        return out

    def label_values(self, name: str) -> list[str]:
        return sorted({s.labels[name] for s in self.series if s.labels.get(name)})


def _handler(server: FakePrometheus) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: bytes, kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("content-type", kind)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, error_type: str, error: str) -> None:
            body = {"status": "error", "errorType": error_type, "error": error}
            self._send(status, json.dumps(body).encode())

        def _authorised(self) -> bool:
            if server.auth is None:
                return True
            want = base64.b64encode(":".join(server.auth).encode()).decode()
            return self.headers.get("authorization") == f"Basic {want}"

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            with server._lock:
                server.requests.append(Seen(parts.path, params, dict(self.headers.items())))
            if not self._authorised():
                self._send(401, b"Unauthorized\n", "text/plain")
                return
            match server.mode:
                case "bad_data":
                    self._error(400, "bad_data", 'invalid parameter "query": fake bad data')
                    return
                case "unavailable":
                    self._error(503, "unavailable", "fake: TSDB not ready")
                    return
                case "malformed":
                    self._send(200, b'{"status":"success","data":{"resultType":"matrix","res')
                    return
                case "hang":
                    server._stop.wait(server.hang_s)
                case _:
                    pass
            if parts.path == "/api/v1/query_range":
                self._query_range(params)
            elif m := re.fullmatch(r"/api/v1/label/([^/]+)/values", parts.path):
                data = server.label_values(unquote(m[1]))
                self._send(200, json.dumps({"status": "success", "data": data}).encode())
            else:
                self._send(404, b"404 page not found\n", "text/plain")

        def _query_range(self, params: dict[str, str]) -> None:
            for key in ("query", "start", "end", "step"):
                if key not in params:
                    self._error(400, "bad_data", f'invalid parameter "{key}": missing')
                    return
            try:
                start, end, step = (float(params[k]) for k in ("start", "end", "step"))
            except ValueError as exc:
                self._error(400, "bad_data", f"invalid parameter: {exc}")
                return
            if end < start:
                self._error(400, "bad_data", "end timestamp must not be before start time")
                return
            try:
                result = server.query_range(params["query"], start, end, step)
            except ValueError as exc:
                self._error(400, "bad_data", str(exc))
                return
            body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
            self._send(200, json.dumps(body).encode())

    return Handler
