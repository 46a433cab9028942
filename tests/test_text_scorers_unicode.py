"""Every text scorer reads an answer and its gold after the same Unicode clean-up (NFKC, zero-width
and bidi marks and the BOM removed, scoring/text.py), and the letter extractor reads the reply
styles real chat models write, Chinese and English."""

from __future__ import annotations

from typing import Any

import pytest

from proctor.core import Record, Sample
from proctor.scoring import get_scorer
from proctor.scoring.extract import find_choice
from proctor.scoring.option_text import match_option_text
from proctor.scoring.text import clean_text


def free(target: Any) -> Sample:
    return Sample(id="q1", question="?", target=target)


def gen(output: str) -> Record:
    return Record(item_id="q1", prompt="p", output=output, loglikelihoods=None)


INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u200e", "\u200f", "\u202a", "\u202c", "\u2066",
             "\u2069", "\u061c", "\u00ad"]


@pytest.mark.parametrize(
    ("output", "gold"),
    [
        ("Paris\u200b", "Paris"),
        ("\u200fשלום", "שלום"),
        ("Paris\ufeff", "Paris"),
        ("Pa\u00adris", "Paris"),
        ("\u2066Paris\u2069", "Paris"),
        ("Ｐａｒｉｓ", "Paris"),
        ("Paris", "Paris\u200b"),  # the gold side too
        ("\ufeffשלום", "\u200fשלום\u200e"),
        ("cafe\u0301", "café"),  # a decomposed accent is the composed letter
    ],
)
def test_exact_reads_through_invisible_marks_on_both_sides(output: str, gold: str) -> None:
    assert get_scorer("exact").score(free(gold), gen(output)).value == 1.0


@pytest.mark.parametrize("mark", INVISIBLE)
def test_each_invisible_mark_is_dropped(mark: str) -> None:
    assert clean_text(f"Par{mark}is") == "Paris"
    assert get_scorer("exact").score(free("Paris"), gen(f"Paris{mark}")).value == 1.0


def test_accents_still_count() -> None:
    assert get_scorer("exact").score(free("café"), gen("cafe")).value == 0.0


def test_every_text_scorer_cleans_its_input() -> None:
    assert get_scorer("regex", {"pattern": r"answer is (\w+)"}).score(free("Paris"), gen("The answer is Par\u200bis")).value == 1.0
    assert get_scorer("regex", {"pattern": r"answer is (\w+)"}).score(free("Paris\ufeff"), gen("The answer is Paris")).value == 1.0
    mc = Sample(id="q1", question="?", target="B", choices=("Lyon", "Paris", "Nice", "Lille"))
    assert get_scorer("choice").score(mc, gen("答\u200b案\u200b：\u200fB")).value == 1.0
    assert match_option_text("Pa\u200bris", {"A": "Lyon", "B": "Paris\ufeff"}) == "B"
    assert get_scorer("numeric").score(free("1234"), gen("The answer is 1\u200b234\u200f.")).value == 1.0
    assert get_scorer("numeric").score(free("\ufeff42"), gen("#### 4\u20602")).value == 1.0
    assert get_scorer("bbh").score(free("True\u200b"), gen("So the answer is Tr\u200bue.")).value == 1.0
    assert get_scorer("bbh").score(free("(B)"), gen("So the answer is (\u200bB\u200b).")).value == 1.0


def test_math_equiv_drops_invisible_marks_but_keeps_maths() -> None:
    pytest.importorskip("math_verify")
    scorer = get_scorer("math_equiv")
    assert scorer.score(free("\\frac{1}{2}"), gen("The answer is \\boxed{\\frac{1}{2\u200b}}")).value == 1.0
    assert scorer.score(free("x^2"), gen("\\boxed{x^2}\ufeff")).value == 1.0


# Reply styles of real chat models on MMLU / CMMLU / C-Eval questions, with the letter they mean.
STYLES = [
    ("正确答案是 D，A：。", "D"),
    ("答案：B", "B"),
    ("根据题意，选项C正确。", "C"),
    ("A项错误，因为它忽略了前提；B项错误；C项正确。故选C。", "C"),
    ("本题考查宪法知识。A、B、D 三项说法均错误，C 项说法正确。答案为C。", "C"),
    ("【答案】D\n【解析】本题考查细胞结构。", "D"),
    ("解析：题干给出了条件，因此，本题的正确答案是B。", "B"),
    ("我认为应该选 A。", "A"),
    ("答案：（C）", "C"),
    ("不选A，因为它错了，应选B。", "B"),
    ("选项A、B、C都不正确，正确答案为D。", "D"),
    ("答案是C。A选项：错误，B选项：错误。", "C"),
    ("答案：D，A：说法错误；B：说法错误；C：说法错误。", "D"),
    ("答\u200b案：C", "C"),
    ("The correct answer is (B) Paris.", "B"),
    ("Answer: C\n\nExplanation: Option A is wrong because it ignores friction.", "C"),
    ("**Answer: D**", "D"),
    ("Let's think step by step. The force doubles, so the acceleration doubles. Therefore, the answer is A.", "A"),
    ("I think the answer is B because the other options contradict the premise.", "B"),
    ("Option A is incorrect. Option C is correct.", "C"),
    ("The best choice is D.", "D"),
    ("\\boxed{C}", "C"),
    ("B) Paris", "B"),
    ("It's not A. The answer must be D.", "D"),
    ("Final answer: (A)", "A"),
    ("The answer is C. A: wrong, it ignores friction. B: wrong as well.", "C"),
    ("A: 1, B: 2, C: 3, D: 4. The answer is B.", "B"),
    ("The answer is D, A: too small.", "D"),
    ("\u200fB", "B"),
    ("Ｄ\ufeff", "D"),
]


@pytest.mark.parametrize(("reply", "letter"), STYLES)
def test_the_letter_extractor_reads_real_reply_styles(reply: str, letter: str) -> None:
    found = find_choice(reply, "ABCD")
    assert found is not None and found.letter == letter, found
