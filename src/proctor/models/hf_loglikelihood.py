"""Log-likelihood scoring for HFBackend: each context is encoded once for all its continuations.

The rule (contracts.md, `hf_spans.continuation_start`): tokenize context + continuation
jointly; the continuation's tokens are those from the first token that starts at or
after len(context) (or straddles it). For one request, the continuations' joint
tokenizations share a token prefix, which runs once through the model. A suffix's first
token is scored from the prefix's last logits, so one-token continuations (the letters
A-D) need nothing more; longer suffixes are packed after the prefix in the same row,
each attending only to the prefix and to itself. A causal model's logits at a position
depend only on the tokens it attends to, so this gives the same numbers as one full
forward pass per continuation, in one pass per request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from proctor.models.base import PromptLogprobs
from proctor.models.hf_cache import forward, left_pad, output_cache, select_rows
from proctor.models.hf_prefill import pool_groups, prefill, prefill_supported, shared_prefixes
from proctor.models.hf_spans import continuation_start


@dataclass(frozen=True)
class Scored:
    """One tokenized text with the index of its first scored token (>= 1)."""

    ids: tuple[int, ...]
    start: int
    full_length: int  # before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.ids)


@dataclass(frozen=True)
class ScoreJob:
    """The continuations of one context: `prefix` runs once, then each suffix.

    For continuation i with joint tokens T (len n) and first scored token s:
    prefix = T[:P] (P <= s, shared by all), suffixes[i] = T[P:n], and the scored
    tokens are suffixes[i][s - P:]. `key` is what the result belongs to.
    """

    key: Any
    prefix: tuple[int, ...]
    suffixes: tuple[tuple[int, ...], ...]
    skip: tuple[int, ...]  # per continuation: s - P, tokens of the suffix not scored


def tokenize_scored(tokenizer: Any, context: str, continuation: str, max_len: int) -> Scored:
    """Joint tokenization of context + continuation under the continuation rule."""
    text = context + continuation
    enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True,
                    return_special_tokens_mask=True)
    ids = list(enc["input_ids"])
    special = enc["special_tokens_mask"]
    starts = [int(a) for a, _ in enc["offset_mapping"]]
    # Leading special tokens (BOS) are context, never continuation.
    first = next((i for i, m in enumerate(special) if not m), len(ids))
    start = continuation_start(starts, len(context), len(text), first)
    if start == 0:
        # Nothing precedes the first continuation token (empty context, no BOS):
        # condition it on a BOS/EOS token, as lm-evaluation-harness does.
        prefix_id = tokenizer.bos_token_id
        if prefix_id is None:
            prefix_id = tokenizer.eos_token_id
        ids = [prefix_id] + ids
        start = 1
    full_length = len(ids)
    if full_length > max_len:
        # Keep the end (the continuation): drop from the left.
        drop = full_length - max_len
        ids = ids[drop:]
        start = max(start - drop, 1)
    return Scored(ids=tuple(ids), start=min(start, len(ids)), full_length=full_length)


def plan_jobs(key: Any, scored: Sequence[Scored]) -> list[ScoreJob]:
    """One job sharing the longest usable prefix; or one job per continuation when
    truncation left them no common prefix."""
    if not scored:
        return []
    common = _common_prefix_len([s.ids for s in scored])
    p = min([common] + [s.start for s in scored])
    if p < 1:
        return [
            ScoreJob(key=(key, i), prefix=s.ids[: s.start], suffixes=(s.ids[s.start:],), skip=(0,))
            for i, s in enumerate(scored)
        ]
    return [
        ScoreJob(
            key=key,
            prefix=scored[0].ids[:p],
            suffixes=tuple(s.ids[p:] for s in scored),
            skip=tuple(s.start - p for s in scored),
        )
    ]


def _common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    n = min(len(s) for s in seqs)
    for i in range(n):
        first = seqs[0][i]
        if any(s[i] != first for s in seqs):
            return i
    return n


def score_jobs(model: Any, pad_id: int, device: torch.device,
               jobs: Sequence[ScoreJob], prefill_rows: int | None = None) -> list[list[float]]:
    """Per job, per continuation: the sum of log-probs of its scored tokens, in passes of
    at most `prefill_rows` jobs (all at once when None).

    A suffix's last token is only ever a target, never an input, and its first target
    is read from the prefix's last position: so when every suffix has at most one
    token (the letters " A".." D") one pass over the prefixes gives everything, and
    prefixes that begin alike (the few-shot examples of a subject) share that part
    (`score_jobs_shared`). Otherwise each job becomes one packed row, prefix followed by
    all its suffix inputs, each suffix attending to the prefix and to itself only (a 4D
    mask), so a job still costs one pass, without copies of a KV cache or padding between
    suffixes. Models whose attention cannot take such a mask use `score_jobs_cached`.
    """
    if not jobs:
        return []
    size = prefill_rows or len(jobs)
    letters = all(len(s) <= 1 for j in jobs for s in j.suffixes)
    if letters and len(jobs) > 1 and all(j.prefix for j in jobs) \
            and any(p for _, p in shared_prefixes([j.prefix for j in jobs])) \
            and prefill_supported(model, pad_id, device):
        return score_jobs_shared(model, pad_id, device, jobs, size)
    cached = not letters and not packing_supported(model, pad_id, device)
    score = score_jobs_cached if cached else score_jobs_packed
    return [r for at in range(0, len(jobs), size)
            for r in score(model, pad_id, device, jobs[at: at + size])]


def score_jobs_shared(model: Any, pad_id: int, device: torch.device,
                      jobs: Sequence[ScoreJob], prefill_rows: int) -> list[list[float]]:
    """`score_jobs` for continuations of at most one token: every prefix run into a KV pool
    (hf_prefill: a prefix shared by several jobs runs once), each continuation's log-prob
    read from its prefix's last position."""
    results: list[list[float]] = [[0.0] * len(j.suffixes) for j in jobs]
    for group in pool_groups([j.prefix for j in jobs]):
        with torch.inference_mode():
            filled = prefill(model, pad_id, device, [jobs[b].prefix for b in group], prefill_rows, room=0)
            logprobs = torch.log_softmax(filled.last_logits.float(), dim=-1).cpu()
            order = [group[k] for k in filled.order]
            del filled  # the pool's memory
        for row, b in enumerate(order):
            for i, (suffix, skip) in enumerate(zip(jobs[b].suffixes, jobs[b].skip)):
                if skip < len(suffix):  # else no scored token: 0.0
                    results[b][i] = float(logprobs[row, suffix[0]])
    return results


def score_jobs_packed(model: Any, pad_id: int, device: torch.device,
                      jobs: Sequence[ScoreJob], mask_kind: str | None = None
                      ) -> list[list[float]]:
    """`score_jobs` in one forward pass: one left-padded row per job,
    [pads | prefix | suffix 1 inputs | suffix 2 inputs | ...]; only the last
    positions (the prefix's last one and the suffix inputs) go through the LM head."""
    inputs = [[s[:-1] for s in j.suffixes] for j in jobs]
    packed = [len(j.prefix) + sum(len(x) for x in xs) for j, xs in zip(jobs, inputs)]
    keep = 1 + max(sum(len(x) for x in xs) for xs in inputs)
    width = max(packed)
    with torch.inference_mode():
        if keep == 1:
            # Prefixes alone: a plain causal pass, the attention mask built by the model.
            ids, mask = left_pad([j.prefix for j in jobs], width, pad_id)
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            attention = mask.to(device)
        else:
            ids, positions, allowed = _pack_rows(jobs, inputs, width, pad_id)
            attention = _as_attention_mask(allowed.to(device), mask_kind or _mask_kind(model),
                                           _model_dtype(model))
        out = forward(model, ids.to(device), attention, positions.to(device), cache=None,
                       logits_to_keep=keep, use_cache=False)
        logits = out.logits[:, -keep:, :].float()
        logprobs = logits - torch.logsumexp(logits, dim=-1, keepdim=True)

        # Kept position of each needed logit and its target, gathered in one go.
        rows, cols, targets, owners = [], [], [], []
        for b, (job, xs) in enumerate(zip(jobs, inputs)):
            tail = sum(len(x) for x in xs)  # suffix inputs after the prefix's last token
            last = keep - 1 - tail
            at = last + 1
            for i, suffix in enumerate(job.suffixes):
                for k in range(job.skip[i], len(suffix)):
                    rows.append(b)
                    cols.append(last if k == 0 else at + k - 1)
                    targets.append(suffix[k])
                    owners.append((b, i))
                at += len(xs[i])
        results: list[list[float]] = [[0.0] * len(j.suffixes) for j in jobs]
        if rows:
            picked = logprobs[torch.tensor(rows, device=device), torch.tensor(cols, device=device),
                              torch.tensor(targets, device=device)].double().tolist()
            for (b, i), value in zip(owners, picked):
                results[b][i] += value
        return results


def _pack_rows(jobs: Sequence[ScoreJob], inputs: Sequence[Sequence[Sequence[int]]], width: int,
               pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, position ids, allowed[b, 0, query, key]) of the packed, left-padded rows."""
    n = len(jobs)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    positions = torch.zeros((n, width), dtype=torch.long)
    allowed = torch.zeros((n, 1, width, width), dtype=torch.bool)
    causal = torch.ones((width, width), dtype=torch.bool).tril_()
    diagonal = torch.arange(width)
    # Padding attends to itself only: no fully masked row, no NaN to spread.
    allowed[:, 0, diagonal, diagonal] = True
    for b, (job, xs) in enumerate(zip(jobs, inputs)):
        p = len(job.prefix)
        start = width - p - sum(len(x) for x in xs)
        end = start + p
        ids[b, start:end] = torch.tensor(job.prefix, dtype=torch.long)
        positions[b, start:end] = torch.arange(p)
        allowed[b, 0, start:end, start:end] = causal[:p, :p]
        for x in xs:
            if not x:
                continue
            m = len(x)
            ids[b, end:end + m] = torch.tensor(x, dtype=torch.long)
            positions[b, end:end + m] = torch.arange(p, p + m)
            allowed[b, 0, end:end + m, start:start + p] = True
            allowed[b, 0, end:end + m, end:end + m] = causal[:m, :m]
            end += m
    return ids, positions, allowed


def _mask_kind(model: Any) -> str | None:
    """How the model's attention takes a custom 4D mask: "bool" (True = attend, SDPA),
    "additive" (0 / -inf added to the scores, eager), or None (unknown: not used)."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    return {"sdpa": "bool", "eager": "additive"}.get(impl or "")


def _model_dtype(model: Any) -> torch.dtype:
    dtype = getattr(model, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) and dtype.is_floating_point else torch.float32


def _as_attention_mask(allowed: torch.Tensor, kind: str | None, dtype: torch.dtype) -> torch.Tensor:
    if kind == "bool":
        return allowed
    additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return additive.masked_fill_(~allowed, torch.finfo(dtype).min)


def packing_supported(model: Any, pad_id: int, device: torch.device) -> bool:
    """Whether `score_jobs_packed` is right for this model with multi-token suffixes:
    its attention must take a custom 4D mask. Checked once per model object against
    `score_jobs_cached` on two small jobs (remote code or another attention kernel may
    ignore or reject the mask); the answer is remembered on the model."""
    known = getattr(model, "_proctor_packing_ok", None)
    if known is not None:
        return bool(known)
    ok = False
    if _mask_kind(model) is not None:
        vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 0)
        if vocab >= 16:
            t = [3 + (7 * k) % (vocab - 3) for k in range(12)]
            probe = [
                ScoreJob(key=0, prefix=tuple(t[:5]), suffixes=((t[5], t[6], t[7]), (t[8],), (t[9], t[10])),
                         skip=(0, 0, 1)),
                ScoreJob(key=1, prefix=tuple(t[2:4]), suffixes=((t[11], t[0]),), skip=(0,)),
            ]
            try:
                got = score_jobs_packed(model, pad_id, device, probe)
                want = score_jobs_cached(model, pad_id, device, probe)
                ok = all(abs(a - b) <= 1e-3 for ga, wa in zip(got, want) for a, b in zip(ga, wa))
            except Exception:  # e.g. an attention kernel that rejects a 4D mask
                ok = False
    try:
        model._proctor_packing_ok = ok
    except Exception:
        pass
    return ok


def score_jobs_cached(model: Any, pad_id: int, device: torch.device,
                      jobs: Sequence[ScoreJob]) -> list[list[float]]:
    """`score_jobs` in two passes, for models that cannot take a custom 4D mask.

    All prefixes run in one left-padded pass that keeps only the last position's
    logits; then every (job, continuation) suffix runs in one right-padded pass
    over its job's expanded KV cache.
    """
    rows = [(b, i) for b, j in enumerate(jobs) for i in range(len(j.suffixes))]
    # A suffix's last token is only ever a target, never an input; so single-token
    # continuations (" A".." D") need no suffix pass, and no KV cache at all.
    inputs = [jobs[b].suffixes[i][:-1] for b, i in rows]
    suffix_width = max((len(x) for x in inputs), default=0)
    with torch.inference_mode():
        width = max(len(j.prefix) for j in jobs)
        ids, mask = left_pad([j.prefix for j in jobs], width, pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = forward(model, ids.to(device), mask.to(device), positions.to(device),
                       cache=None, logits_to_keep=1, use_cache=suffix_width > 0)
        last_logprobs = torch.log_softmax(out.logits[:, -1, :].float(), dim=-1)

        suffix_logprobs = None
        if suffix_width > 0:
            cache = output_cache(out)
            row_job = torch.tensor([b for b, _ in rows], dtype=torch.long, device=device)
            cache = select_rows(cache, row_job)
            s_ids = torch.full((len(rows), suffix_width), pad_id, dtype=torch.long)
            s_mask = torch.zeros((len(rows), suffix_width), dtype=torch.long)
            for r, x in enumerate(inputs):
                if x:
                    s_ids[r, : len(x)] = torch.tensor(x, dtype=torch.long)
                    s_mask[r, : len(x)] = 1
            full_mask = torch.cat([mask.to(device)[row_job], s_mask.to(device)], dim=1)
            prefix_lens = mask.sum(-1).to(device)[row_job]
            s_pos = prefix_lens[:, None] + torch.arange(suffix_width, device=device)[None, :]
            s_out = forward(model, s_ids.to(device), full_mask, s_pos, cache=cache,
                             logits_to_keep=0)
            suffix_logprobs = s_out.logits

        results: list[list[float]] = [[0.0] * len(j.suffixes) for j in jobs]
        for r, (b, i) in enumerate(rows):
            suffix = jobs[b].suffixes[i]
            skip = jobs[b].skip[i]
            if skip >= len(suffix):
                continue  # no scored tokens
            targets = torch.tensor(suffix, dtype=torch.long, device=device)
            # Target k is predicted by the prefix's last position (k = 0) or suffix position k-1.
            lp = [last_logprobs[b, targets[0]]]
            if len(suffix) > 1:
                assert suffix_logprobs is not None
                logits = suffix_logprobs[r, : len(suffix) - 1].float()
                picked = logits.gather(-1, targets[1:, None])[:, 0] - torch.logsumexp(logits, -1)
                lp.extend(picked.unbind(0))
            results[b][i] = float(torch.stack(lp[skip:]).sum())
        return results


def prompt_logprobs_batch(model: Any, tokenizer: Any, device: torch.device,
                          encoded: Sequence[tuple[tuple[int, ...], tuple[int, ...]]]
                          ) -> list[PromptLogprobs]:
    """PromptLogprobs for pre-tokenized prompts: (token ids, start offsets) pairs."""
    pad_id = tokenizer.pad_token_id
    if not encoded or all(not ids for ids, _ in encoded):
        return [PromptLogprobs(tokens=(), offsets=(), logprobs=()) for _ in encoded]
    with torch.inference_mode():
        width = max(len(ids) for ids, _ in encoded)
        ids, mask = left_pad([e[0] for e in encoded], width, pad_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = forward(model, ids.to(device), mask.to(device), positions.to(device),
                       cache=None, logits_to_keep=0, use_cache=False)
        results = []
        for row, (tok_ids, starts) in enumerate(encoded):
            n = len(tok_ids)
            if n == 0:
                results.append(PromptLogprobs(tokens=(), offsets=(), logprobs=()))
                continue
            logits = out.logits[row, width - n: width - 1].float()
            targets = torch.tensor(tok_ids[1:], dtype=torch.long, device=device)
            lps = (logits.gather(-1, targets[:, None])[:, 0] - torch.logsumexp(logits, -1)).tolist()
            results.append(
                PromptLogprobs(
                    tokens=tuple(tokenizer.decode([t]) for t in tok_ids),
                    offsets=tuple(starts),
                    logprobs=(None, *lps),
                )
            )
        return results


def tokenize_prompt(tokenizer: Any, prompt: str, max_len: int
                    ) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """(ids, start offsets, length before truncation), tokenized as `tokenize_scored` does
    and truncated the same way (the last max_len tokens kept)."""
    enc = tokenizer(prompt, add_special_tokens=True, return_offsets_mapping=True)
    ids = tuple(enc["input_ids"])
    starts = tuple(int(a) for a, _ in enc["offset_mapping"])
    return ids[-max_len:], starts[-max_len:], len(ids)


def tokenize_prompts(tokenizer: Any, prompts: Sequence[str], max_len: int
                     ) -> tuple[list[tuple[tuple[int, ...], tuple[int, ...]]], int | None]:
    """`tokenize_prompt` for each prompt as (ids, start offsets) pairs, and the length
    before truncation of the first prompt that was truncated (None when none was)."""
    encoded = []
    truncated_from: int | None = None
    for prompt in prompts:
        ids, starts, full_length = tokenize_prompt(tokenizer, prompt, max_len)
        if full_length > len(ids) and truncated_from is None:
            truncated_from = full_length
        encoded.append((ids, starts))
    return encoded, truncated_from


def full_pass_logprobs(model: Any, device: torch.device, ids: Sequence[int]) -> list[float]:
    """log P(ids[k] | ids[:k]) for k >= 1, from one unbatched forward pass (reference path)."""
    with torch.inference_mode():
        x = torch.tensor([list(ids)], dtype=torch.long, device=device)
        logits = model(input_ids=x).logits[0, :-1].float()
        lp = torch.log_softmax(logits, -1).gather(-1, x[0, 1:, None])[:, 0]
        return lp.tolist()
