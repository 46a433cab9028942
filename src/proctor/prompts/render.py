"""One entry point for every preset: a sample (as asked) + examples -> Request, and the version hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal, Sequence

from proctor.core import Request, Sample
from proctor.prompts.presets import get_preset
from proctor.prompts.wording import Wording


@dataclass(frozen=True)
class PromptPlan:
    """Everything rendering needs, resolved from a task spec and a dataset config."""

    preset: str  # a name in the preset registry (proctor.prompts.presets)
    wording: Wording
    subject: str  # the subject's title as the instruction names it
    kind: Literal["generate", "loglikelihood"]
    continuations: Literal["letters", "options"] = "letters"
    format: Literal["auto", "chat", "text"] = "auto"
    stop: tuple[str, ...] | None = None
    max_out_len: int | None = None  # the spec's answer length, used unless the user set one
    # The prompt for base (non-chat) models where it differs (8-shot chain of thought, say).
    base: PromptPlan | None = None

    @property
    def version(self) -> str:
        own = get_preset(self.preset).version(self.wording, self.kind, self.continuations)
        if self.base is None:
            return own
        # One version for the pair: a change to either prompt shows in the table.
        both = hashlib.sha256(f"{own}|{self.base.version}".encode()).hexdigest()[:6]
        return both + own[-1]

    def for_model(self, chat: bool) -> PromptPlan:
        """The plan a model gets: the base prompt for a base model, when there is one."""
        if self.base is not None and not {"auto": chat, "chat": True, "text": False}[self.format]:
            return self.base
        return self

    def request(
        self, sample: Sample, shots: Sequence[Sample], *, chat: bool, max_tokens: int, temperature: float
    ) -> Request:
        """The request for `sample`; call it on `for_model(chat)` (shots differ between the two)."""
        chat = {"auto": chat, "chat": True, "text": False}[self.format]
        return get_preset(self.preset).build(
            sample, shots, wording=self.wording, subject=self.subject, kind=self.kind, chat=chat,
            continuations=self.continuations, max_tokens=max_tokens, temperature=temperature, stop=self.stop,
        )
