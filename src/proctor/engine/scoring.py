"""Turning a backend Response into a scored Record."""

from __future__ import annotations

from typing import Any, Sequence

from proctor.core import Record, Request, Response, Sample
from proctor.metrics import (
    choice_from_loglikelihoods,
    choice_from_loglikelihoods_norm,
    extract_choice,
    match_option_text,
)
from proctor.prompts import CHOICES, LETTER_CONTINUATIONS


def prompt_as_sent(request: Request) -> Any:
    if request.kind == "loglikelihood":
        return {"context": request.context, "continuations": list(request.continuations)}
    if request.messages is not None:
        return [{"role": m.role, "content": m.content} for m in request.messages]
    return request.prompt


def _norm_extra(continuations: Sequence[str], lls: Sequence[float] | None, target: str) -> dict[str, Any]:
    """acc_norm for option-text continuations: log-likelihood per byte of the option, as
    lm-evaluation-harness does (comparable across tokenizers). Letters need no normalising."""
    if lls is None or tuple(continuations) == LETTER_CONTINUATIONS:
        return {}
    lengths = [len(c.encode("utf-8")) for c in continuations]
    prediction = choice_from_loglikelihoods_norm(lls, lengths, CHOICES)
    return {"prediction_norm": prediction, "correct_norm": prediction == target}


def generated_choice(text: str | None, sample: Sample) -> str | None:
    """The letter an answer gives; failing that, the option whose text it gives."""
    letter = extract_choice(text or "", CHOICES)
    if letter is None and isinstance(sample.fields.get("options"), dict):
        letter = match_option_text(text, sample.fields["options"])
    return letter


def make_record(sample: Sample, request: Request, response: Response) -> Record:
    """A failed response is recorded with its error and never scored (correct=None)."""
    prediction: str | None = None
    correct: bool | None = None
    extra: dict[str, Any] = {}
    if response.ok:
        if request.kind == "loglikelihood":
            prediction = choice_from_loglikelihoods(response.loglikelihoods or (), CHOICES)
            extra = _norm_extra(request.continuations, response.loglikelihoods, sample.target)
        else:
            prediction = generated_choice(response.text, sample)
        correct = prediction == sample.target
    return Record(
        sample_id=sample.id,
        prompt=prompt_as_sent(request),
        output=response.text,
        loglikelihoods=list(response.loglikelihoods) if response.loglikelihoods is not None else None,
        prediction=prediction,
        target=sample.target,
        correct=correct,
        error=response.error,
        latency_s=round(response.latency_s, 4),
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        attempts=response.attempts,
        cached=response.cached,
        continuation_lengths=(
            list(response.continuation_lengths) if response.continuation_lengths is not None else None
        ),
        extra=extra,
        finish_reason=response.finish_reason,
    )


def rescore(record: Record, kind: str, sample: Sample) -> Record:
    """Re-extract the answer of a stored record (`--mode eval` after changing extraction)."""
    if record.failed:
        return record
    from dataclasses import replace

    if kind == "loglikelihood":
        prediction = choice_from_loglikelihoods(record.loglikelihoods or (), CHOICES)
        continuations = record.prompt.get("continuations", ()) if isinstance(record.prompt, dict) else ()
        extra = {**record.extra, **_norm_extra(continuations, record.loglikelihoods, record.target)}
        return replace(record, prediction=prediction, correct=prediction == record.target, extra=extra)
    prediction = generated_choice(record.output, sample)
    return replace(record, prediction=prediction, correct=prediction == record.target)
