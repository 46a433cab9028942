"""Close-match suggestions for unknown names (datasets, subjects, models, benchmarks)."""

from __future__ import annotations

import difflib
from typing import Iterable


def close_matches(name: str, known: Iterable[str], *, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)


def did_you_mean(name: str, known: Iterable[str], *, n: int = 3) -> str:
    """`; did you mean: a, b?` or an empty string."""
    matches = close_matches(name, known, n=n)
    return f"; did you mean: {', '.join(matches)}?" if matches else ""
