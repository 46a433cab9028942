"""The `bbh` scorer (BIG-Bench Hard, 27 tasks): real-world outputs of every target kind, and every
gold target of the real files answered in the style of the task's own chain-of-thought exemplars.

Peers' documented failures are marked "peer:": BBH's `(?=.)` regex keeps "(B)." as the answer,
OpenCompass's fallback takes the first capital letter anywhere in the output.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.core import Record, Sample, Score
from proctor.scoring import get_scorer, scorer_names
from proctor.scoring.bbh import target_kind

BBH = SHARED_DATASETS / "bbh"
TASKS = 27


def sample(target: Any, question: str = "?") -> Sample:
    return Sample(id="q1", question=question, target=target)


def gen(output: str | None) -> Record:
    return Record(item_id="q1", prompt="the prompt", output=output, loglikelihoods=None)


def verdict(score: Score) -> tuple[float, Any, str | None]:
    return score.value, score.answer, score.rule


INVENTED = "\n\nQ: Today is Christmas Eve of 1937. What is the date tomorrow?\nA: Let's think step by step. So the answer is (A)."

CASES: list[tuple[str, str | None, tuple[float, Any, str]]] = [
    # ---------------- multiple choice: the letter of the last "answer is"
    ("(B)", "Let's think step by step.\nToday is 12/24/1937, so tomorrow is 12/25/1937. So the answer is (B).", (1.0, "(B)", "answer_is")),
    ("(B)", "So the answer is (B).", (1.0, "(B)", "answer_is")),  # peer: "(B)." is not the answer, "B" is
    ("(B)", "the answer is B", (1.0, "(B)", "answer_is")),
    ("(B)", "Hence the answer is B.", (1.0, "(B)", "answer_is")),
    ("(C)", "The answer is: (C)", (1.0, "(C)", "answer_is")),
    ("(C)", "answer is: (C) Yellow", (1.0, "(C)", "answer_is")),
    ("(D)", "**Answer:** **(D)**", (1.0, "(D)", "answer_is")),
    ("(D)", "Therefore, the answer is **(D) The Incredible Shrinking Man**.", (1.0, "(D)", "answer_is")),
    ("(D)", "THE ANSWER IS (D).", (1.0, "(D)", "answer_is")),
    ("(E)", "Bob ends up with the pink ball, so the answer is option (E).", (1.0, "(E)", "answer_is")),
    ("(B)", "The answer is choice B.", (1.0, "(B)", "answer_is")),
    ("(B)", "The answer is: Option B", (1.0, "(B)", "answer_is")),
    ("(B)", "the answer is [B]", (1.0, "(B)", "answer_is")),
    ("(B)", "The answer is **B) 12/11/1937**", (1.0, "(B)", "answer_is")),
    ("(B)", "The answer is:\n\n**(B) 12/11/1937**", (1.0, "(B)", "answer_is")),
    ("(B)", "Answer: Let's think step by step. Tomorrow is 12/25/1937. So the answer is (B).", (1.0, "(B)", "answer_is")),
    ("(B)", "The correct answer is (b).", (1.0, "(B)", "answer_is")),
    ("(A)", "Answer: A", (1.0, "(A)", "answer_is")),
    ("(B)", "The answer is B (12/11/1937).", (1.0, "(B)", "answer_is")),
    ("(A)", "The answer is A - the adjective order is opinion, size, age.", (1.0, "(A)", "answer_is")),
    ("(C)", "So the answer is (C) because Bob ends with the red ball.", (1.0, "(C)", "answer_is")),
    ("(Q)", "The remaining items are 17. So the answer is (Q).", (1.0, "(Q)", "answer_is")),  # 18 options: A..R
    ("(R)", "Final answer: (R)", (1.0, "(R)", "answer_is")),
    ("(C)", "答案是（C）。", (1.0, "(C)", "answer_is")),  # full-width brackets
    ("(B)", "The answer is $\\boxed{B}$.", (1.0, "(B)", "answer_is")),
    ("(A)", "(A) looks right at first, but (C) fits every clue.\nSo the answer is (C).", (0.0, "(C)", "answer_is")),
    ("(C)", "So the answer is (A). Wait, let me check again: Alice is last. So the answer is (C).", (1.0, "(C)", "answer_is")),
    ("(B)", "So the answer is (B).\nNote that the answer is not (A), which swaps the roles.", (1.0, "(B)", "answer_is")),
    ("(B)", "So the answer is (B).\n\nI hope this helps!", (1.0, "(B)", "answer_is")),
    ("(D)", "<think>Maybe (A)? No. The answer is (A) only if ...</think>\nThe answer is (D).", (1.0, "(D)", "answer_is")),
    # A thought cut off before its end holds no answer, however sure it sounds.
    ("(D)", "<think>So the answer is (D).", (0.0, None, "none")),
    ("(B)", "So the answer is (B)." + INVENTED, (1.0, "(B)", "answer_is")),  # the invented question is cut
    ("(A)", "Tomorrow is 12/25/1937." + INVENTED, (0.0, None, "none")),  # its made-up answer never counts
    # boxed, then a final standalone option
    ("(E)", "Eve is the second from the left.\n\n\\boxed{(E)}", (1.0, "(E)", "boxed")),
    ("(B)", "Comparing the dates, 12/11/1937 is the one.\n(B) 12/11/1937", (1.0, "(B)", "last_option")),
    ("(C)", "Therefore, the best choice is (C).", (1.0, "(C)", "last_option")),
    ("(B)", "The answer is I think (B)", (1.0, "(B)", "last_option")),  # "I" is no option
    ("(B)", "(B)", (1.0, "(B)", "last_option")),
    ("(C)", "**(C)**", (1.0, "(C)", "last_option")),
    # no answer: never a guess
    ("(A)", "After considering all of the options, I am not sure.", (0.0, None, "none")),  # peer: "A" of "After"
    ("(A)", "Alice, Bob and Claire swap. Because Alice holds the ball, ...", (0.0, None, "none")),
    ("(A)", "The answer is A bit unclear; options (B) and (C) both fit.", (0.0, None, "none")),
    ("(C)", "Options:\n(A) red\n(B) blue\n(C) green", (0.0, None, "none")),  # an echoed list of options
    ("(D)", "(A) and (D) are both possible.", (0.0, None, "none")),
    ("(B)", "I would pick the one in (B) if the dates were right, but they are not", (0.0, None, "none")),
    ("(B)", "", (0.0, None, "none")),
    ("(B)", None, (0.0, None, "none")),
    # ---------------- True/False, Yes/No, valid/invalid: case-insensitive words
    ("False", "Z = not ( ( A ) ) = not ( ( True ) ) = not True = False. So the answer is False.", (1.0, "False", "answer_is")),
    ("True", "So the answer is **True**.", (1.0, "True", "answer_is")),
    ("True", "So the answer is False.", (0.0, "False", "answer_is")),
    ("True", "the answer is true", (1.0, "true", "answer_is")),
    ("Yes", "So the answer is Yes.", (1.0, "Yes", "answer_is")),
    ("No", "the answer is: No, because the CEO did not intend to harm the environment.", (1.0, "No", "answer_is")),
    ("yes", "Joao Moutinho is a soccer player. So the answer is Yes.", (1.0, "Yes", "answer_is")),
    ("no", "So the answer is \"no\".", (1.0, "no", "answer_is")),
    ("valid", "So the answer is invalid.", (0.0, "invalid", "answer_is")),  # "invalid" is not "valid"
    ("invalid", "So the answer is invalid.", (1.0, "invalid", "answer_is")),
    ("valid", "The argument is deductively valid.\nAnswer: valid", (1.0, "valid", "answer_is")),
    ("Yes", "Sherrie tells the truth.\n\n**Yes**", (1.0, "Yes", "last_line")),
    ("False", "So the answer is False." + INVENTED.replace("(A)", "True"), (1.0, "False", "answer_is")),
    ("True", "The expression evaluates to True, I think, unless the brackets differ.", (0.0, None, "none")),
    ("Yes", "the answer is neither yes nor no", (0.0, None, "none")),
    # ---------------- numbers: compared as numbers
    ("24", "(-1 + 9) * 3 = 8 * 3 = 24. So the answer is 24.", (1.0, "24", "answer_is")),
    ("-50", "So the answer is −50.", (1.0, "-50", "answer_is")),  # U+2212 minus
    ("-11520", "So the answer is -11,520.", (1.0, "-11520", "answer_is")),
    ("8", "I have a violin, two trumpets and five flutes: 1 + 2 + 5 = 8. So the answer is 8.", (1.0, "8", "answer_is")),
    ("6", "So the answer is six.", (1.0, "6", "answer_is")),
    ("63", "So the answer is 36.", (0.0, "36", "answer_is")),
    ("24", "The answer is 24.0", (1.0, "24.0", "answer_is")),
    ("15", "\\boxed{15}", (1.0, "15", "boxed")),
    ("15", "Total = 7 + 8\n\n**15**", (1.0, "15", "last_line")),
    ("15", "There are 15 vegetables, I counted 7 + 8.", (0.0, None, "none")),  # no last number for BBH
    # ---------------- dyck_languages: closing brackets, spaces aside
    ("] } ]", 'So, we need "]", "}", "]". So the answer is ] } ].', (1.0, "] } ]", "answer_is")),
    ("] } ]", "So the answer is ]}].", (1.0, "] } ]", "answer_is")),
    ("] } ]", "So the answer is `] } ]`", (1.0, "] } ]", "answer_is")),
    ("> )", 'So the answer is "]", ")"', (0.0, "] )", "answer_is")),
    ("] ] >", "So the answer is ] ].", (0.0, "] ]", "answer_is")),
    (") )", "the answer is ) ) (closing both parentheses)", (1.0, ") )", "answer_is")),
    ("] ] >", "The stack is empty now.\n] ] >", (1.0, "] ] >", "last_line")),
    # ---------------- word_sorting: the words in order, case and commas aside
    ("costume counterpart oven", 'Hence, we have ["costume" < "counterpart"] < "oven". So the answer is costume counterpart oven.', (1.0, "costume counterpart oven", "answer_is")),
    ("apple banana cherry", "So the answer is: apple, banana, cherry.", (1.0, "apple banana cherry", "answer_is")),
    ("apple banana cherry", "So the answer is:\n\n1. apple\n2. banana\n3. cherry", (1.0, "apple banana cherry", "answer_is")),
    ("apple banana cherry", "So the answer is Apple Banana Cherry. These are now in alphabetical order.", (1.0, "apple banana cherry", "answer_is")),
    ("apple banana cherry", "So the answer is apple < banana < cherry.", (1.0, "apple banana cherry", "answer_is")),
    ("apple banana cherry", "So the answer is apple cherry banana.", (0.0, "apple cherry banana", "answer_is")),
    ("it&t o'connor you've", "So the answer is it&t o'connor you've.", (1.0, "it&t o'connor you've", "answer_is")),
    # ---------------- other text (the odd targets of movie_recommendation and ruin_names)
    ("Monsters, Inc", "So the answer is Monsters, Inc.", (1.0, "monsters, inc", "answer_is")),
    ("Monsters, Inc", "So the answer is (A).", (0.0, "(a)", "answer_is")),
    ("dearth, wind, & fire", "So the answer is 'dearth, wind, & fire'.", (1.0, "dearth, wind, & fire", "answer_is")),
]


@pytest.mark.parametrize(("target", "output", "expected"), CASES, ids=[str(i) for i in range(len(CASES))])
def test_bbh(target: str, output: str | None, expected: tuple[float, Any, str]) -> None:
    assert verdict(get_scorer("bbh").score(sample(target), gen(output))) == expected


def test_there_are_enough_real_world_cases() -> None:
    assert len(CASES) >= 60


def test_a_completed_dyck_sequence_is_read_as_its_closing_part() -> None:
    bbh = get_scorer("bbh")
    question = "Complete the rest of the sequence, making sure that the parentheses are closed properly. Input: < [ ["
    assert verdict(bbh.score(sample("] ] >", question), gen("So the answer is < [ [ ] ] >."))) == (1.0, "] ] >", "answer_is")
    assert verdict(bbh.score(sample("] ] >", question), gen("So the answer is < [ ] ] >."))) == (0.0, None, "none")
    assert verdict(bbh.score(sample("] ] >", "no input given"), gen("So the answer is < [ [ ] ] >."))) == (0.0, None, "none")


@pytest.mark.parametrize(
    ("target", "kind"),
    [
        ("(A)", "choice"), ("(R)", "choice"), ("B", "choice"), ("True", "boolean"), ("no", "boolean"),
        ("invalid", "boolean"), ("24", "number"), ("-11520", "number"), (24, "number"), ("] ) }", "dyck"),
        (">", "dyck"), ("apple banana cherry", "words"), ("banana apple", "text"), ("Monsters, Inc", "text"),
        ("(S)", "text"),
    ],
)
def test_target_kinds(target: Any, kind: str) -> None:
    assert target_kind(target) == kind


def test_bbh_is_registered_and_explains_itself() -> None:
    assert "bbh" in scorer_names()
    bbh = get_scorer("bbh")
    assert bbh.name == "bbh" and bbh.version.startswith("3.")
    score = bbh.score(sample("(B)"), gen("So the answer is (B)." + INVENTED))
    assert score.explanation == "choice answer; cut at an invented next question"
    assert bbh.score(sample(["Yes", "yes"]), gen("So the answer is YES.")).value == 1.0  # a list of targets


# ---------------------------------------------------------------- the real files


def _tasks() -> dict[str, list[dict[str, str]]]:
    files = sorted((BBH / "bbh").glob("*.json"))
    return {f.stem: json.loads(f.read_text("utf-8"))["examples"] for f in files}


@needs_shared_data
def test_every_gold_target_scores_right_in_the_exemplars_style_and_wrong_for_another() -> None:
    tasks = _tasks()
    assert len(tasks) == TASKS
    bbh = get_scorer("bbh")
    for task, examples in tasks.items():
        golds = sorted({e["target"] for e in examples})
        for i, example in enumerate(examples):
            item = Sample(id=f"{task}-{i}", question=example["input"], target=example["target"])
            right = bbh.score(item, gen(f"Let's think step by step.\nSo the answer is {example['target']}."))
            assert (right.value, right.rule) == (1.0, "answer_is"), (task, example["target"], right)
            other = golds[(golds.index(example["target"]) + 1) % len(golds)]
            wrong = bbh.score(item, gen(f"Let's think step by step.\nSo the answer is {other}."))
            assert wrong.value == 0.0, (task, example["target"], other, wrong)


@needs_shared_data
def test_the_exemplars_own_reasoning_scores_right_even_when_the_next_exemplars_follow() -> None:
    """Each cot-prompt exemplar's answer as a model output, followed by the rest of the prompt (the
    next exemplars, as a model that runs on writes them): its own answer, never a later one."""
    bbh = get_scorer("bbh")
    prompts = sorted((BBH / "cot-prompts").glob("*.txt"))
    assert len(prompts) == TASKS
    checked = 0
    for path in prompts:
        body = path.read_text("utf-8").split("-----\n", 1)[1]
        blocks = re.split(r"\n\n(?=Q: )", body.strip())[1:]
        for i, block in enumerate(blocks):
            question, reasoning = block.split("\nA: ", 1)
            gold = re.findall(r"So the answer is (.*)\.$", reasoning.strip())[0]
            rest = "\n\n".join(blocks[i + 1 :])
            output = reasoning + ("\n\n" + rest if rest else "")
            score = bbh.score(Sample(id=path.stem, question=question[3:], target=gold), gen(output))
            assert (score.value, score.rule) == (1.0, "answer_is"), (path.stem, gold, score)
            checked += 1
    assert checked == 3 * TASKS


def test_registry_lists_the_reasoning_scorers() -> None:
    assert {"bbh", "numeric"} <= set(scorer_names())
