"""Scores over repeated sampling (`--repeats K`): avg@K, pass@K and maj@K, each with its standard error.

Every question is asked K times (items `#k0`..`#k<K-1>`). Per question:

- avg@K: the mean score of its K answers (the pass@1 estimate);
- pass@K: 1 when any answer is right (the unbiased estimator of Chen et al. at k = K);
- maj@K: the score of the answer most repeats gave, among the answers extracted (a truncated
  reply or one without an answer casts no vote); a tie goes to the answer given first; no vote
  at all scores 0. Answers the scorer judged right are one vote (each equals the gold, so they
  equal each other: `\\frac{1}{2}` and `0.5`); other answers are one vote when they read as the
  same number (`24`, `024`, `24.0`, and LaTeX spellings: `\\dfrac13` = `$\\frac{1}{3}$` = `1/3`) or
  the same text once whitespace is collapsed (in LaTeX: spacing, `\\boxed` and `\\left`/`\\right` removed).

Each value is the mean over questions, and its standard error is that of a mean of
per-question values, computed across questions (the repeats of one question are not
independent draws of the benchmark: the questions are).
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from fractions import Fraction
from typing import Any, Mapping, Sequence

from proctor.core import Item, Result, Score
from proctor.metrics.accuracy import mean_stderr
from proctor.metrics.passk import pass_at_k


_PLAIN_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:/\d+)?")
_RIGHT = "\x00right"  # the vote of every answer the scorer judged right


# The LaTeX spellings of one value (`\\dfrac{1}{3}`, `\\frac13`, `$\\frac{1}{3}$`, `\\left(1,2\\right)`):
# wrong answers must merge as readily as right ones do (those are one vote by the scorer's
# equivalence), or three equal wrong answers written three ways lose to two right ones.
_LATEX_SPACING = re.compile(r"\\left|\\right|\\displaystyle|\\[!,;: ]|\$|\s+")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{(-?\d+)\}\{(\d+)\}")
_LATEX_FRAC_SHORT = re.compile(r"\\[dt]?frac(\d)(\d)(?!\d)")
_LATEX_BOXED = re.compile(r"\\boxed\{(.*)\}")
_LATEX_TEXT = re.compile(r"\\(?:text|mathrm|textbf|mathbf)\{([^{}]*)\}")


def _latex_plain(text: str) -> str:
    """A LaTeX answer without spacing, boxes and fraction spellings: `-\\dfrac{1}{3}` -> `-1/3`."""
    text = _LATEX_SPACING.sub("", text)
    boxed = _LATEX_BOXED.fullmatch(text)
    if boxed:
        text = boxed.group(1)
    text = _LATEX_TEXT.sub(r"\1", text)
    text = _LATEX_FRAC_SHORT.sub(r"\1/\2", _LATEX_FRAC.sub(r"\1/\2", text))
    return text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").rstrip(".")


def vote_key(answer: Any) -> str | None:
    """What two extracted answers must share to count as the same vote (None: no answer): the
    same number (`24` = `024` = `24.0` = `48/2`), else the same text with whitespace collapsed."""
    if answer is None or isinstance(answer, bool):
        return None if answer is None else str(answer)
    text = " ".join(answer.split()) if isinstance(answer, str) else answer
    if isinstance(text, str) and ("\\" in text or "$" in text):
        text = _latex_plain(text)
    if isinstance(text, (int, float)) or (isinstance(text, str) and _PLAIN_NUMBER.fullmatch(text)):
        try:
            number = Fraction(str(text))
        except (ValueError, ZeroDivisionError):
            pass
        else:
            return f"={number}"
    if isinstance(text, str):
        return text or None
    return json.dumps(answer, sort_keys=True, ensure_ascii=False, default=str)


def _vote(score: Score) -> str | None:
    if score.answer is None:
        return None
    return _RIGHT if score.correct else vote_key(score.answer)


def majority(scores: Sequence[Score]) -> Score | None:
    """The first score that gave the most frequent answer (ties: the answer given first); None
    when no score has an answer."""
    counts: dict[str, int] = {}
    first: dict[str, Score] = {}
    for score in scores:
        key = _vote(score)
        if key is None:
            continue
        counts[key] = counts.get(key, 0) + 1
        first.setdefault(key, score)
    if not counts:
        return None
    top = max(counts.values())
    winner = next(key for key in counts if counts[key] == top)  # dicts keep first-seen order
    return first[winner]


def repeats_result(
    items: Sequence[Item], scores: Mapping[str, Score], model: str, dataset: str, *, generated: bool = False
) -> Result:
    """`avg@K` (the headline), `pass@K` and `maj@K` over the questions whose K answers were all scored.

    A question with a failed or missing repeat is counted in `n_failed`, not scored from fewer
    answers (its avg@K would be a different estimate). Repeats are taken in repeat order.
    """
    by_sample: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        by_sample[item.sample_id].append(item)
    for group in by_sample.values():
        group.sort(key=lambda i: int(i.variant.get("repeat", 0)))
    k = max((len(g) for g in by_sample.values()), default=1)
    complete = [[scores[i.id] for i in g] for g in by_sample.values() if all(i.id in scores for i in g)]
    n_failed = len(by_sample) - len(complete)
    names = (f"avg@{k}", f"pass@{k}", f"maj@{k}")
    if not complete:
        return Result(model, dataset, names[0], math.nan, math.nan, 0, n_failed)
    avg = [sum(s.value for s in group) / len(group) for group in complete]
    passed = [pass_at_k(len(group), sum(s.correct for s in group), len(group)) for group in complete]
    voted = [majority(group) for group in complete]
    maj = [winner.value if winner is not None else 0.0 for winner in voted]
    extra = {names[1]: 100.0 * sum(passed) / len(passed), names[2]: 100.0 * sum(maj) / len(maj)}
    if generated:
        flat = [s for group in complete for s in group]
        extra["extraction_rate"] = 100.0 * sum(1 for s in flat if s.answer is not None) / len(flat)
    return Result(
        model, dataset, names[0], 100.0 * sum(avg) / len(avg), mean_stderr(avg), len(complete), n_failed, extra,
        extra_stderrs={names[1]: mean_stderr(passed), names[2]: mean_stderr(maj)},
    )
