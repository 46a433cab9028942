"""The choice_set, agieval_cloze and gaokao scorers on replies written out here, verdicts by hand."""

from __future__ import annotations

import pytest

from proctor.core import Record, Sample
from proctor.errors import DataError
from proctor.scoring import get_scorer


def score(name: str, target: object, output: str, fields: dict | None = None, **params: object) -> tuple[float, object]:
    sample = Sample(id="q", question="?", target=target, fields=fields or {})
    result = get_scorer(name, params).score(sample, Record(item_id="q", prompt=None, output=output, loglikelihoods=None))
    return result.value, result.answer


@pytest.mark.parametrize(
    ("output", "value", "answer"),
    [
        ("答案是：A、D", 1.0, "AD"),
        ("DA", 1.0, "DA"),
        ("The answer is A and D.", 1.0, "AD"),
        ("答案：A", 0.0, "A"),  # a subset is wrong
        ("答案是 ABD", 0.0, "ABD"),  # a superset is wrong
        ("I think A is wrong, the answer is D, A", 1.0, "DA"),  # the last cue decides
        ("Because of this, D", 0.0, None),  # no cue and more than letters: no answer, not "B"
        ("The answer is Because", 0.0, None),
        ("", 0.0, None),
    ],
)
def test_choice_set(output: str, value: float, answer: object) -> None:
    assert score("choice_set", "AD", output) == (value, answer)


def test_choice_set_refuses_a_gold_outside_its_letters() -> None:
    with pytest.raises(DataError, match="is not a set of the letters ABCD"):
        score("choice_set", "AX", "A")


@pytest.mark.parametrize(
    ("qtype", "gold", "output", "value"),
    [
        ("single_choice", ["C"], "【解析】 A 和 B 都不对 <eoe>\n【答案】: C <eoa>", 1.0),  # the last A-D letter
        ("single_choice", ["C"], "【答案】 C <eoa> 但也可能是 D", 0.0),
        ("multi_choice", ["AC"], "【解析】 ... <eoe>\n【答案】 A C <eoa>", 1.0),  # whitespace removed
        ("multi_choice", ["AC"], "【解析】 ... <eoe>\n【答案】 A <eoa>", 0.5),  # right letters, one missing: 3 of 6
        ("multi_choice", ["AC"], "【解析】 ... <eoe>\n【答案】 AB <eoa>", 0.0),  # a wrong letter: 0
        # no 【答案】: the A-D letters of the last ten characters ("IpickAandC", spaces removed)
        ("multi_choice", ["AC"], "I pick A and C", 1.0),
        ("multi_choice", ["AC"], "Both A and C are wrong; so B", 0.0),  # "ewrong;soB": only B
        ("multi_question_choice", ["C", "A", "D"], "（1）【答案】 C <eoa>\n（2）【答案】 B <eoa>\n（3）【答案】 D <eoa>", 2 / 3),
        ("multi_question_choice", ["C", "A"], "（1）【答案】 C <eoa>", 0.0),  # 1 answer for 2: fallback letters "C" only
        ("five_out_of_seven", ["C", "F", "A", "G", "E"], "【答案】 C F A G B <eoa>", 4 / 5),
    ],
)
def test_gaokao_rules(qtype: str, gold: list[str], output: str, value: float) -> None:
    assert score("gaokao", gold, output, {"question_type": qtype})[0] == pytest.approx(value)


def test_gaokao_refuses_an_unknown_type() -> None:
    with pytest.raises(DataError, match="question type 'essay'"):
        score("gaokao", ["A"], "A", {"question_type": "essay"})


def test_agieval_cloze_reads_the_chinese_cue() -> None:
    pytest.importorskip("math_verify")
    assert score("agieval_cloze", "2", "答案是：2。")[0] == 1.0
    assert score("agieval_cloze", "\\frac{1}{2}", "所以答案为 0.5")[0] == 1.0
    assert score("agieval_cloze", "2", "答案是：3")[0] == 0.0
    assert score("agieval_cloze", "2", "no idea") == (0.0, None)
