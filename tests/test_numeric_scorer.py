"""The `numeric` scorer (GSM8K, MATH-500): the final number of a worked answer, on real-world outputs.

Each case names the pitfall it guards; the peers' documented failures are marked "peer:".
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.scoring import get_scorer
from proctor.scoring.numeric import after_thinking, cut_at_next_question, extract_number, leading_number, to_fraction


def free(target: Any) -> Sample:
    return Sample(id="q1", question="?", target=target)


def gen(output: str | None) -> Record:
    return Record(item_id="q1", prompt="the prompt", output=output, loglikelihoods=None)


def verdict(score: Score) -> tuple[float, Any, str | None]:
    return score.value, score.answer, score.rule


CASES: list[tuple[str | None, Any, tuple[float, Any, str]]] = [
    # ---- peer: OpenCompass reads "$70,000." and "\boxed{8,000}" as 000
    ("He sold the house for $70,000.", 70000, (1.0, "70000", "last_number")),
    ("The house is worth 80,000 * 1.5 = $120,000.\nSo the profit is $120,000 - $50,000 = $70,000.", "70,000", (1.0, "70000", "last_number")),
    ("So in total she needs \\boxed{8,000} bricks.", 8000, (1.0, "8000", "boxed")),
    ("The final answer is \\boxed{\\$1{,}250.50}", "1250.5", (1.0, "1250.50", "boxed")),
    # ---- peer: lm-eval flexible match reads "$29.00." as "29.00" (!= "29") and "in 2024." as 2024
    ("Each ticket costs $29.00.", 29, (1.0, "29.00", "last_number")),
    ("Answer: 5 students joined the club in 2024.", 5, (1.0, "5", "answer_colon")),
    ("The answer is 5, as of the 2024 census.", 5, (1.0, "5", "answer_is")),
    # ---- peer: lm-eval strict match scores "**Answer: $18**" as wrong
    ("She keeps 16 - 3 - 4 = 9 eggs and sells them for $2 each.\n**Answer: $18**", 18, (1.0, "18", "answer_colon")),
    ("She makes 9 * 2 = 18 dollars.\n\n**Answer:** $18", 18, (1.0, "18", "answer_colon")),
    ("**Final Answer:** \\$18.00", "18", (1.0, "18.00", "answer_colon")),
    # ---- "(final) answer is", with and without LaTeX
    ("Final Answer: The final answer is $18$. I hope it is correct.", 18, (1.0, "18", "answer_is")),
    ("3 + 15 = 18, so the final answer is $18.00.", 18, (1.0, "18.00", "answer_is")),
    ("The answer is: 42", 42, (1.0, "42", "answer_is")),
    ("The answer is \\(42\\).", 42, (1.0, "42", "answer_is")),
    ("The answer is **72** clips.", 72, (1.0, "72", "answer_is")),
    ("The answer is 18 \\text{ dollars}.", 18, (1.0, "18", "answer_is")),
    ("The answer is 1\\,234 and 5 more", 1234, (1.0, "1234", "answer_is")),
    ("The answer is 25\\%.", "25", (1.0, "25", "answer_is")),
    ("The answer is -3, up from 4", -3, (1.0, "-3", "answer_is")),
    ("The temperature falls by 10, so the answer is −7.", -7, (1.0, "-7", "answer_is")),  # U+2212 minus
    ("The answer is 3/4 of the pie.", 0.75, (1.0, "3/4", "answer_is")),
    ("So the answer is 1,000,000.", 1000000, (1.0, "1000000", "answer_is")),
    ("所以答案是 42。", 42, (1.0, "42", "answer_is")),
    ("最终答案为 -3。", "-3", (1.0, "-3", "answer_is")),
    ("答案是 $1,200$ 元", 1200, (1.0, "1200", "answer_is")),
    # ---- "Answer: N"
    ("Step 1: 500 + 500 = 1000\nAnswer: \\$1,000", 1000, (1.0, "1000", "answer_colon")),
    ("Final Answer: 0.5", "1/2", (1.0, "0.5", "answer_colon")),
    ("答案：４２", 42, (1.0, "42", "answer_colon")),  # full-width digits and colon
    ("Answer: $$ 42 $$", 42, (1.0, "42", "answer_colon")),
    ("Answer: -$5 (a loss)", -5, (1.0, "-5", "answer_colon")),
    # ---- boxed: the last complete box, LaTeX fractions, separators, units
    ("First 2 + 3 = 5, so the answer is \\boxed{\\frac{1}{2}}.", "0.5", (1.0, "1/2", "boxed")),
    ("Total: \\boxed{1{,}234}", 1234, (1.0, "1234", "boxed")),
    ("Total: \\boxed{1\\,234}", 1234, (1.0, "1234", "boxed")),
    ("So \\boxed{{42}} apples", 42, (1.0, "42", "boxed")),
    ("\\boxed{\\$18.00}", "18", (1.0, "18.00", "boxed")),
    ("\\boxed{18 \\text{ dollars}}", 18, (1.0, "18", "boxed")),
    ("The area is \\boxed{5 \\text{ cm}^2}", 5, (1.0, "5", "boxed")),  # the unit's power is no answer
    ("\\boxed{18\\%}", 18, (1.0, "18", "boxed")),
    ("The angle is \\boxed{90^\\circ}", 90, (1.0, "90", "boxed")),  # the degree sign keeps the box closed
    ("The angle is \\boxed{90^{\\circ}}.", 90, (1.0, "90", "boxed")),
    ("\\boxed{x = 12}", 12, (1.0, "12", "boxed")),
    ("\\boxed{\\dfrac{3}{4}}", "0.75", (1.0, "3/4", "boxed")),
    ("\\boxed{-\\frac{1}{2}}", -0.5, (1.0, "-1/2", "boxed")),
    ("\\boxed{\\frac12}", 0.5, (1.0, "1/2", "boxed")),
    ("\\boxed{2\\frac{1}{2}}", "2.5", (1.0, "5/2", "boxed")),  # a mixed number, not 21/2
    ("\\boxed{1 000}", 1000, (1.0, "1000", "boxed")),
    ("\\fbox{9}", 9, (1.0, "9", "boxed")),
    ("So the result is \\boxed 5", 5, (1.0, "5", "boxed")),
    ("2 + 3 = 5, and the final answer is \\boxed{7}. Check: 5 + 2 = 7, 7 - 2 = 5", 7, (1.0, "7", "boxed")),
    ("\\boxed{7} is my guess, or perhaps \\boxed{8", 7, (1.0, "7", "boxed")),  # the last box never closed
    ("2 + 3 = 5, hence \\boxed{x+y}", 5, (0.0, "x+y", "boxed")),  # a boxed non-number: no fallback
    ("The circumference is \\boxed{2\\pi}", 2, (0.0, "2\\pi", "boxed")),  # not the 2 of 2π
    ("The roots are \\boxed{3, 4}", 4, (0.0, "3, 4", "boxed")),
    ("Empty \\boxed{} here, but the answer is 6.", 6, (1.0, "6", "answer_is")),  # an empty box is no answer
    # ---- hash (GSM8K)
    ("She pays 3 * 4 = 12 dollars.\n#### 12", "12", (1.0, "12", "hash")),
    ("Sum is 1,000 + 234.\n#### 1,234", 1234, (1.0, "1234", "hash")),
    ("#### $1,080", 1080, (1.0, "1080", "hash")),
    ("#### 18 dollars", 18, (1.0, "18", "hash")),
    ("#### -3", "-3", (1.0, "-3", "hash")),
    ("#### 1. Count the eggs\nThere are 16 eggs.", 16, (1.0, "16", "last_number")),  # a heading, not an answer
    ("#### 12. Count the eggs\nThere are 16 eggs.", 16, (1.0, "16", "last_number")),
    # ---- spaces as thousands separators: after an answer cue only
    ("The answer is 1 000.", 1000, (1.0, "1000", "answer_is")),
    ("The answer is 1\u00a0234.", 1234, (1.0, "1234", "answer_is")),  # no-break space
    ("It costs 1\u2009234 euros", 1234, (1.0, "1234", "last_number")),  # thin space: unambiguous anywhere
    ("The answer is 5 100-page notebooks.", 5, (1.0, "5", "answer_is")),  # "5 100-page" is no 5100
    ("Page counts: 12 300", 12300, (0.0, "300", "last_number")),  # a list, never joined
    # ---- the last number
    ("He has 3 apples and buys 4 more, so 7.", 7, (1.0, "7", "last_number")),
    ("It costs 29.00", 29, (1.0, "29.00", "last_number")),
    ("He ran 10 km on route A3", 10, (1.0, "10", "last_number")),  # "A3" is a name
    ("v1.5 of the app costs 20", 20, (1.0, "20", "last_number")),
    ("- 5 apples\n- 2 pears", 2, (1.0, "2", "last_number")),  # a bullet, not a minus sign
    ("Half of it: 3/4", "0.75", (1.0, "3/4", "last_number")),
    ("That is .5 of the cake", 0.5, (1.0, ".5", "last_number")),
    ("About 50% of them", 50, (1.0, "50", "last_number")),
    ("It is 1,2345", 2345, (1.0, "2345", "last_number")),  # not a thousands separator
    ("The change is $-5$.", -5, (1.0, "-5", "last_number")),
    ("The temperature drops to -5°C.", -5, (1.0, "-5", "last_number")),
    ("The total is 12.50 + 3.50 = 16.00 dollars.", 16, (1.0, "16.00", "last_number")),
    ("Therefore, she has **18** dollars left.", 18, (1.0, "18", "last_number")),
    ("So he earns 3 * 12 = 36 dollars a week and 36 * 4 = 144 dollars a month.", 144, (1.0, "144", "last_number")),
    ("I think 6.", 7, (0.0, "6", "last_number")),
    ("It is 0.333", "1/3", (0.0, "0.333", "last_number")),  # exact: 0.333 is not a third
    # ---- a next question the model invented is cut off (peer: a bare "Question" stop cuts mid-reasoning)
    ("The answer is 5.\n\nQ: What is 2+2?\nA: The answer is 4.", 5, (1.0, "5", "answer_is")),
    ("So 5.\n\nQuestion: And 3 + 3?\nAnswer: 6", 5, (1.0, "5", "last_number")),
    ("She has 3 cats.\nQuestion: How many dogs does Tom have?\nAnswer: 7", 3, (1.0, "3", "last_number")),
    ("So x = 4, and \\boxed{4}.\n\nProblem: Solve 2x = 10.\nSolution: \\boxed{5}", 4, (1.0, "4", "boxed")),
    ("Step 1: 2 + 2 = 4\nStep 2: 4 * 3 = 12\n#### 12\n\nQ: Another one?\nA: #### 99", 12, (1.0, "12", "hash")),
    ("The answer is $\\boxed{5}$.\n\n**Question:** What is 2 + 3?\nThe answer is \\boxed{6}.", 5, (1.0, "5", "boxed")),
    ("The question asks for the total. Questions like this add: 4 + 5 = 9.\nSo the answer is 9.", 9, (1.0, "9", "answer_is")),
    ("Question: Janet has 3 apples and buys 2.\n3 + 2 = 5\n#### 5", 5, (1.0, "5", "hash")),  # a restated question is kept
    # ---- reasoning in <think> tags
    ("<think>Maybe 5... no: 2 * 3 = 6.</think>\nThe answer is 6.", 6, (1.0, "6", "answer_is")),
    ("<think>First 3 + 4 = 7, then 7 * 2 = 14</think>\n\n**14**", 14, (1.0, "14", "last_number")),
    # Cut short inside the thought: no answer, the 7 in the reasoning is never read (it was, before).
    ("<think>Let me compute 3 + 4 = 7", 7, (0.0, None, "none")),
    ("<think>So it is 7.</think>  ", 7, (0.0, None, "none")),  # nothing after the thought
    # ---- no number: no answer
    ("I cannot determine the answer without more information.", 5, (0.0, None, "none")),
    ("The answer is x.", 5, (0.0, None, "none")),
    ("", 5, (0.0, None, "none")),
    (None, 5, (0.0, None, "none")),
    ("Let me think about this.\n\nQuestion: What is 2 + 2?\nAnswer: 4", 4, (0.0, None, "none")),  # only the invented one
]


@pytest.mark.parametrize(("output", "target", "expected"), CASES, ids=[f"{i}" for i in range(len(CASES))])
def test_numeric(output: str | None, target: Any, expected: tuple[float, Any, str]) -> None:
    assert verdict(get_scorer("numeric").score(free(target), gen(output))) == expected


def test_there_are_enough_real_world_cases() -> None:
    assert len(CASES) >= 60


def test_every_score_says_what_it_did() -> None:
    numeric = get_scorer("numeric")
    cut = numeric.score(free(5), gen("The answer is 5.\n\nQ: What is 2+2?\nA: The answer is 4."))
    assert cut.explanation == "cut at an invented next question"
    thought = numeric.score(free(6), gen("<think>5?</think>The answer is 6."))
    assert thought.explanation == "read after </think>"
    none = numeric.score(free(6), gen("no idea"))
    assert (none.rule, none.answer, none.explanation) == ("none", None, "no number in the output")
    assert numeric.score(free(6), gen("#### 6")).explanation == ""


def test_numeric_targets_compare_as_rationals() -> None:
    numeric = get_scorer("numeric")
    assert numeric.score(free(["1/3", 0.25]), gen("Answer: 0.25")).value == 1.0
    assert numeric.score(free(["1/3", 0.25]), gen("Answer: 0.33")).value == 0.0
    assert numeric.score(free(0.1), gen("Answer: 1/10")).value == 1.0  # 0.1 as written, not binary
    assert numeric.score(free("$1,234.50"), gen("#### 1234.5")).value == 1.0
    assert numeric.score(free("29.00"), gen("#### 29")).value == 1.0
    assert numeric.score(free("\\frac{3}{4}"), gen("#### 0.75")).value == 1.0
    assert numeric.score(free("1,234"), gen("The answer is 1234.")).value == 1.0  # GSM8K's gold with commas
    assert numeric.score(free("-3"), gen("The answer is −3.")).value == 1.0
    assert numeric.score(free("1 000"), gen("#### 1000")).value == 1.0
    assert numeric.score(free(5), gen("#### 5.0")).value == 1.0
    assert numeric.score(free(5), gen("#### 50")).value == 0.0


@pytest.mark.parametrize("target", ["abc", True, None, ["3", "three"], "2\\pi"])
def test_numeric_rejects_targets_that_are_not_numbers(target: Any) -> None:
    with pytest.raises(DataError, match="q1: target .* is not a number"):
        get_scorer("numeric").score(free(target), gen("#### 3"))


def test_helpers() -> None:
    assert extract_number("So 2 + 2 = 4.\n#### 4") == ("4", "hash")
    assert extract_number("nothing") == (None, None)
    assert to_fraction("$1,234.50") == to_fraction("2469/2")
    assert to_fraction("abc") is None and to_fraction("1/0") is None
    assert leading_number("−1,234 apples") == "-1234"
    assert leading_number("apples: 3") is None
    assert cut_at_next_question("5.\n\nQ: next?") == ("5.\n", True)
    assert cut_at_next_question("Q: restated\n5") == ("Q: restated\n5", False)
    assert cut_at_next_question("the question is\nhard") == ("the question is\nhard", False)
    assert after_thinking("<think>3</think> 4") == (" 4", True)
    assert after_thinking("<think>3</think>  ") == ("", True)  # a thought with nothing after it: no answer
    assert after_thinking("no reasoning, 5") == ("no reasoning, 5", False)


@needs_shared_data
def test_real_gsm8k_golds_are_read_back() -> None:
    """Every GSM8K test answer: its own worked solution, the gold in a sentence, and a wrong number."""
    path = SHARED_DATASETS / "gsm8k/grade_school_math/data/test.jsonl"
    numeric = get_scorer("numeric")
    for line in path.read_text("utf-8").splitlines():
        row = json.loads(line)
        gold = row["answer"].split("####")[-1].strip()
        assert numeric.score(free(gold), gen(row["answer"])).value == 1.0, row["answer"]
        assert numeric.score(free(gold), gen(f"The answer is ${gold}.")).value == 1.0, gold
        assert numeric.score(free(gold), gen(f"The answer is {to_fraction(gold) + 1}.")).value == 0.0, gold


@needs_shared_data
def test_real_math500_numeric_answers_are_read_back_from_a_box() -> None:
    """Every MATH-500 answer that is a number ("5", "\\frac{3}{4}", "10\\%", "\\$32,348"), boxed the
    way Minerva-style models end; the rest (expressions, intervals) are the math scorer's."""
    path = SHARED_DATASETS / "math500/prm800k/math_splits/test.jsonl"
    numeric = get_scorer("numeric")
    read = 0
    for line in path.read_text("utf-8").splitlines():
        answer = json.loads(line)["answer"]
        item = free(answer)
        output = f"Final Answer: The final answer is $\\boxed{{{answer}}}$. I hope it is correct."
        try:
            score = numeric.score(item, gen(output))
        except DataError:
            continue  # not a number
        assert (score.value, score.rule) == (1.0, "boxed"), (answer, score)
        read += 1
    assert read >= 350
