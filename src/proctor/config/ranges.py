"""OpenCompass-style slices of a dataset: `[0:10]`, `[-5:]`, `[:100]`."""

from __future__ import annotations

import re
from typing import Sequence, TypeVar

from proctor.errors import ConfigError

T = TypeVar("T")

_RANGE = re.compile(r"^\[\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(\d+)?\s*)?\]$")


def parse_range(text: str, *, where: str = "range") -> slice:
    """Parse `[start:end]` or `[start:end:step]` into a slice; a bad range names where it came from."""
    match = _RANGE.match(text.strip())
    if not match:
        raise ConfigError(
            f"{where}: bad range {text!r}; expected [start:end] or [start:end:step] such as [0:10], [-5:] or [0:100:2]"
        )
    start, end, step = (int(g) if g is not None else None for g in match.groups())
    if step == 0:
        raise ConfigError(f"{where}: range {text!r} has step 0; the step must be 1 or more")
    if start is not None and end is not None and (start < 0) == (end < 0) and start >= end:
        # Empty whatever the dataset's size: a typo, not a request to evaluate nothing.
        raise ConfigError(f"{where}: range {text!r} selects nothing; the start must be before the end, e.g. [0:10]")
    return slice(start, end, step)


def apply_range(items: Sequence[T], range_text: str | None, limit: int | None, *, where: str) -> list[T]:
    """The items a dataset config selects: its range first, then at most `limit`."""
    selected = list(items)
    if range_text:
        selected = selected[parse_range(range_text, where=where)]
    if limit is not None:
        selected = selected[:limit]
    return selected
