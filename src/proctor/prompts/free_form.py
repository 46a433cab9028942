"""Rendering a free-form question (a short answer, a number, text) into a generation Request.

The question block is the spec's template (`{question}` by default); an example answers
with `shot_answer` (`{answer}` by default). Chat models get examples as prior turns; base
models get one text and stop at the first blank line unless the spec says otherwise.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from proctor.core import Message, Request, Sample
from proctor.prompts.wording import Wording, fill


def version(wording: Wording) -> str:
    parts = [wording.instruction, wording.answer_cue, wording.template or "", wording.shot_answer or "",
             wording.shot_separator, wording.prefix]
    if wording.syntax == "jinja":  # only then: 0.1 rendered every template in the `{field}` form
        parts.append(wording.syntax)
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:6] + "g"


def _block(sample: Sample, wording: Wording) -> str:
    block = fill(wording.template or "{question}", sample, {}, wording.syntax, prefix=wording.prefix)
    return f"{block}\n{wording.answer_cue}" if wording.answer_cue else block


def _answer(shot: Sample, wording: Wording) -> str:
    target = shot.target[0] if isinstance(shot.target, list) and shot.target else shot.target
    return fill(wording.shot_answer or "{answer}", shot, {}, wording.syntax, answer=target)


def build_request(
    sample: Sample,
    shots: Sequence[Sample],
    *,
    wording: Wording,
    subject: str,
    chat: bool,
    max_tokens: int,
    temperature: float = 0.0,
    stop: tuple[str, ...] | None = None,
) -> Request:
    instruction = wording.instruction.format(subject=subject) if wording.instruction else ""
    if chat:
        messages: list[Message] = []
        for shot in shots:
            messages.append(Message("user", _block(shot, wording)))
            messages.append(Message("assistant", _answer(shot, wording)))
        messages.append(Message("user", _block(sample, wording)))
        if instruction:
            first = messages[0]
            messages[0] = Message(first.role, f"{instruction}\n\n{first.content}")
        return Request(kind="generate", messages=tuple(messages), max_tokens=max_tokens,
                       temperature=temperature, stop=stop or ())
    parts = [instruction] if instruction else []
    parts += [f"{_block(shot, wording)} {_answer(shot, wording)}" for shot in shots]
    parts.append(_block(sample, wording))
    return Request(
        kind="generate",
        prompt=wording.shot_separator.join(parts),
        max_tokens=max_tokens,
        temperature=temperature,
        stop=stop if stop is not None else ("\n\n",),
    )
