"""Turning a backend Response into the Record that is stored (raw output; scoring comes later)."""

from __future__ import annotations

from typing import Any

from proctor.core import Item, Record, Request, Response


def prompt_as_sent(request: Request) -> Any:
    if request.kind == "loglikelihood":
        return {"context": request.context, "continuations": list(request.continuations)}
    if request.messages is not None:
        return [{"role": m.role, "content": m.content} for m in request.messages]
    return request.prompt


def make_record(item: Item, request: Request, response: Response) -> Record:
    """A failed response is recorded with its error; the scoring stage never scores it."""
    return Record(
        item_id=item.id,
        sample_id=item.sample_id,
        prompt=prompt_as_sent(request),
        output=response.text,
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
        reasoning=response.reasoning,
        reasoning_ended=response.reasoning_ended,
        reasoning_tokens=response.reasoning_tokens,
    )
