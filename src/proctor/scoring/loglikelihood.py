"""Choosing an option from per-choice log-likelihoods (ppl mode): acc and acc_norm."""

from __future__ import annotations

import math
from typing import Sequence


def _argmax(scores: Sequence[float], labels: str) -> str | None:
    if not scores:
        raise ValueError("no log-likelihoods to choose from")
    if len(scores) > len(labels):
        raise ValueError(f"{len(scores)} log-likelihoods but only {len(labels)} labels {labels!r}")
    best: int | None = None
    for i, score in enumerate(scores):
        # NaN never wins: a broken score must not beat a real one. Strict '>' keeps
        # the first of tied options, so the choice does not depend on float noise order.
        if not math.isnan(score) and (best is None or score > scores[best]):
            best = i
    return None if best is None else labels[best]


def choice_from_loglikelihoods(lls: Sequence[float], labels: str) -> str | None:
    """The option whose continuation is most likely (argmax; ties -> the first; all NaN -> None)."""
    return _argmax([float(x) for x in lls], labels)


def choice_from_loglikelihoods_norm(lls: Sequence[float], lengths: Sequence[int], labels: str) -> str | None:
    """acc_norm: argmax of log-likelihood per unit of continuation length (ties -> the first)."""
    if len(lengths) != len(lls):
        raise ValueError(f"{len(lls)} log-likelihoods but {len(lengths)} continuation lengths")
    # An empty continuation (length 0) has log-likelihood 0; dividing by 1 keeps it 0.
    return _argmax([float(x) / max(int(n), 1) for x, n in zip(lls, lengths)], labels)
