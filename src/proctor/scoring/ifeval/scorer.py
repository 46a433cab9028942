"""The `ifeval` scorer: a response checked against each instruction of its prompt, strictly and loosely.

Strict: the response as the model wrote it follows the instruction. Only its answer part is
checked: the eval stage hands scorers the answer of `proctor.reasoning`'s split, and the split is
made here again for a record given directly (a no-op on one already split); the blank line after
a thought is dropped, as lm-evaluation-harness does. Loose: any of eight variants of it does: the response,
without its first line, without its last line, without both, and each of those four with every
markdown `*` removed (the paper's loose criterion, which forgives a "Sure, here is..." line or
emphasis around an answer). A blank response or variant follows nothing, and a reply cut off
inside its reasoning (`truncated`) or with nothing after it fails every instruction.

Score: value 1/0 = every instruction followed strictly (prompt-level strict accuracy); `answer`
the response checked (None when there was none); `extra` lists the instruction ids with their
strict and loose verdicts, which `proctor.metrics.ifeval_result` turns into the four scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from proctor.core import Record, Sample, Score
from proctor.errors import DataError
from proctor.reasoning import split_answer
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.ifeval.registry import Instruction, bind


def loose_variants(response: str) -> list[str]:
    """The eight texts the loose criterion tries, in a fixed order (the response first)."""
    lines = response.split("\n")
    trimmed = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    return trimmed + [t.replace("*", "") for t in trimmed]


def follows(instruction: Instruction, response: str) -> bool:
    """Strict verdict: a blank response follows no instruction."""
    return bool(response.strip()) and instruction(response)


def follows_loosely(instruction: Instruction, response: str) -> bool:
    return any(follows(instruction, variant) for variant in loose_variants(response))


def instructions_of(sample: Sample) -> list[Instruction]:
    """The sample's instructions with their arguments bound; DataError naming the sample otherwise."""
    where = f"sample {sample.id}"
    ids: Any = sample.fields.get("instruction_id_list")
    kwargs: Any = sample.fields.get("kwargs")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise DataError(f"{where}: the ifeval scorer needs 'instruction_id_list', a non-empty list of instruction ids")
    if not isinstance(kwargs, list) or len(kwargs) != len(ids):
        raise DataError(f"{where}: 'kwargs' must be a list with one object per instruction ({len(ids)})")
    return [bind(i, kw, f"{where} instruction {n + 1}") for n, (i, kw) in enumerate(zip(ids, kwargs))]


@register
@dataclass(frozen=True)
class IFEvalScorer(BaseScorer):
    """Prompt-level strict pass, with every instruction's strict and loose verdict in `extra`."""

    name: ClassVar[str] = "ifeval"
    reads: ClassVar[str] = "instructions checked by code"
    revision: ClassVar[int] = 1
    needs_answer: ClassVar[bool] = False

    def score(self, sample: Sample, record: Record) -> Score:
        instructions = instructions_of(sample)  # first: bad kwargs are an error whatever the reply
        ids = [i.id for i in instructions]
        split = split_answer(record.output, reasoning=record.reasoning, reasoning_ended=record.reasoning_ended,
                             finish_reason=record.finish_reason)
        if split.answer is None:
            none = [False] * len(ids)
            return Score(0.0, None, split.status, f"no response to check ({split.status}): every instruction fails",
                         {"instructions": ids, "strict": none, "loose": none})
        # The blank line a reasoning model writes after its thought is no part of its answer.
        response = split.answer.lstrip() if split.reasoning is not None else split.answer
        strict = [follows(i, response) for i in instructions]
        loose = [s or follows_loosely(i, response) for s, i in zip(strict, instructions)]
        return Score(1.0 if all(strict) else 0.0, response, "followed" if all(strict) else "not_followed",
                     _explain(ids, strict, loose), {"instructions": ids, "strict": strict, "loose": loose})


def _explain(ids: Sequence[str], strict: Sequence[bool], loose: Sequence[bool]) -> str:
    missed = [i for i, ok in zip(ids, strict) if not ok]
    if not missed:
        return ""
    loose_missed = [i for i, ok in zip(ids, loose) if not ok]
    return f"not followed: {', '.join(missed)}; loosely not followed: {', '.join(loose_missed) or 'none'}"
