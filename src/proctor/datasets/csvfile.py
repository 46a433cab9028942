"""Read one multiple-choice CSV file (any of the supported column layouts) into Samples."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from proctor.core import Sample
from proctor.errors import DataError

CHOICES = ("A", "B", "C", "D")


@dataclass(frozen=True)
class CsvFormat:
    """How a benchmark family lays out its CSV columns.

    Column names are matched case-insensitively against the header row. A file
    without a header row gets `positions` as its header: the names in file order.
    """

    has_header: bool
    question: str = "question"
    options: tuple[str, ...] = CHOICES
    answer: str = "answer"
    id: str | None = "id"  # None: the sample id is the 0-based data-row number
    explanation: str | None = None  # optional column, copied into meta when present
    positions: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Columns:
    """Column indexes of one file, resolved from its header."""

    width: int
    question: int
    options: tuple[int, ...]
    answer: int
    id: int | None
    explanation: int | None


def _resolve_columns(fmt: CsvFormat, header: list[str], path: Path) -> _Columns:
    index = {name.strip().lower(): i for i, name in enumerate(header)}

    def required(name: str) -> int:
        try:
            return index[name.lower()]
        except KeyError:
            hint = " (this split has no public answers)" if name == fmt.answer else ""
            raise DataError(
                f"{path}: the header has no {name!r} column{hint}; found {header}"
            ) from None

    return _Columns(
        width=len(header),
        question=required(fmt.question),
        options=tuple(required(o) for o in fmt.options),
        answer=required(fmt.answer),
        id=None if fmt.id is None else required(fmt.id),
        explanation=None if fmt.explanation is None else index.get(fmt.explanation.lower()),
    )


def read_samples(path: Path, fmt: CsvFormat, subject: str) -> list[Sample]:
    """Parse `path` into Samples; DataError names the file and row of the first bad row."""
    samples: list[Sample] = []
    seen: set[str] = set()
    # utf-8-sig drops a BOM if an editor added one; newline="" lets the csv
    # module keep newlines and CR LF inside quoted fields exactly as written.
    with open(path, encoding="utf-8-sig", newline="") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader) if fmt.has_header else list(fmt.positions)
            cols = _resolve_columns(fmt, header, path)
            for row in reader:
                if not row:  # a blank line, e.g. a trailing one
                    continue
                index = len(samples)  # 0-based data-row number
                # Row as a spreadsheet counts it (header = row 1), plus the
                # physical line, which differs once fields hold newlines.
                where = f"{path}: row {index + 1 + fmt.has_header} (line {reader.line_num})"
                sample = _parse_row(row, index, cols, subject, where)
                if sample.id in seen:
                    raise DataError(f"{where}: duplicate id {sample.id!r}")
                seen.add(sample.id)
                samples.append(sample)
        except StopIteration:
            raise DataError(f"{path}: the file is empty (no header row)") from None
        except (csv.Error, UnicodeDecodeError) as err:
            raise DataError(f"{path}: not a readable UTF-8 CSV file ({err})") from None
    return samples


def _parse_row(row: list[str], index: int, cols: _Columns, subject: str, where: str) -> Sample:
    if len(row) != cols.width:
        raise DataError(f"{where}: {len(row)} fields, expected {cols.width}")
    question = row[cols.question]
    if not question.strip():
        raise DataError(f"{where}: the question is empty")
    answer = row[cols.answer].strip()
    if answer not in CHOICES:
        raise DataError(f"{where}: answer {answer!r} is not one of {'/'.join(CHOICES)}")
    sample_id = row[cols.id].strip() if cols.id is not None else str(index)
    if not sample_id:
        raise DataError(f"{where}: the id is empty")
    meta: dict[str, str] = {"subject": subject}
    if cols.explanation is not None and row[cols.explanation].strip():
        meta["explanation"] = row[cols.explanation]
    options = {letter: row[i] for letter, i in zip(CHOICES, cols.options, strict=True)}
    return Sample(id=sample_id, fields={"question": question, "options": options}, target=answer, meta=meta)
