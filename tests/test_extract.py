"""extract_choice on the answer styles real chat models produce, in Chinese and English."""

from __future__ import annotations

import pytest

from proctor.scoring.extract import extract_choice, find_choice

CASES: list[tuple[str, str | None]] = [
    # --- a bare letter, however wrapped
    ("B", "B"),
    ("Ｂ", "B"),  # full-width
    ("(B)", "B"),
    ("B)", "B"),
    ("[C]", "C"),
    ("【D】", "D"),
    ("**B**", "B"),
    ("B。", "B"),
    ("b", "B"),
    ("(b)", "B"),
    ("选项C", "C"),
    # --- explicit answer statements, Chinese
    ("答案：B", "B"),
    ("答案是B。", "B"),
    ("答案为：B", "B"),
    ("答案：Ｃ", "C"),  # full-width letter after a full-width colon
    ("正确答案是 B，因为 TCP 提供可靠传输。", "B"),
    ("我认为答案应该是B", "B"),
    ("**答案：** C", "C"),
    ("答案是b", "B"),
    ("选B", "B"),
    ("故选D", "D"),
    ("我选择C。", "C"),
    ("不选A，选C", "C"),
    ("答案：B\n\n解析：A项说法错误，所以不选A。", "B"),
    ("首先分析A选项，A错误；B选项也错误。所以答案是C。", "C"),
    ("【答案】B\n【解析】A项错误，C项错误。", "B"),
    ("A. 北京\nB. 上海\nC. 广州\nD. 深圳\n答案：A", "A"),  # options echoed first
    # --- explicit answer statements, English
    ("The answer is (B).", "B"),
    ("Answer: B", "B"),
    ("answer: b", "B"),
    ("Final Answer: D", "D"),
    ("the correct option is B", "B"),
    ("The correct answer is: (C) 1024", "C"),
    ("The best choice is C", "C"),
    ("I'd go with option B.", "B"),
    ("The answer is (b)", "B"),
    ("The answer is A because the other options contradict the premise.", "A"),
    ("Answer: (A) Paris", "A"),
    ("$\\boxed{C}$", "C"),
    ("\\boxed{\\text{D}}", "D"),
    # --- reasoning first: the final explicit statement wins over stray letters
    (
        "Let me think. A is tempting but wrong, and B fails for n = 0. "
        "D ignores the constant. So the answer is C.",
        "C",
    ),
    ("answer: A ... wait, re-checking the units, the answer is B", "B"),
    ("<think>A? B? Probably D, since A and B ignore friction.</think>\n答案：D", "D"),
    ("<think>答案：D, since A and B ignore friction", None),  # the thought never ended: no letter
    ("<think>答案：D</think>", None),  # nothing after the thought
    ("The answer is B, not A.", "B"),
    # --- the answer letter followed by talk of another option: not a list of options
    ("正确答案是 B，A completely randomized design cannot control for the block effect.", "B"),
    ("The answer is B. A completely randomized design is less precise here.", "B"),
    ("答案：C，B项错误因为它混淆了概念。", "C"),
    ("答案是A，B是错误的。", "A"),
    ("The answer is A, B is only partly true.", "A"),
    # --- conclusions about one option
    ("B是正确的", "B"),
    ("经过分析，C项正确。", "C"),
    ("Option D is correct.", "D"),
    ("B is the answer.", "B"),
    ("A, B and C are all wrong; D is right.", "D"),
    ("Therefore, A.", "A"),
    # --- the output starts with an option
    ("B. 网络层负责路由选择", "B"),
    ("B) Paris is the capital of France.", "B"),
    ("(C) 1024, since 2^10 = 1024.", "C"),
    ("D\n解析：略", "D"),
    # --- one letter mentioned somewhere
    ("It must be C since the others contradict the data.", "C"),
    ("I think it's A because of Ohm's law.", "A"),
    ("The capital of France is Paris (B).", "B"),
    # --- no answer: None, never a lucky guess
    ("", None),
    ("I don't know.", None),
    ("这道题我不会。", None),
    ("A cat is an animal.", None),  # the English article, not option A
    ("the answer is a cat", None),  # lower-case 'a' followed by a word
    ("A.I. is a broad field.", None),
    ("The answer is not A.", None),
    ("Please choose A, B, C or D.", None),  # an echoed instruction lists every option
    ("The answer is A or B because both hold.", None),  # two options named as one answer
    ("答案是A、B两项", None),
    ("答案是A，B", None),
    ("The answer is A/B testing.", None),
    ("选项A和选项B都不对", None),  # two options, neither chosen
    ("这是一个A类问题和B类问题", None),
    ("The answer is E.", None),  # not one of the choices
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_extract_choice(text: str, expected: str | None) -> None:
    assert extract_choice(text, "ABCD") == expected


def test_none_input_is_no_answer() -> None:
    assert extract_choice(None, "ABCD") is None
    assert find_choice(None, "ABCD") is None


RULES: list[tuple[str, str, str]] = [
    ("(B)", "B", "whole"),
    ("答案是B。", "B", "explicit"),
    ("$\\boxed{C}$", "C", "explicit"),
    ("经过分析，C项正确。", "C", "conclusion"),
    ("Therefore, A.", "A", "conclusion"),
    ("B) Paris is the capital of France.", "B", "start"),
    ("The capital of France is Paris (B).", "B", "bracketed"),
    ("It must be C since the others contradict the data.", "C", "standalone"),
    ("正确答案是 B，A completely randomized design ...", "B", "explicit"),
]


@pytest.mark.parametrize(("text", "letter", "rule"), RULES, ids=[r[2] + ":" + r[0][:20] for r in RULES])
def test_find_choice_names_the_tier_that_fired(text: str, letter: str, rule: str) -> None:
    found = find_choice(text, "ABCD")
    assert found is not None and (found.letter, found.rule) == (letter, rule)


def test_more_choices_and_the_pronoun_i() -> None:
    ten = "ABCDEFGHIJ"
    assert extract_choice("The answer is (E).", ten) == "E"
    assert extract_choice("I think the answer is I.", ten) == "I"
    assert extract_choice("I am not sure, I would need more context.", ten) is None
    assert extract_choice("答案：J", ten) == "J"


def test_fewer_choices_reject_letters_outside_them() -> None:
    assert extract_choice("答案：C", "AB") is None
    assert extract_choice("答案：B", "AB") == "B"


@pytest.mark.parametrize("bad", ["", "abcd", "AAB", "A1"])
def test_invalid_labels_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="labels"):
        extract_choice("B", bad)


@pytest.mark.timeout(10)
def test_long_outputs_stay_fast() -> None:
    """Long blank runs once made the chained optional-space patterns backtrack for minutes."""
    assert extract_choice("答案" + " " * 5000 + "？", "ABCD") is None
    assert extract_choice("The answer is" + " \n" * 3000 + "C", "ABCD") == "C"
    reasoning = "Option A fails; option B fails too. " * 500 + "Therefore the answer is D."
    assert extract_choice(reasoning, "ABCD") == "D"


@pytest.mark.timeout(10)
def test_many_candidate_letters_stay_linear() -> None:
    """Each stand-alone letter once rescanned the whole text for a negation before it."""
    import time

    text = "We weigh A against the rest, and A cat may B too. " * 2000  # ~100k chars
    start = time.perf_counter()
    assert extract_choice(text, "ABCD") is None  # A and B both stand alone: ambiguous
    ruled_out = "We rule out not B here, and the cat is not D. " * 2000
    assert extract_choice(ruled_out + "It must be C.", "ABCD") == "C"
    # Quadratic work took seconds here; linear work takes milliseconds.
    assert time.perf_counter() - start < 2.0
