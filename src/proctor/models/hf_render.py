"""Turn a generate Request into prompt token ids with a Hugging Face tokenizer (HF and vLLM backends)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from proctor.core import Request


@dataclass(frozen=True)
class RenderedPrompt:
    ids: tuple[int, ...]
    full_length: int  # before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > len(self.ids)


def render_generate(
    tokenizer: Any, request: Request, chat: bool, max_seq_len: int, template_kwargs: Mapping[str, Any] | None = None
) -> RenderedPrompt:
    """Prompt ids for a generate request, truncated from the left to leave room for max_tokens.

    Chat model + messages: the tokenizer's chat template (with the generation prompt and the
    model config's `chat_template_kwargs`, e.g. Qwen3's `enable_thinking`);
    base model + messages: the contents joined by blank lines; a plain `prompt` is
    sent as is. Raises ValueError for a request with neither messages nor prompt.
    """
    if request.messages is not None and request.prompt is None:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        if chat:
            text = tokenizer.apply_chat_template(messages, tokenize=False,
                                                 add_generation_prompt=True, **dict(template_kwargs or {}))
            # The template writes its own special tokens (BOS etc.): add none.
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        else:
            ids = tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"]
    elif request.prompt is not None:
        ids = tokenizer(request.prompt)["input_ids"]
    else:
        raise ValueError("generate request has neither messages nor prompt")
    budget = max(1, max_seq_len - request.max_tokens)
    return RenderedPrompt(ids=tuple(ids[-budget:]), full_length=len(ids))
