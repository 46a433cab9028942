"""Accuracy of scored records, its standard error, and averages over groups of datasets."""

from __future__ import annotations

import math
from typing import Iterable, Mapping, Sequence

from proctor.core import Result, Score

ACCURACY = "accuracy"
MEAN_OF_SUBJECTS = "mean of subjects"
MEAN_OF_QUESTIONS = "mean of questions"


def proportion_stderr(p: float, n: int) -> float:
    """Sample standard error of a mean of n 0/1 scores with mean p, in percent (0 for n <= 1)."""
    if n <= 1:
        return 0.0
    # Sample variance of 0/1 data is n/(n-1)*p(1-p); its mean's variance divides by n.
    return math.sqrt(max(p * (1.0 - p), 0.0) / (n - 1)) * 100.0


def mean_stderr(values: Sequence[float]) -> float:
    """Standard error of the mean of `values` (scores in [0, 1]), in percent (0 for n <= 1)."""
    n = len(values)
    if n <= 1:
        return 0.0
    mean = sum(values) / n
    variance = sum((v - mean) ** 2 for v in values) / (n - 1)
    return math.sqrt(variance / n) * 100.0


def accuracy_result(
    scores: Sequence[Score], model: str, dataset: str, *, n_failed: int = 0, generated: bool = False
) -> Result:
    """Mean score in percent over the scored items; failed ones only count in `n_failed`.

    With no scored item the value is NaN (shown as "-"), never a fake 0. Extra metrics:
    `acc_norm` when every score carries a boolean `extra["correct_norm"]` (option texts
    scored by log-likelihood), `extraction_rate` for generated answers (the share of
    items where the scorer found an answer at all).
    """
    n = len(scores)
    if n == 0:
        return Result(model, dataset, ACCURACY, math.nan, math.nan, 0, n_failed)
    values = [s.value for s in scores]
    p = sum(values) / n
    binary = all(v in (0.0, 1.0) for v in values)
    extra: dict[str, float] = {}
    norms = [s.extra.get("correct_norm") for s in scores]
    if all(isinstance(x, bool) for x in norms):
        extra["acc_norm"] = 100.0 * sum(1 for x in norms if x) / n
    if generated:
        extra["extraction_rate"] = 100.0 * sum(1 for s in scores if s.answer is not None) / n
    return Result(
        model=model,
        dataset=dataset,
        metric=ACCURACY,
        value=100.0 * p,
        stderr=proportion_stderr(p, n) if binary else mean_stderr(values),
        n=n,
        n_failed=n_failed,
        extra_metrics=extra,
    )


def breakdown_metrics(groups: Mapping[str, Sequence[Score]]) -> dict[str, float]:
    """Mean score in percent per named group of items (`level=5`, `subject=Algebra`), in the
    groups' order; a group with no scored item is left out rather than shown as 0."""
    return {name: 100.0 * sum(s.value for s in scores) / len(scores) for name, scores in groups.items() if scores}


def common_metric(metrics: Iterable[str]) -> str:
    """The metric a group average is named after: the members' one, "score" when they differ."""
    distinct = set(metrics)
    if not distinct:
        return ACCURACY
    return distinct.pop() if len(distinct) == 1 else "score"


def group_results(name: str, results: Sequence[Result]) -> tuple[Result, Result]:
    """(mean of subjects, mean of questions) over one model's results for the members of a group.

    Mean of subjects: the plain average of the member values (OpenCompass'
    naive average); stderr = sqrt(sum se_i^2) / k. Mean of questions: every
    question weighs the same (members weighted by n); stderr from the pooled
    proportion, or for avg@K members sqrt(sum (n_i/N * se_i)^2). A member without any scored sample makes both values NaN:
    an average over part of a group would be a wrong number, not a rough one.
    The caller decides which members are present; a missing one means no group value.
    """
    if not results:
        raise ValueError(f"group {name!r} has no results to average")
    models = {r.model for r in results}
    if len(models) != 1:
        raise ValueError(f"group {name!r} mixes models {sorted(models)}: average one model at a time")
    model = models.pop()
    metric = common_metric(r.metric for r in results)
    k = len(results)
    n_total = sum(r.n for r in results)
    n_failed = sum(r.n_failed for r in results)
    incomplete = any(r.n == 0 or math.isnan(r.value) for r in results)

    def build(kind: str, value: float, stderr: float, extra: dict[str, float]) -> Result:
        return Result(model, name, f"{metric} ({kind})", value, stderr, n_total, n_failed, extra)

    if incomplete:
        nan = math.nan
        return build(MEAN_OF_SUBJECTS, nan, nan, {}), build(MEAN_OF_QUESTIONS, nan, nan, {})

    by_subject = sum(r.value for r in results) / k
    by_subject_se = math.sqrt(sum(r.stderr**2 for r in results)) / k
    pooled = sum(r.value / 100.0 * r.n for r in results) / n_total
    by_question = 100.0 * pooled
    by_question_se = proportion_stderr(pooled, n_total)
    if all(r.metric.startswith("avg@") for r in results):
        # Per-question means over repeats are not 0/1 scores: the pooled proportion's formula would
        # overstate the error. The members' own errors (across their questions), weighted by n.
        by_question_se = math.sqrt(sum((r.n / n_total * r.stderr) ** 2 for r in results))

    # Extra metrics (acc_norm) are averaged the same two ways when every member has them.
    shared = set.intersection(*(set(r.extra_metrics) for r in results))
    subj_extra = {key: sum(r.extra_metrics[key] for r in results) / k for key in sorted(shared)}
    ques_extra = {
        key: sum(r.extra_metrics[key] * r.n for r in results) / n_total for key in sorted(shared)
    }
    return (
        build(MEAN_OF_SUBJECTS, by_subject, by_subject_se, subj_extra),
        build(MEAN_OF_QUESTIONS, by_question, by_question_se, ques_extra),
    )
