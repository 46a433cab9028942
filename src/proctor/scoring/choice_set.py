"""Scorers for AGIEval's multiple-answer and cloze tasks, as OpenCompass scores them.

`choice_set`: the letters a model chose, compared with the gold letters as sets (AGIEval's
gaokao-physics and JEC-QA: "AD" is right for "DA", wrong for "A" or "ABD"). The letters are
read after the last answer cue ("The answer is", "答案是", "Answer:", "【答案】"), or from an
answer that is nothing but letters; anything else is no answer, never a guess from the first
capital letter of the reply.

`agieval_cloze`: the maths answer (gaokao-mathcloze, MATH) by math equivalence, through the
`math_equiv` checker, also reading the Chinese cue "答案是" / "答案为" the prompt ends with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from proctor.core import Record, Sample, Score
from proctor.errors import ConfigError, DataError
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.math_equiv import MathEquivScorer, _golds, extract_math_answer, strip_invisible

_CUE = re.compile(r"(?:answers?\s+(?:is|are)|answers?\s*[:：]|答案\s*(?:是|为|應為|应为|选|應選|应选)?|【答案】)\s*[:：]?",
                  re.IGNORECASE)
_SEPARATOR = r"\s*(?:[,，、/&;；]|\band\b|和|及|与)?\s*"


def _letters_pattern(labels: str) -> re.Pattern[str]:
    # A letter, bare or in brackets: "(A), (D)" is two letters as "A, D" is.
    one = rf"[(（\[]?[{re.escape(labels)}][)）\]]?"
    # A run of option letters, alone or separated ("A, D", "A和D", "AD"), not the start of a word.
    return re.compile(rf"[\s(（\[*$]*({one}(?:{_SEPARATOR}{one})*)(?![A-Za-z])")


def chosen_letters(text: str | None, labels: str) -> str | None:
    """The letters chosen in `text` (in the order written, without repeats), or None."""
    if not text:
        return None
    pattern = _letters_pattern(labels)
    for cue in reversed(list(_CUE.finditer(text))):
        found = pattern.match(text, cue.end())
        if found:
            return "".join(dict.fromkeys(re.findall(f"[{re.escape(labels)}]", found.group(1))))
    bare = text.strip().strip(".。*` \n")
    whole = pattern.fullmatch(bare) if bare else None
    if whole:
        return "".join(dict.fromkeys(re.findall(f"[{re.escape(labels)}]", whole.group(1))))
    return None


@register
@dataclass(frozen=True)
class ChoiceSetScorer(BaseScorer):
    """The set of chosen letters against the gold letters (`sample.target`, e.g. "AD")."""

    name: ClassVar[str] = "choice_set"
    revision: ClassVar[int] = 2

    labels: str = "ABCD"

    def __post_init__(self) -> None:
        if not self.labels or not self.labels.isalpha() or not self.labels.isupper() or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"scorer 'choice_set' param 'labels' must be distinct capital letters, got {self.labels!r}")

    def score(self, sample: Sample, record: Record) -> Score:
        gold = sample.target
        if isinstance(gold, (list, tuple)):
            gold = "".join(str(g) for g in gold)
        if not isinstance(gold, str) or not gold.strip() or set(gold.strip()) - set(self.labels):
            raise DataError(f"sample {sample.id}: target {sample.target!r} is not a set of the letters {self.labels} "
                            "(choice_set scorer)")
        chosen = chosen_letters(record.output, self.labels)
        if chosen is None:
            return Score(0.0)
        right = set(chosen) == set(gold.strip())
        return Score(1.0 if right else 0.0, answer=chosen, rule="letters")


_ZH_CUE = re.compile(r"答案\s*(?:是|为|應為|应为)?\s*[:：]?")


@register
@dataclass(frozen=True)
class AGIEvalClozeScorer(MathEquivScorer):
    """`math_equiv` with the Chinese cue as a further extraction rule (after boxed and "answer is")."""

    name: ClassVar[str] = "agieval_cloze"
    revision: ClassVar[int] = 1

    def score(self, sample: Sample, record: Record) -> Score:
        golds = _golds(sample)
        text = strip_invisible(record.output or "")
        answer, extraction = extract_math_answer(text)
        if answer is None:
            cues = list(_ZH_CUE.finditer(text))
            if cues:
                rest = text[cues[-1].end():].strip().split("\n", 1)[0].strip().rstrip("。.")
                answer, extraction = (rest.strip("$ ") or None), "答案是"
        return self.judge(golds, answer, extraction)
