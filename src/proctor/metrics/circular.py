"""Circular evaluation (OpenCompass's CircularEval): a question counts only when every option
order of it was answered right."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Mapping, Sequence

from proctor.core import Item, Result, Score
from proctor.metrics.accuracy import proportion_stderr

CIRCULAR = "circular"


def circular_result(
    items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *, generated: bool = False
) -> Result:
    """`circular`: percent of questions right in all their option orders (over the questions with
    every order scored). Extras: `accuracy` (every item alike), `acc_r<k>` per option order,
    `more_<j>_<K>` (right in at least j of the K orders) and, for generated answers,
    `extraction_rate`. A question with a failed or missing order is counted in `n_failed`."""
    by_sample: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_sample[item.sample_id].append(item)
    complete = {sid: group for sid, group in by_sample.items() if all(i.id in scores for i in group)}
    n_failed = len(by_sample) - len(complete)
    n = len(complete)
    if n == 0:
        return Result(model, dataset, CIRCULAR, math.nan, math.nan, 0, n_failed)
    orders = max(len(group) for group in complete.values())
    right = {sid: sum(scores[i.id].correct for i in group) for sid, group in complete.items()}
    all_right = sum(1 for sid, group in complete.items() if right[sid] == len(group))
    p = all_right / n
    extra: dict[str, float] = {}
    scored = [scores[i.id] for group in complete.values() for i in group]
    extra["accuracy"] = 100.0 * sum(s.value for s in scored) / len(scored)
    for k in range(orders):
        at_k = [scores[group[k].id] for group in complete.values() if k < len(group)]
        extra[f"acc_r{k}"] = 100.0 * sum(s.value for s in at_k) / len(at_k)
    for j in range(1, orders + 1):
        extra[f"more_{j}_{orders}"] = 100.0 * sum(1 for count in right.values() if count >= j) / n
    if generated:
        extra["extraction_rate"] = 100.0 * sum(1 for s in scored if s.answer is not None) / len(scored)
    return Result(model, dataset, CIRCULAR, 100.0 * p, proportion_stderr(p, n), n, n_failed, extra)
