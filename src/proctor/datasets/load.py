"""The public loading functions: the Samples of one (subset, split) of a benchmark, and their files."""

from __future__ import annotations

import re
from pathlib import Path

from proctor.core import Sample
from proctor.datasets.fields import FieldMap, row_to_sample
from proctor.datasets.locate import find_file
from proctor.datasets.readers import Row, read_rows, read_text
from proctor.datasets.source import DataSource
from proctor.errors import DataError


def data_files(data: DataSource, subset: str, split: str, data_dir: str | Path | None = None,
               fields: FieldMap | None = None) -> list[Path]:
    """The files `load_samples` reads for these arguments (for the run manifest's hashes): the
    data file, then, with a field map's `question_file`, each row's question file."""
    path = find_file(data, subset, split, data_dir).resolve()
    if fields is None or not fields.question_file:
        return [path]
    rows = read_rows(path, data.source.format, header=data.source.header, columns=data.source.columns,
                     records_key=data.source.records_key)
    return [path, *(question_path(path, fields.question_file, row) for row in rows)]


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def question_path(data_file: Path, pattern: str, row: Row) -> Path:
    """The question file a row names: `pattern` with its `{column}` placeholders filled, under the
    data file's folder (never outside it: a row is data, not a path to anywhere)."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in row.data:
            raise DataError(f"{row.where}: the question file {pattern!r} names column {name!r}, which the row "
                            f"does not have; columns: {', '.join(sorted(map(str, row.data)))}")
        text = str(row.data[name]).strip()
        if not text or any(c in text for c in "/\\") or text in (".", ".."):
            raise DataError(f"{row.where}: column {name!r} ({text!r}) cannot name a question file")
        return text

    return data_file.parent / _PLACEHOLDER.sub(value, pattern)


def _with_question_file(path: Path, pattern: str, row: Row, column: str) -> Row:
    if column in row.data:
        raise DataError(f"{row.where}: the row has a {column!r} column and the field map reads the question "
                        f"from {pattern!r}; drop one of the two")
    question = question_path(path, pattern, row)
    if not question.is_file():
        raise DataError(f"{row.where}: no question file {question}")
    return Row(row.index, row.where, {**row.data, column: read_text(question)})


def read_file_samples(path: Path, data: DataSource, fields: FieldMap, subset: str) -> list[Sample]:
    """The Samples of one file, in file order; DataError names the file, row and field of a bad row."""
    source = data.source
    rows = read_rows(path, source.format, header=source.header, columns=source.columns,
                     records_key=source.records_key)
    if not rows:
        # A header and nothing else (a failed export): scoring it would report no score and exit 0.
        raise DataError(f"{path}: the file holds no rows")
    samples: list[Sample] = []
    seen: set[str] = set()
    meta = {"subject": subset} if subset else {}
    if fields.question_file:
        column = fields.question or "question"
        rows = [_with_question_file(path, fields.question_file, row, column) for row in rows]
    for row in rows:
        sample = row_to_sample(row.data, row.index, fields, row.where, meta)
        if sample.id in seen:
            raise DataError(f"{row.where}: duplicate id {sample.id!r}")
        seen.add(sample.id)
        samples.append(sample)
    return samples


def load_samples(
    data: DataSource, fields: FieldMap, subset: str, split: str, data_dir: str | Path | None = None
) -> list[Sample]:
    """The Samples of one subset and split, in file order.

    Raises DataError for missing or malformed files (naming the file, row and field).
    """
    (path,) = data_files(data, subset, split, data_dir)
    return read_file_samples(path, data, fields, subset)
