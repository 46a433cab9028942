"""Red team: answer styles real models write, against the scorers (verdicts by hand)."""

from __future__ import annotations

import pytest

from proctor.core import Record, Sample
from proctor.scoring import get_scorer


@pytest.mark.parametrize(("output", "value"), [
    ("The answer is (A), (D)", 1.0),  # bracketed letters: read as "A, D" is (was only "A": wrong)
    ("The answer is (A) and (D).", 1.0),
    ("答案是（A）（D）", 1.0),
    ("The answer is [A], [D]", 1.0),
    ("The answer is (A)", 0.0),  # a subset is still wrong
    ("The answer is (A) because (D) is wrong", 0.0),
])
def test_choice_set_reads_letters_in_brackets(output: str, value: float) -> None:
    sample = Sample(id="q", question="?", target="AD")
    score = get_scorer("choice_set", {}).score(sample, Record(item_id="q", prompt=None, output=output,
                                                              loglikelihoods=None))
    assert score.value == value


def test_alpaca_eval_preference_from_two_impossible_identifiers_is_no_preference() -> None:
    """Both identifiers at log-prob -inf gave a NaN preference (and a NaN win rate)."""
    from proctor.scoring.judged import logprob_preference

    assert logprob_preference([("m", float("-inf")), ("M", float("-inf"))], "m") is None
    assert logprob_preference([("m", float("-inf")), ("M", -1.0)], "m") == 0.0
    assert logprob_preference([("m", -0.5), ("M", -0.5)], "M") == 0.5
