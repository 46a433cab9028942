"""Batched greedy/sampled generation for HFBackend: left padding, stop strings, per-row limits.

Greedy decoding with the model's plain settings runs in Proctor's own loop: prompts are
prefilled `prefill_rows` at a time (the user's batch size bounds activation memory), then
decoded together in one pool, and a row leaves the pool as soon as it is done (EOS, its
max_tokens or its stop string) instead of riding along until the slowest row ends. A
decode step reads every weight once however many rows it carries, so 32 rows cost about
twice what 8 cost (33M-parameter Llama on 2 CPU cores: 57 ms vs 31 ms per step). Sampling,
user generation settings and caches that are not plain full attention go through
`model.generate`, batch by batch.
"""

from __future__ import annotations

import copy
import logging
import weakref
from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from proctor.models.hf_cache import forward, left_pad
from proctor.models.hf_prefill import not_full_attention, pool_groups, prefill
from proctor.models.thought import Thought, ThoughtTracker, decode_output, settle

# Settings of a generation config that leave greedy decoding plain: every other one set to a
# non-default value (a repetition penalty, banned words, a minimum length...) needs
# model.generate's logits processors.
_PLAIN_GREEDY_KEYS = frozenset({
    "max_new_tokens", "max_length", "pad_token_id", "eos_token_id", "bos_token_id",
    "decoder_start_token_id", "do_sample", "num_beams", "temperature", "top_p", "top_k", "min_p",
    "typical_p", "epsilon_cutoff", "eta_cutoff", "stop_strings", "use_cache", "transformers_version",
    "_from_model_config", "cache_implementation", "return_dict_in_generate", "output_scores",
    "output_attentions", "output_hidden_states", "output_logits", "return_legacy_cache",
    "length_penalty", "early_stopping",  # beam search only
})
# Settings that change greedy decoding, and the one value of each that leaves it as it is.
# (Not "any falsy or 1": no_repeat_ngram_size 1 or min_new_tokens 1 do change it.)
_OFF_VALUES: dict[str, object] = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0, "min_length": 0, "min_new_tokens": 0,
    "num_return_sequences": 1, "renormalize_logits": False,
}
PROBE_TOKENS = 64  # prompt tokens of each of the two prompts the pool is checked on
log = logging.getLogger("proctor.models.hf")

# Per loaded model: whether its greedy generation may run in the pool (checked on first use).
_poolable: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class GenInput:
    """One prompt, already tokenized (and truncated), with its own limits."""

    ids: tuple[int, ...]
    max_tokens: int
    stop: tuple[str, ...] = ()
    # The reasoning markers (and whether the prompt opened a thought): stop strings wait for
    # the thought to close (proctor.models.thought).
    thought: Thought | None = None


@dataclass(frozen=True)
class GenOutput:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str = "stop"  # "length" when max_tokens ended it, as OpenAI reports
    reasoning_ended: bool | None = None  # None: no thought; False: it never closed
    reasoning_tokens: int | None = None  # the tokens up to the closing marker (all, when open)


def generate_batch(
    model: Any,
    tokenizer: Any,
    device: torch.device,
    inputs: Sequence[GenInput],
    temperature: float = 0.0,
    generation_kwargs: Mapping[str, Any] | None = None,
    prefill_rows: int | None = None,
) -> list[GenOutput]:
    """Generate for every input; greedy when temperature is 0.

    Each row stops at EOS, at its own max_tokens, or when its text contains one of
    its stop strings (the text is cut before it). Prompts are run `prefill_rows` at a
    time (all at once when None); greedy rows are then decoded together. A row's tokens
    do not depend on its batch mates (left padding + attention mask).
    """
    outputs: list[GenOutput | None] = [None] * len(inputs)
    rows = [i for i, x in enumerate(inputs) if x.max_tokens > 0]
    for i, x in enumerate(inputs):
        if x.max_tokens <= 0:
            outputs[i] = GenOutput(text="", prompt_tokens=len(x.ids), completion_tokens=0)
    if rows:
        batch = [inputs[i] for i in rows]
        chunk = max(1, prefill_rows or len(batch))
        eos_ids = _eos_ids(model, tokenizer)
        config = _generation_config(model, max(x.max_tokens for x in batch), temperature,
                                    tokenizer.pad_token_id, eos_ids, generation_kwargs or {})
        if _plain_greedy(config) and _pool_ok(model, tokenizer, device, batch, config, eos_ids):
            results = [None] * len(batch)
            for group in pool_groups([x.ids for x in batch]):
                outs = _generate_pooled(model, tokenizer, device, [batch[i] for i in group], chunk, eos_ids)
                for i, out in zip(group, outs):
                    results[i] = out
        else:
            results = [out for at in range(0, len(batch), chunk)
                       for out in _generate_rows(model, tokenizer, device, batch[at: at + chunk],
                                                 config, eos_ids)]
        for i, out in zip(rows, results):
            outputs[i] = out
    return [o for o in outputs if o is not None]


def _plain_greedy(config: Any) -> bool:
    """Whether `config` is greedy decoding with nothing that model.generate alone applies."""
    if config.do_sample or (config.num_beams or 1) > 1:
        return False
    return all(_leaves_greedy_alone(key, value) for key, value in config.to_diff_dict().items())


def _leaves_greedy_alone(key: str, value: object) -> bool:
    """Whether a generation setting, at this value, leaves greedy decoding unchanged."""
    if key in _PLAIN_GREEDY_KEYS or value is None or value == [] or value == {}:
        return True
    if key not in _OFF_VALUES:
        return False
    off = _OFF_VALUES[key]
    return value == off and isinstance(value, bool) == isinstance(off, bool)  # True is not 1


def _pool_ok(model: Any, tokenizer: Any, device: torch.device, batch: Sequence[GenInput],
             config: Any, eos_ids: set[int]) -> bool:
    """Whether this model may decode in the pool: only full attention (no sliding window,
    no recurrent state), and, checked once per model, the pool's first tokens for two of
    these prompts equal model.generate's."""
    known = _poolable.get(model)
    if known is not None:
        return known
    why = not_full_attention(model)
    if why is None:
        # The first tokens of two prompts: a probe on two whole 2000-token prompts cost 3-4% of
        # a 5-shot MMLU run (they run twice, pooled and through model.generate).
        probe = [replace(x, ids=x.ids[:PROBE_TOKENS], max_tokens=min(x.max_tokens, 4)) for x in batch[:2]]
        probe_config = copy.deepcopy(config)
        probe_config.max_new_tokens = max(x.max_tokens for x in probe)
        try:
            pooled = _generate_pooled(model, tokenizer, device, probe, len(probe), eos_ids)
        except Exception as exc:  # an architecture the pool cannot drive
            why = f"{type(exc).__name__}: {exc}"
        else:
            if pooled != _generate_rows(model, tokenizer, device, probe, probe_config, eos_ids):
                why = "its first tokens differed from model.generate's"
    if why is not None:
        log.info("model %s: greedy generation runs through model.generate (%s)",
                 getattr(model, "name_or_path", type(model).__name__), why)
    _poolable[model] = why is None
    return why is None


def _generate_pooled(
    model: Any,
    tokenizer: Any,
    device: torch.device,
    batch: Sequence[GenInput],
    prefill_rows: int,
    eos_ids: set[int],
) -> list[GenOutput]:
    """Greedy decoding of `batch` in one pool (see the module docstring)."""
    with torch.inference_mode():
        filled = prefill(model, tokenizer.pad_token_id, device, [x.ids for x in batch], prefill_rows,
                         room=max(x.max_tokens for x in batch))
        pool, order, mask = filled.pool, filled.order, filled.mask
        rows = [batch[i] for i in order]
        stopper = _StopCheck(tokenizer, rows)
        positions = mask.sum(-1)  # each row's next position: its prompt length
        step_logits = filled.last_logits
        del filled
        tokens: list[list[int]] = [[] for _ in rows]
        done: list[int | None] = [None] * len(rows)
        active = list(range(len(rows)))  # pool slot -> pool row
        columns = mask.shape[1]
        while True:
            next_ids = step_logits.argmax(-1)
            keep = []
            for slot, token in enumerate(next_ids.tolist()):
                row = active[slot]
                if done[row] is not None:
                    continue  # finished, still in the pool until enough rows have finished
                tokens[row].append(token)
                if stopper.done(row, tokens[row], token in eos_ids):
                    done[row] = len(tokens[row])
                else:
                    keep.append(slot)
            if not keep:
                break
            # Dropping rows copies the pool: done once a quarter of it has finished.
            if len(active) - len(keep) >= max(1, len(active) // 4):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                pool.select(index)
                mask, positions, next_ids = mask[index], positions[index], next_ids[index]
                active = [active[slot] for slot in keep]
            mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
            out = forward(model, next_ids[:, None], mask, positions[:, None],
                          pool.filled_cache(slice(None), columns), logits_to_keep=1)
            step_logits = out.logits[:, -1, :]
            positions = positions + 1
            columns += 1
    results: list[GenOutput | None] = [None] * len(batch)
    for row, i in enumerate(order):
        results[i] = _output(tokenizer, rows[row], tokens[row], done[row], eos_ids)
    return [r for r in results if r is not None]


def _generate_rows(
    model: Any,
    tokenizer: Any,
    device: torch.device,
    batch: Sequence[GenInput],
    config: Any,
    eos_ids: set[int],
) -> list[GenOutput]:
    """One padded batch through model.generate (sampling, user settings, any cache)."""
    width = max(len(x.ids) for x in batch)
    input_ids, attention_mask = left_pad([x.ids for x in batch], width, tokenizer.pad_token_id)
    stopper = _RowStopper(_StopCheck(tokenizer, batch), width, eos_ids)
    with torch.inference_mode():
        out = model.generate(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([stopper]),
        )
    new_tokens = out[:, width:].tolist()
    return [_output(tokenizer, x, new_tokens[row], stopper.done_at[row], eos_ids)
            for row, x in enumerate(batch)]


def _output(tokenizer: Any, x: GenInput, tokens: list[int], done_at: int | None,
            eos_ids: set[int]) -> GenOutput:
    """The answer of one row from its new tokens (`done_at`: how many of them count)."""
    kept = tokens[: min(len(tokens), x.max_tokens) if done_at is None else done_at]
    while kept and kept[-1] in eos_ids:
        kept.pop()
    text = decode_output(tokenizer, kept, x.thought)
    done = settle(text, x.stop, x.thought, len(kept), x.max_tokens,
                  lambda part: len(tokenizer(part, add_special_tokens=False)["input_ids"]))
    return GenOutput(text=done.text, prompt_tokens=len(x.ids), completion_tokens=len(kept),
                     finish_reason="length" if done.hit_length else "stop", reasoning_ended=done.reasoning_ended,
                     reasoning_tokens=done.reasoning_tokens)


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


class _StopCheck:
    """When each row of a batch is done: at EOS, its own max_tokens, or its first stop string.

    Only the tail of a row is decoded at every step (enough tokens to hold the longest
    stop string), so the check stays cheap for long outputs.
    """

    def __init__(self, tokenizer: Any, batch: Sequence[GenInput]) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = [x.max_tokens for x in batch]
        self.stops = [tuple(s for s in x.stop if s) for x in batch]
        # A character is at most 4 UTF-8 bytes = 4 byte tokens; +2 for a token that
        # starts before the stop string and one whose decoding drops a leading space.
        self.windows = [4 * max((len(s) for s in st), default=0) + 2 for st in self.stops]
        # Rows with stop strings and reasoning markers: a stop counts only after the thought closed.
        self.thoughts = [ThoughtTracker(x.thought, w) if x.thought is not None and st else None
                         for x, st, w in zip(batch, self.stops, self.windows)]

    def _decode(self, ids: Sequence[int] | torch.Tensor, thought: Thought | None = None) -> str:
        plain = ids.tolist() if isinstance(ids, torch.Tensor) else list(ids)
        return decode_output(self.tokenizer, plain, thought)

    def done(self, row: int, tokens: Sequence[int] | torch.Tensor, at_eos: bool) -> bool:
        """Whether `row`, having generated `tokens` (the last one EOS when at_eos), is done."""
        if at_eos or len(tokens) >= self.max_tokens[row]:
            return True
        if not self.stops[row]:
            return False
        tracker = self.thoughts[row]
        if tracker is not None:
            tail = tracker.stop_window(tokens, lambda t: self._decode(t, tracker.thought), self.windows[row])
            return tail is not None and any(s in tail for s in self.stops[row])
        tail = self._decode(tokens[-self.windows[row]:])
        return any(s in tail for s in self.stops[row])


class _RowStopper(StoppingCriteria):
    """A _StopCheck as model.generate's stopping criterion (it sees prompt + new tokens)."""

    def __init__(self, check: _StopCheck, prompt_width: int, eos_ids: set[int]) -> None:
        self.check = check
        self.prompt_width = prompt_width
        self.eos_ids = eos_ids
        self.done_at: list[int | None] = [None] * len(check.max_tokens)

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        n_new = input_ids.shape[1] - self.prompt_width
        flags = []
        for row in range(input_ids.shape[0]):
            if self.done_at[row] is None and n_new > 0:
                new = input_ids[row, self.prompt_width:]  # a view: only its tail is read
                if self.check.done(row, new, int(new[-1]) in self.eos_ids):
                    self.done_at[row] = min(n_new, self.check.max_tokens[row])
            flags.append(self.done_at[row] is not None)
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)
