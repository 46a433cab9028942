"""The `exact` scorer: the normalised output (or its last line) against the target text(s)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from proctor.core import Record, Sample, Score
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.text import clean_text

_SPACES = re.compile(r"\s+")
# Wrappers that never belong to the answer: quotes and markdown emphasis/code, at either end.
_WRAPPERS = "\"'`*“”‘’«»‹›„「」『』"
# Sentence punctuation a model puts after its answer ("Paris."); only at the end, so
# a leading "-" or "." (a sign, ".5") is kept.
_TRAILING = ".。,;:!"


def normalise_text(text: str, *, ignore_case: bool = True) -> str:
    """NFKC without invisible marks (scoring/text.py), whitespace collapsed, surrounding quotes and trailing period stripped, casefolded unless told not."""
    text = _SPACES.sub(" ", clean_text(text)).strip()
    while True:
        stripped = text.strip(_WRAPPERS + " ").rstrip(_TRAILING + " ")
        if stripped == text:
            break
        text = stripped
    return text.casefold() if ignore_case else text


def target_texts(target: Any) -> list[str]:
    """The acceptable answers of a free-form target: a string, a number, or a list of them."""
    if target is None:
        return []
    if isinstance(target, (list, tuple)):
        return [text for item in target for text in target_texts(item)]
    if isinstance(target, float) and target.is_integer():
        return [str(int(target))]  # 29.0 is written "29"
    return [str(target)]


def _last_line(text: str) -> str:
    """The last line that is not blank ("" for none)."""
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def compare(answer: str | None, target: Any, *, ignore_case: bool) -> Score:
    """Score an extracted text against the target texts: 1.0 when it equals any after normalising."""
    if answer is None:
        return Score(value=0.0)
    norm = normalise_text(answer, ignore_case=ignore_case)
    if not norm:
        return Score(value=0.0)
    accepted = {normalise_text(t, ignore_case=ignore_case) for t in target_texts(target)}
    return Score(value=1.0 if norm in accepted else 0.0, answer=norm)


@register
@dataclass(frozen=True)
class ExactScorer(BaseScorer):
    """The whole output (or with `last_line`, its last non-empty line) must equal the target."""

    name: ClassVar[str] = "exact"
    revision: ClassVar[int] = 2

    ignore_case: bool = True
    last_line: bool = False

    def score(self, sample: Sample, record: Record) -> Score:
        text = record.output or ""
        if self.last_line:
            text = _last_line(text)
        result = compare(text, sample.target, ignore_case=self.ignore_case)
        return Score(value=result.value, answer=result.answer, rule="exact" if result.answer is not None else None)
