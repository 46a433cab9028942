"""Rendering a multiple-choice question, with its few-shot examples, into a Request.

Chat models get the examples as prior user/assistant turns; base models and
log-likelihood scoring get the same text concatenated into one prompt. Any number of
options (2-10), labelled A, B, ... in order.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal, Sequence

from proctor.core import Message, Request, Sample
from proctor.prompts.wording import Wording, fill

# Part of every version hash since Proctor 0.1 (when four options were fixed): kept so that
# the `version` column and the response-cache keys of existing runs do not change.
_VERSION_SALT = "ABCD"


def version(wording: Wording, kind: str, continuations: str = "letters") -> str:
    """The summary's `version`: a hash of the wording, plus g (generate), p (letters) or o (option texts)."""
    parts = [wording.instruction, wording.answer_cue, wording.shot_separator, _VERSION_SALT]
    if wording.template is not None:  # a user's template (OpenCompass human/bot prompt)
        parts += [wording.template, wording.shot_answer or ""]
    if wording.prefix:
        parts.append(wording.prefix)
    if wording.syntax == "jinja":  # only then: 0.1 rendered every template in the `{field}` form
        parts.append(wording.syntax)
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:6]
    suffix = "g" if kind != "loglikelihood" else ("p" if continuations == "letters" else "o")
    return f"{digest}{suffix}"


def letter_continuations(sample: Sample) -> tuple[str, ...]:
    """The continuations scored for letters: " A", " B", ... (one per option)."""
    return tuple(f" {label}" for label in sample.labels)


def option_continuations(sample: Sample) -> tuple[str, ...]:
    """The option texts as continuations of the answer cue, in label order."""
    return tuple(f" {text.strip()}" for text in sample.choices)


def question_block(sample: Sample, wording: Wording) -> str:
    if wording.template is not None:
        options = dict(zip(sample.labels, sample.choices))
        return fill(wording.template, sample, options, wording.syntax, prefix=wording.prefix)
    lines = [sample.question.strip()]
    lines += [f"{label}. {text.strip()}" for label, text in zip(sample.labels, sample.choices)]
    lines.append(wording.answer_cue)
    return "\n".join(lines)


def shot_answer(shot: Sample, wording: Wording, *, with_text: bool = False) -> str:
    """How an example answers: its letter (or option text, when option texts are scored)."""
    if with_text:
        return shot.option(shot.target).strip()
    if wording.shot_answer is not None:
        return fill(wording.shot_answer, shot, dict(zip(shot.labels, shot.choices)), wording.syntax, answer=shot.target)
    return str(shot.target)


def chat_messages(sample: Sample, shots: Sequence[Sample], wording: Wording, subject: str) -> tuple[Message, ...]:
    if not shots:
        instruction = wording.instruction.format(subject=subject)
        block = question_block(sample, wording)
        return (Message("user", f"{instruction}\n\n{block}" if instruction else block),)
    return (*_shot_turns(tuple(shots), wording, subject), Message("user", question_block(sample, wording)))


# The examples' turns, made once per (examples, wording, subject) and shared by every question
# of a subject: 25k MMLU + CMMLU prompts would otherwise each hold their own copy of the same
# five examples (about 4 KB a request). Keyed by identity; an entry holds its objects, so an id
# it was keyed by cannot be reused while it is there.
_SHOT_TURNS: dict[tuple[Any, ...], tuple[tuple[Sample, ...], Wording, tuple[Message, ...]]] = {}
_SHOT_TURNS_MAX = 512


def _shot_turns(shots: tuple[Sample, ...], wording: Wording, subject: str) -> tuple[Message, ...]:
    """The user/assistant turns of the examples (the instruction opening the first)."""
    key = (tuple(map(id, shots)), id(wording), subject)
    hit = _SHOT_TURNS.get(key)
    if hit is not None and hit[1] is wording and all(a is b for a, b in zip(hit[0], shots)):
        return hit[2]
    blocks = [question_block(s, wording) for s in shots]
    instruction = wording.instruction.format(subject=subject)
    if instruction:
        blocks[0] = f"{instruction}\n\n{blocks[0]}"
    turns: list[Message] = []
    for shot, block in zip(shots, blocks):
        turns.append(Message("user", block))
        turns.append(Message("assistant", shot_answer(shot, wording)))
    if len(_SHOT_TURNS) >= _SHOT_TURNS_MAX:
        _SHOT_TURNS.clear()
    _SHOT_TURNS[key] = (shots, wording, tuple(turns))
    return tuple(turns)


def text_prompt(
    sample: Sample, shots: Sequence[Sample], wording: Wording, subject: str, *, answer_with_text: bool = False
) -> str:
    """Instruction, answered examples, then the question; examples answer with the letter,
    or with the option text when the continuations scored are option texts."""
    instruction = wording.instruction.format(subject=subject)
    parts = [instruction] if instruction else []
    for shot in shots:
        parts.append(f"{question_block(shot, wording)} {shot_answer(shot, wording, with_text=answer_with_text)}")
    parts.append(question_block(sample, wording))
    return wording.shot_separator.join(parts)


def build_request(
    sample: Sample,
    shots: Sequence[Sample],
    *,
    wording: Wording,
    subject: str,
    kind: Literal["generate", "loglikelihood"],
    chat: bool,
    continuations: Literal["letters", "options"] = "letters",
    max_tokens: int,
    temperature: float = 0.0,
    stop: tuple[str, ...] | None = None,
) -> Request:
    """The Request for one question: generation (chat or text) or the log-likelihoods of the
    letters (or, with `continuations="options"`, of the option texts)."""
    if kind == "loglikelihood":
        return Request(
            kind="loglikelihood",
            context=text_prompt(sample, shots, wording, subject, answer_with_text=continuations == "options"),
            continuations=letter_continuations(sample) if continuations == "letters" else option_continuations(sample),
        )
    if chat:
        return Request(
            kind="generate",
            messages=chat_messages(sample, shots, wording, subject),
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop or (),
        )
    return Request(
        kind="generate",
        prompt=text_prompt(sample, shots, wording, subject),
        max_tokens=max_tokens,
        temperature=temperature,
        # A base model continues with the next question; the first blank line ends the answer.
        stop=stop if stop is not None else ("\n\n",),
    )
