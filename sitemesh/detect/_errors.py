"""The one error this package raises."""

from __future__ import annotations

from ..errors import SitemeshError


class DetectError(SitemeshError, ValueError):
    """Input the detectors cannot use: a malformed CSV row, an unsorted or empty
    series, mismatched lengths. The message is one line that names the source and,
    where it applies, the line.

    Attributes:
        source: the series name or file (``ec2_cpu.csv``), or ``""``.
        line: the 1-based line of a file (the CSV header is line 1), or ``None``.
    """

    def __init__(self, source: str, message: str, *, line: int | None = None) -> None:
        where = f"{source}:{line}" if line is not None else source
        super().__init__(f"{where}: {message}" if where else message)
        self.source = source
        self.line = line
