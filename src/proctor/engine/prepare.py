"""Loading a dataset config's samples and few-shot examples, and rendering its requests.

The engine does not look inside a task spec: it asks `tasks` for the resolved task
(samples, items, prompt plan, scorer) and passes it through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from proctor.config.schema import DatasetConfig
from proctor.core import Item, Request, Sample
from proctor.errors import DataError
from proctor.tasks import ResolvedTask, resolve_task


@dataclass(frozen=True)
class PreparedDataset:
    config: DatasetConfig
    task: ResolvedTask
    samples: tuple[Sample, ...]  # the selected eval samples, in file order
    items: tuple[Item, ...]  # what requests are made for: one or more per sample
    shots: tuple[Sample, ...]
    files: tuple[Path, ...]
    base_shots: tuple[Sample, ...] = ()  # the base-model prompt's examples, when it has its own

    @property
    def version(self) -> str:
        return self.task.version

    def request(
        self,
        item: Item,
        *,
        chat: bool,
        max_tokens: int,
        temperature: float,
        max_seq_len: int | None = None,
        max_tokens_set: bool = False,
        count: Callable[[Request], int] | None = None,
        seed: int = 0,
    ) -> Request:
        """The item's request; with `max_seq_len`, the last few-shot examples are dropped
        until the prompt and its answer fit (as OpenCompass does), rather than cutting the prompt.
        `count` measures a request in tokens (a local model's tokenizer); without it, an estimate.

        Answer length: the dataset's `max_out_len`, else the model's when the user set it
        (`max_tokens_set`), else the spec's (512 for chain of thought), else the model's default.
        A repeat (`#k<j>`) is sent with the seed `seed + j`: each repeat is its own sample, and
        its own cache entry.
        """
        from proctor.prompts import estimate_request_tokens

        plan = self.task.plan.for_model(chat)
        shots = self.shots if plan is self.task.plan else self.base_shots
        if self.config.max_out_len:
            max_tokens = self.config.max_out_len
        elif not max_tokens_set and plan.max_out_len:
            max_tokens = plan.max_out_len
        while True:
            request = plan.request(item.sample, shots, chat=chat, max_tokens=max_tokens, temperature=temperature)
            size = count(request) if count is not None else estimate_request_tokens(request)
            if not shots or max_seq_len is None or size <= max_seq_len:
                repeat = item.variant.get("repeat")
                return request if repeat is None else replace(request, seed=seed + int(repeat))
            shots = shots[:-1]


def prepare_dataset(config: DatasetConfig, data_dir: str | None) -> PreparedDataset:
    from proctor.config.ranges import apply_range

    root = config.data_dir or data_dir
    task = resolve_task(config, root)
    samples = task.load(task.spec.splits.eval, root)
    selected = apply_range(samples, config.range, config.limit, where=f"dataset {config.abbr}")
    files = list(task.files(task.spec.splits.eval, root))
    if not selected:
        # A score over no question would be a `-` cell and exit code 0: a mistake, not a result.
        what = f"range {config.range} selects none of its {len(samples)} samples" if samples else "has no samples"
        raise DataError(f"dataset {config.abbr}: {what} ({files[0]})")
    shots, shot_files = task.shots(root)
    base_shots: list[Sample] = []
    if task.spec.prompt.base is not None:
        base_shots, base_files = task.shots(root, base=True)
        shot_files += base_files
    for path in [*shot_files, *([task.prefix_file] if task.prefix_file else [])]:
        if path not in files:
            files.append(path)
    items = tuple(item for sample in selected for item in task.items(sample))
    return PreparedDataset(
        config=config, task=task, samples=tuple(selected), items=items, shots=tuple(shots), files=tuple(files),
        base_shots=tuple(base_shots),
    )
