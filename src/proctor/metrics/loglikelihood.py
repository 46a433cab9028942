"""Choosing an option from per-choice log-likelihoods (ppl mode): acc and acc_norm."""

from __future__ import annotations

import math
from typing import Sequence


def _argmax(scores: Sequence[float], choices: str) -> str:
    if not scores:
        raise ValueError("no log-likelihoods to choose from")
    if len(scores) > len(choices):
        raise ValueError(f"{len(scores)} log-likelihoods but only {len(choices)} choices {choices!r}")
    best = 0
    for i, score in enumerate(scores):
        # NaN never wins: a broken score must not beat a real one. Strict '>' keeps
        # the first of tied options, so the choice does not depend on float noise order.
        if not math.isnan(score) and (math.isnan(scores[best]) or score > scores[best]):
            best = i
    return choices[best]


def choice_from_loglikelihoods(lls: Sequence[float], choices: str = "ABCD") -> str:
    """The option whose continuation is most likely (argmax; ties -> the first)."""
    return _argmax([float(x) for x in lls], choices)


def choice_from_loglikelihoods_norm(
    lls: Sequence[float], lengths: Sequence[int], choices: str = "ABCD"
) -> str:
    """acc_norm: argmax of log-likelihood per continuation token (ties -> the first)."""
    if len(lengths) != len(lls):
        raise ValueError(f"{len(lls)} log-likelihoods but {len(lengths)} continuation lengths")
    # An empty continuation (0 tokens) has log-likelihood 0; dividing by 1 keeps it 0.
    return _argmax([float(x) / max(int(n), 1) for x, n in zip(lls, lengths)], choices)
