"""Turning a backend Response into a scored Record."""

from __future__ import annotations

from typing import Any

from proctor.core import Record, Request, Response, Sample
from proctor.metrics import choice_from_loglikelihoods, extract_choice
from proctor.prompts import CHOICES


def prompt_as_sent(request: Request) -> Any:
    if request.kind == "loglikelihood":
        return {"context": request.context, "continuations": list(request.continuations)}
    if request.messages is not None:
        return [{"role": m.role, "content": m.content} for m in request.messages]
    return request.prompt


def make_record(sample: Sample, request: Request, response: Response) -> Record:
    """A failed response is recorded with its error and never scored (correct=None)."""
    prediction: str | None = None
    correct: bool | None = None
    if response.ok:
        if request.kind == "loglikelihood":
            prediction = choice_from_loglikelihoods(response.loglikelihoods or (), CHOICES)
        else:
            prediction = extract_choice(response.text or "", CHOICES)
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
    )


def rescore(record: Record, kind: str) -> Record:
    """Re-extract the answer of a stored record (`--mode eval` after changing extraction)."""
    if record.failed:
        return record
    from dataclasses import replace

    if kind == "loglikelihood":
        prediction = choice_from_loglikelihoods(record.loglikelihoods or (), CHOICES)
    else:
        prediction = extract_choice(record.output or "", CHOICES)
    return replace(record, prediction=prediction, correct=prediction == record.target)
