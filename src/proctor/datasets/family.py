"""The I/O side of a benchmark family: file layouts, CSV format, and where to download it."""

from __future__ import annotations

from dataclasses import dataclass

from proctor.datasets.benchmark import Benchmark
from proctor.datasets.csvfile import CsvFormat


@dataclass(frozen=True)
class HubArchive:
    """The official data archive of a benchmark on the Hugging Face hub (a dataset repo)."""

    repo_id: str
    filename: str
    # Tried in order; a later one is used only when the file is not at an
    # earlier one (e.g. an archive removed from `main` but kept in history).
    revisions: tuple[str, ...] = ("main",)


@dataclass(frozen=True)
class Family:
    """Everything needed to find, read and download one benchmark's files."""

    benchmark: Benchmark
    csv_format: CsvFormat
    # Paths relative to a data root, with {split} and {subject} placeholders.
    # The first is the layout `fetch` writes; all are read.
    layouts: tuple[str, ...]
    archive: HubArchive

    def candidates(self, subject: str, split: str) -> tuple[str, ...]:
        """The relative paths where the file of (subject, split) may be, in search order."""
        return tuple(layout.format(subject=subject, split=split) for layout in self.layouts)
