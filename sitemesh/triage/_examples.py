"""Labelled examples: reading a CSV, and the JSONL a site publishes (``triage/<name>``)."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import msgspec

from ..errors import SitemeshError


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled ticket.

    Attributes:
        text: the ticket text (title and body, see :func:`ticket_text`).
        label: its intent or category.
        urgency: 0 (critical) .. 3 (low), or ``None`` when the source has none.
    """

    text: str
    label: str
    urgency: int | None = None


class ExamplesError(SitemeshError, ValueError):
    """A set of examples cannot be read or trained on. The message is one line that
    names the source and, where it applies, the column or row.

    Attributes:
        source: the file or artifact (``tickets.csv``, ``triage/banking77``).
        column: the column at fault, or ``None``.
        row: the 1-based data row (CSV: line 2 is row 1) or JSONL line, or ``None``.
    """

    def __init__(
        self, source: str, message: str, *, column: str | None = None, row: int | None = None
    ) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.column = column
        self.row = row


@dataclass(frozen=True, slots=True)
class ExampleFile:
    """What :func:`read_examples_csv` read.

    Attributes:
        examples: the usable rows, in file order.
        rows: data rows in the file.
        skipped: rows without text or label (not used).
        columns: the header's column names.
    """

    examples: tuple[Example, ...]
    rows: int
    skipped: int
    columns: tuple[str, ...]


def _urgency(value: object, source: str, row: int, column: str) -> int | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        number = -1.0
    if number not in (0.0, 1.0, 2.0, 3.0):
        raise ExamplesError(
            source, f"row {row}: {column} must be 0..3 or empty, not {str(value)[:20]!r}",
            column=column, row=row,
        )  # fmt: skip
    return int(number)


def read_examples_csv(
    path: Path,
    *,
    text_column: str = "text",
    label_column: str = "category",
    urgency_column: str | None = None,
) -> ExampleFile:
    """Read labelled examples from a CSV file with a header row (UTF-8, BOM allowed).

    Several text columns may be given comma-separated (``title,body``): they are
    joined with a newline, as :func:`ticket_text` joins a ticket's. Surrounding
    whitespace of cells is dropped; rows with an empty text or label are skipped.

    Args:
        path: the file.
        text_column: the column(s) with the ticket text.
        label_column: the column with the label.
        urgency_column: a column with the urgency (0..3, empty: none), or ``None``.

    Returns:
        The examples and counts.

    Raises:
        ExamplesError: the file is empty, is not UTF-8 CSV, lacks a named column
            (the message lists the columns found), has an urgency outside 0..3, or
            has no usable row.
    """
    source = path.name
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise ExamplesError(source, "empty file: expected a header row and examples")
            columns = tuple(h.strip() for h in header)
            text_cols = [c.strip() for c in text_column.split(",") if c.strip()]
            wanted = [*text_cols, label_column, *([urgency_column] if urgency_column else [])]
            for col in wanted:
                if col not in columns:
                    found = ", ".join(c for c in columns if c) or "none"
                    raise ExamplesError(
                        source, f"no column {col!r} (columns found: {found})", column=col
                    )
            index = {c: i for i, c in reversed(list(enumerate(columns)))}
            examples: list[Example] = []
            rows = skipped = 0
            for rows, record in enumerate(reader, 1):
                cells = [c.strip() for c in record] + [""] * (len(columns) - len(record))
                text = "\n".join(cells[index[c]] for c in text_cols).strip()
                label = cells[index[label_column]]
                if not text or not label:
                    skipped += 1
                    continue
                urgency = (
                    _urgency(cells[index[urgency_column]], source, rows, urgency_column)
                    if urgency_column
                    else None
                )
                examples.append(Example(text=text, label=label, urgency=urgency))
    except UnicodeDecodeError as exc:
        raise ExamplesError(source, f"not UTF-8 text (byte {exc.start})") from None
    except csv.Error as exc:
        raise ExamplesError(source, f"not a CSV file: {exc}") from None
    if not examples:
        raise ExamplesError(source, f"no examples: all {rows} rows lack a text or a label")
    return ExampleFile(tuple(examples), rows=rows, skipped=skipped, columns=columns)


class _Row(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One line of a published examples file."""

    text: Annotated[str, msgspec.Meta(min_length=1)]
    label: Annotated[str, msgspec.Meta(min_length=1)]
    urgency: Annotated[int, msgspec.Meta(ge=0, le=3)] | None = None


_ROW_DECODER = msgspec.json.Decoder(_Row)
_ROW_ENCODER = msgspec.json.Encoder()


def parse_examples_jsonl(data: bytes, *, source: str = "examples") -> tuple[Example, ...]:
    """Parse published examples: one JSON object a line, ``{"text": str, "label": str,
    "urgency": 0..3}`` (``urgency`` optional); blank lines are skipped.

    Args:
        data: the JSONL bytes (UTF-8).
        source: named in errors (``triage/banking77``).

    Returns:
        The examples in order.

    Raises:
        ExamplesError: a line is not such an object (names the line and the field),
            or there is no example.
    """
    out: list[Example] = []
    for n, line in enumerate(data.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = _ROW_DECODER.decode(line)
        except msgspec.DecodeError as exc:
            raise ExamplesError(source, f"line {n}: {exc}", row=n) from None
        out.append(Example(text=row.text, label=row.label, urgency=row.urgency))
    if not out:
        raise ExamplesError(source, "no examples")
    return tuple(out)


def examples_to_jsonl(examples: Iterable[Example]) -> bytes:
    """The JSONL form :func:`parse_examples_jsonl` reads (``urgency`` left out when
    ``None``)."""
    return b"".join(
        _ROW_ENCODER.encode(_Row(text=e.text, label=e.label, urgency=e.urgency)) + b"\n"
        for e in examples
    )


def examples_digest(examples: Sequence[Example]) -> str:
    """SHA-256 (hex) of ``examples`` in their JSONL form: the training data part of the
    model cache key."""
    return hashlib.sha256(examples_to_jsonl(examples)).hexdigest()
