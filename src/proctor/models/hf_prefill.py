"""Prompts run into a KVPool: a few rows at a time, each shared prefix once.

Rows that begin with the same tokens (the few-shot examples of one subject, a system
prompt) share them: each such prefix runs once and its keys and values are copied into
every row that starts with it. A pool row is laid out [its prefix][zeros][the rest],
every prompt ending at the same column, so the model sees the positions and the
attention mask of the whole prompt. Used by greedy generation (hf_generate) and by
letter scoring (hf_loglikelihood).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from proctor.models.hf_cache import KVPool, forward, left_pad
from proctor.models.hf_pooling import SHARED_PREFIX_MIN, shared_prefixes

__all__ = ["SHARED_PREFIX_MIN", "Prefilled", "prefill", "pool_groups", "prefill_chunks", "shared_prefixes",
           "not_full_attention", "prefill_supported"]

PREFILL_MIN_TOKENS = 512
MAX_WIDENING = 1.25  # a shared layout is at most this much wider than the longest prompt
PROBE_TOLERANCE = 1e-3  # max |difference| of last-position log-probs, pool vs plain pass
_supported: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


@dataclass
class Prefilled:
    """Prompts in a pool, in pool order (`order[row]`: the index of the prompt in that row)."""

    pool: KVPool
    order: list[int]
    mask: torch.Tensor  # (rows, columns): the attention mask of every pool row
    last_logits: torch.Tensor  # (rows, vocab): the logits after each prompt's last token


def prefill(model: Any, pad_id: int, device: torch.device, seqs: Sequence[Sequence[int]],
            prefill_rows: int, room: int) -> Prefilled:
    """Run the prompts `seqs` (none empty; best one of `pool_groups`) into a new pool with
    `room` free columns per row, at most `prefill_rows` rows per forward pass. Call under
    torch.inference_mode()."""
    shared = shared_prefixes(seqs)
    longest = max(len(x) for x in seqs)
    if max(p for _, p in shared) + max(len(x) - p for x, (_, p) in zip(seqs, shared)) > MAX_WIDENING * longest:
        # Too wide to be worth it (pool_groups splits a pool so that this does not happen).
        shared = [(i, 0) for i in range(len(seqs))]
    # Pool rows ordered by what is left to prefill, longest first (less padding per batch).
    order = sorted(range(len(seqs)), key=lambda i: (shared[i][1] - len(seqs[i]), i))
    prefixes = [shared[i] for i in order]  # (prompt whose first tokens are the prefix, its length)
    suffixes = [seqs[i][p:] for i, (_, p) in zip(order, prefixes)]
    prefix_width = max(p for _, p in prefixes)
    width = prefix_width + max(len(x) for x in suffixes)
    pool = KVPool(len(seqs), width, room)
    if prefix_width:
        _prefill_prefixes(model, device, pool, seqs, prefixes)
    masks, logits = [], []
    for at, end in prefill_chunks([len(x) for x in suffixes], prefill_rows):
        w = max(len(x) for x in suffixes[at:end])
        ids, suffix_mask = left_pad(suffixes[at:end], w, pad_id)
        lengths = torch.tensor([p for _, p in prefixes[at:end]], dtype=torch.long)
        mask = torch.zeros((end - at, width), dtype=torch.long)
        mask[:, width - w:] = suffix_mask
        mask[torch.arange(width)[None, :] < lengths[:, None]] = 1
        positions = lengths[:, None] + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
        if prefix_width:
            pool.zero(slice(at, end), (mask[:, : width - w] == 0).to(device))
            cache, chunk_mask = pool.filled_cache(slice(at, end), width - w), mask
        else:  # plain left padding: the chunk's own columns only
            cache, chunk_mask = pool.prefill_cache(slice(at, end), w), suffix_mask
        out = forward(model, ids.to(device), chunk_mask.to(device), positions.to(device),
                      cache=cache, logits_to_keep=1)
        masks.append(mask)
        logits.append(out.logits[:, -1, :])
        del out, cache
    return Prefilled(pool, order, torch.cat(masks).to(device), torch.cat(logits))


def pool_groups(seqs: Sequence[Sequence[int]]) -> list[list[int]]:
    """The prompts of a pool split into as few groups to prefill (and decode) apart as keep
    every group's layout [prefix][zeros][rest] within MAX_WIDENING x its longest prompt:
    prompts by shared prefix, longest prefix first, then those sharing none, longest first.
    (One group is best when it fits: a decode step costs about as much for 32 rows as for 8.)"""
    shared = shared_prefixes(seqs)
    clusters: dict[tuple[int, int], list[int]] = {}
    for i, (source, length) in enumerate(shared):
        clusters.setdefault((source, length) if length else (i, 0), []).append(i)
    ordered = sorted(clusters.items(), key=lambda item: (-item[0][1], -max(len(seqs[i]) for i in item[1])))
    groups: list[list[int]] = []
    current: list[int] = []
    prefix = rest = longest = 0
    for (_, length), members in ordered:
        p = max(prefix, length)
        r = max([rest] + [len(seqs[i]) - length for i in members])
        n = max([longest] + [len(seqs[i]) for i in members])
        if current and p + r > MAX_WIDENING * n:
            groups.append(current)
            current = []
            p, r, n = length, max(len(seqs[i]) - length for i in members), max(len(seqs[i]) for i in members)
        current += members
        prefix, rest, longest = p, r, n
    return groups + [current] if current else groups


def _prefill_prefixes(model: Any, device: torch.device, pool: KVPool,
                      seqs: Sequence[Sequence[int]], prefixes: Sequence[tuple[int, int]]) -> None:
    """Run each shared prefix once and copy its keys and values into the rows that share it."""
    groups: dict[tuple[int, int], list[int]] = {}
    for row, (source, length) in enumerate(prefixes):
        if length:
            groups.setdefault((source, length), []).append(row)
    for (source, length), members in groups.items():
        one = KVPool(1, length, 0)
        ids = torch.tensor([list(seqs[source][:length])], dtype=torch.long, device=device)
        forward(model, ids, torch.ones_like(ids), torch.arange(length, device=device)[None, :],
                cache=one.prefill_cache(slice(0, 1), length), logits_to_keep=1)
        pool.copy_prefix(one, torch.tensor(members, dtype=torch.long, device=device), length)


def prefill_chunks(lengths: Sequence[int], most: int) -> list[tuple[int, int]]:
    """(start, end) of the prefill batches of rows with these prompt lengths (longest first):
    at most `most` rows each, and a new batch where the next prompt is over 10% shorter
    than the batch's longest once the batch has PREFILL_MIN_TOKENS (fewer padded tokens;
    a forward pass costs the same per token from about 512 tokens up, CPU)."""
    chunks: list[tuple[int, int]] = []
    start = 0
    for i in range(1, len(lengths) + 1):
        full = i - start >= most
        ragged = i < len(lengths) and lengths[i] < 0.9 * lengths[start] \
            and (i - start) * lengths[start] >= PREFILL_MIN_TOKENS
        if i == len(lengths) or full or ragged:
            chunks.append((start, i))
            start = i
    return chunks


def not_full_attention(model: Any) -> str | None:
    """Why the model's attention is not plain full attention over all past tokens, or None."""
    config = model.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    if getattr(config, "is_encoder_decoder", False):
        return "an encoder-decoder model"
    types = set(getattr(config, "layer_types", None) or ["full_attention"])
    if types != {"full_attention"}:
        return f"layer types {sorted(types)}"
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return "a sliding attention window"
    return None


def prefill_supported(model: Any, pad_id: int, device: torch.device) -> bool:
    """Whether prompts may be prefilled into a pool for this model: full attention only,
    and, checked once per model, two prompts sharing a prefix give the log-probs of a
    plain left-padded pass (within PROBE_TOLERANCE)."""
    known = _supported.get(model)
    if known is None:
        known = not_full_attention(model) is None and _probe(model, pad_id, device)
        _supported[model] = known
    return known


def _probe(model: Any, pad_id: int, device: torch.device) -> bool:
    vocab = int(model.get_input_embeddings().weight.shape[0])
    head = [(7 * k + 3) % vocab for k in range(2 * SHARED_PREFIX_MIN)]
    seqs = [head + [(11 * k + 5) % vocab for k in range(5)], head + [(13 * k + 1) % vocab for k in range(2)]]
    try:
        with torch.inference_mode():
            filled = prefill(model, pad_id, device, seqs, 1, room=0)
            pooled = torch.log_softmax(filled.last_logits.float(), -1)[
                torch.tensor([filled.order.index(i) for i in range(len(seqs))])]
            ids, mask = left_pad(seqs, max(map(len, seqs)), pad_id)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out = forward(model, ids.to(device), mask.to(device), positions.to(device), cache=None,
                          logits_to_keep=1, use_cache=False)
            plain = torch.log_softmax(out.logits[:, -1, :].float(), -1)
    except Exception:  # an architecture the pool cannot drive
        return False
    return bool((pooled.cpu() - plain.cpu()).abs().max() <= PROBE_TOLERANCE)
