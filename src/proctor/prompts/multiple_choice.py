"""Rendering a four-option question, with its few-shot examples, into a Request.

Chat models get the examples as prior user/assistant turns; base models and
log-likelihood scoring get the same text concatenated into one prompt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, Sequence

from proctor.core import Message, Request, Sample

Language = Literal["zh", "en"]
CHOICES = "ABCD"


@dataclass(frozen=True)
class ChoiceTemplate:
    """The wording of one language's prompt; its hash is the dataset's `version`."""

    instruction: str  # formatted with {subject}
    answer_cue: str  # ends the question block; the answer follows it
    shot_separator: str = "\n\n"

    @property
    def version(self) -> str:
        text = "\x1f".join((self.instruction, self.answer_cue, self.shot_separator, CHOICES))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


TEMPLATES: dict[Language, ChoiceTemplate] = {
    "zh": ChoiceTemplate(
        instruction="以下是中国关于{subject}考试的单项选择题，请选出其中的正确答案。",
        answer_cue="答案：",
    ),
    "en": ChoiceTemplate(
        instruction="The following are multiple choice questions (with answers) about {subject}.",
        answer_cue="Answer:",
    ),
}

# Continuations scored in `ppl` mode: the letter after the answer cue.
LETTER_CONTINUATIONS = tuple(f" {c}" for c in CHOICES)


def prompt_version(language: Language, mode: str, continuations: str = "letters") -> str:
    suffix = "g" if mode != "ppl" else ("p" if continuations == "letters" else "o")
    return f"{TEMPLATES[language].version}{suffix}"


def option_continuations(sample: Sample) -> tuple[str, ...]:
    """The option texts as continuations of the answer cue, in A-D order."""
    options = sample.fields["options"]
    return tuple(f" {str(options[letter]).strip()}" for letter in CHOICES if letter in options)


def question_block(sample: Sample, template: ChoiceTemplate) -> str:
    options = sample.fields["options"]
    lines = [str(sample.fields["question"]).strip()]
    lines += [f"{letter}. {str(options[letter]).strip()}" for letter in CHOICES if letter in options]
    lines.append(template.answer_cue)
    return "\n".join(lines)


def _instruction(template: ChoiceTemplate, subject: str) -> str:
    return template.instruction.format(subject=subject)


def chat_messages(sample: Sample, shots: Sequence[Sample], language: Language, subject: str) -> tuple[Message, ...]:
    template = TEMPLATES[language]
    blocks = [question_block(s, template) for s in (*shots, sample)]
    blocks[0] = f"{_instruction(template, subject)}\n\n{blocks[0]}"
    messages: list[Message] = []
    for shot, block in zip(shots, blocks):
        messages.append(Message("user", block))
        messages.append(Message("assistant", shot.target))
    messages.append(Message("user", blocks[-1]))
    return tuple(messages)


def text_prompt(
    sample: Sample, shots: Sequence[Sample], language: Language, subject: str, *, answer_with_text: bool = False
) -> str:
    """Instruction, answered examples, then the question; examples answer with the letter,
    or with the option text when the continuations scored are option texts."""
    template = TEMPLATES[language]
    parts = [_instruction(template, subject)]
    for shot in shots:
        answer = str(shot.fields["options"][shot.target]).strip() if answer_with_text else shot.target
        parts.append(f"{question_block(shot, template)} {answer}")
    parts.append(question_block(sample, template))
    return template.shot_separator.join(parts)


def build_request(
    sample: Sample,
    shots: Sequence[Sample],
    *,
    language: Language,
    subject: str,
    mode: Literal["gen", "ppl"],
    chat: bool,
    continuations: Literal["letters", "options"] = "letters",
    max_tokens: int,
    temperature: float = 0.0,
) -> Request:
    """The Request for one question: generation (chat or text) or the log-likelihoods of the
    letters (or, with `continuations="options"`, of the option texts)."""
    if mode == "ppl":
        return Request(
            kind="loglikelihood",
            context=text_prompt(sample, shots, language, subject, answer_with_text=continuations == "options"),
            continuations=LETTER_CONTINUATIONS if continuations == "letters" else option_continuations(sample),
        )
    if chat:
        return Request(
            kind="generate",
            messages=chat_messages(sample, shots, language, subject),
            max_tokens=max_tokens,
            temperature=temperature,
        )
    return Request(
        kind="generate",
        prompt=text_prompt(sample, shots, language, subject),
        max_tokens=max_tokens,
        temperature=temperature,
        # A base model continues with the next question; the first blank line ends the answer.
        stop=("\n\n",),
    )
