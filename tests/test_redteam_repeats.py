"""Red team: maj@K must not favour the right answer. Right answers are one vote by the scorer's
equivalence; equal wrong answers written in other LaTeX spellings must merge too, or three
votes for 1/3 lose to two for 1/2."""

from __future__ import annotations

from proctor.core import Score
from proctor.metrics.repeats import majority


def _s(answer: str, value: float = 0.0) -> Score:
    return Score(value, answer=answer)


def test_equal_wrong_answers_in_other_spellings_are_one_vote() -> None:
    # Gold 1/2: two right answers, three wrong answers that all say 1/3.
    votes = [_s("\\frac{1}{2}", 1.0), _s("0.5", 1.0), _s("\\frac{1}{3}"), _s("1/3"), _s("\\dfrac13")]
    assert majority(votes).value == 0.0
    votes = [_s("\\frac{1}{2}", 1.0), _s("$-\\tfrac{1}{3}$"), _s("\\boxed{-\\frac{1}{3}}"), _s("-1/3")]
    assert majority(votes).value == 0.0
    pairs = [_s("(1,2)", 1.0), _s("\\left( 3, \\frac{\\pi}{2} \\right)"), _s("(3,\\frac{\\pi}{2})")]
    assert majority(pairs).value == 0.0
    # A right answer still wins a real majority, and unrelated answers stay apart.
    assert majority([_s("\\frac{1}{3}"), _s("0.5", 1.0), _s("\\frac{1}{2}", 1.0), _s("\\frac{2}{3}")]).value == 1.0
    assert majority([_s("\\sqrt{2}"), _s("\\sqrt{3}"), _s("2", 1.0), _s("2", 1.0)]).value == 1.0
