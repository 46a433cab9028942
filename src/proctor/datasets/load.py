"""The public loading functions: the Samples of one (benchmark, subject, split), and their files."""

from __future__ import annotations

from pathlib import Path

from proctor.core import Sample
from proctor.datasets.benchmark import Benchmark
from proctor.datasets.csvfile import read_samples
from proctor.datasets.locate import find_file
from proctor.datasets.registry import get_family


def data_files(
    benchmark: str | Benchmark, subject: str, split: str, data_dir: str | Path | None = None
) -> list[Path]:
    """The files `load_samples` reads for these arguments (for the run manifest's hashes)."""
    return [find_file(benchmark, subject, split, data_dir).resolve()]


def load_samples(
    benchmark: str | Benchmark, subject: str, split: str, data_dir: str | Path | None = None
) -> list[Sample]:
    """The multiple-choice Samples of one subject and split, in file order.

    Sample: fields={"question", "options": {"A".."D"}}, target "A".."D",
    meta={"subject", optional "explanation"}. Raises ConfigError for an unknown
    benchmark, subject or split, DataError for missing or malformed files.
    """
    family = get_family(benchmark)
    (path,) = data_files(family.benchmark, subject, split, data_dir)
    return read_samples(path, family.csv_format, subject)
