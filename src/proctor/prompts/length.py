"""A tokenizer-free estimate of a prompt's length, for fitting few-shot prompts into a context."""

from __future__ import annotations

import math

from proctor.core import Request

# BPE tokenizers give roughly 3-4 ASCII characters per token and at most about one token per
# CJK character; erring high keeps the estimate an upper bound for most models.
_ASCII_CHARS_PER_TOKEN = 3.0


def estimate_tokens(text: str) -> int:
    # encode() counts in C: this runs for every prompt of a run with max_seq_len set.
    ascii_chars = len(text.encode("ascii", "ignore"))
    return math.ceil(ascii_chars / _ASCII_CHARS_PER_TOKEN) + (len(text) - ascii_chars)


def estimate_request_tokens(request: Request) -> int:
    """Prompt tokens plus what the request may generate (a few tokens per chat turn for the template)."""
    if request.kind == "loglikelihood":
        longest = max((estimate_tokens(c) for c in request.continuations), default=0)
        return estimate_tokens(request.context or "") + longest
    if request.messages is not None:
        prompt = sum(estimate_tokens(m.content) + 4 for m in request.messages)
    else:
        prompt = estimate_tokens(request.prompt or "")
    return prompt + request.max_tokens
