"""Kind ``series``: CSV, gzipped CSV and Parquet files of metric samples.

A file is a table: one time column, numeric value columns (one series each) and
string columns (labels of the row's samples). Both formats are read with pyarrow,
so a CSV's column types are inferred as pyarrow does (ISO 8601 times become
timestamps, ``1.5`` doubles, ``true`` booleans...); the ``device_label`` column is
always read as text.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Final

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from ._errors import SourceError
from ._files import FileData, FileReader, read_bytes
from ._store import Labels, Track, TrackSet, clean_labels, epoch_number, series_name, text_epoch

TIME_COLUMNS: Final = ("timestamp", "time", "ts")
"""Columns taken as the time, in this order (any case); else the first column."""

SERIES_SUFFIXES: Final = (".csv", ".csv.gz", ".parquet")
"""File names a ``series`` directory is read for (any case)."""

_UNITS: Final = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}


def is_series_file(path: Path) -> bool:
    """Whether ``path`` is named like a series file (:data:`SERIES_SUFFIXES`)."""
    return path.name.lower().endswith(SERIES_SUFFIXES)


def file_stem(path: Path) -> str:
    """The file name without its series suffix (``cpu.csv.gz`` -> ``cpu``)."""
    name = path.name
    for suffix in sorted(SERIES_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return path.stem or name


class SeriesReader(FileReader):
    """Reads kind ``series`` (see ``docs/telemetry-sources.md``).

    Per file: the time column is ``timestamp``, ``time`` or ``ts`` (else the first
    column), ISO 8601 (naive = UTC) or epoch seconds / milliseconds. A file whose
    only value column is ``value`` gives one series named after the file
    (``ec2_cpu.csv`` -> ``ec2_cpu``, NAB's layout); otherwise each numeric column
    ``c`` gives ``<stem>.<c>``. String columns are labels; booleans are 0/1 values.
    The device of a row is its ``device_label`` column, else the file's per-device
    subdirectory (which is then added as the ``device_label`` label), else none.
    Empty cells and non-finite values are skipped.
    """

    def accept(self, path: Path) -> bool:
        return is_series_file(path)

    def parse(self, path: Path, mtime: float) -> FileData:
        del mtime
        table = read_table(path, self.spec.device_label)
        return FileData(
            tracks=table_tracks(table, path, self.spec.device_label, self.device_of(path))
        )


def read_table(path: Path, device_label: str) -> pa.Table:
    """The file as a table (an empty one for a file with no rows yet).

    A CSV whose last line is unfinished (no newline: a writer is appending) and does
    not parse is read without that line.

    Raises:
        SourceError: not a CSV / Parquet file pyarrow can read (names the file, and
            the line when a row has the wrong number of fields).
    """
    if path.name.lower().endswith(".parquet") or read_bytes(path, 4) == b"PAR1":
        try:
            return pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise SourceError(f"not a readable Parquet file ({exc})", path=str(path)) from None
    data = read_bytes(path)
    try:
        return _read_csv(data, device_label)
    except pa.ArrowInvalid as exc:
        cut = data.rfind(b"\n")
        if not data.endswith(b"\n") and cut > 0:
            try:
                return _read_csv(data[: cut + 1], device_label)
            except pa.ArrowInvalid:
                pass
        text = str(exc).removeprefix("CSV parse error: ")
        raise SourceError(
            f"not a readable CSV file: {text}", path=str(path), line=_bad_row_line(data)
        ) from None


def _read_csv(data: bytes, device_label: str) -> pa.Table:
    if not data.strip():
        return pa.table({})
    return pa_csv.read_csv(
        io.BytesIO(data),
        convert_options=pa_csv.ConvertOptions(column_types={device_label: pa.string()}),
    )


def _bad_row_line(data: bytes) -> int | None:
    """The first line whose number of fields differs from the header's."""
    rows = csv.reader(io.StringIO(data.decode("utf-8", "replace"), newline=""))
    width = None
    try:
        for row in rows:
            if not row:
                continue
            if width is None:
                width = len(row)
            elif len(row) != width:
                return rows.line_num
    except csv.Error:
        return rows.line_num
    return None


def _numeric(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
    )


def _text(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _text(t.value_type)
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t))


def _kind(t: pa.DataType) -> str:
    return "number" if _numeric(t) else "text" if _text(t) else str(t)


def table_tracks(table: pa.Table, path: Path, device_label: str, subdir: str | None) -> list[Track]:
    """The series of one table (see :class:`SeriesReader`).

    Raises:
        SourceError: no time column, a bad or empty time (names the line, or the row
            of a Parquet file), or no numeric column.
    """
    if table.num_rows == 0 or not table.column_names:
        return []
    names = table.column_names
    lower = {n.lower(): n for n in reversed(names)}
    named = next((lower[n] for n in TIME_COLUMNS if n in lower), None)
    time_col = named or names[0]
    times = _times(table.column(time_col), path, time_col, named=named is not None)
    values = [
        c
        for c in names
        if c not in (time_col, device_label) and _numeric(table.schema.field(c).type)
    ]
    label_cols = [
        c
        for c in names
        if c != time_col and (c == device_label or _text(table.schema.field(c).type))
    ]
    if not values:
        cols = ", ".join(f"{c} ({_kind(table.schema.field(c).type)})" for c in names)
        raise SourceError(
            f"no numeric column: expected columns of numbers besides the time column "
            f"{time_col!r}; the columns are {cols}",
            path=str(path),
        )
    # one (labels, device) per distinct combination of label cells
    raw = [table.column(c).cast(pa.string()).to_pylist() for c in label_cols]
    combos: dict[tuple[str | None, ...], tuple[Labels, str | None]] = {}
    rows: list[tuple[Labels, str | None]] = []
    for cells in zip(*raw, strict=True) if raw else ((),) * table.num_rows:
        got = combos.get(cells)
        if got is None:
            cell_labels = {c: v for c, v in zip(label_cols, cells, strict=True) if v}
            device = cell_labels.get(device_label) or subdir
            if device is not None:
                cell_labels[device_label] = device
            got = combos[cells] = (clean_labels(cell_labels, device_label), device)
        rows.append(got)
    stem = file_stem(path)
    single = len(values) == 1 and values[0].lower() == "value"
    found = TrackSet()
    for col in values:
        name = series_name(stem if single else f"{stem}.{col}")
        for t, v, (labels, device) in zip(times, table.column(col).to_pylist(), rows, strict=True):
            if v is not None:
                found.add(name, labels, device, t, float(v))
    return found.tracks()


def _times(column: pa.ChunkedArray, path: Path, name: str, *, named: bool) -> list[float]:
    """Epoch seconds of the time column, one per row.

    Raises:
        SourceError: an empty or unparsable cell, or a column that holds no times.
    """
    csv_file = not path.name.lower().endswith(".parquet")
    what = (
        f"column {name!r}"
        if named
        else f"column {name!r} (no column is named timestamp, time or ts, so the first "
        f"column is taken as the time)"
    )
    t = column.type
    if pa.types.is_date(t):
        column, t = column.cast(pa.timestamp("s")), pa.timestamp("s")
    stamped = pa.types.is_timestamp(t)
    raw: list[Any]
    if stamped:
        scale = _UNITS[t.unit]
        raw = [None if x is None else x / scale for x in column.cast(pa.int64()).to_pylist()]
    elif _numeric(t) and not pa.types.is_boolean(t):
        raw = column.to_pylist()
    elif _text(t):
        raw = column.cast(pa.string()).to_pylist()
    else:
        raise SourceError(
            f"{what} holds {_kind(t)}, not times (expected ISO 8601 or epoch seconds / "
            "milliseconds)",
            path=str(path),
        )
    out: list[float] = []
    for row, cell in enumerate(raw):
        try:
            if cell is None:
                raise ValueError("empty")
            if isinstance(cell, str):
                out.append(text_epoch(cell))
            else:
                out.append(float(cell) if stamped else epoch_number(float(cell)))
        except (ValueError, OverflowError, TypeError):
            shown = "an empty cell" if cell is None or cell == "" else repr(cell)
            raise SourceError(
                f"{'' if csv_file else f'row {row + 1}: '}bad time {shown} in {what}: "
                "expected ISO 8601 or epoch seconds / milliseconds",
                path=str(path),
                line=row + 2 if csv_file else None,
            ) from None
    return out
