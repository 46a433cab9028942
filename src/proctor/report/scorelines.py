"""Reading scores/<model>/<dataset>.jsonl, the eval stage's line per item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection


def read_score_lines(path: Path, wanted: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """The score lines by item id, in file order (the last line of an item wins); only the items
    in `wanted` when given. A missing file (the eval stage has not run) or a damaged line is
    skipped, never fatal: reports are made from whatever is there."""
    lines: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return lines
    with path.open(encoding="utf-8", errors="replace") as handle:
        for text in handle:
            try:
                line = json.loads(text)
            except ValueError:
                continue
            item = line.get("item_id") if isinstance(line, dict) else None
            if isinstance(item, str) and (wanted is None or item in wanted):
                lines[item] = line
    return lines
