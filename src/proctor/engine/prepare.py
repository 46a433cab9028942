"""Loading a dataset config's samples and few-shot examples, and rendering its requests.

The engine does not look inside a task spec: it asks `tasks` for the resolved task
(samples, items, prompt plan, scorer) and passes it through.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Sequence

from proctor.config.schema import DatasetConfig
from proctor.core import Item, Message, Request, Sample
from proctor.errors import DataError
from proctor.tasks import ResolvedTask, resolve_task


# A local model keeps its few-shot examples while they leave at least this many tokens to answer in.
MIN_ANSWER_TOKENS = 32


@dataclass(frozen=True)
class PreparedDataset:
    config: DatasetConfig
    task: ResolvedTask
    samples: tuple[Sample, ...]  # the selected eval samples, in file order
    items: tuple[Item, ...]  # what requests are made for: one or more per sample
    shots: tuple[Sample, ...]
    files: tuple[Path, ...]
    base_shots: tuple[Sample, ...] = ()  # the base-model prompt's examples, when it has its own
    available: int = 0  # samples in the scored split before --range/--limit (coverage)

    @property
    def version(self) -> str:
        return self.task.version

    @property
    def conversation(self) -> bool:
        """Its samples are conversations: turn 2 is asked after turn 1's answer (engine/conversation.py)."""
        return self.task.spec.conversation is not None

    @property
    def plan_size(self) -> int:
        """What the plan shards: items, or whole conversations (a turn needs the turns before it)."""
        return len(self.samples) if self.conversation else len(self.items)

    def shard_items(self, start: int, end: int) -> tuple[Item, ...]:
        """The items of plan positions [start, end): a conversation's every turn with its sample."""
        if not self.conversation:
            return self.items[start:end]
        ids = {s.id for s in self.samples[start:end]}
        return tuple(i for i in self.items if i.sample_id in ids)

    def answer_budget(self, chat: bool, max_tokens: int, max_tokens_set: bool) -> int:
        """The tokens an answer may take before the context is considered (see `request`)."""
        plan = self.task.plan.for_model(chat)
        if self.config.max_out_len:
            return self.config.max_out_len
        if not max_tokens_set and plan.max_out_len:
            return plan.max_out_len
        return max_tokens

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
        local: bool = False,
        system: str | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Request:
        """The item's request; with `max_seq_len`, the last few-shot examples are dropped
        until the prompt and its answer fit (as OpenCompass does), rather than cutting the prompt.
        `count` measures a request in tokens (a local model's tokenizer); without it, an estimate.

        `local` (a model whose context Proctor enforces itself): the answer budget shrinks to
        what the whole prompt leaves, examples are dropped only while that is under
        MIN_ANSWER_TOKENS (or the answer budget, if smaller), and a prompt that does not fit even
        without examples is refused (`refusal`: recorded as failed, never cut into another question).

        Answer length: the dataset's `max_out_len`, else the model's when the user set it
        (`max_tokens_set`), else the spec's (512 for chain of thought), else the model's default.
        A repeat (`#k<j>`) is sent with the seed `seed + j`: each repeat is its own sample, and
        its own cache entry.

        Chat requests start with the system prompt (`system`, the model's; else the spec's), and a
        conversation's later turn carries `history`: the earlier (user turn, answer) pairs.
        """
        plan = self.task.plan.for_model(chat)
        shots = self.shots if plan is self.task.plan else self.base_shots
        max_tokens = self.answer_budget(chat, max_tokens, max_tokens_set)
        system = system if system is not None else self.task.spec.prompt.system
        request = self._fit(item, plan, shots, chat, max_tokens, temperature, max_seq_len, count, local,
                            system, tuple(history))
        repeat = item.variant.get("repeat")
        return request if repeat is None else replace(request, seed=seed + int(repeat))

    def _fit(
        self, item: Item, plan: Any, shots: tuple[Sample, ...], chat: bool, max_tokens: int, temperature: float,
        max_seq_len: int | None, count: Callable[[Request], int] | None, local: bool,
        system: str | None = None, history: tuple[tuple[str, str], ...] = (),
    ) -> Request:
        """The request with as many examples, and as long an answer, as the context allows (see `request`)."""
        from proctor.prompts import estimate_request_tokens

        all_shots = len(shots)
        while True:
            request = _converse(plan.request(item.sample, shots, chat=chat, max_tokens=max_tokens,
                                             temperature=temperature), system, history)
            if max_seq_len is None:
                return request
            size = count(request) if count is not None else estimate_request_tokens(request)
            dropped = all_shots - len(shots)
            if size <= max_seq_len:
                return replace(request, fewshot_dropped=dropped) if dropped else request
            if local:
                generated = request.max_tokens if request.kind == "generate" else 0
                room = max_seq_len - (size - generated)  # what the prompt leaves for the answer
                if request.kind == "generate" and room >= max(1, min(generated, MIN_ANSWER_TOKENS) if shots else 1):
                    return replace(request, max_tokens=room, fewshot_dropped=dropped)
                if not shots:
                    prompt = size - generated
                    return replace(request, fewshot_dropped=dropped, refusal=(
                        f"context too long: the prompt is {prompt} tokens"
                        + (f" even with all {all_shots} few-shot examples dropped" if all_shots else "")
                        + f", the model's context (max_seq_len) is {max_seq_len}"
                        + ("" if request.kind == "generate" else " (with the longest option)")))
            elif not shots:
                return replace(request, fewshot_dropped=dropped) if dropped else request
            shots = shots[:-1]


def _converse(request: Request, system: str | None, history: tuple[tuple[str, str], ...]) -> Request:
    """A chat request with the system prompt first and a conversation's earlier turns before its
    last user message (a text prompt has no place for either: conversations need chat models)."""
    if request.messages is None or (not system and not history):
        return request
    messages = list(request.messages)
    earlier = [m for user, answer in history for m in (Message("user", user), Message("assistant", answer))]
    messages[-1:-1] = earlier
    if system:
        messages.insert(0, Message("system", system))
    return replace(request, messages=tuple(messages))


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
        base_shots=tuple(base_shots), available=len(samples),
    )
