"""Splitting a run into tasks: (model, dataset, shard of samples)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

DEFAULT_MAX_WORKERS = 32
"""API tasks running at once. API tasks are coroutines that share their model's limits, so more
only means more progress bars. A local model's tasks all run at once unless --max-num-workers caps
them: the model answers them from one queue, batched across tasks and sorted by length."""


@dataclass(frozen=True)
class Task:
    model: str  # the model's abbr
    dataset: str  # the dataset's abbr
    start: int  # [start, end) of the dataset's selected samples
    end: int
    total: int = 0  # the dataset's size: a task with less is a shard
    num_gpus: int = 0  # what the model asks for; the runner gives it that many

    @property
    def label(self) -> str:
        shard = (self.start, self.end) != (0, self.total)
        return f"{self.model}/{self.dataset}" + (f"[{self.start}:{self.end}]" if shard else "")

    @property
    def size(self) -> int:
        return self.end - self.start


def make_plan(
    models: Sequence[str],
    dataset_sizes: Sequence[tuple[str, int]],
    max_partition_size: int | None,
    num_gpus: Mapping[str, int] | None = None,
) -> list[Task]:
    """One task per (model, dataset), model by model; datasets larger than `max_partition_size` are split.

    Shards are near-equal ([0:34] [34:67] [67:100], not [0:40] [40:80] [80:100]) so no worker waits on a long tail.
    """
    tasks = []
    for model in models:
        gpus = (num_gpus or {}).get(model, 0)
        for dataset, size in dataset_sizes:
            parts = -(-size // max_partition_size) if max_partition_size and size else 1
            bounds = [round(i * size / parts) for i in range(parts + 1)]
            for start, end in zip(bounds, bounds[1:]):
                tasks.append(Task(model, dataset, start, end, size, gpus))
    return tasks


def describe_plan(plan: Sequence[Task], to_do: Mapping[Task, int] | None = None) -> list[str]:
    """Lines for `--dry-run`: each task, its size, what is left to send (with -r) and its GPUs."""
    lines = [f"plan: {len(plan)} tasks, {sum(t.size for t in plan)} samples"]
    for task in plan:
        notes = [f"{task.size} samples"]
        if to_do is not None:
            notes.append(f"{to_do.get(task, task.size)} to do")
        if task.num_gpus:
            notes.append(f"{task.num_gpus} GPU{'s' if task.num_gpus > 1 else ''}")
        lines.append(f"  {task.label}  ({', '.join(notes)})")
    return lines
