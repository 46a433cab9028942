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


def unknown_name_error(what: str, name: str, known: Iterable[str]) -> "ConfigError":
    """A one-line ConfigError for an unknown name, suggesting the closest known ones."""
    from proctor.errors import ConfigError

    known = list(known)
    close = close_matches(name, known)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        hint = f"known: {shown}"
    return ConfigError(f"unknown {what} {name!r}: {hint}")
