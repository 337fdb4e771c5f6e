"""Kind ``prometheus_api``: range queries against a Prometheus HTTP API.

Wire format (Prometheus docs, "HTTP API"): ``GET /api/v1/query_range?query=&start=
&end=&step=`` answers ``{"status": "success", "data": {"resultType": "matrix",
"result": [{"metric": {...}, "values": [[<unix seconds>, "<value>"], ...]}]}}``;
errors are ``{"status": "error", "errorType": "bad_data", "error": "..."}`` with
HTTP 400, 422 or 503. ``GET /api/v1/label/<name>/values`` lists a label's values.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx
import msgspec

from ..schemas import MAX_INLINE_SERIES, MAX_SERIES_POINTS, LogLine, MetricSeries
from ._errors import SourceError
from ._promtext import instance_host
from ._protocol import SourceSummary
from ._spec import SourceSpec, safe_url
from ._store import (
    Labels,
    SeriesIndex,
    Track,
    TrackSet,
    clean_labels,
    from_epoch,
    matches,
    series_name,
    to_epoch,
)

PLACEHOLDER: Final = "{device}"
"""Replaced in each query by the device name, escaped for a PromQL string literal."""
RETRIES: Final = 2
"""Connection attempts retried by the transport (httpx retries connect errors only)."""
DESCRIBE_SPAN: Final = timedelta(hours=1)
""":meth:`PrometheusApiReader.describe` runs the queries over the last hour."""

_EQ_PLACEHOLDER = re.compile(r'=~?\s*"\{device\}"')
_T = TypeVar("_T")


class _Result(msgspec.Struct):
    metric: dict[str, str]
    values: list[tuple[float, str]] = msgspec.field(default_factory=list)


class _Matrix(msgspec.Struct, rename="camel"):
    result_type: str
    result: list[_Result]


class _Answer(msgspec.Struct, rename="camel"):
    status: str
    data: _Matrix | None = None
    error_type: str | None = None
    error: str | None = None


class _Values(msgspec.Struct, rename="camel"):
    status: str
    data: list[str] | None = None
    error_type: str | None = None
    error: str | None = None


class _Error(msgspec.Struct, rename="camel"):
    status: str = ""
    error_type: str | None = None
    error: str | None = None


def promql_string(text: str) -> str:
    """``text`` escaped for the inside of a double-quoted PromQL string literal."""
    return (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )


def _one_line(text: str, limit: int = 300) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class PrometheusApiReader:
    """Reads kind ``prometheus_api`` (see ``docs/telemetry-sources.md``).

    Every call makes its own HTTP requests (a client per call, so nothing stays
    open); the data is not cached. ``latest()`` is now (UTC).

    Queries: each of ``spec.queries`` (default ``{<device_label>="{device}"}``) with
    ``{device}`` replaced by the device. For ``device=None`` a ``="{device}"`` or
    ``=~"{device}"`` matcher becomes ``=~".+"``; a query using ``{device}`` in any
    other way is run once per device of :meth:`devices`. A result's device is its
    ``device_label`` label, else its ``instance`` label's host, else the device it
    was queried for; results of other devices are dropped (the device rule). The
    series name is the result's ``__name__``, else the query text; its labels are
    the rest. The step is ``step_seconds``, raised so that no series has more than
    ``MAX_SERIES_POINTS`` points; ``NaN`` / ``±Inf`` samples are dropped.

    Basic auth comes from the URL's userinfo (``https://user:pass@prom:9090``);
    messages never show it.
    """

    def __init__(self, spec: SourceSpec) -> None:
        self.spec = spec
        parts = urlsplit(spec.location)
        self.url = safe_url(spec.location)
        self._auth = (
            httpx.BasicAuth(unquote(parts.username), unquote(parts.password or ""))
            if parts.username
            else None
        )
        self._timeout = httpx.Timeout(spec.timeout_seconds)

    def _client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url,
            auth=self._auth,
            timeout=self._timeout,
            transport=httpx.HTTPTransport(retries=RETRIES),
            headers={"accept": "application/json"},
        )

    def _get(self, client: httpx.Client, path: str, params: dict[str, str]) -> bytes:
        """The body of a 2xx answer.

        Raises:
            SourceError: a timeout, no connection, or an HTTP error (with
                Prometheus' ``errorType`` and ``error`` when the body has them).
        """
        where = f"prometheus {self.url}{path}"
        try:
            r = client.get(path, params=params)
        except httpx.TimeoutException:
            raise SourceError(
                f"{where}: no answer within {self.spec.timeout_seconds:g} s (timeout_seconds)"
            ) from None
        except httpx.TransportError as exc:
            raise SourceError(
                f"{where}: cannot connect ({type(exc).__name__}: {_one_line(str(exc), 120)})"
            ) from None
        if r.is_success:
            return r.content
        try:
            err = msgspec.json.decode(r.content, type=_Error)
            detail = f"{err.error_type}: {_one_line(err.error)}" if err.error else ""
        except msgspec.DecodeError:
            detail = ""
        raise SourceError(
            f"{where}: HTTP {r.status_code} {r.reason_phrase}"
            + (f", {detail}" if detail else " (not a Prometheus API answer)"),
            status=r.status_code,
        )

    def _decode(self, body: bytes, type_: type[_T], path: str) -> _T:
        try:
            return msgspec.json.decode(body, type=type_)
        except msgspec.DecodeError as exc:
            raise SourceError(
                f"prometheus {self.url}{path}: malformed answer ({_one_line(str(exc), 160)})"
            ) from None

    def _label_values(self, client: httpx.Client, label: str) -> list[str]:
        path = f"/api/v1/label/{quote(label, safe='')}/values"
        answer = self._decode(self._get(client, path, {}), _Values, path)
        if answer.status != "success" or answer.data is None:
            raise SourceError(
                f"prometheus {self.url}{path}: {answer.error_type}: {_one_line(answer.error or '')}"
            )
        return answer.data

    def devices(self) -> list[str]:
        """The values of ``device_label``, else the hosts of ``instance`` values.

        Raises:
            SourceError: Prometheus cannot be asked (the message says why).
        """
        with self._client() as client:
            names = self._label_values(client, self.spec.device_label)
            if not names and self.spec.device_label != "instance":
                names = [
                    h for v in self._label_values(client, "instance") if (h := instance_host(v))
                ]
        return sorted(set(names))

    def latest(self) -> datetime | None:
        """Now (UTC): Prometheus is always current."""
        return datetime.now(UTC)

    def _queries(self) -> list[str]:
        return list(self.spec.queries) or [f'{{{self.spec.device_label}="{PLACEHOLDER}"}}']

    def _range(self, client: httpx.Client, query: str, start: float, end: float) -> list[_Result]:
        step = max(self.spec.step_seconds, math.ceil((end - start) / MAX_SERIES_POINTS))
        path = "/api/v1/query_range"
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        answer = self._decode(self._get(client, path, params), _Answer, path)
        if answer.status != "success" or answer.data is None:
            raise SourceError(
                f"prometheus {self.url}{path}: {answer.error_type}: "
                f"{_one_line(answer.error or 'no data')} (query {_one_line(query, 120)!r})"
            )
        if answer.data.result_type != "matrix":
            raise SourceError(
                f"prometheus {self.url}{path}: expected a matrix, got {answer.data.result_type}"
                f" (query {_one_line(query, 120)!r})"
            )
        return answer.data.result

    def _fetch(self, device: str | None, start: datetime, end: datetime) -> list[Track]:
        lo, hi = to_epoch(start), to_epoch(end)
        if hi <= lo:
            return []
        label = self.spec.device_label
        found = TrackSet()
        with self._client() as client:
            fan_out: list[str] | None = None
            for template in self._queries():
                runs: list[tuple[str, str | None]]
                if PLACEHOLDER not in template:
                    runs = [(template, None)]
                elif device is not None:
                    runs = [(template.replace(PLACEHOLDER, promql_string(device)), device)]
                else:
                    general = _EQ_PLACEHOLDER.sub('=~".+"', template)
                    if PLACEHOLDER not in general:
                        runs = [(general, None)]
                    else:
                        if fan_out is None:
                            fan_out = self.devices()[:MAX_INLINE_SERIES]
                        runs = [
                            (template.replace(PLACEHOLDER, promql_string(d)), d) for d in fan_out
                        ]
                for query, asked in runs:
                    for res in self._range(client, query, lo, hi):
                        labels = dict(res.metric)
                        name = series_name(labels.pop("__name__", "") or template)
                        owner = labels.get(label) or instance_host(labels.get("instance"))
                        owner = owner or asked
                        if not matches(owner, device):
                            continue
                        key: Labels = clean_labels(labels, label)
                        for t, text in res.values:
                            if lo <= t < hi:
                                found.add(name, key, owner, t, _value(text))
        return found.tracks()

    def series(self, device: str | None, start: datetime, end: datetime) -> list[MetricSeries]:
        """See :meth:`TelemetryReader.series`; one ``query_range`` per query."""
        return SeriesIndex(self._fetch(device, start, end)).query(device, start, end)

    def logs(self, device: str | None, start: datetime, end: datetime) -> list[LogLine]:
        """Always ``[]``: Prometheus holds no logs."""
        return []

    def describe(self) -> SourceSummary:
        """Devices, and the series the queries give over the last hour (all devices)."""
        end = datetime.now(UTC)
        index = SeriesIndex(self._fetch(None, end - DESCRIBE_SPAN, end))
        devices = sorted(set(self.devices()) | set(index.devices))
        return SourceSummary(
            kind=self.spec.kind,
            devices=devices,
            series=len(index.tracks),
            log_lines=0,
            first=from_epoch(index.first) if index.first is not None else None,
            last=from_epoch(index.last) if index.last is not None else None,
        )


def _value(text: str) -> float:
    """A sample value (``"NaN"`` and ``"+Inf"`` give non-finite floats, dropped)."""
    try:
        return float(text)
    except ValueError:
        return math.nan
