"""Paired tests for comparing two sets of scores on the same questions, in pure Python.

Two runs (or two models) answered the same questions; each question gives a pair
(a_i, b_i) of scores in [0, 1]. What we want to know is whether B's mean differs from
A's by more than the questions' luck of the draw.

- Right/wrong scores: the exact McNemar test. Only the discordant pairs carry
  information: `b_better` questions B got right and A wrong, `a_better` the reverse.
  Under "no difference" each discordant pair goes either way with probability 1/2, so
  with m = a_better + b_better, p = min(1, 2 * sum_{i <= min(a_better, b_better)} C(m, i) / 2^m).
- Other scores (the per-question mean over repeats or pass@k answers, partial credit): a
  paired bootstrap over questions with a fixed seed. The
  differences d_i = b_i - a_i are resampled with replacement R times; the 95% interval is
  the 2.5th and 97.5th percentile of the resampled means, and the two-sided p-value is
  (1 + #{r : |mean_r - mean(d)| >= |mean(d)|}) / (R + 1) (the resampled means, shifted to
  mean 0, are the distribution of the mean difference under "no difference").
- The 95% interval of a right/wrong difference is the exact one that goes with McNemar's test:
  given the m discordant pairs, b_better ~ Binomial(m, pi) and B - A = m (2 pi - 1) / n, so the
  Clopper-Pearson interval [pi_lo, pi_hi] of pi (each tail 2.5%) gives
  [m (2 pi_lo - 1) / n, m (2 pi_hi - 1) / n]. It excludes 0 exactly when p < 0.05 (the p-value
  doubles the smaller binomial tail; the interval inverts each tail at 2.5%), so the interval and
  the verdict never disagree (a normal interval did: [-72.01, -7.99] beside p = 0.125).
- Many rows at once (the subjects of a benchmark): `holm` adjusts their p-values (Holm-Bonferroni,
  which keeps the chance of any false "better" at 5% over the family).

Everything is in fractions (0..1); callers scale to percent.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Literal, Sequence

Z95 = 1.959963984540054  # the 97.5th percentile of the standard normal
ALPHA = 0.05
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240101
_EXACT_LIMIT = 1000  # discordant pairs up to which the binomial tail is summed in integers (fast below)

TestName = Literal["mcnemar", "bootstrap"]


@dataclass(frozen=True)
class PairedTest:
    """The outcome of a paired comparison of B against A (difference = B - A, in fractions)."""

    test: TestName | None  # None: no pair to test
    n: int  # pairs
    mean_a: float
    mean_b: float
    diff: float
    ci_low: float
    ci_high: float
    p_value: float
    b_better: int  # pairs where B scored higher than A
    a_better: int  # pairs where A scored higher than B

    @property
    def significant(self) -> bool:
        return self.test is not None and self.p_value < ALPHA


def binomial_two_sided(k: int, m: int) -> float:
    """Exact two-sided p-value of k successes in m fair coin flips: 2 * P(X <= min(k, m-k)), capped at 1."""
    if not 0 <= k <= m:
        raise ValueError(f"need 0 <= k <= m, got k={k} m={m}")
    if m == 0:
        return 1.0
    low = min(k, m - k)
    if m <= _EXACT_LIMIT:
        tail = sum(math.comb(m, i) for i in range(low + 1))
        return min(1.0, 2 * tail / 2**m)
    # Large m: the same sum in log space (lgamma), exact to double precision.
    logs = [math.lgamma(m + 1) - math.lgamma(i + 1) - math.lgamma(m - i + 1) - m * math.log(2) for i in range(low + 1)]
    top = max(logs)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(x - top) for x in logs))


def mcnemar_exact(a_better: int, b_better: int) -> float:
    """Exact McNemar p-value from the discordant pairs (A right/B wrong, A wrong/B right)."""
    return binomial_two_sided(b_better, a_better + b_better)


def _binomial_tail(k: int, m: int, pi: float, upper: bool) -> float:
    """P(X >= k) (upper) or P(X <= k) for X ~ Binomial(m, pi), summed in log space."""
    if pi <= 0.0:
        return 1.0 if (not upper or k <= 0) else 0.0
    if pi >= 1.0:
        return 1.0 if (upper or k >= m) else 0.0
    terms = range(k, m + 1) if upper else range(0, k + 1)
    lp, lq = math.log(pi), math.log1p(-pi)
    base = math.lgamma(m + 1)
    logs = [base - math.lgamma(i + 1) - math.lgamma(m - i + 1) + i * lp + (m - i) * lq for i in terms]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(x - top) for x in logs))


def _solve(f: "Callable[[float], float]", target: float, increasing: bool) -> float:
    """The pi in [0, 1] where the monotone f(pi) crosses `target`, by bisection (1e-12)."""
    lo, hi = 0.0, 1.0
    for _ in range(50):
        mid = (lo + hi) / 2
        if (f(mid) < target) == increasing:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, m: int, alpha: float = ALPHA) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 1 - alpha interval of a binomial proportion, k of m."""
    if m == 0:
        return 0.0, 1.0
    low = 0.0 if k == 0 else _solve(lambda pi: _binomial_tail(k, m, pi, upper=True), alpha / 2, increasing=True)
    high = 1.0 if k == m else _solve(lambda pi: _binomial_tail(k, m, pi, upper=False), alpha / 2, increasing=False)
    return low, high


def mcnemar_interval(a_better: int, b_better: int, n: int) -> tuple[float, float]:
    """The exact interval of B - A (fractions) that agrees with `mcnemar_exact` (module docstring)."""
    m = a_better + b_better
    if m == 0 or n == 0:
        return 0.0, 0.0
    low, high = clopper_pearson(b_better, m)
    return m * (2 * low - 1) / n, m * (2 * high - 1) / n


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the given order (monotone, capped at 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def quantile(sorted_values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted values, interpolated linearly between order statistics."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def normal_interval(diffs: Sequence[float]) -> tuple[float, float]:
    """mean(d) -+ 1.96 * sd(d) / sqrt(n) (sd with n - 1); a point when n <= 1."""
    n = len(diffs)
    mean = _mean(diffs)
    if n <= 1:
        return mean, mean
    variance = max(sum((d - mean) ** 2 for d in diffs) / (n - 1), 0.0)
    half = Z95 * math.sqrt(variance / n)
    return mean - half, mean + half


def bootstrap_means(
    diffs: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> list[float]:
    """Sorted means of `resamples` resamples (with replacement) of `diffs`, from a seeded RNG."""
    rng = random.Random(seed)
    n = len(diffs)
    population = list(diffs)
    return sorted(math.fsum(rng.choices(population, k=n)) / n for _ in range(resamples))


def paired_bootstrap(
    diffs: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED
) -> tuple[float, float, float]:
    """(ci_low, ci_high, p_value) of the mean of paired differences, by a seeded bootstrap."""
    if not diffs:
        return math.nan, math.nan, 1.0
    mean = math.fsum(diffs) / len(diffs)
    means = bootstrap_means(diffs, resamples=resamples, seed=seed)
    tolerance = 1e-12
    extreme = sum(1 for m in means if abs(m - mean) >= abs(mean) - tolerance)
    return quantile(means, ALPHA / 2), quantile(means, 1 - ALPHA / 2), (1 + extreme) / (1 + resamples)


def is_binary(values: Sequence[float]) -> bool:
    return all(v in (0.0, 1.0) for v in values)


def paired_test(
    a: Sequence[float], b: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
    exact: bool = True,
) -> PairedTest:
    """Compare B against A on paired scores in [0, 1]: McNemar for right/wrong, else a bootstrap.

    `exact=False`: the bootstrap whatever the values (per-question means over repeats that happen
    to be all 0 or 1 are still means of several draws, not one right/wrong answer)."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need equal lengths, got {len(a)} and {len(b)}")
    n = len(a)
    b_better = sum(1 for x, y in zip(a, b) if y > x)
    a_better = sum(1 for x, y in zip(a, b) if x > y)
    if n == 0:
        nan = math.nan
        return PairedTest(None, 0, nan, nan, nan, nan, nan, 1.0, 0, 0)
    diffs = [y - x for x, y in zip(a, b)]
    diff = math.fsum(diffs) / n
    if exact and is_binary(a) and is_binary(b):
        low, high = mcnemar_interval(a_better, b_better, n)
        return PairedTest("mcnemar", n, _mean(a), _mean(b), diff, low, high,
                          mcnemar_exact(a_better, b_better), b_better, a_better)
    low, high, p = paired_bootstrap(diffs, resamples=resamples, seed=seed)
    return PairedTest("bootstrap", n, _mean(a), _mean(b), diff, low, high, p, b_better, a_better)


def verdict(test: PairedTest) -> str:
    """`B better`, `A better` or `no significant difference` (at the 5% level); `no paired items`."""
    if test.test is None:
        return "no paired items"
    if not test.significant or test.diff == 0:
        return "no significant difference"
    return "B better" if test.diff > 0 else "A better"
