"""Close-match suggestions for unknown names."""

from __future__ import annotations

import difflib
from typing import Iterable


def did_you_mean(name: str, known: Iterable[str], *, n: int = 3) -> str:
    """`; did you mean: a, b?` or an empty string."""
    matches = difflib.get_close_matches(name, list(known), n=n, cutoff=0.6)
    return f"; did you mean: {', '.join(matches)}?" if matches else ""
