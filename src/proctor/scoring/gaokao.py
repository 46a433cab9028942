"""The `gaokao` scorer: GAOKAO-Bench's objective questions, scored by the benchmark's own rules.

Each question has a list of answers (one per sub-question: `["D"]`, or twenty letters for an
English cloze); its type comes from the benchmark's prompt file (`Bench/Obj_Prompt.json`,
joined to each row as `question_type`). The letters are read from the reply as GAOKAO-Bench's
evaluation reads them (re-implemented here from its rules):

- single_choice: the last of A-D in the reply.
- multi_question_choice: the letters after each `【答案】`; when their count is not the number of
  sub-questions, the first capital letters of the reply, one per sub-question.
- multi_choice: the letters A-D after the first `【答案】` (whitespace removed), else those in the
  last ten characters; all of them form the one answer ("AB").
- five_out_of_seven: the first five of A-G in the reply.

A reply whose answer count differs from the gold's scores nothing. Credit per sub-question:
1 when equal; for multi_choice 0.5 when every chosen letter is right but some are missing (the
benchmark's 6/3/0 points). The Score's value is the question's credit over its sub-questions
and `extra["weight"]` their number, so the `weighted_accuracy` metric gives the benchmark's
scoring rate (correct score over total score).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.scoring.base import BaseScorer, register

TYPES = ("single_choice", "multi_question_choice", "multi_choice", "five_out_of_seven")
_MARK = "【答案】"


def read_answers(output: str, question_type: str, count: int) -> list[str]:
    """The answers GAOKAO-Bench reads from a reply (see the module docstring)."""
    if question_type == "single_choice":
        letters = re.findall(r"[A-D]", output)
        return letters[-1:]
    if question_type == "multi_question_choice":
        marked = re.findall(r"【答案】\s*[:：]*\s*([A-Z])", output)
        if len(marked) == count:
            return marked
        return re.findall(r"[A-Z]", output)[:count]
    if question_type == "multi_choice":
        content = re.sub(r"\s+", "", output)
        at = content.find(_MARK)
        part = content[at:] if at > 0 else content[-10:]
        letters = "".join(re.findall(r"[A-D]", part))
        return [letters] if letters else []
    if question_type == "five_out_of_seven":
        return re.findall(r"[A-G]", output)[:5]
    raise ValueError(question_type)


def _credit(answer: str, gold: str, question_type: str) -> float:
    if answer == gold:
        return 1.0
    if question_type == "multi_choice" and answer and all(letter in gold for letter in answer):
        return 0.5
    return 0.0


@register
@dataclass(frozen=True)
class GaokaoScorer(BaseScorer):
    """Credit over a question's sub-answers (value) and their number (`extra["weight"]`)."""

    name: ClassVar[str] = "gaokao"
    revision: ClassVar[int] = 1

    type_field: str = "question_type"

    def score(self, sample: Sample, record: Record) -> Score:
        question_type = sample.fields.get(self.type_field)
        if question_type not in TYPES:
            raise DataError(f"sample {sample.id}: question type {question_type!r} (field {self.type_field!r}) "
                            f"is not one of {', '.join(TYPES)} (gaokao scorer)")
        gold = sample.target if isinstance(sample.target, list) else [sample.target]
        if not gold or not all(isinstance(g, str) and g.strip() for g in gold):
            raise DataError(f"sample {sample.id}: target {sample.target!r} is not a list of letters (gaokao scorer)")
        answers = read_answers(record.output or "", question_type, len(gold))
        extra: dict[str, Any] = {"weight": len(gold)}
        if not answers:
            return Score(0.0, extra=extra)
        if len(answers) != len(gold):
            return Score(0.0, answer=answers, rule="count",
                         explanation=f"{len(answers)} answers for {len(gold)} sub-questions", extra=extra)
        credit = sum(_credit(a, g.strip(), question_type) for a, g in zip(answers, gold))
        return Score(credit / len(gold), answer=answers, rule=question_type, extra=extra)
