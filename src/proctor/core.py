"""The plain data objects that flow between the stages of a run (see DESIGN.md)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Mapping

RequestKind = Literal["generate", "loglikelihood"]


# Option labels of a multiple-choice question, in order: 2 to 10 options.
CHOICE_LABELS = "ABCDEFGHIJ"
MAX_CHOICES = len(CHOICE_LABELS)


def choice_labels(n: int) -> str:
    """The labels of an n-option question: "ABCD" for 4."""
    if not 2 <= n <= MAX_CHOICES:
        raise ValueError(f"a multiple-choice question has 2 to {MAX_CHOICES} options, got {n}")
    return CHOICE_LABELS[:n]


Target = Any  # a letter ("B"), a string, a number, or a list of acceptable answers


@dataclass(frozen=True)
class Sample:
    """One benchmark question as read from its file.

    `choices` holds the option texts of a multiple-choice question (labelled A, B, ...
    in order; empty for free-form questions) and `target` the gold letter; a free-form
    question's `target` is a string, a number or a list of acceptable answers.
    `fields` keeps the row's other columns (for prompt templates), `meta` what
    describes the sample (subject, explanation).
    """

    id: str
    question: str
    target: Target
    choices: tuple[str, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def labels(self) -> str:
        """The option labels ("ABCD"), or "" for a free-form question."""
        return CHOICE_LABELS[: len(self.choices)]

    def option(self, label: str) -> str:
        """The text of the option labelled `label`."""
        return self.choices[CHOICE_LABELS.index(label)]


@dataclass(frozen=True)
class Item:
    """What one request is made for: a sample, or one variant of it (an option order, a repeat).

    `id` is the sample id, plus `#r<k>` for the k-th option order and `#k<j>` for the
    j-th repeat (`--repeats`; older runs wrote `#n<j>`, still read); `sample` is the
    sample as asked (options reordered, target relabelled), so scorers need nothing else.
    """

    id: str
    sample: Sample
    sample_id: str
    variant: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one record.

    `value` is 1.0/0.0 for right/wrong (or a partial credit); `answer` what was extracted
    (None: no answer found); `rule` which extraction rule fired; `extra` further per-item
    metrics (e.g. `correct_norm` for length-normalised log-likelihood scoring).
    """

    value: float
    answer: Any = None
    rule: str | None = None
    explanation: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> bool:
        return self.value >= 1.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class Request:
    """What a backend is asked to do for one sample.

    generate: `messages` (chat) or `prompt` (plain text), with `max_tokens`,
    `temperature` and `stop`, and `seed` for a repeat (sent where the API takes one; part
    of the cache key, so each repeat has its own answer). loglikelihood: `context` and
    `continuations`; the backend returns log P(continuation | context) for each continuation.
    """

    kind: RequestKind
    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    context: str | None = None
    continuations: tuple[str, ...] = ()
    seed: int | None = None
    # > 0: ask for the log-probabilities of this many alternatives of each generated token (a
    # judge whose verdict is read from them: AlpacaEval's `m`/`M`); sent and hashed only when set.
    top_logprobs: int = 0
    # Not part of what is sent or hashed: few-shot examples dropped to fit the context, and why
    # the request is not sent at all (a prompt longer than the context: a failed record).
    fewshot_dropped: int = 0
    refusal: str | None = None

    def payload(self) -> dict[str, Any]:
        """The request content as JSON-able data (what is sent, what is hashed)."""
        # Built by hand: dataclasses.asdict deep-copies and costs ~0.1 ms per request.
        data: dict[str, Any] = {
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
        if self.seed is not None:  # only then: unseeded requests hash as they always did
            data["seed"] = self.seed
        if self.top_logprobs:
            data["top_logprobs"] = self.top_logprobs
        return data

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
        """True when the same request stands for one answer (cacheable): greedy, log-likelihood,
        or a seeded repeat (its seed is in the key, so repeats never share an answer)."""
        return self.kind == "loglikelihood" or self.temperature == 0.0 or self.seed is not None


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
    # The server's build/config behind this answer (OpenAI's `system_fingerprint`), when it says.
    system_fingerprint: str | None = None
    # A reasoning model's thought when the server returns it apart from the answer
    # (`reasoning_content` / `reasoning`); `reasoning_ended` False when a backend that tracked
    # the markers saw the thought never close (see proctor.reasoning).
    reasoning: str | None = None
    reasoning_ended: bool | None = None
    reasoning_tokens: int | None = None
    # The first generated token's alternatives as [token, log-probability] pairs, when asked for
    # (Request.top_logprobs) and the server returned them.
    top_logprobs: tuple[tuple[str, float], ...] | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        # Field by field, not asdict: asdict deep-copies every value, which costs more than
        # the rest of caching an answer (the JSON is the same: its values are plain already).
        return {name: getattr(self, name) for name in _RESPONSE_FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Response":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for name in ("loglikelihoods", "continuation_lengths"):
            if known.get(name) is not None:
                known[name] = tuple(known[name])
        if known.get("top_logprobs") is not None:
            known["top_logprobs"] = tuple((str(t), float(lp)) for t, lp in known["top_logprobs"])
        return cls(**known)


_RESPONSE_FIELDS = tuple(Response.__dataclass_fields__)


@dataclass(frozen=True)
class Record:
    """One line of predictions/<model>/<dataset>.jsonl: what the model returned for one item.

    Raw outputs only; scores are a separate stage (scores/<model>/<dataset>.jsonl), so they
    can be recomputed without calling a model.
    """

    item_id: str
    prompt: Any  # the prompt as sent: a list of chat messages, a string, or context+continuations
    output: str | None
    loglikelihoods: list[float] | None
    error: str | None = None
    latency_s: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    attempts: int = 1
    cached: bool = False
    continuation_lengths: list[int] | None = None
    finish_reason: str | None = None
    sample_id: str = ""  # the sample the item was made from ("" = item_id)
    system_fingerprint: str | None = None
    # The reasoning part of the output (proctor.reasoning.split_answer decides what is read).
    reasoning: str | None = None
    reasoning_ended: bool | None = None
    reasoning_tokens: int | None = None
    fewshot_dropped: int | None = None  # few-shot examples dropped so the prompt fits the context
    top_logprobs: list[Any] | None = None  # [token, log-probability] pairs of the first token, when asked

    @property
    def failed(self) -> bool:
        return self.error is not None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["top_logprobs"] is None:
            del data["top_logprobs"]  # as the predictions store writes it
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Record":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        # Proctor 0.1 keyed records by sample id only (one item per sample).
        known.setdefault("item_id", data.get("sample_id", ""))
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
    # Standard errors of extra metrics that have one (pass@K, maj@K over repeats), in percent.
    extra_stderrs: Mapping[str, float] = field(default_factory=dict)
    # Generated answers: items whose reasoning was cut off (no answer, scored 0), answers read
    # from replies the token limit ended, and the mean tokens spent (None: not known).
    truncated: int = 0
    length: int = 0
    mean_completion_tokens: float | None = None
    mean_reasoning_tokens: float | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-able data; a missing value (NaN) is written as null, since NaN is not JSON."""
        data = asdict(self)
        if not data["extra_stderrs"]:
            del data["extra_stderrs"]  # results without them read as before
        for key in ("value", "stderr"):
            if isinstance(data[key], float) and math.isnan(data[key]):
                data[key] = None
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Result":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        for key in ("value", "stderr"):
            if known.get(key) is None:
                known[key] = math.nan
        return cls(**known)


# File names are at most 255 bytes on common file systems; room is left for ".jsonl" and temp suffixes.
_MAX_PART_BYTES = 200
_UNSAFE_IN_PATHS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')


def path_part(name: str) -> str:
    """A model or dataset name as one folder or file name of the outputs layout.

    Served model ids often hold `/` (`Qwen/Qwen2.5-7B`) or `:`; they must not become
    nested or invalid folders. A name too long for a file name (a server may report anything)
    is cut and given a hash of the whole, so two long names never share a file. Tables keep
    the real name.
    """
    safe = _UNSAFE_IN_PATHS.sub("_", name).strip()
    if len(safe.encode("utf-8")) > _MAX_PART_BYTES:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
        safe = safe.encode("utf-8")[: _MAX_PART_BYTES - 13].decode("utf-8", "ignore") + "~" + digest
    return "_" if safe in ("", ".", "..") else safe
