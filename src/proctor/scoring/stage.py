"""The scoring stage: a scorer over stored records, inline or in worker processes."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Sequence

from proctor.core import Record, Sample, Score

# Below this many records a process pool costs more to start than it saves.
_POOL_MIN = 64


def _score_chunk(scorer: Any, chunk: Sequence[tuple[Sample, Record]]) -> list[Score]:
    return [scorer.score(sample, record) for sample, record in chunk]


def score_records(scorer: Any, pairs: Sequence[tuple[Sample, Record]], *, workers: int | None = None) -> list[Score]:
    """A Score per (sample as asked, successful record), in order.

    Scorers that say `processes = True` (slow, CPU-bound checks: math, code) run in a pool of
    worker processes, one per core by default; the others run inline, since a letter or a
    number is extracted in microseconds.
    """
    if not getattr(scorer, "processes", False) or len(pairs) < _POOL_MIN:
        return _score_chunk(scorer, pairs)
    workers = workers or os.cpu_count() or 1
    size = max(1, -(-len(pairs) // (workers * 4)))
    chunks = [pairs[i : i + size] for i in range(0, len(pairs), size)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return [score for part in pool.map(_score_chunk, [scorer] * len(chunks), chunks) for score in part]
