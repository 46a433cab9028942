"""Readers by file format: each yields a file's rows as mappings, with where each row is."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from proctor.errors import DataError

Format = Literal["csv", "jsonl", "json", "jsonl.gz", "json.gz", "parquet"]
FORMATS: tuple[str, ...] = ("csv", "jsonl", "json", "jsonl.gz", "json.gz", "parquet")
PARQUET_EXTRA = "proctor[parquet]"


@dataclass(frozen=True)
class Row:
    """One data row: its 0-based number among the data rows, where it is (for errors), its fields."""

    index: int
    where: str
    data: Mapping[str, Any]


def format_of(path: Path, declared: str | None = None) -> str:
    """The declared format, else the one the file name ends with."""
    if declared is not None:
        return declared
    name = path.name.lower()
    for fmt in sorted(FORMATS, key=len, reverse=True):
        if name.endswith("." + fmt):
            return fmt
    raise DataError(f"{path}: unknown data file type; use one of {', '.join('.' + f for f in FORMATS)}")


def read_rows(
    path: Path,
    fmt: str | None = None,
    *,
    header: bool = True,
    columns: tuple[str, ...] = (),
    records_key: str | None = None,
) -> list[Row]:
    """Every data row of `path`; DataError names the file and row of the first bad one.

    csv: with a header row, or without one (`header=False`, `columns` names the fields in
    order). json: a list of objects, or an object holding the list under `records_key`
    (or its only list value, e.g. BBH's `examples`).
    """
    fmt = format_of(path, fmt)
    if fmt == "parquet":
        return _parquet_rows(path)
    if fmt == "lines":
        return _line_rows(path, _read_text(path, False))
    text = _read_text(path, fmt.endswith(".gz"))
    if fmt == "csv":
        return list(_csv_rows(path, text, header, columns))
    if fmt in ("jsonl", "jsonl.gz"):
        return list(_jsonl_rows(path, text))
    return _json_rows(path, text, records_key)


def read_text(path: Path) -> str:
    """A UTF-8 text file's text (a leading BOM dropped); DataError names the line of bytes that are not UTF-8."""
    return _read_text(path, False)


def _read_text(path: Path, gz: bool) -> str:
    """The file's text (gunzipped when `gz`); DataError names the line of bytes that are not UTF-8."""
    try:
        data = path.read_bytes()
        if gz:
            data = gzip.decompress(data)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read ({err})") from None
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0  # an editor may add one
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        start = bom + err.start
        line = data.count(b"\n", 0, start) + 1
        bad = data[start : bom + err.end].hex(" ")
        raise DataError(
            f"{path}: line {line}: not UTF-8 text ({err.reason}: byte {bad} at offset {start}); "
            "save the file as UTF-8"
        ) from None


def _csv_rows(path: Path, text: str, header: bool, columns: tuple[str, ...]) -> Iterator[Row]:
    # newline="" lets the csv module keep newlines and CR LF inside quoted fields exactly as written.
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        names = next(reader) if header else list(columns)
    except StopIteration:
        raise DataError(f"{path}: the file is empty (no header row)") from None
    except csv.Error as err:
        raise DataError(f"{path}: not a readable CSV file ({err})") from None
    names = [n.strip() for n in names]
    duplicate = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if duplicate is not None:
        raise DataError(f"{path}: row 1: the header names column {duplicate!r} twice")
    index = 0
    try:
        for fields in reader:
            if not fields:  # a blank line, e.g. a trailing one
                continue
            # Row as a spreadsheet counts it (header = row 1), plus the physical line,
            # which differs once fields hold newlines.
            where = f"{path}: row {index + 1 + header} (line {reader.line_num})"
            if len(fields) != len(names):
                raise DataError(f"{where}: {len(fields)} fields, expected {len(names)}")
            yield Row(index, where, dict(zip(names, fields)))
            index += 1
    except csv.Error as err:
        raise DataError(f"{path}: line {reader.line_num}: not readable as CSV ({err})") from None


def _jsonl_rows(path: Path, text: str) -> Iterator[Row]:
    index = 0
    # Only "\n" ends a JSON Lines record (JSON strings hold no raw newlines); U+2028 and
    # other characters `str.splitlines` breaks at can appear inside a record.
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        where = f"{path}: line {number}"
        try:
            data = json.loads(line)
        except ValueError as err:
            raise DataError(f"{where}: not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(data).__name__}")
        yield Row(index, where, data)
        index += 1


def _json_rows(path: Path, text: str, records_key: str | None) -> list[Row]:
    try:
        data = json.loads(text)
    except ValueError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    if isinstance(data, dict):
        if records_key is not None:
            if records_key not in data:
                raise DataError(f"{path}: no key {records_key!r} holding the rows; found {sorted(data)}")
            data = data[records_key]
        else:
            lists = [k for k, v in data.items() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError(f"{path}: expected a list of rows, or an object with one list of rows; found keys "
                                f"{sorted(data)} (name the one holding the rows in source.records_key)")
            data = data[lists[0]]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of rows, got {type(data).__name__}")
    rows = []
    for index, item in enumerate(data):
        where = f"{path}: row {index + 1}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected an object, got {type(item).__name__}")
        rows.append(Row(index, where, item))
    return rows


def _parquet_rows(path: Path) -> list[Row]:
    """A Parquet file's rows (pyarrow, the `parquet` extra), nested columns as lists and dicts."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(f"{path}: reading Parquet needs pyarrow; pip install '{PARQUET_EXTRA}'") from None
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    try:
        records = pq.read_table(path).to_pylist()
    except Exception as err:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ...: all mean "not Parquet"
        reason = (str(err).strip().splitlines() or [""])[0][:200]
        raise DataError(f"{path}: not a readable Parquet file ({type(err).__name__}: {reason})") from None
    return [Row(i, f"{path}: row {i + 1}", record) for i, record in enumerate(records)]


def _line_rows(path: Path, text: str) -> list[Row]:
    """A file of one value per line (PIQA's labels), each row `{"line": value}`; a final newline ends
    the last line, it does not start another."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [Row(i, f"{path}: line {i + 1}", {"line": line.rstrip("\r")}) for i, line in enumerate(lines)]
