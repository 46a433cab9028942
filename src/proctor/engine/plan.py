"""Splitting a run into tasks: (model, dataset, shard of samples)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class Task:
    model: str  # the model's abbr
    dataset: str  # the dataset's abbr
    start: int  # [start, end) of the dataset's selected samples
    end: int

    @property
    def label(self) -> str:
        return f"{self.model}/{self.dataset}" + (f"[{self.start}:{self.end}]" if self.start else "")


def make_plan(
    models: Sequence[str], dataset_sizes: Sequence[tuple[str, int]], max_partition_size: int | None
) -> list[Task]:
    """One task per (model, dataset); datasets larger than `max_partition_size` are split."""
    tasks = []
    for model in models:
        for dataset, size in dataset_sizes:
            step = max_partition_size or max(size, 1)
            for start in range(0, max(size, 1), step):
                tasks.append(Task(model, dataset, start, min(start + step, size)))
    return tasks
