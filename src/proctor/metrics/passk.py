"""pass@k over several answers per question, with the unbiased estimator of Chen et al. (2021)."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

from proctor.core import Item, Result, Score
from proctor.metrics.accuracy import mean_stderr


def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k answers drawn from n, c of them right, is right) = 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def passk_result(
    items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *, generated: bool = False
) -> Result:
    """`pass@1` (the headline) and `pass@k` for every k up to the answers per question.

    A question counts when all of its answers were scored; one with a failed or missing
    answer is counted in `n_failed` (its pass@k would be computed from fewer draws).
    """
    by_sample: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_sample[item.sample_id].append(item)
    complete = [group for group in by_sample.values() if all(i.id in scores for i in group)]
    n_failed = len(by_sample) - len(complete)
    if not complete:
        return Result(model, dataset, "pass@1", math.nan, math.nan, 0, n_failed)
    n = min(len(group) for group in complete)
    right = [sum(scores[i.id].correct for i in group) for group in complete]
    sizes = [len(group) for group in complete]
    per_question = {k: [pass_at_k(size, c, k) for size, c in zip(sizes, right)] for k in range(1, n + 1)}
    extra = {f"pass@{k}": 100.0 * sum(v) / len(v) for k, v in per_question.items() if k > 1}
    if generated:
        scored = [scores[i.id] for group in complete for i in group]
        extra["extraction_rate"] = 100.0 * sum(1 for s in scored if s.answer is not None) / len(scored)
    first = per_question[1]
    return Result(model, dataset, "pass@1", 100.0 * sum(first) / len(first), mean_stderr(first), len(complete),
                  n_failed, extra)
