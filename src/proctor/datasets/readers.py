"""Readers by file format: each yields a file's rows as mappings, with where each row is."""

from __future__ import annotations

import csv
import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Literal, Mapping

from proctor.errors import DataError

Format = Literal["csv", "jsonl", "json", "jsonl.gz", "json.gz"]
FORMATS: tuple[str, ...] = ("csv", "jsonl", "json", "jsonl.gz", "json.gz")


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
    try:
        if fmt == "csv":
            return list(_csv_rows(path, header, columns))
        if fmt in ("jsonl", "jsonl.gz"):
            return list(_jsonl_rows(path, fmt.endswith(".gz")))
        return _json_rows(path, fmt.endswith(".gz"), records_key)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        if isinstance(err, FileNotFoundError):
            raise DataError(f"{path}: no such file") from None
        raise DataError(f"{path}: cannot be read ({err})") from None


def _csv_rows(path: Path, header: bool, columns: tuple[str, ...]) -> Iterator[Row]:
    # utf-8-sig drops a BOM if an editor added one; newline="" lets the csv module keep
    # newlines and CR LF inside quoted fields exactly as written.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            names = next(reader) if header else list(columns)
        except StopIteration:
            raise DataError(f"{path}: the file is empty (no header row)") from None
        except csv.Error as err:
            raise DataError(f"{path}: not a readable CSV file ({err})") from None
        names = [n.strip() for n in names]
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


def _open_text(path: Path, gz: bool) -> Any:
    return gzip.open(path, "rt", encoding="utf-8") if gz else open(path, encoding="utf-8-sig")


def _jsonl_rows(path: Path, gz: bool) -> Iterator[Row]:
    with _open_text(path, gz) as handle:
        index = 0
        for number, line in enumerate(handle, 1):
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


def _json_rows(path: Path, gz: bool, records_key: str | None) -> list[Row]:
    with _open_text(path, gz) as handle:
        try:
            data = json.load(handle)
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
                raise DataError(f"{path}: expected a list of rows, or an object with one list of rows; found keys {sorted(data)}")
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
