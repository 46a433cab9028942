"""Batched greedy/sampled generation for HFBackend: left padding, stop strings, per-row limits."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from proctor.models.hf_loglikelihood import left_pad


@dataclass(frozen=True)
class GenInput:
    """One prompt, already tokenized (and truncated), with its own limits."""

    ids: tuple[int, ...]
    max_tokens: int
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class GenOutput:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # "length" when max_tokens ended it, as OpenAI reports


def generate_batch(
    model: Any,
    tokenizer: Any,
    device: torch.device,
    inputs: Sequence[GenInput],
    temperature: float = 0.0,
    generation_kwargs: Mapping[str, Any] | None = None,
) -> list[GenOutput]:
    """Generate for every input in one padded batch; greedy when temperature is 0.

    Each row stops at EOS, at its own max_tokens, or when its text contains one of
    its stop strings (the text is cut before it); the batch stops when all rows have.
    A row's tokens do not depend on its batch mates (left padding + attention mask).
    """
    outputs: list[GenOutput | None] = [None] * len(inputs)
    rows = [i for i, x in enumerate(inputs) if x.max_tokens > 0]
    for i, x in enumerate(inputs):
        if x.max_tokens <= 0:
            outputs[i] = GenOutput(text="", prompt_tokens=len(x.ids), completion_tokens=0)
    if rows:
        batch = [inputs[i] for i in rows]
        for i, out in zip(rows, _generate_rows(model, tokenizer, device, batch, temperature,
                                                generation_kwargs or {})):
            outputs[i] = out
    return [o for o in outputs if o is not None]


def _generate_rows(
    model: Any,
    tokenizer: Any,
    device: torch.device,
    batch: Sequence[GenInput],
    temperature: float,
    generation_kwargs: Mapping[str, Any],
) -> list[GenOutput]:
    pad_id = tokenizer.pad_token_id
    width = max(len(x.ids) for x in batch)
    input_ids, attention_mask = left_pad([x.ids for x in batch], width, pad_id)

    eos_ids = _eos_ids(model, tokenizer)
    stopper = _RowStopper(tokenizer, width, batch, eos_ids)
    config = _generation_config(model, max(x.max_tokens for x in batch), temperature,
                                pad_id, eos_ids, generation_kwargs)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
    new_tokens = out[:, width:].tolist()

    results = []
    for row, x in enumerate(batch):
        tokens = new_tokens[row]
        n = stopper.done_at[row]
        if n is None:
            n = min(len(tokens), x.max_tokens)
        kept = tokens[:n]
        while kept and kept[-1] in eos_ids:
            kept.pop()
        text = tokenizer.decode(kept, skip_special_tokens=True)
        answer = cut_at_stop(text, x.stop)
        # As OpenAI (and `proctor serve`) report it: cut by max_tokens unless a stop string or EOS ended it.
        hit_length = answer == text and len(kept) >= x.max_tokens
        results.append(GenOutput(text=answer, prompt_tokens=len(x.ids), completion_tokens=len(kept),
                                 finish_reason="length" if hit_length else "stop"))
    return results


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop:
        if s:
            pos = text.find(s)
            if 0 <= pos < cut:
                cut = pos
    return text[:cut]


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for source in (model.generation_config.eos_token_id, tokenizer.eos_token_id):
        if isinstance(source, int):
            ids.add(source)
        elif source:
            ids.update(int(t) for t in source)
    return ids


def _generation_config(
    model: Any,
    max_new_tokens: int,
    temperature: float,
    pad_id: int,
    eos_ids: set[int],
    generation_kwargs: Mapping[str, Any],
) -> Any:
    config = copy.deepcopy(model.generation_config)
    config.max_new_tokens = max_new_tokens
    config.max_length = None
    config.pad_token_id = pad_id
    config.eos_token_id = sorted(eos_ids) or None
    config.num_beams = 1
    if temperature > 0:
        config.do_sample = True
        config.temperature = temperature
    else:
        # Greedy; unset the sampling knobs a chat model's generation_config may carry.
        config.do_sample = False
        config.temperature = None
        config.top_p = None
        config.top_k = None
    # The model config's own stop strings would need a tokenizer; ours are handled below.
    config.stop_strings = None
    for key, value in generation_kwargs.items():  # explicit user settings win
        setattr(config, key, value)
    return config


class _RowStopper(StoppingCriteria):
    """Marks each row done at EOS, its own max_tokens, or its first stop string.

    Only the tail of each row is decoded at every step (enough tokens to hold the
    longest stop string), so the check stays cheap for long outputs.
    """

    def __init__(self, tokenizer: Any, prompt_width: int, batch: Sequence[GenInput],
                 eos_ids: set[int]) -> None:
        self.tokenizer = tokenizer
        self.prompt_width = prompt_width
        self.max_tokens = [x.max_tokens for x in batch]
        self.stops = [tuple(s for s in x.stop if s) for x in batch]
        # A character is at most 4 UTF-8 bytes = 4 byte tokens; +2 for a token that
        # starts before the stop string and one whose decoding drops a leading space.
        self.windows = [4 * max((len(s) for s in st), default=0) + 2 for st in self.stops]
        self.eos_ids = eos_ids
        self.done_at: list[int | None] = [None] * len(batch)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        n_new = input_ids.shape[1] - self.prompt_width
        flags = []
        for row in range(input_ids.shape[0]):
            if self.done_at[row] is None and n_new > 0:
                if int(input_ids[row, -1]) in self.eos_ids or n_new >= self.max_tokens[row]:
                    self.done_at[row] = min(n_new, self.max_tokens[row])
                elif self.stops[row]:
                    start = max(self.prompt_width, input_ids.shape[1] - self.windows[row])
                    tail = self.tokenizer.decode(input_ids[row, start:].tolist(),
                                                 skip_special_tokens=True)
                    if any(s in tail for s in self.stops[row]):
                        self.done_at[row] = n_new
            flags.append(self.done_at[row] is not None)
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)
