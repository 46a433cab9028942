"""The scorers of proctor.scoring on concrete records: choice, exact, regex, numeric, the registry."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from proctor.core import Record, Sample, Score
from proctor.errors import ConfigError, DataError
from proctor.scoring import Scorer, get_scorer, scorer_names
from proctor.scoring.loglikelihood import choice_from_loglikelihoods, choice_from_loglikelihoods_norm
from proctor.scoring.option_text import match_option_text


def mc(target: str, *choices: str) -> Sample:
    return Sample(id="q1", question="?", target=target, choices=tuple(choices))


def free(target: Any) -> Sample:
    return Sample(id="q1", question="?", target=target)


def gen(output: str | None) -> Record:
    return Record(item_id="q1", prompt="the prompt", output=output, loglikelihoods=None)


def ll(lls: list[float], continuations: list[str] | None = None) -> Record:
    prompt = {"context": "Q: ?\nA:", "continuations": continuations} if continuations is not None else "Q: ?"
    return Record(item_id="q1", prompt=prompt, output=None, loglikelihoods=lls)


def verdict(score: Score) -> tuple[float, Any, str | None]:
    return score.value, score.answer, score.rule


# ---------------------------------------------------------------- registry


def test_builtin_scorers_are_registered() -> None:
    assert scorer_names() == ["agieval_cloze", "bbh", "cascade", "choice", "choice_set", "code_exec", "exact",
                              "gaokao", "ifeval", "llm_judge", "math_equiv", "mbpp", "numeric", "pairwise_judge",
                              "rating_judge", "regex"]
    scorer = get_scorer("choice")
    assert isinstance(scorer, Scorer) and scorer.name == "choice"


def test_unknown_scorer_is_a_one_line_config_error_with_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"unknown scorer 'choise'; did you mean: choice, choice_set\?") as error:
        get_scorer("choise")
    assert "\n" not in str(error.value)


def test_bad_params_are_named() -> None:
    with pytest.raises(ConfigError, match=r"scorer 'exact' has no param 'last_lines'; did you mean: last_line\?"):
        get_scorer("exact", {"last_lines": True})
    with pytest.raises(ConfigError, match=r"param 'ignore_case' must be bool, got str 'no'"):
        get_scorer("exact", {"ignore_case": "no"})
    with pytest.raises(ConfigError, match=r"param 'match' must be 'last' or 'first', got str 'middle'"):
        get_scorer("regex", {"pattern": "x", "match": "middle"})
    with pytest.raises(ConfigError, match=r"param 'group' must be int or str or null, got bool True"):
        get_scorer("regex", {"pattern": "(x)", "group": True})
    with pytest.raises(ConfigError, match=r"scorer 'regex' needs the param 'pattern'"):
        get_scorer("regex")
    with pytest.raises(ConfigError, match=r"scorer 'choice' has no param 'labels'; its params: none"):
        get_scorer("choice", {"labels": "ABCD"})


def test_version_changes_with_params_and_scorers_are_frozen() -> None:
    default, same, last_line = get_scorer("exact"), get_scorer("exact", {}), get_scorer("exact", {"last_line": True})
    assert default.version == same.version != last_line.version
    assert default.version.startswith("2.") and len(default.version) == 10
    assert get_scorer("regex", {"pattern": "a"}).version != get_scorer("regex", {"pattern": "b"}).version
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.last_line = True  # type: ignore[attr-defined]


# ---------------------------------------------------------------- choice: generated text

FOUR = mc("B", "物理层", "传输层", "网络层", "应用层")


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("B", (1.0, "B", "whole")),
        ("答案是B。", (1.0, "B", "explicit")),
        ("经过分析，C项正确。", (0.0, "C", "conclusion")),
        ("B. 传输层负责端到端传输", (1.0, "B", "start")),
        ("I would pick the one in brackets (D).", (0.0, "D", "bracketed")),
        ("It must be B since the others are wrong.", (1.0, "B", "standalone")),
        ("传输层", (1.0, "B", "option_text")),
        ("答案是网络层。", (0.0, "C", "option_text")),
        ("答案：C，不是传输层", (0.0, "C", "explicit")),  # a letter always wins over option text
        ("我不知道", (0.0, None, None)),
        ("", (0.0, None, None)),
        # the answer letter followed by prose about another option (or the article "A")
        ("正确答案是 B，A completely randomized design cannot separate the effects.", (1.0, "B", "explicit")),
        ("The answer is B. A completely randomized design is less precise.", (1.0, "B", "explicit")),
        ("答案：C，B项错误因为混淆了概念。", (0.0, "C", "explicit")),
    ],
)
def test_choice_on_generated_answers(output: str, expected: tuple[float, Any, str | None]) -> None:
    assert verdict(get_scorer("choice").score(FOUR, gen(output))) == expected


def test_choice_with_two_five_and_ten_options() -> None:
    choice = get_scorer("choice")
    two = mc("B", "true", "false")
    assert verdict(choice.score(two, gen("The answer is B."))) == (1.0, "B", "explicit")
    assert verdict(choice.score(two, gen("The answer is C."))) == (0.0, None, None)  # no option C
    assert verdict(choice.score(two, gen("False."))) == (1.0, "B", "option_text")

    five = mc("E", "1", "2", "3", "4", "none of these")
    assert verdict(choice.score(five, gen("The answer is (E)."))) == (1.0, "E", "explicit")
    assert verdict(choice.score(five, gen("答案：F"))) == (0.0, None, None)

    ten = mc("J", *(f"option {i}" for i in range(10)))
    assert ten.labels == "ABCDEFGHIJ"
    assert verdict(choice.score(ten, gen("I think the answer is J."))) == (1.0, "J", "explicit")
    assert verdict(choice.score(ten, gen("I think the answer is I."))) == (0.0, "I", "explicit")


def test_choice_needs_options() -> None:
    with pytest.raises(DataError, match="q1.*multiple-choice"):
        get_scorer("choice").score(free("B"), gen("B"))


# ---------------------------------------------------------------- choice: log-likelihoods


def test_letter_continuations_take_the_argmax_and_need_no_normalising() -> None:
    choice = get_scorer("choice")
    score = choice.score(FOUR, ll([-3.0, -1.0, -2.0, -5.0], [" A", " B", " C", " D"]))
    assert verdict(score) == (1.0, "B", "loglikelihood") and score.extra == {}
    # a prompt without continuations (a plain string) is read as letters
    score = choice.score(FOUR, ll([-3.0, -4.0, -2.0, -5.0]))
    assert verdict(score) == (0.0, "C", "loglikelihood") and score.extra == {}


def test_nan_never_wins_and_all_nan_is_no_answer() -> None:
    choice = get_scorer("choice")
    ten = mc("C", *(f"option {i}" for i in range(10)))
    lls = [-9.0, -8.0, -2.0, -7.0, math.nan, -6.0, -5.0, -4.0, -3.0, -9.5]
    assert verdict(choice.score(ten, ll(lls, [f" {c}" for c in ten.labels]))) == (1.0, "C", "loglikelihood")
    assert verdict(choice.score(FOUR, ll([math.nan] * 4))) == (0.0, None, None)


def test_option_text_continuations_add_acc_norm_per_utf8_byte() -> None:
    choice = get_scorer("choice")
    sample = mc("A", "a very long composite number", "2", "9", "15")
    continuations = [" a very long composite number", " 2", " 9", " 15"]  # 29, 2, 2 and 3 bytes
    # raw: B (-1.0); per byte: A -3/29 = -0.103 beats B -1/2, C -5/2, D -6/3
    score = choice.score(sample, ll([-3.0, -1.0, -5.0, -6.0], continuations))
    assert verdict(score) == (0.0, "B", "loglikelihood")
    assert score.extra == {"answer_norm": "A", "correct_norm": True}
    # raw: B; per byte: B -0.1/2 = -0.05 beats A -9/29 = -0.31, C -2.5, D -2.0
    score = choice.score(sample, ll([-9.0, -0.1, -5.0, -6.0], continuations))
    assert verdict(score) == (0.0, "B", "loglikelihood")
    assert score.extra == {"answer_norm": "B", "correct_norm": False}

    # Two options, Chinese: " 是" is 4 bytes, " 不是的，绝对不是" 1 + 8 * 3 = 25 bytes.
    yes_no = mc("B", "是", "不是的，绝对不是")
    score = choice.score(yes_no, ll([-2.0, -5.0], [" 是", " 不是的，绝对不是"]))
    # raw: A (-2.0); per byte: A -2/4 = -0.5, B -5/25 = -0.2 -> B
    assert verdict(score) == (0.0, "A", "loglikelihood")
    assert score.extra == {"answer_norm": "B", "correct_norm": True}


def test_log_likelihoods_must_match_the_options() -> None:
    with pytest.raises(DataError, match="q1: 3 log-likelihoods for 4 options"):
        get_scorer("choice").score(FOUR, ll([-1.0, -2.0, -3.0]))
    with pytest.raises(DataError, match="q1: 4 log-likelihoods for 3 continuations"):
        get_scorer("choice").score(FOUR, ll([-1.0, -2.0, -3.0, -4.0], [" x", " y", " z"]))


# ---------------------------------------------------------------- the moved helpers


def test_argmax_picks_the_most_likely_option() -> None:
    assert choice_from_loglikelihoods([-3.0, -1.0, -2.0, -5.0], "ABCD") == "B"
    assert choice_from_loglikelihoods((-9.0, -8.0, -7.0, -0.5), "ABCD") == "D"


def test_ties_go_to_the_first_option() -> None:
    assert choice_from_loglikelihoods([-1.0, -0.5, -0.5, -0.5], "ABCD") == "B"
    assert choice_from_loglikelihoods([-2.0, -2.0, -2.0, -2.0], "ABCD") == "A"


def test_nan_never_wins_in_the_argmax() -> None:
    assert choice_from_loglikelihoods([math.nan, -4.0, -3.0, math.nan], "ABCD") == "C"
    assert choice_from_loglikelihoods([math.nan, math.nan], "AB") is None


def test_fewer_scores_than_letters_use_the_first_letters() -> None:
    assert choice_from_loglikelihoods([-2.0, -1.0], "ABCD") == "B"
    with pytest.raises(ValueError):
        choice_from_loglikelihoods([-1.0] * 5, "ABCD")
    with pytest.raises(ValueError):
        choice_from_loglikelihoods([], "ABCD")


def test_length_normalised_choice_can_differ_from_raw_argmax() -> None:
    lls, lengths = [-4.0, -3.0, -9.0, -8.0], [4, 1, 3, 2]
    assert choice_from_loglikelihoods(lls, "ABCD") == "B"  # -3.0 is the largest raw score
    # per token: -1.0, -3.0, -3.0, -4.0 -> A
    assert choice_from_loglikelihoods_norm(lls, lengths, "ABCD") == "A"
    # ties after normalising go to the first: -1.0 == -2.0/2
    assert choice_from_loglikelihoods_norm([-5.0, -1.0, -2.0, -9.0], [1, 1, 2, 1], "ABCD") == "B"
    with pytest.raises(ValueError, match="lengths"):
        choice_from_loglikelihoods_norm([-1.0, -2.0], [1], "AB")


OPTIONS_ZH = {"A": "物理层", "B": "传输层", "C": "网络层", "D": "应用层"}
OPTIONS_EN = {"A": "15", "B": "150", "C": "a prime number", "D": "None of the above"}


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("传输层", OPTIONS_ZH, "B"),
        ("答案是传输层。", OPTIONS_ZH, "B"),
        ("  a Prime number. ", OPTIONS_EN, "C"),
        ("150", OPTIONS_EN, "B"),  # "15" is inside "150": the containing option is meant
        ("15", OPTIONS_EN, "A"),
        ("物理层和传输层都不对", OPTIONS_ZH, None),  # two options: no guess
        ("", OPTIONS_ZH, None),
        ("我不知道", OPTIONS_ZH, None),
        ("传输层，因为" + "它负责端到端的可靠传输，这是教科书上的标准定义和解释" * 2, OPTIONS_ZH, None),  # an essay
    ],
)
def test_match_option_text(text: str, options: dict[str, str], expected: str | None) -> None:
    assert match_option_text(text, options) == expected


# ---------------------------------------------------------------- exact


@pytest.mark.parametrize(
    ("output", "target", "params", "expected"),
    [
        ('"Paris."', "Paris", {}, (1.0, "paris", "exact")),
        ("  **Paris**  ", "paris", {}, (1.0, "paris", "exact")),
        ("Ｐａｒｉｓ", "Paris", {}, (1.0, "paris", "exact")),  # NFKC folds full-width letters
        ("New   York\n", "new york", {}, (1.0, "new york", "exact")),
        ("Paris", "paris", {"ignore_case": False}, (0.0, "Paris", "exact")),
        ("The capital is Paris.", "Paris", {}, (0.0, "the capital is paris", "exact")),
        ("NYC", ["New York", "NYC", "New York City"], {}, (1.0, "nyc", "exact")),
        ("Boston", ["New York", "NYC"], {}, (0.0, "boston", "exact")),
        ("42.", 42, {}, (1.0, "42", "exact")),
        ("29", 29.0, {}, (1.0, "29", "exact")),
        ("-5", "5", {}, (0.0, "-5", "exact")),  # a sign is not punctuation to strip
        ("Let me think.\nThe capital of France\n\nParis\n\n", "Paris", {"last_line": True}, (1.0, "paris", "exact")),
        ("Let me think.\nParis", "Paris", {}, (0.0, "let me think. paris", "exact")),
        ("", "Paris", {}, (0.0, None, None)),
        ('"".', "Paris", {}, (0.0, None, None)),
    ],
)
def test_exact(output: str, target: Any, params: dict[str, Any], expected: tuple[float, Any, str | None]) -> None:
    assert verdict(get_scorer("exact", params).score(free(target), gen(output))) == expected


# ---------------------------------------------------------------- regex


def test_regex_takes_the_last_match_by_default() -> None:
    output = "Answer: foo\nOn reflection, Answer: Bar."
    regex = get_scorer("regex", {"pattern": r"Answer: (\w+)"})
    assert verdict(regex.score(free("Bar"), gen(output))) == (1.0, "Bar", "regex")
    assert verdict(regex.score(free("bar"), gen(output))) == (0.0, "Bar", "regex")  # case kept by default
    first = get_scorer("regex", {"pattern": r"Answer: (\w+)", "match": "first"})
    assert verdict(first.score(free("foo"), gen(output))) == (1.0, "foo", "regex")


def test_regex_ignore_case_applies_to_matching_and_comparing() -> None:
    regex = get_scorer("regex", {"pattern": r"answer: (\w+)", "ignore_case": True})
    assert verdict(regex.score(free("bar"), gen("ANSWER: Bar"))) == (1.0, "bar", "regex")


def test_regex_groups() -> None:
    whole = get_scorer("regex", {"pattern": r"\d+ apples"})  # no groups: the whole match
    assert verdict(whole.score(free("3 apples"), gen("I have 3 apples."))) == (1.0, "3 apples", "regex")
    second = get_scorer("regex", {"pattern": r"(\w+)=(\w+)", "group": 2})
    assert verdict(second.score(free("7"), gen("x=1, y=7"))) == (1.0, "7", "regex")
    named = get_scorer("regex", {"pattern": r"final: (?P<ans>\S+)"})
    assert verdict(named.score(free("ok"), gen("final: ok"))) == (1.0, "ok", "regex")
    by_name = get_scorer("regex", {"pattern": r"(\d+) (?P<unit>\w+)", "group": "unit"})
    assert verdict(by_name.score(free(["km", "kilometres"]), gen("It is 5 km."))) == (1.0, "km", "regex")
    optional = get_scorer("regex", {"pattern": r"answer(?:: (\w+))?"})  # the group did not take part
    assert verdict(optional.score(free("x"), gen("no answer"))) == (0.0, None, None)


def test_regex_without_a_match_is_no_answer() -> None:
    regex = get_scorer("regex", {"pattern": r"Answer: (\w+)"})
    assert verdict(regex.score(free("x"), gen("I am not sure."))) == (0.0, None, None)
    assert verdict(regex.score(free("x"), gen(""))) == (0.0, None, None)


def test_regex_errors_name_the_pattern() -> None:
    with pytest.raises(ConfigError, match=r"pattern 'Answer: \(' is not a valid regular expression: missing \)"):
        get_scorer("regex", {"pattern": "Answer: ("})
    with pytest.raises(ConfigError, match=r"pattern '\(a\)\(b\)' has 2 group\(s\), no group 3"):
        get_scorer("regex", {"pattern": "(a)(b)", "group": 3})
    with pytest.raises(ConfigError, match=r"pattern '\(a\)' has no group named 'ans'"):
        get_scorer("regex", {"pattern": "(a)", "group": "ans"})
