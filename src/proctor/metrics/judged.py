"""The scores of judged benchmarks, as each benchmark defines them (scoring/judged.py makes the verdicts).

- AlpacaEval 2 (`lc_win_rate`, `win_rate`): the win rate is the mean preference for the model
  over the baseline (a tie is 0.5), with its standard error; the length-controlled win rate fits
  a logistic model of the preference with `tanh(length difference / its standard deviation)`
  as covariate (Dubois et al., 2024; alpaca_eval's `np.tanh(std_delta_len)` term, lengths in
  characters, baseline minus model) and reads it at zero length difference: 100 * sigmoid(b0).
- Arena-Hard (`arena_score`): a Bradley-Terry fit of the model against the baseline over the
  battles of both orders (a strong verdict counts 3, a tie half a win): with two players its
  maximum-likelihood win probability is the share of battles won. Its 95% interval is the
  2.5-97.5 percentile range of BOOTSTRAP_ROUNDS refits on battles resampled with replacement
  (seed BOOTSTRAP_SEED), as Arena-Hard's show_result.py resamples battles.
- MT-Bench (`mt_bench_score`): the mean rating over every judged turn, per turn and per
  category, each with its standard error.

Unparsed verdicts are left out and counted (`judge_unparsed`); an answer the model did not give
(its reasoning cut off, nothing after it, withheld) loses every pairwise game it would have had.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Mapping, Sequence

from proctor.core import Item, Result, Score

BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 42
NO_ANSWER = ("truncated", "no_answer", "content_filter", "refused")


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def fit_logistic(y: Sequence[float], x: Sequence[float] | None = None, *, iterations: int = 100,
                 tol: float = 1e-10) -> tuple[list[float], list[list[float]]] | None:
    """Maximum-likelihood logistic regression of soft labels `y` (in [0, 1]) on an intercept and,
    when given, one covariate `x`, by Newton's method: (coefficients, their covariance from the
    observed information); None when it does not converge (separated data: no finite fit)."""
    rows = [[1.0] if x is None else [1.0, xi] for xi in (x or [0.0] * len(y))]
    k = len(rows[0])
    beta = [0.0] * k
    for _ in range(iterations):
        grad = [0.0] * k
        info = [[0.0] * k for _ in range(k)]
        for row, target in zip(rows, y):
            p = sigmoid(sum(b * r for b, r in zip(beta, row)))
            w = p * (1.0 - p)
            for i in range(k):
                grad[i] += (target - p) * row[i]
                for j in range(k):
                    info[i][j] += w * row[i] * row[j]
        inverse = _inverse(info)
        if inverse is None:
            return None
        step = [sum(inverse[i][j] * grad[j] for j in range(k)) for i in range(k)]
        beta = [b + s for b, s in zip(beta, step)]
        if any(abs(b) > 50 for b in beta):
            return None  # running off to infinity: the data separate
        if max(abs(s) for s in step) < tol:
            return beta, inverse
    return None


def _inverse(m: list[list[float]]) -> list[list[float]] | None:
    if len(m) == 1:
        return [[1.0 / m[0][0]]] if m[0][0] > 1e-12 else None
    (a, b), (c, d) = m
    det = a * d - b * c
    if abs(det) < 1e-12:
        return None
    return [[d / det, -b / det], [-c / det, a / det]]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile with linear interpolation between order statistics (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """(mean, standard error of the mean: sample standard deviation / sqrt(n); 0 for one value)."""
    n = len(values)
    if not n:
        return math.nan, math.nan
    return sum(values) / n, (_sample_std(values) / math.sqrt(n) if n > 1 else 0.0)


def _sample_std(values: Sequence[float]) -> float:
    n = len(values)
    if n < 2:
        return math.nan
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def length_controlled(preferences: Sequence[float], model_lengths: Sequence[int],
                      baseline_lengths: Sequence[int]) -> tuple[float, float]:
    """AlpacaEval's length-controlled win rate and its standard error (percent); NaN when the
    fit has no finite answer (every preference the same, or fully separated by length)."""
    if not preferences:
        return math.nan, math.nan
    if len(set(preferences)) == 1 and preferences[0] in (0.0, 1.0):
        return 100.0 * preferences[0], 0.0  # every game won (lost): the fit's limit, at any length
    delta = [b - m for m, b in zip(model_lengths, baseline_lengths)]  # alpaca_eval: len_1 - len_2
    sd = _sample_std(delta)
    x = None if not sd or math.isnan(sd) else [math.tanh(d / sd) for d in delta]
    fit = fit_logistic(preferences, x)
    if fit is None:
        return math.nan, math.nan
    beta, cov = fit
    p0 = sigmoid(beta[0])
    return 100.0 * p0, 100.0 * p0 * (1.0 - p0) * math.sqrt(max(cov[0][0], 0.0))


def _scored(items: Sequence[Item], scores: Mapping[str, Score]) -> tuple[list[tuple[Item, Score]], int, int]:
    """(item and score of each judged or unanswered item, unparsed count, not scored count)."""
    kept, unparsed = [], 0
    for item in items:
        score = scores.get(item.id)
        if score is None:
            continue
        if score.rule == "judge_unparsed":
            unparsed += 1
        elif score.rule in NO_ANSWER or score.rule in ("judge_pair", "judge_rating"):
            kept.append((item, score))
    return kept, unparsed, len(items) - sum(1 for i in items if i.id in scores)


def _finite(values: dict[str, float]) -> dict[str, float]:
    """Only the numbers that exist (an interval over no battle is no row, and NaN is not JSON)."""
    return {k: v for k, v in values.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _unparsed_share(unparsed: int, kept: int) -> dict[str, float]:
    total = unparsed + kept
    return {"judge_unparsed": 100.0 * unparsed / total} if total else {}


def alpaca_eval_result(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *,
                       headline: str = "lc_win_rate") -> Result:
    """AlpacaEval 2's win rate and length-controlled win rate (see the module docstring)."""
    kept, unparsed, failed = _scored(items, scores)
    prefs: list[float] = []
    lengths: list[tuple[int, int]] = []
    for item, score in kept:
        if score.rule in NO_ANSWER:
            prefs.append(0.0)
            lengths.append((0, _baseline_length(item)))
        else:
            prefs.append(float(score.extra["battles"][0]))
            lengths.append(tuple(score.extra["lengths"]))  # type: ignore[arg-type]
    wins, se = mean_se(prefs)
    lc, lc_se = length_controlled(prefs, [m for m, _ in lengths], [b for _, b in lengths])
    values = {"lc_win_rate": (lc, lc_se), "win_rate": (100.0 * wins, 100.0 * se)}
    other = "win_rate" if headline == "lc_win_rate" else "lc_win_rate"
    extra = {other: values[other][0], "n_wins": float(sum(1 for p in prefs if p > 0.5)),
             "n_draws": float(sum(1 for p in prefs if p == 0.5)), **_unparsed_share(unparsed, len(kept))}
    return Result(model, dataset, headline, values[headline][0], values[headline][1], len(prefs), failed,
                  extra_metrics=_finite(extra), extra_stderrs=_finite({other: values[other][1]}))


def _baseline_length(item: Item) -> int:
    """The baseline answer's length of an item the model did not answer (AlpacaEval: `output`)."""
    for name in ("baseline", "output"):
        value = item.sample.fields.get(name)
        if isinstance(value, str):
            return len(value)
    return 0


def arena_battles(kept: Sequence[tuple[Item, Score]]) -> list[tuple[Item, float]]:
    battles = []
    for item, score in kept:
        if score.rule in NO_ANSWER:
            battles += [(item, 0.0), (item, 0.0)]  # both games lost
        else:
            battles += [(item, float(b)) for b in score.extra["battles"]]
    return battles


def bradley_terry_two(outcomes: Sequence[float]) -> float:
    """The maximum-likelihood probability that the model beats the baseline in a Bradley-Terry
    model of the two (ties as half a win): the share of battles won."""
    return sum(outcomes) / len(outcomes) if outcomes else math.nan


def bootstrap_interval(outcomes: Sequence[float], rounds: int = BOOTSTRAP_ROUNDS,
                       seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(2.5th percentile, 97.5th percentile, standard deviation) of the BT refits on battles
    resampled with replacement."""
    if not outcomes:
        return math.nan, math.nan, math.nan
    rng = random.Random(seed)
    fits = [bradley_terry_two(rng.choices(outcomes, k=len(outcomes))) for _ in range(rounds)]
    return percentile(fits, 2.5), percentile(fits, 97.5), _sample_std(fits)


def arena_hard_result(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str) -> Result:
    """Arena-Hard's score against its baseline with a bootstrap 95% interval (percent)."""
    kept, unparsed, failed = _scored(items, scores)
    battles = arena_battles(kept)
    outcomes = [b for _, b in battles]
    low, high, spread = bootstrap_interval(outcomes)
    extra: dict[str, float] = {"ci95_low": 100.0 * low, "ci95_high": 100.0 * high,
                               "battles": float(len(outcomes)), **_unparsed_share(unparsed, len(kept))}
    by_category: dict[str, list[float]] = defaultdict(list)
    for item, outcome in battles:
        category = item.sample.fields.get("category")
        if isinstance(category, str):
            by_category[category].append(outcome)
    if len(by_category) > 1:
        for category, values in sorted(by_category.items()):
            extra[f"score[category={category}]"] = 100.0 * bradley_terry_two(values)
    return Result(model, dataset, "arena_score", 100.0 * bradley_terry_two(outcomes), 100.0 * spread, len(kept),
                  failed, extra_metrics=_finite(extra))


def mt_bench_result(items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str) -> Result:
    """MT-Bench's mean rating (1-10) overall, per turn and per category, with standard errors."""
    kept, unparsed, failed = _scored(items, scores)
    rated = [(item, float(score.extra["rating"])) for item, score in kept if score.rule == "judge_rating"]
    no_answer = len(kept) - len(rated)
    overall, se = mean_se([r for _, r in rated])
    extra: dict[str, float] = {}
    stderrs: dict[str, float] = {}
    groups: dict[str, list[float]] = defaultdict(list)
    for item, rating in rated:
        groups[f"turn_{item.variant.get('turn', 1)}"].append(rating)
    categories: dict[str, list[float]] = defaultdict(list)
    for item, rating in rated:
        category = item.sample.fields.get("category")
        if isinstance(category, str):
            categories[f"category={category}"].append(rating)
    for name, values in [*sorted(groups.items()), *sorted(categories.items())]:
        extra[name], stderrs[name] = mean_se(values)
    if no_answer:
        extra["no_answer"] = float(no_answer)
    extra.update(_unparsed_share(unparsed, len(rated)))
    # An unanswered turn is counted in `no_answer`, not as a failed request (it is the model's doing).
    return Result(model, dataset, "mt_bench_score", overall, se, len(rated), failed,
                  extra_metrics=_finite(extra), extra_stderrs=_finite(stderrs))
