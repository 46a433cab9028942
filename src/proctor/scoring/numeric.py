"""The `numeric` scorer: the final number of a worked answer against a numeric target.

The output is cut at a next question the model went on to invent, then the first of these
rules that finds a number gives the answer (each takes its last occurrence):

1. boxed         the last complete `\\boxed{...}`        "\\boxed{\\frac{1}{2}}"
2. hash          GSM8K's `#### N` at the end of a line    "#### 1,234"
3. answer_is     "(final) answer is N", "答案是 N"         "The answer is $18."
4. answer_colon  "Answer: N", "答案：N"                    "Final Answer: 0.5"
5. last_number   the last number anywhere

Numbers and targets compare exactly as rationals, so "29.00" equals 29 and "0.5" equals "1/2".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.scoring.base import BaseScorer, register

_NEXT_QUESTION = re.compile(r"\n[ \t]*\n\s*(?:Q|Question)\s*:")
# A number as written in an answer: sign, currency, thousands separators, a decimal or a
# fraction, a percent sign. The look-behind keeps "x2" and "v1.5" from reading as numbers
# (ASCII only: a number right after "是" must still count).
_NUMBER = (
    r"(?<![A-Za-z0-9_.])-?(?:\$\s?)?"
    r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:/\d+)?(?:\s?%)?"
)
_ANY_NUMBER = re.compile(_NUMBER)
_WHOLE_NUMBER = re.compile(rf"\s*({_NUMBER})\s*\.?\s*")
_HASH = re.compile(rf"####\s*({_NUMBER})[ \t]*\.?[ \t]*(?=\n|$)")
_ANSWER_IS = re.compile(rf"(?i:\b(?:final\s+)?answer\s+is|答案\s*(?:是|为))\s*:?\s*({_NUMBER})")
_ANSWER_COLON = re.compile(rf"(?i:\banswer|答案)\s*:\s*({_NUMBER})")
_BOXED = re.compile(r"\\boxed\s*\{")

# LaTeX inside an answer: "1{,}234" and "1\,234" are thousands separators, "\$" and "\%" signs.
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))")
_LATEX_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}\s*\{\s*(\d+(?:\.\d+)?)\s*\}")
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[!;: ]|\^\s*\{?\\circ\}?|\\left|\\right")


def _clean(text: str) -> str:
    text = unicodedata.normalize("NFKC", text)  # full-width digits and colons
    text = text.replace("\\$", "$").replace("\\%", "%").replace("**", "")
    text = _LATEX_THOUSANDS.sub(",", text)
    text = _LATEX_FRAC.sub(r"\1/\2", text)
    text = _LATEX_TEXT.sub(r"\1", text)
    return _LATEX_NOISE.sub("", text)


def _canonical(number: str) -> str:
    """The number as compared and stored: no currency, separators, spaces or percent sign."""
    return re.sub(r"[$,%\s]", "", number)


def to_fraction(number: str) -> Fraction | None:
    """The exact value of a number as written ("1,234", "$5", "0.50", "1/2"); None if it is not one."""
    try:
        return Fraction(_canonical(number))
    except (ValueError, ZeroDivisionError):
        return None


def _last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` whose braces close (an output cut short may leave one open)."""
    for opening in reversed(list(_BOXED.finditer(text))):
        depth, i = 1, opening.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            return text[opening.end() : i - 1]
    return None


def _boxed_number(content: str) -> str | None:
    """The number a box holds: all of it ("18"), or its only number ("18 dollars", "x = 5")."""
    whole = _WHOLE_NUMBER.fullmatch(content)
    if whole:
        return whole.group(1)
    numbers = _ANY_NUMBER.findall(content)
    return numbers[0] if len(numbers) == 1 else None


def extract_number(text: str | None) -> tuple[str | None, str | None]:
    """(the final number of an answer, the rule that found it); (None, None) when there is none.

    A box that holds no single number gives (its content, "boxed"): the model did answer,
    so no number elsewhere in its reasoning may stand in for the answer.
    """
    if not text:
        return None, None
    cut = _NEXT_QUESTION.search(text)
    if cut:
        text = text[: cut.start()]
    text = _clean(text)
    boxed = _last_boxed(text)
    if boxed is not None:
        number = _boxed_number(boxed)
        return (_canonical(number), "boxed") if number is not None else (boxed.strip(), "boxed")
    for rule, pattern in (("hash", _HASH), ("answer_is", _ANSWER_IS), ("answer_colon", _ANSWER_COLON)):
        matches = list(pattern.finditer(text))
        if matches:
            return _canonical(matches[-1].group(1)), rule
    numbers = _ANY_NUMBER.findall(text)
    if numbers:
        return _canonical(numbers[-1]), "last_number"
    return None, None


def _target_values(sample: Sample) -> list[Fraction]:
    """The acceptable values of the sample's target (a number, a string holding one, or a list)."""
    targets: list[Any] = list(sample.target) if isinstance(sample.target, (list, tuple)) else [sample.target]
    values: list[Fraction] = []
    for target in targets:
        value: Fraction | None = None
        if isinstance(target, bool):
            value = None  # True is an int to Python, never a numeric answer
        elif isinstance(target, int):
            value = Fraction(target)
        elif isinstance(target, float):
            value = Fraction(repr(target))  # 0.1 as written, not its binary approximation
        elif isinstance(target, str):
            value = to_fraction(_clean(target).strip().rstrip("."))
        if value is None:
            raise DataError(f"sample {sample.id}: target {target!r} is not a number (numeric scorer)")
        values.append(value)
    return values


@register
@dataclass(frozen=True)
class NumericScorer(BaseScorer):
    """The final number of the output (see the module docstring) against a numeric target."""

    name: ClassVar[str] = "numeric"
    revision: ClassVar[int] = 1

    def score(self, sample: Sample, record: Record) -> Score:
        targets = _target_values(sample)  # first: a bad target is an error even when no answer is found
        answer, rule = extract_number(record.output)
        if answer is None:
            return Score(value=0.0)
        value = to_fraction(answer)
        correct = value is not None and value in targets
        return Score(value=1.0 if correct else 0.0, answer=answer, rule=rule)
