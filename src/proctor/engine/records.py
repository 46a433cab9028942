"""Turning a backend Response into the Record that is stored (raw output; scoring comes later)."""

from __future__ import annotations

from typing import Any

from proctor.core import Item, Record, Request, Response
from proctor.reasoning import ReasoningMarkers, split_answer


def prompt_as_sent(request: Request) -> Any:
    if request.kind == "loglikelihood":
        return {"context": request.context, "continuations": list(request.continuations)}
    if request.messages is not None:
        return [{"role": m.role, "content": m.content} for m in request.messages]
    return request.prompt


def make_record(item: Item, request: Request, response: Response, markers: ReasoningMarkers | None = None) -> Record:
    """A failed response is recorded with its error; the scoring stage never scores it.

    A generated output is stored split (proctor.reasoning.split_answer, with the model's
    `markers`): `output` is the answer part as the model gave it ("" when the reasoning never
    ended or nothing followed it), `reasoning` the thought, and `reasoning_ended` whether it
    closed. An output without reasoning is stored as it came (`reasoning` None). Splitting a
    stored record again gives the same answer, so records written before the split (raw
    outputs with `<think>` tags) are read the same way.
    """
    output, reasoning, ended = response.text, response.reasoning, response.reasoning_ended
    if response.error is None and request.kind == "generate" and (output is not None or reasoning is not None):
        split = split_answer(output, reasoning=reasoning, reasoning_ended=ended,
                             finish_reason=response.finish_reason, markers=markers)
        if split.reasoning is not None:
            output, reasoning, ended = split.answer or "", split.reasoning, not split.truncated
    return Record(
        item_id=item.id,
        sample_id=item.sample_id,
        prompt=prompt_as_sent(request),
        output=output,
        loglikelihoods=list(response.loglikelihoods) if response.loglikelihoods is not None else None,
        error=response.error,
        latency_s=round(response.latency_s, 4),
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        attempts=response.attempts,
        cached=response.cached,
        continuation_lengths=(
            list(response.continuation_lengths) if response.continuation_lengths is not None else None
        ),
        finish_reason=response.finish_reason,
        system_fingerprint=response.system_fingerprint,
        reasoning=reasoning,
        reasoning_ended=ended,
        reasoning_tokens=response.reasoning_tokens,
        fewshot_dropped=request.fewshot_dropped or None,
        top_logprobs=[list(pair) for pair in response.top_logprobs] if response.top_logprobs is not None else None,
    )
