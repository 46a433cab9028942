"""The `choice` scorer: multiple-choice questions with 2 to 10 options labelled A, B, ..."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.extract import answer_part, find_choice
from proctor.scoring.loglikelihood import choice_from_loglikelihoods, choice_from_loglikelihoods_norm
from proctor.scoring.option_text import match_option_text


@register
@dataclass(frozen=True)
class ChoiceScorer(BaseScorer):
    """The chosen letter against `sample.target`: extracted from generated text, or the
    most likely option of a log-likelihood record."""

    name: ClassVar[str] = "choice"
    revision: ClassVar[int] = 3  # 3: a thought with no answer after it gives no letter

    def check_sample(self, sample: Sample) -> None:
        if not sample.labels:
            raise DataError(f"sample {sample.id}: the choice scorer needs a multiple-choice question (no options)")

    def score(self, sample: Sample, record: Record) -> Score:
        labels = sample.labels
        if not labels:
            raise DataError(f"sample {sample.id}: the choice scorer needs a multiple-choice question (no options)")
        if record.loglikelihoods is not None:
            return self._score_loglikelihoods(sample, record, labels)
        letter: str | None
        rule: str | None
        found = find_choice(record.output, labels)
        if found is not None:
            letter, rule = found
        else:
            # The option text is read from the answer part too: never from an unclosed thought.
            answer = answer_part(record.output or "")
            letter = match_option_text(answer, dict(zip(labels, sample.choices, strict=True)))
            rule = "option_text" if letter else None
        return Score(value=1.0 if letter == sample.target else 0.0, answer=letter, rule=rule)

    def _score_loglikelihoods(self, sample: Sample, record: Record, labels: str) -> Score:
        lls = record.loglikelihoods or []
        if len(lls) != len(labels):
            # Fewer scores than options would silently make the missing options unpickable.
            raise DataError(
                f"record {record.item_id}: {len(lls)} log-likelihoods for {len(labels)} options ({labels})"
            )
        letter = choice_from_loglikelihoods(lls, labels)
        extra: dict[str, Any] = {}
        continuations = _continuations(record)
        if continuations is not None and not _are_letters(continuations, labels):
            if len(continuations) != len(lls):
                raise DataError(
                    f"record {record.item_id}: {len(lls)} log-likelihoods for {len(continuations)} continuations"
                )
            extra = _norm_extra(continuations, lls, labels, sample.target)
        return Score(
            value=1.0 if letter == sample.target else 0.0,
            answer=letter,
            rule="loglikelihood" if letter else None,  # every score NaN: no answer
            extra=extra,
        )


def _continuations(record: Record) -> list[str] | None:
    prompt = record.prompt
    if isinstance(prompt, dict) and isinstance(prompt.get("continuations"), (list, tuple)):
        return [str(c) for c in prompt["continuations"]]
    return None


def _are_letters(continuations: Sequence[str], labels: str) -> bool:
    """True for letter continuations (" A", " B", ...): all one token-ish, nothing to normalise."""
    return [c.strip() for c in continuations] == list(labels)


def _norm_extra(continuations: Sequence[str], lls: Sequence[float], labels: str, target: Any) -> dict[str, Any]:
    """acc_norm for option-text continuations: log-likelihood per UTF-8 byte of the continuation,
    as lm-evaluation-harness does (bytes, unlike tokens, are comparable across tokenizers)."""
    lengths = [len(c.encode("utf-8")) for c in continuations]
    letter = choice_from_loglikelihoods_norm(lls, lengths, labels)
    return {"answer_norm": letter, "correct_norm": letter is not None and letter == target}
