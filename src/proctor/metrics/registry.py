"""Metrics by name: the aggregations a spec's `metrics:` may name, validated when the spec is read.

The first metric a spec names is its headline (the summary's `metric` column); an unknown name
is refused at load time with the close matches, never accepted and ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

from proctor.core import Item, Result, Score
from proctor.metrics.accuracy import accuracy_result
from proctor.metrics.passk import passk_result
from proctor.registry import Registry


class Aggregate(Protocol):
    def __call__(self, items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *,
                 generated: bool = False) -> Result: ...


@dataclass(frozen=True)
class Metric:
    """A registered aggregation. `repeats`: it reads several answers per question itself (pass@k);
    otherwise repeated answers are aggregated as avg@K/maj@K."""

    name: str
    description: str
    aggregate: Aggregate
    repeats: bool = False


_METRICS: Registry[Metric] = Registry("metric")


def register_metric(metric: Metric) -> Metric:
    return _METRICS.add(metric.name, metric)


def metric_names() -> list[str]:
    return _METRICS.names()


def get_metric(name: str) -> Metric:
    """The metric `name`; ConfigError (one line, with close matches) when there is none."""
    return _METRICS.get(name)


def _accuracy(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *,
              generated: bool = False) -> Result:
    # An item with no record at all (interrupted run) counts as not answered.
    return accuracy_result([scores[i.id] for i in items if i.id in scores], model, dataset,
                           n_failed=len(items) - sum(1 for i in items if i.id in scores), generated=generated)


def weighted_accuracy_result(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *,
                             generated: bool = False) -> Result:
    """Sum of credit over sum of weight (`Score.extra["weight"]`, default 1), in percent: a question
    of five blanks counts five times (GAOKAO-Bench's scoring rate over its sub-questions)."""
    scored = [scores[i.id] for i in items if i.id in scores]
    n_failed = len(items) - len(scored)
    if not scored:
        return Result(model, dataset, "weighted_accuracy", math.nan, math.nan, 0, n_failed)
    weights = [float(s.extra.get("weight", 1.0)) for s in scored]
    total = sum(weights)
    p = sum(s.value * w for s, w in zip(scored, weights)) / total
    n = len(scored)
    # Standard error of a ratio estimator: per-question residuals, weighted.
    spread = sum((w * (s.value - p)) ** 2 for s, w in zip(scored, weights))
    stderr = math.sqrt(spread * n / (n - 1)) / total * 100.0 if n > 1 else 0.0
    plain = accuracy_result(scored, model, dataset, generated=generated)
    extra = {**plain.extra_metrics, "question_accuracy": plain.value}
    return Result(model, dataset, "weighted_accuracy", 100.0 * p, stderr, n, n_failed, extra_metrics=extra)


register_metric(Metric("accuracy", "mean score per question, with its standard error", _accuracy))
register_metric(Metric("pass@k", "pass@1 and the unbiased pass@k for every k up to the answers per question",
                       passk_result, repeats=True))
register_metric(Metric("weighted_accuracy", "credit over weight (Score.extra['weight']), e.g. per sub-question",
                       weighted_accuracy_result))


def _judged(name: str) -> Aggregate:
    """A judged benchmark's metric (metrics/judged.py), imported when used."""
    def aggregate(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *,
                  generated: bool = False) -> Result:
        from proctor.metrics import judged

        if name in ("lc_win_rate", "win_rate"):
            return judged.alpaca_eval_result(items, scores, model, dataset, headline=name)
        return {"arena_score": judged.arena_hard_result, "mt_bench_score": judged.mt_bench_result}[name](
            items, scores, model, dataset)
    return aggregate


register_metric(Metric("lc_win_rate", "AlpacaEval 2's length-controlled win rate against the baseline (judged)",
                       _judged("lc_win_rate")))
register_metric(Metric("win_rate", "the judge's mean preference for the model over the baseline, ties half (judged)",
                       _judged("win_rate")))
register_metric(Metric("arena_score", "Arena-Hard: Bradley-Terry win rate against the baseline, bootstrap 95% "
                       "interval (judged)", _judged("arena_score")))
register_metric(Metric("mt_bench_score", "MT-Bench: mean 1-10 rating per turn, per category and overall (judged)",
                       _judged("mt_bench_score")))
