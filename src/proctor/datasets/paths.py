"""Field paths into a row: `question`, `question.stem`, `choices[0]`, `meta.subject`.

A path names a column, then keys of mappings (`.key`) and items of lists (`[i]`). A column
whose own name holds a dot (`answer.key`) is found before the dotted reading.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Mapping

_PART = re.compile(r"\.?([^.\[\]]+)|\[(-?\d+)\]")

MISSING = object()


@lru_cache(maxsize=1024)
def parse_path(path: str) -> tuple[str | int, ...]:
    """`question.choices[0].text` -> ("question", "choices", 0, "text"); ValueError for a bad path."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(path):
        match = _PART.match(path, pos)
        if match is None or (pos == 0 and path.startswith(".")):
            raise ValueError(f"{path!r} is not a field path (write a.b, a[0], a.b[1].c)")
        key, index = match.groups()
        parts.append(int(index) if index is not None else key)
        pos = match.end()
    if not parts or isinstance(parts[0], int):
        raise ValueError(f"{path!r} is not a field path (it must start with a column name)")
    return tuple(parts)


def top_key(row: Mapping[str, Any], name: str) -> str | None:
    """The row's key that `name` names: exactly, else ignoring case."""
    if name in row:
        return name
    lowered = name.lower()
    return next((k for k in row if isinstance(k, str) and k.lower() == lowered), None)


def lookup(row: Mapping[str, Any], path: str) -> tuple[Any, str | None]:
    """(value, the top-level column it starts from), or (MISSING, None) when the path is not in the row."""
    key = top_key(row, path)
    if key is not None:
        return row[key], key
    try:
        parts = parse_path(path)
    except ValueError:
        return MISSING, None
    if len(parts) == 1:
        return MISSING, None
    key = top_key(row, str(parts[0]))
    if key is None:
        return MISSING, None
    value: Any = row[key]
    for part in parts[1:]:
        if isinstance(part, int):
            if not isinstance(value, (list, tuple)) or not -len(value) <= part < len(value):
                return MISSING, None
            value = value[part]
        else:
            if not isinstance(value, Mapping):
                return MISSING, None
            inner = top_key(value, part)
            if inner is None:
                return MISSING, None
            value = value[inner]
    return value, key
