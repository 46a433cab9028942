r"""The math_equiv scorer: extraction, Math-Verify equivalences, the string fallback, timeouts, MATH-500 golds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from proctor.core import Record, Sample, Score
from proctor.errors import ConfigError, DataError
from proctor.scoring import get_scorer
from proctor.scoring.hendrycks import is_equiv, normalize_answer
from proctor.scoring.math_equiv import MathEquivScorer, _verifier, extract_math_answer, shutdown_verifiers
from proctor.scoring.stage import score_records

from shared_data import SHARED_DATASETS

pytest.importorskip("math_verify")

MATH500 = SHARED_DATASETS / "math500/prm800k/math_splits/test.jsonl"


@pytest.fixture(scope="module")
def scorer() -> MathEquivScorer:
    built = get_scorer("math_equiv")
    assert isinstance(built, MathEquivScorer)
    yield built
    shutdown_verifiers()


def score(scorer: MathEquivScorer, gold: object, output: str | None) -> Score:
    return scorer.score(Sample("s1", "q", gold), Record("s1", "p", output, None))


# --------------------------------------------------------------------------------------------- extraction

@pytest.mark.parametrize(
    ("output", "answer", "rule"),
    [
        ("so x = 3. \\boxed{3}", "3", "boxed"),
        ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{1}{\\sqrt{2}}", "boxed"),
        ("first \\boxed{2}, then rechecking: \\boxed{4}.", "4", "boxed"),
        ("$\\boxed{\\{1,2\\}}$", "\\{1,2\\}", "boxed"),  # escaped set braces do not close the box
        ("\\fbox{7}", "7", "boxed"),
        ("so the answer is $\\boxed 5$.", "5", "boxed"),
        ("\\boxed{12} ... and then cut off \\boxed{1", "12", "boxed"),
        ("The answer is 5.", "5", "answer_is"),
        ("The final answer is $\\frac{1}{2}$. I hope it is correct.", "\\frac{1}{2}", "answer_is"),
        ("Thus the answer is \\(x^2+1\\)", "x^2+1", "answer_is"),
        ("Work.\nFinal Answer: 0.5", "0.5", "answer_colon"),
        ("**Answer:** $12$", "12", "answer_colon"),
        ("We get 3, then 4, then 5.", None, None),
        ("", None, None),
        (None, None, None),
        ("\\boxed{}", None, None),
        ("\\boxed{3}\n\nQuestion: what is 1+1?\nThe answer is \\boxed{2}", "3", "boxed"),
    ],
)
def test_extraction(output: str | None, answer: str | None, rule: str | None) -> None:
    assert extract_math_answer(output) == (answer, rule)


# --------------------------------------------------------------------------------------------- string fallback

@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [
        ("\\frac12", "\\frac{1}{2}", True),
        ("\\dfrac{1}{2}", "0.5", True),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
        ("90^\\circ", "90", True),
        ("\\$18.90", "18.90", True),
        ("10\\%", "10", True),
        ("\\text{(C)}", "C", True),
        ("5 \\text{ cm}", "5", True),
        ("x = 7", "7", True),
        ("\\sqrt2", "\\sqrt{2}", True),
        ("3/4", "\\frac{3}{4}", True),
        ("\\text{Devon}", "Devon", True),
        ("2", "3", False),
        ("", "", False),
    ],
)
def test_hendrycks_normalisation(a: str, b: str, equal: bool) -> None:
    assert is_equiv(a, b) is equal
    assert is_equiv(None, a) is False


def test_normalise_keeps_maths() -> None:
    assert normalize_answer("\\frac{1}{\\sqrt{2}}") == "\\frac{1}{\\sqrt{2}}"
    assert normalize_answer(" .5 ") == "\\frac{1}{2}"


# --------------------------------------------------------------------------------------------- equivalences

@pytest.mark.parametrize(
    ("gold", "answer"),
    [
        ("\\frac12", "0.5"),
        ("\\frac{1}{2}", "\\dfrac{1}{2}"),
        ("0.5", "\\frac{1}{2}"),
        ("10\\%", "0.1"),
        ("10\\%", "10"),  # MATH asks "what percent": a bare 10 is the intended answer
        ("10\\%", "10\\%"),
        ("x^2+7x+10", "(x+2)(x+5)"),
        ("(x+2)(x+5)", "x^2+7x+10"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\frac{\\pi}{2})"),
        ("[1,3)", "[1, 3)"),
        ("(-\\infty,0)\\cup(1,\\infty)", "(-\\infty, 0) \\cup (1, \\infty)"),
        ("\\text{(C)}", "C"),
        ("\\text{(C)}", "(C)"),
        ("\\{1,2,3\\}", "\\{3,2,1\\}"),
        ("1, -2", "-2, 1"),
        ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}"),
        ("3\\sqrt{2}", "\\sqrt{18}"),
        ("5", "x = 5"),
        ("90^\\circ", "90"),
        ("\\$32,348", "32348"),
        ("\\frac{\\sqrt{3}}{2}", "\\frac{1}{2}\\sqrt{3}"),
        ("\\text{Devon}", "\\text{Devon}"),
    ],
)
def test_math_verify_equivalences(scorer: MathEquivScorer, gold: str, answer: str) -> None:
    result = score(scorer, gold, f"Reasoning... so the result is \\boxed{{{answer}}}.")
    assert (result.value, result.answer) == (1.0, answer), result


@pytest.mark.parametrize(
    ("gold", "answer"),
    [
        ("[1,3)", "(1,3]"),
        ("[1,3)", "[1,3]"),
        ("\\frac{1}{3}", "0.33"),
        ("\\{1,2\\}", "\\{1,3\\}"),
        ("x^2+7x+10", "x^2+7x+11"),
        ("\\text{(C)}", "D"),
        ("10\\%", "0.2"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "(\\frac{\\pi}{2}, 3)"),
    ],
)
def test_close_but_wrong(scorer: MathEquivScorer, gold: str, answer: str) -> None:
    result = score(scorer, gold, f"\\boxed{{{answer}}}")
    assert (result.value, result.rule) == (0.0, "math_verify"), result


def test_gold_is_passed_first(scorer: MathEquivScorer) -> None:
    # Math-Verify reads an assignment as its value only on the prediction side: gold 5 takes "x = 5".
    assert score(scorer, "5", "\\boxed{x = 5}").value == 1.0


def test_list_target_and_numbers(scorer: MathEquivScorer) -> None:
    assert score(scorer, ["4", "-4"], "\\boxed{-4}").value == 1.0
    assert score(scorer, 12, "\\boxed{12}").value == 1.0
    assert score(scorer, 0.25, "\\boxed{\\frac14}").value == 1.0
    with pytest.raises(DataError, match="not a maths answer"):
        score(scorer, "", "\\boxed{1}")


def test_string_fallback_gives_credit_math_verify_cannot(scorer: MathEquivScorer) -> None:
    # A bare word answer Math-Verify reads as a product of symbols; the strings still match.
    result = score(scorer, "\\text{east}", "\\boxed{\\text{ east}}")
    assert result.value == 1.0 and result.rule in {"math_verify", "string"}


def test_no_answer(scorer: MathEquivScorer) -> None:
    assert score(scorer, "5", "I am not sure how to solve this.") == Score(value=0.0)
    assert score(scorer, "5", "") == Score(value=0.0)


# --------------------------------------------------------------------------------------------- 60+ realistic outputs

REAL_WORLD: list[tuple[str, str, float]] = [
    ("3", "We have $2x + 1 = 7$, so $2x = 6$ and $x = 3$. Therefore $\\boxed{3}$.", 1.0),
    ("3", "Solving, $x = \\boxed{3}$.", 1.0),
    ("3", "Solving gives $x=3$.\n\nThe answer is $\\boxed{x = 3}$", 1.0),
    ("3", "So x is 2... wait, recheck: \\boxed{2}. Actually the correct value is \\boxed{3}.", 1.0),
    ("3", "First guess \\boxed{3}, but after checking, \\boxed{4}.", 0.0),
    ("\\frac{1}{\\sqrt{2}}", "The cosine is $\\boxed{\\frac{1}{\\sqrt{2}}}$.", 1.0),
    ("\\frac{1}{\\sqrt{2}}", "The cosine is $\\boxed{\\frac{\\sqrt{2}}{2}}$.", 1.0),
    ("\\frac{1}{\\sqrt{2}}", "Numerically $\\boxed{0.7071067811865476}$.", 1.0),
    ("\\frac{1}{\\sqrt{2}}", "Numerically $\\boxed{0.7}$.", 0.0),
    ("\\frac{14}{3}", "$$\\boxed{\\dfrac{14}{3}}$$", 1.0),
    ("\\frac{14}{3}", "$\\boxed{4\\frac{2}{3}}$", 1.0),
    ("\\frac{14}{3}", "$\\boxed{14/3}$", 1.0),
    ("\\frac{14}{3}", "$\\boxed{\\frac{3}{14}}$", 0.0),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "So $(r,\\theta) = \\boxed{\\left(3, \\frac{\\pi}{2}\\right)}$.", 1.0),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "The polar coordinates are $\\boxed{(3, \\pi/2)}$.", 1.0),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "The polar coordinates are $\\boxed{(3, 90^\\circ)}$.", 0.0),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "The polar coordinates are $\\boxed{(3, \\pi)}$.", 0.0),
    ("10\\%", "The price dropped by $\\boxed{10\\%}$.", 1.0),
    ("10\\%", "The price dropped by \\boxed{10} percent.", 1.0),
    ("10\\%", "The answer is 10%.", 1.0),
    ("10\\%", "The price dropped by $\\boxed{20\\%}$.", 0.0),
    ("\\text{(C)}", "Checking each option, only (C) works. \\boxed{\\text{(C)}}", 1.0),
    ("\\text{(C)}", "Only option C works.\n\nAnswer: C", 1.0),
    ("\\text{(C)}", "\\boxed{(C)}", 1.0),
    ("\\text{(C)}", "\\boxed{\\textbf{(C)}}", 1.0),
    ("\\text{(C)}", "\\boxed{B}", 0.0),
    ("[1,3)", "The solution set is $\\boxed{[1, 3)}$.", 1.0),
    # Math-Verify compares a set with a relation only when the prediction is the set; MATH asks
    # for interval notation, so an inequality for an interval gold is wrong.
    ("[1,3)", "The solution set is $\\boxed{1 \\le x < 3}$.", 0.0),
    ("[1,3)", "The solution set is $\\boxed{[1, 3]}$.", 0.0),
    ("(-\\infty, -2] \\cup [3, \\infty)", "$x \\in \\boxed{(-\\infty,-2]\\cup[3,\\infty)}$", 1.0),
    ("(-\\infty, -2] \\cup [3, \\infty)", "$\\boxed{(-\\infty,-2)\\cup(3,\\infty)}$", 0.0),
    ("1, -2", "The roots are $\\boxed{-2, 1}$.", 1.0),
    ("1, -2", "The roots are $x=1$ and $x=-2$, so $\\boxed{1,-2}$.", 1.0),
    ("1, -2", "The roots are $\\boxed{1, 2}$.", 0.0),
    ("x^2+7x+10", "Expanding, $\\boxed{(x+2)(x+5)}$.", 1.0),
    ("x^2+7x+10", "Expanding, $\\boxed{x^2 + 7x + 10}$.", 1.0),
    ("x^2+7x+10", "Expanding, $\\boxed{x^2 + 7x + 12}$.", 0.0),
    ("\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "$\\boxed{\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}}$", 1.0),
    ("\\begin{pmatrix} 2 \\\\ -1 \\end{pmatrix}", "$\\boxed{\\begin{pmatrix} -1 \\\\ 2 \\end{pmatrix}}$", 0.0),
    ("\\$18.90", "She pays $\\boxed{\\$18.90}$.", 1.0),
    ("\\$18.90", "She pays \\boxed{18.9} dollars.", 1.0),
    ("\\$18.90", "She pays $\\boxed{\\$18.80}$.", 0.0),
    ("90^\\circ", "The angle is $\\boxed{90^\\circ}$.", 1.0),
    ("90^\\circ", "The angle is $\\boxed{90}$ degrees.", 1.0),
    ("90^\\circ", "The angle is $\\boxed{45^\\circ}$.", 0.0),
    ("5\\sqrt{2}", "The distance is $\\sqrt{50} = \\boxed{5\\sqrt{2}}$.", 1.0),
    ("5\\sqrt{2}", "The distance is $\\boxed{\\sqrt{50}}$.", 1.0),
    ("5\\sqrt{2}", "The distance is $\\boxed{5\\sqrt{3}}$.", 0.0),
    ("5", "The answer is 5", 1.0),
    ("5", "Thus, the final answer is $5$. I hope it is correct.", 1.0),
    ("5", "Final Answer: The final answer is $5$. I hope it is correct.", 1.0),
    ("5", "**Final Answer**\n\\[\n\\boxed{5}\n\\]", 1.0),
    ("5", "I cannot determine this.", 0.0),
    ("5", "The answer is 6", 0.0),
    ("2\\pi", "The period is $\\boxed{2\\pi}$.", 1.0),
    ("2\\pi", "The period is $\\boxed{6.283185307}$.", 1.0),
    ("2\\pi", "The period is $\\boxed{\\pi}$.", 0.0),
    ("\\text{Devon}", "So the winner is \\boxed{\\text{Devon}}.", 1.0),
    ("\\text{Devon}", "So the winner is \\boxed{\\text{Evan}}.", 0.0),
    ("-\\frac{1}{2}", "Thus $\\cos\\theta = \\boxed{-\\tfrac12}$.", 1.0),
    ("-\\frac{1}{2}", "Thus $\\boxed{-0.5}$.", 1.0),
    ("-\\frac{1}{2}", "Thus $\\boxed{\\frac{1}{2}}$.", 0.0),
    ("\\{1,2,3\\}", "The set is $\\boxed{\\{1, 2, 3\\}}$.", 1.0),
    ("\\{1,2,3\\}", "The set is $\\boxed{\\{1, 2\\}}$.", 0.0),
    ("1.5", "so $\\boxed{\\frac{3}{2}}$", 1.0),
    ("1.5", "so $\\boxed{1.50}$", 1.0),
    ("1.5", "so $\\boxed{\\frac{3}{4}}$", 0.0),
]


def test_real_world_outputs_in_the_pool() -> None:
    """Through the scoring stage's process pool (2 workers), as a run scores them."""
    assert len(REAL_WORLD) >= 64  # the stage uses its pool from 64 records
    scorer = get_scorer("math_equiv")
    pairs = [(Sample(f"s{i}", "q", gold), Record(f"s{i}", "p", out, None)) for i, (gold, out, _) in enumerate(REAL_WORLD)]
    scores = score_records(scorer, pairs, workers=2)
    wrong = [(gold, out, s) for (gold, out, want), s in zip(REAL_WORLD, scores) if s.value != want]
    assert not wrong, wrong


# --------------------------------------------------------------------------------------------- timeouts

def test_pathological_answer_times_out_without_stalling_others() -> None:
    scorer = get_scorer("math_equiv", {"timeout": 1.0, "kill_grace": 1.0})
    assert isinstance(scorer, MathEquivScorer)
    score(scorer, "1", "\\boxed{1}")  # warm the verifier
    started = time.monotonic()
    slow = score(scorer, "5", "After a long computation: $\\boxed{9^{9^{9^{9}}}}$")
    elapsed = time.monotonic() - started
    assert (slow.value, slow.rule) == (0.0, "timeout") and "ran past 1 s" in slow.explanation
    assert elapsed < 1.0 + 1.0 + 1.5  # timeout + kill grace, and room for a busy CI box
    started = time.monotonic()
    assert score(scorer, "\\frac12", "\\boxed{0.5}").value == 1.0  # the next item is unaffected
    assert time.monotonic() - started < 2.5  # a fresh verifier, not a stall


def test_stuck_verifier_is_killed_and_replaced() -> None:
    """A check stuck where no signal reaches (C code) is killed after timeout + kill_grace."""
    scorer = get_scorer("math_equiv", {"timeout": 0.5, "kill_grace": 0.5, "memory_mb": 2048})
    assert isinstance(scorer, MathEquivScorer)
    verifier = _verifier(2048)
    assert score(scorer, "1", "\\boxed{1}").value == 1.0
    old_pid = verifier.proc.pid if verifier.proc else None
    started = time.monotonic()
    reply = verifier.check("1", "1", 0.5, 0.5, sleep=60)  # the verifier sleeps: only a kill ends it
    assert reply["killed"] and reply["timed_out"]
    assert time.monotonic() - started < 2.5  # 1 s of timeout + grace, not the 60 s sleep
    assert verifier.kills == 1 and verifier.proc is not None and verifier.proc.pid != old_pid
    assert score(scorer, "\\frac12", "\\boxed{0.5}").value == 1.0  # the replacement answers


def test_timeout_still_gives_string_credit(scorer: MathEquivScorer) -> None:
    fast = get_scorer("math_equiv", {"timeout": 1.0})
    result = score(fast, "9^{9^{9^{9}}}", "\\boxed{9^{9^{9^{9}}}}")
    assert result.value == 1.0 and result.rule in {"math_verify", "timeout"}


# --------------------------------------------------------------------------------------------- bad golds, config

def test_unparseable_gold_is_reported_not_silently_wrong(scorer: MathEquivScorer) -> None:
    result = score(scorer, "\\frac{1}{", "\\boxed{\\frac{1}{2}}")  # a gold cut short
    assert (result.value, result.rule) == (0.0, "gold_unparsed")
    assert "dataset error" in result.explanation and "\\\\frac{1}{" in result.explanation
    same = score(scorer, "\\sqrt{}", "\\boxed{\\sqrt{}}")  # the strings match: no penalty for the dataset's fault
    assert (same.value, same.rule) == (1.0, "gold_unparsed")


def test_params_are_checked() -> None:
    with pytest.raises(ConfigError, match="timeout"):
        get_scorer("math_equiv", {"timeout": 0})
    with pytest.raises(ConfigError, match="no param"):
        get_scorer("math_equiv", {"timeot": 3})
    assert get_scorer("math_equiv", {"timeout": 2}).version != get_scorer("math_equiv").version


def test_importable_without_math_verify() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('math_verify', 'sympy', 'latex2sympy2_extended'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from proctor.scoring import get_scorer, scorer_names\n"
        "assert 'math_equiv' in scorer_names()\n"
        "from proctor.errors import ConfigError\n"
        # Built (so every built-in spec validates on a core install); what is missing is said
        # only for the datasets of a run.
        "print(get_scorer('math_equiv').missing_extra())\n"
        "assert 'sympy' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "pip install 'proctor[math]'" in done.stdout


# --------------------------------------------------------------------------------------------- MATH-500

@pytest.mark.skipif(not MATH500.exists(), reason="MATH-500 is not in the shared datasets")
def test_every_math500_gold_matches_itself_boxed() -> None:
    rows = [json.loads(line) for line in MATH500.read_text().splitlines() if line.strip()]
    assert len(rows) == 500
    scorer = get_scorer("math_equiv")
    pairs = [
        (Sample(row["unique_id"], row["problem"], row["answer"]),
         Record(row["unique_id"], "p", f"Solution...\nTherefore the answer is $\\boxed{{{row['answer']}}}$.", None))
        for row in rows
    ]
    scores = score_records(scorer, pairs, workers=2)
    failures = [(row["answer"], s) for row, s in zip(rows, scores) if s.value != 1.0]
    assert failures == []
    by_rule: dict[str | None, int] = {}
    for s in scores:
        by_rule[s.rule] = by_rule.get(s.rule, 0) + 1
    assert by_rule.get("math_verify", 0) >= 495, by_rule
