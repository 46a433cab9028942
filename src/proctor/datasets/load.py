"""The public loading functions: the Samples of one (subset, split) of a benchmark, and their files."""

from __future__ import annotations

from pathlib import Path

from proctor.core import Sample
from proctor.datasets.fields import FieldMap, row_to_sample
from proctor.datasets.locate import find_file
from proctor.datasets.readers import read_rows
from proctor.datasets.source import DataSource
from proctor.errors import DataError


def data_files(data: DataSource, subset: str, split: str, data_dir: str | Path | None = None) -> list[Path]:
    """The files `load_samples` reads for these arguments (for the run manifest's hashes)."""
    return [find_file(data, subset, split, data_dir).resolve()]


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
