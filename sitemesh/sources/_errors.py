"""The one error this package raises."""

from __future__ import annotations

from ..errors import SitemeshError


class SourceError(SitemeshError, ValueError):
    """A telemetry source cannot be registered, opened or read.

    The message is one line that says what was expected and names where it went
    wrong: the spec field (``name: 'Bad' is not a source name ...``), the file and
    line (``/data/r1/cpu.csv:17: bad time 'x' ...``), or the Prometheus URL (never
    with its credentials), HTTP status and Prometheus' ``errorType`` / ``error``.

    Attributes:
        field: the spec field at fault (``"name"``, ``"time_pattern"``, ``"location"``),
            or ``None`` when the data is (a file, a server's answer).
        path: the file at fault, or ``None``.
        line: the 1-based line of ``path`` (a CSV header is line 1), or ``None``.
        status: the HTTP status of a Prometheus answer, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        path: str | None = None,
        line: int | None = None,
        status: int | None = None,
    ) -> None:
        where = (f"{path}:{line}" if line is not None else path) if path else None
        super().__init__(f"{where}: {message}" if where else message)
        self.field = field
        self.path = path
        self.line = line
        self.status = status
