"""Log-probs of exact token-id sequences, with the top-k alternatives at each position.

What `/v1/completions` needs for token-id prompts (lm-evaluation-harness's
`local-completions` sends `prompt: [[791, 4320, ...]]` with `echo`, `logprobs`, and
reads the prompt's log-probs by position) and for `logprobs` > 1: the ids are scored
as given, never decoded and re-tokenized.

A backend may offer `token_logprobs(seqs, top_k)` itself; otherwise the HF backend's
loaded model is used on its worker thread, under its lock (one batch at a time).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Sequence


@dataclass(frozen=True)
class ScoredIds:
    """Per position of a token-id sequence: its log-prob (None for the first) and the
    `top_k` most likely tokens there, as (token id, log-prob) pairs, best first."""

    ids: tuple[int, ...]
    logprobs: tuple[float | None, ...]
    top: tuple[tuple[tuple[int, float], ...], ...]  # () at position 0
    # The top_k most likely tokens after the last one (the greedy next token first).
    next_top: tuple[tuple[int, float], ...] = ()


def supports_token_logprobs(backend: Any) -> bool:
    return callable(getattr(backend, "token_logprobs", None)) or hasattr(backend, "_loaded")


async def token_logprobs(backend: Any, seqs: Sequence[Sequence[int]], top_k: int) -> list[ScoredIds]:
    """Score each sequence of token ids (in order) on `backend`."""
    own = getattr(backend, "token_logprobs", None)
    if callable(own):
        return list(await own(seqs, top_k))
    loaded = backend._loaded  # HFBackend: raises a clear error when not started
    lock = backend._lock
    loop = asyncio.get_running_loop()

    def run() -> list[ScoredIds]:
        size = max(1, int(getattr(loaded, "batch_size", 8) or 8))
        out: list[ScoredIds] = []
        for at in range(0, len(seqs), size):
            with lock:
                out.extend(score_batch(loaded.model, loaded.tokenizer, loaded.device,
                                       seqs[at: at + size], top_k))
        return out

    return await loop.run_in_executor(backend._executor, run)


def score_batch(model: Any, tokenizer: Any, device: Any, seqs: Sequence[Sequence[int]],
                top_k: int) -> list[ScoredIds]:
    """One left-padded forward pass over `seqs` (the HF backend's batching of prompts)."""
    import torch

    from proctor.models.hf_cache import forward, left_pad

    k = max(1, top_k)
    width = max((len(s) for s in seqs), default=0)
    if width == 0:
        return [ScoredIds((), (), (), ()) for _ in seqs]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    with torch.inference_mode():
        ids, mask = left_pad(seqs, width, pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = forward(model, ids.to(device), mask.to(device), positions.to(device),
                      cache=None, logits_to_keep=0, use_cache=False)
        results = []
        for row, seq in enumerate(seqs):
            n = len(seq)
            if n == 0:
                results.append(ScoredIds((), (), (), ()))
                continue
            logits = out.logits[row, width - n: width].float()
            norm = logits - torch.logsumexp(logits, -1, keepdim=True)
            targets = torch.tensor(list(seq[1:]), dtype=torch.long, device=norm.device)
            chosen = norm[:-1].gather(-1, targets[:, None])[:, 0].tolist()
            values, indices = norm.topk(min(k, norm.shape[-1]), dim=-1)
            top = tuple(
                tuple(zip(map(int, i_row), map(float, v_row)))
                for i_row, v_row in zip(indices.tolist(), values.tolist())
            )
            results.append(ScoredIds(tuple(int(t) for t in seq), (None, *chosen), ((), *top[:-1]), top[-1]))
        return results
