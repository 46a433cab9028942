"""IFEval's four scores: prompt- and instruction-level accuracy, strict and loose.

Prompt level: the share of prompts whose every instruction is followed. Instruction level: the
share of all instructions (over every prompt) that are followed. The same four lm-evaluation-
harness (`prompt_level_strict_acc`, ...) and OpenCompass report, in percent.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from proctor.core import Item, Result, Score
from proctor.metrics.accuracy import proportion_stderr
from proctor.metrics.registry import Metric, register_metric

IFEVAL_METRIC = "prompt_level_strict_acc"
IFEVAL_METRICS = ("prompt_level_strict_acc", "inst_level_strict_acc", "prompt_level_loose_acc", "inst_level_loose_acc")


def _verdicts(item: Item, score: Score, kind: str) -> list[bool]:
    """The item's per-instruction verdicts; a score without them (an answer the server withheld)
    follows none of the item's instructions."""
    found = score.extra.get(kind)
    if isinstance(found, list):
        return [bool(v) for v in found]
    return [False] * len(item.sample.fields.get("instruction_id_list") or [None])


def ifeval_result(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *,
                  headline: str = IFEVAL_METRIC) -> Result:
    """The `headline` score (prompt_level_strict_acc by default) with its standard error and the other
    three as extra metrics, over the items with a score; the others count in `n_failed`. Repeated
    answers (`--repeats K`) each count as one response to check, as a prompt's K responses do in
    the average of K runs."""
    scored = [(item, scores[item.id]) for item in items if item.id in scores]
    n = len(scored)
    n_failed = len(items) - n
    if n == 0:
        return Result(model, dataset, IFEVAL_METRIC, math.nan, math.nan, 0, n_failed)
    values: dict[str, float] = {}
    for kind in ("strict", "loose"):
        per_item = [_verdicts(item, score, kind) for item, score in scored]
        values[f"prompt_level_{kind}_acc"] = sum(1 for v in per_item if all(v)) / n
        flat = [x for v in per_item for x in v]
        values[f"inst_level_{kind}_acc"] = sum(flat) / len(flat)
    p = values[headline]
    # A prompt-level share is a proportion over prompts; an instruction-level one is a proportion
    # over instructions that are not independent within a prompt, so its stderr is left out.
    stderr = proportion_stderr(p, n) if headline.startswith("prompt_level") else math.nan
    extra = {name: 100.0 * values[name] for name in IFEVAL_METRICS if name != headline}
    return Result(model, dataset, headline, 100.0 * p, stderr, n, n_failed, extra)


def _register(name: str, description: str) -> None:
    def aggregate(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *,
                  generated: bool = False) -> Result:
        return ifeval_result(items, scores, model, dataset, headline=name)

    register_metric(Metric(name, description, aggregate, repeats=True))


_register("prompt_level_strict_acc", "IFEval: prompts whose every instruction is followed (plus the other three)")
_register("inst_level_strict_acc", "IFEval: instructions followed, over all prompts (plus the other three)")
_register("prompt_level_loose_acc", "IFEval: prompts followed under the loose criterion (plus the other three)")
_register("inst_level_loose_acc", "IFEval: instructions followed under the loose criterion (plus the other three)")
