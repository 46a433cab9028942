"""The log-likelihood continuation rule (contracts.md), on token start offsets alone.

Pure Python, no torch: the HF and vLLM backends use it on their tokenizer's
offsets, and an HTTP client can use it on OpenAI `echo` + `logprobs`
`text_offset`s, so that scoring over HTTP sums exactly the same tokens.
"""

from __future__ import annotations

from typing import Sequence


def continuation_start(
    starts: Sequence[int], context_len: int, text_len: int, first: int = 0
) -> int:
    """Index of the first continuation token in the joint tokenization of context + continuation.

    `starts[j]` is the character offset where token j begins, `text_len` the length of
    context + continuation, `first` the first token that may count (after a BOS token).
    Tokens that start at or after `context_len` are continuation tokens, and so is a token
    that straddles the boundary: the last token starting before `context_len` when the
    next token (or the end of the text) lies beyond it, e.g. " A" in "Answer: " + "A".
    Returns len(starts) when the continuation has no tokens.
    """
    n = len(starts)
    j = next((i for i in range(first, n) if starts[i] >= context_len), n)
    next_start = starts[j] if j < n else text_len
    if j > first and next_start > context_len and starts[j - 1] < context_len:
        return j - 1
    return j


def continuation_logprob(
    text_offsets: Sequence[int], token_logprobs: Sequence[float | None], context_len: int,
    text_len: int,
) -> tuple[float, int]:
    """(sum of log-probs, token count) of the continuation, from OpenAI echo+logprobs fields.

    The first prompt token has no log-prob (None); it is skipped, never counted.
    """
    start = continuation_start(text_offsets, context_len, text_len)
    picked = [lp for lp in token_logprobs[start:] if lp is not None]
    return float(sum(picked)), len(picked)
