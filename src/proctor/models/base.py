"""The one protocol every model backend implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, runtime_checkable

from proctor.core import Request, Response

OnResponse = Callable[[int, Response], None]
"""Called once per request index, as soon as its response (or final failure) is known."""


@dataclass(frozen=True)
class PromptLogprobs:
    """Per-token log-probabilities of a prompt, as OpenAI's `echo` + `logprobs` returns them.

    `offsets[i]` is the character offset of `tokens[i]` in the prompt; `logprobs[0]`
    is None (the first token has no context).
    """

    tokens: tuple[str, ...]
    offsets: tuple[int, ...]
    logprobs: tuple[float | None, ...]


@runtime_checkable
class Backend(Protocol):
    """A model that answers Requests.

    Lifecycle: `await start()` (load weights / discover the model id / check the
    endpoint; raises `BackendError` with one clear line when unusable), then any
    number of `await process(...)` calls, possibly concurrent from several tasks
    (the backend owns concurrency limits and batching), then `await close()`.

    `process` must call `on_response(i, response)` exactly once for every index
    i of `requests`, as each completes. A request that fails after retries gets
    a Response with `error` set; only errors that make the whole model unusable
    (bad credentials, unreachable endpoint) are raised.
    """

    name: str
    """Display name (the model's abbr in tables and output paths)."""

    @property
    def identity(self) -> str:
        """Stable, secret-free id of the model (API base + model id, or path + config hash).

        Part of every cache key; only valid after start()."""
        ...

    @property
    def chat(self) -> bool:
        """True when prompts should be sent as chat messages; only valid after start()."""
        ...

    async def start(self) -> None: ...

    async def process(self, requests: Sequence[Request], on_response: OnResponse) -> None: ...

    async def close(self) -> None: ...


def settings_tag(settings: dict[str, object]) -> str:
    """'|settings:<hash>' of the model settings that change its answers (reasoning_effort,
    extra_body, chat_template_kwargs, reasoning markers), or '' when none is set: part of the
    identity, so a cached answer made under other settings is never reused."""
    import hashlib
    import json

    given = {k: v for k, v in settings.items() if v not in (None, False, {}, "")}
    if not given:
        return ""
    blob = json.dumps(given, sort_keys=True, ensure_ascii=False, default=str)
    return "|settings:" + hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def local_settings_tag(config: object) -> str:
    """settings_tag of a local model's config: its chat_template_kwargs and reasoning markers."""
    markers = getattr(config, "reasoning", False)
    return settings_tag({
        "chat_template_kwargs": dict(getattr(config, "chat_template_kwargs", None) or {}),
        "reasoning": markers.model_dump() if hasattr(markers, "model_dump") else markers,
    })
