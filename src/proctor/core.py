"""The plain data objects that flow between the stages of a run (see DESIGN.md)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

RequestKind = Literal["generate", "loglikelihood"]


@dataclass(frozen=True)
class Sample:
    """One benchmark item: `fields` holds question/options/..., `target` the gold answer."""

    id: str
    fields: Mapping[str, Any]
    target: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Request:
    """What a backend is asked to do for one sample.

    generate: `messages` (chat) or `prompt` (plain text), with `max_tokens`,
    `temperature` and `stop`. loglikelihood: `context` and `continuations`;
    the backend returns log P(continuation | context) for each continuation.
    """

    kind: RequestKind
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    context: str | None = None
    continuations: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        """The request content as JSON-able data (what is sent, what is hashed)."""
        # Built by hand: dataclasses.asdict deep-copies and costs ~0.1 ms per request.
        return {
            "kind": self.kind,
            "messages": (
                [{"role": m.role, "content": m.content} for m in self.messages] if self.messages is not None else None
            ),
            "prompt": self.prompt,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "stop": list(self.stop),
            "context": self.context,
            "continuations": list(self.continuations),
        }

    def key(self, model_identity: str) -> str:
        """Stable hash of model identity + request content: the response cache key."""
        blob = json.dumps(
            {"model": model_identity, "request": self.payload()},
            sort_keys=True,
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    @property
    def deterministic(self) -> bool:
        """True when the same request must always give the same answer (cacheable)."""
        return self.kind == "loglikelihood" or self.temperature == 0.0


@dataclass(frozen=True)
class Response:
    """A backend's answer to one Request; `error` set means it failed after retries."""

    text: str | None = None
    loglikelihoods: tuple[float, ...] | None = None
    # Per-continuation token counts, for length-normalised scoring (acc_norm).
    continuation_lengths: tuple[int, ...] | None = None
    error: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    attempts: int = 1
    cached: bool = False
    # Why generation ended, as OpenAI reports it: "stop", "length" (cut by max_tokens),
    # "content_filter", ...; None when the backend does not say.
    finish_reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Response":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for name in ("loglikelihoods", "continuation_lengths"):
            if known.get(name) is not None:
                known[name] = tuple(known[name])
        return cls(**known)


@dataclass(frozen=True)
class Record:
    """One line of predictions/<model>/<dataset>.jsonl."""

    sample_id: str
    prompt: Any  # the prompt as sent: a list of chat messages, a string, or context+continuations
    output: str | None
    loglikelihoods: list[float] | None
    prediction: str | None
    target: str
    correct: bool | None  # None when the request failed: never scored
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    cached: bool = False
    continuation_lengths: list[int] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    finish_reason: str | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Record":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass(frozen=True)
class Result:
    """The score of one (model, dataset) pair."""

    model: str
    dataset: str
    metric: str
    value: float  # in percent, as OpenCompass prints it
    stderr: float
    n: int  # scored samples
    n_failed: int = 0
    extra_metrics: Mapping[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Result":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


_UNSAFE_IN_PATHS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def path_part(name: str) -> str:
    """A model or dataset name as one folder or file name of the outputs layout.

    Served model ids often hold `/` (`Qwen/Qwen2.5-7B`) or `:`; they must not become
    nested or invalid folders. Tables keep the real name.
    """
    safe = _UNSAFE_IN_PATHS.sub("_", name).strip()
    return "_" if safe in ("", ".", "..") else safe
