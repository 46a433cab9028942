"""The `numeric` scorer: the final number of a worked answer against a numeric target (GSM8K, MATH).

Before any rule runs, the output is trimmed to the model's own answer: reasoning is dropped by
proctor.reasoning.split_answer (a thought that never closed, or with nothing after it, has no
answer: it is never read for a number), and the text is cut where
the model went on to invent a next question (a line starting `Q:`, `Question:`, `Problem:` or
`问题：` after some text of its own). Then the first of these rules that finds a number gives
the answer (each takes its last occurrence):

1. boxed         the last brace-balanced `\\boxed{...}` / `\\fbox{...}`   "\\boxed{\\frac{1}{2}}"
2. hash          GSM8K's `#### N` (not a heading "#### 1. Count")        "#### 1,234"
3. answer_is     "(final) answer is N", "答案是 N"                        "The final answer is $18$."
4. answer_colon  "Answer: N", "答案：N", markdown "**Answer:** $18"       "Final Answer: 0.5"
5. last_number   the last number anywhere

A score whose output holds no number has answer None and rule "none".

Numbers as models write them: a sign (`-`, `−`), a currency sign (`$`, `\\$`, €, £, ¥),
thousands separators (`70,000`, `1{,}000`, `1\\,000`, a no-break or thin space), decimals,
`a/b`, `\\frac{a}{b}` / `\\dfrac{a}{b}` / `\\frac12`, mixed numbers `2\\frac{1}{2}`, a percent
sign, a unit or `\\text{...}` after them, a sentence's full stop after them ("$70,000." is
70000). A plain space separates thousands ("1 000") only right after an answer cue (in a box,
after `####`, "answer is", "Answer:"), where a list of numbers cannot be meant; the last-number
rule never joins numbers across a space.

Numbers and targets compare exactly as rationals, so "29.00" equals 29 and "0.5" equals "1/2".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.reasoning import split_answer
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.text import clean_text, strip_invisible

# A next question the model invented after its answer: a line that starts one, with some
# text of the model's own before it (an output that starts with "Question:" is not cut).
_NEXT_QUESTION = re.compile(r"\n[ \t]*(?:\*\*)?(?:Q|Question|Problem|问题)[ \t]*[:：]")

# A number as written in an answer: sign, currency, thousands separators, a decimal or a
# fraction, a percent sign. The look-behind keeps "x2" and "v1.5" from reading as numbers
# (ASCII only: a number right after "是" must still count). A sign goes right before the
# digits or the currency sign: "- 5" is a bullet, not minus five.
_SIGN = r"(?:-?[$€£¥]\s?-?|-)?"
_NUMBER = (
    rf"(?<![A-Za-z0-9_.]){_SIGN}"
    r"(?:(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
    r"(?:/\d+)?(?:\s?%)?"
)
# After an answer cue a plain space may also separate thousands ("1 000"); "5 100-page" is not one.
_SPACED = rf"(?<![A-Za-z0-9_.]){_SIGN}[1-9]\d{{0,2}}(?: \d{{3}})+(?![\d,-])(?:\.\d+)?(?:\s?%)?"
_CUED = rf"(?:{_SPACED}|{_NUMBER})"
_ANY_NUMBER = re.compile(_NUMBER)
_HASH = re.compile(rf"####[ \t]*({_CUED})(?!\d|[.):][ \t]*\S)")
_ANSWER_IS = re.compile(
    rf"(?i:\b(?:final\s+)?answer\s+is|答案\s*(?:应该|应当|就)?\s*(?:是|为))\s*[:：]?\s*({_CUED})"
)
_ANSWER_COLON = re.compile(rf"(?i:\banswer|答案)\s*[:：]\s*({_CUED})")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BRACE = re.compile(r"(?<!\\)[{}]")  # "\{" and "\}" are set braces, not grouping
_BOXED_BARE = re.compile(r"\\boxed +(-?[\d.,/]+)")  # "\boxed 5", as Minerva-style answers write it
_BOX_WHOLE = re.compile(rf"\s*({_CUED})\s*(?:[A-Za-z°][A-Za-z°\s./]*)?\.?\s*")
_BOX_WORDS = re.compile(r"[A-Za-z°\s:.,]*")
_UNIT_POWER = re.compile(r"(?<=[A-Za-z}])\s*\^\s*\{?\d+\}?")  # "cm^2": the 2 is not an answer

# Separators and signs fixed before NFKC, which would turn a no-break or thin space into a plain one.
_UNICODE_THOUSANDS = re.compile(r"(?<=\d)[\u00a0\u2009\u202f](?=\d{3}(?!\d))")
_MINUS = re.compile(r"[\u2212\u2012\u2013\ufe63](?=\s?[$€£¥]?\d|\s?\.\d)")
# LaTeX inside an answer: "1{,}234" and "1\,234" are thousands separators, "\$" and "\%" signs.
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3}(?!\d))")
_FRAC = r"\\[dt]?frac\s*(?:\{\s*(-?\d+(?:\.\d+)?)\s*\}|(\d))\s*(?:\{\s*(\d+(?:\.\d+)?)\s*\}|(\d))"
_LATEX_MIXED = re.compile(rf"(?<![\d.])(\d+)\s*{_FRAC}")
_LATEX_FRAC = re.compile(_FRAC)
_LATEX_TEXT = re.compile(r"\\(?:text|textbf|textrm|mathrm|mathbf|mbox)\s*\{([^{}]*)\}")
_LATEX_NOISE = re.compile(r"\\[!;: ]|\^\s*(?:\{\s*\\circ\s*\}|\\circ)|\\left|\\right|\\[()\[\]]|\$\$")


def _mixed(match: re.Match[str]) -> str:
    whole = int(match.group(1))
    numerator, denominator = match.group(2) or match.group(3), match.group(4) or match.group(5)
    if "." in numerator or "." in denominator or int(denominator) == 0 or numerator.startswith("-"):
        return match.group(0)
    value = whole + Fraction(int(numerator), int(denominator))
    return f"{value.numerator}/{value.denominator}"


def _frac(match: re.Match[str]) -> str:
    return f"{match.group(1) or match.group(2)}/{match.group(3) or match.group(4)}"


def _clean(text: str) -> str:
    """The text with the ways of writing a number reduced to the plain ones the patterns read."""
    text = _UNICODE_THOUSANDS.sub(",", strip_invisible(text))
    text = _MINUS.sub("-", text)
    text = clean_text(text)  # full-width digits and colons
    text = text.replace("\\$", "$").replace("\\%", "%").replace("**", "").replace("__", "")
    text = _LATEX_THOUSANDS.sub(",", text)
    text = _LATEX_TEXT.sub(r"\1", text)
    text = _LATEX_MIXED.sub(_mixed, text)
    text = _LATEX_FRAC.sub(_frac, text)
    return _LATEX_NOISE.sub(" ", text)


def _canonical(number: str) -> str:
    """The number as compared and stored: no currency, separators, spaces or percent sign."""
    return re.sub(r"[$€£¥,%\s]", "", number)


def to_fraction(number: str) -> Fraction | None:
    """The exact value of a number as written ("1,234", "$5", "0.50", "1/2"); None if it is not one."""
    try:
        return Fraction(_canonical(number))
    except (ValueError, ZeroDivisionError):
        return None


def leading_number(text: str) -> str | None:
    """The number a text starts with, as compared and stored ("−1,234 apples" -> "-1234"); None if none."""
    match = _ANY_NUMBER.match(_clean(text).lstrip())
    return _canonical(match.group(0)) if match is not None else None


def cut_at_next_question(text: str) -> tuple[str, bool]:
    """(the text before a next question the model invented, whether it was cut).

    A line that starts `Q:`, `Question:`, `Problem:` or `问题：` begins a new question when the
    model wrote something before it; a mid-line "question" ("The question asks ...") never cuts.
    """
    for match in _NEXT_QUESTION.finditer(text):
        if text[: match.start()].strip():
            return text[: match.start()], True
    return text, False


def after_thinking(text: str) -> tuple[str, bool]:
    """(the answer part of the output, whether reasoning was dropped): proctor.reasoning's split,
    so a thought with no answer after it (or one that never closed) gives "" and no number."""
    split = split_answer(text)
    if split.reasoning is None:
        return text, False
    return split.answer or "", True


def boxed_contents(text: str) -> list[str]:
    """The contents of the `\\boxed{...}` / `\\fbox{...}` whose braces close, last first (an output
    cut short may leave the last one open). One pass over the braces, however many boxes."""
    openings = list(_BOXED.finditer(text))
    if not openings:
        return []
    closes: dict[int, int] = {}
    stack: list[int] = []
    for brace in _BRACE.finditer(text):
        if brace.group() == "{":
            stack.append(brace.start())
        elif stack:
            closes[stack.pop()] = brace.start()
    return [text[m.end() : closes[m.end() - 1]] for m in reversed(openings) if m.end() - 1 in closes]


def _last_boxed(text: str) -> str | None:
    """The content of the last complete box, or of a bare `\\boxed 5`; None for none."""
    boxes = boxed_contents(text)
    if boxes:
        return boxes[0]
    bare = list(_BOXED_BARE.finditer(text))
    return bare[-1].group(1) if bare else None


def _boxed_number(content: str) -> str | None:
    """The number a box holds: all of it ("18", "18 dollars", "5 cm^2"), the value after its last
    "=" ("x = 5"), or its only number; None for anything else ("x+y", "3, 4")."""
    content = _UNIT_POWER.sub("", content).replace("{", " ").replace("}", " ")
    if "=" in content:
        content = content.rsplit("=", 1)[1]
    whole = _BOX_WHOLE.fullmatch(content)
    if whole:
        return whole.group(1)
    numbers: list[str] = _ANY_NUMBER.findall(content)
    if len(numbers) == 1 and _BOX_WORDS.fullmatch(_ANY_NUMBER.sub(" ", content, count=1)):
        return numbers[0]  # "about 18", "18 in total": words around one number
    return None  # "2\pi", "\sqrt 2", "3, 4": not a number


def extract_number(text: str | None) -> tuple[str | None, str | None]:
    """(the final number of an answer, the rule that found it); (None, None) when there is none.

    A box that holds no single number gives (its content, "boxed"): the model did answer,
    so no number elsewhere in its reasoning may stand in for the answer.
    """
    answer, rule, _ = _extract(text)
    return answer, rule


def _extract(text: str | None) -> tuple[str | None, str | None, str]:
    """(answer, rule, explanation) of `extract_number`."""
    if not text:
        return None, None, ""
    notes: list[str] = []
    answer_part, thought = after_thinking(text)
    if thought:
        notes.append("read after </think>")
    answer_part, cut = cut_at_next_question(answer_part)
    if cut:
        notes.append("cut at an invented next question")
    cleaned = _clean(answer_part)
    explanation = "; ".join(notes)
    boxed = _last_boxed(cleaned)
    if boxed is not None and boxed.strip():  # an empty box is no answer: read on
        number = _boxed_number(boxed)
        if number is not None:
            return _canonical(number), "boxed", explanation
        return " ".join(boxed.split()), "boxed", explanation
    for rule, pattern in (("hash", _HASH), ("answer_is", _ANSWER_IS), ("answer_colon", _ANSWER_COLON)):
        matches = list(pattern.finditer(cleaned))
        if matches:
            return _canonical(matches[-1].group(1)), rule, explanation
    numbers = _ANY_NUMBER.findall(cleaned)
    if numbers:
        return _canonical(numbers[-1]), "last_number", explanation
    return None, None, explanation


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
            whole = _BOX_WHOLE.fullmatch(_clean(target))
            value = to_fraction(whole.group(1)) if whole else None
        if value is None:
            raise DataError(f"sample {sample.id}: target {target!r} is not a number (numeric scorer)")
        values.append(value)
    return values


@register
@dataclass(frozen=True)
class NumericScorer(BaseScorer):
    """The final number of the output (see the module docstring) against a numeric target."""

    name: ClassVar[str] = "numeric"
    revision: ClassVar[int] = 4  # 4: a thought with no answer after it gives no number

    def check_sample(self, sample: Sample) -> None:
        _target_values(sample)

    def score(self, sample: Sample, record: Record) -> Score:
        targets = _target_values(sample)  # first: a bad target is an error even when no answer is found
        answer, rule, explanation = _extract(record.output)
        if answer is None:
            return Score(value=0.0, answer=None, rule="none", explanation=explanation or "no number in the output")
        value = to_fraction(answer)
        correct = value is not None and value in targets
        return Score(value=1.0 if correct else 0.0, answer=answer, rule=rule, explanation=explanation)
