"""Tokenizer-side work of the server: chat templates, token counts, the context limit."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

from proctor.core import Message
from proctor.errors import ConfigError

DEFAULT_MAX_SEQ_LEN = 2048
# Config keys under which checkpoints record their context length, most common first.
_CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length")


def load_chat_template(value: str) -> str:
    """`--chat-template`: the text of a file, or the value itself when it is a Jinja template."""
    path = Path(value).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--chat-template {path}: cannot read it ({exc})") from None
        source = str(path)
    elif "{{" in value or "{%" in value:
        text, source = value, "--chat-template"
    else:
        raise ConfigError(
            f"--chat-template {value}: no such file, and not a Jinja template (no '{{{{' or '{{%')"
        )
    if path.suffix == ".json" or text.lstrip().startswith("{\""):
        # Some checkpoints ship {"chat_template": "..."} files.
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("chat_template"), str):
            text = data["chat_template"]
    _check_jinja(text, source)
    return text


def _check_jinja(text: str, source: str) -> None:
    """Fail at startup, not on the first request, when the template does not parse."""
    import jinja2

    try:
        jinja2.Environment().parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(
            f"{source}: the chat template is not valid Jinja: {exc.message} (line {exc.lineno})"
        ) from None


def model_context_length(model_dir: str, fallback: int = DEFAULT_MAX_SEQ_LEN) -> int:
    """The context length recorded in the checkpoint's config.json, else `fallback`."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return fallback
    for section in (config, config.get("text_config") or {}):
        for key in _CONTEXT_KEYS:
            value = section.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return fallback


class Prompter:
    """Renders chat messages and counts tokens the way the served model sees them."""

    def __init__(self, tokenizer: Any, max_seq_len: int, chat_template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_seq_len = max_seq_len
        self.chat_template = chat_template  # an override; None: the tokenizer's own

    @classmethod
    def load(
        cls,
        model_dir: str,
        *,
        max_seq_len: int | None = None,
        chat_template: str | None = None,
        trust_remote_code: bool = False,
    ) -> "Prompter":
        """Load the checkpoint's tokenizer (fast; no weights); `chat_template` is template text."""
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        except (OSError, ValueError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"{model_dir}: cannot load a tokenizer from it ({first_line})") from None
        return cls(tokenizer, max_seq_len or model_context_length(model_dir), chat_template)

    @property
    def has_chat_template(self) -> bool:
        return self.chat_template is not None or bool(getattr(self.tokenizer, "chat_template", None))

    def render_chat(self, messages: Sequence[Message]) -> str:
        """The prompt text for `messages`, ending with the assistant's turn opening."""
        conversation = [{"role": m.role, "content": m.content} for m in messages]
        rendered = self.tokenizer.apply_chat_template(
            conversation,
            chat_template=self.chat_template,
            tokenize=False,
            add_generation_prompt=True,
        )
        return str(rendered)

    def plain_prompt(self, rendered: str) -> str:
        """A rendered chat prompt as a plain-text prompt: without the template's BOS text
        when the tokenizer adds BOS to every plain prompt itself (no double BOS)."""
        bos = getattr(self.tokenizer, "bos_token", None)
        if bos and self._adds_bos and rendered.startswith(bos):
            return rendered[len(bos) :]
        return rendered

    @cached_property
    def _adds_bos(self) -> bool:
        """Whether the tokenizer puts BOS before every plain prompt (asked once, not per request)."""
        ids = self.tokenizer("", add_special_tokens=True)["input_ids"]
        return bool(ids) and ids[0] == self.tokenizer.bos_token_id

    def count(self, text: str, *, add_special_tokens: bool = True) -> int:
        """Number of tokens of `text`."""
        ids = self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]
        return len(ids)

    @cached_property
    def _max_token_chars(self) -> int:
        """The most characters one token of the vocabulary spells (a bound on what it covers)."""
        try:
            return max(1, max((len(t) for t in self.tokenizer.get_vocab()), default=1))
        except Exception:  # a tokenizer without a vocabulary listing: no shortcut
            return 0

    def count_for_context(self, text: str, *, add_special_tokens: bool = True) -> int:
        """The token count of `text`, or -- for a text too long for the context by far -- a
        lower bound above `max_seq_len` from a prefix: a 10M-character prompt is refused after
        tokenizing a few hundred thousand characters, not all of them."""
        width = self._max_token_chars
        cap = (self.max_seq_len + 2) * width
        if width and len(text) > cap:
            # The prefix's tokens are the whole text's, but for the last one, which may change.
            within = self.count(text[:cap], add_special_tokens=add_special_tokens) - 1
            if within > self.max_seq_len:
                return within
        return self.count(text, add_special_tokens=add_special_tokens)
