"""The config schema: what a model, a dataset and a run are."""

from __future__ import annotations

import math
import re
import typing
from typing import Annotated, Any, Literal, Union
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError


def _takes(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field's annotation accepts a value of one of `kinds` (Any accepts all)."""
    if annotation is Any or annotation in kinds:
        return True
    return any(_takes(a, kinds) for a in typing.get_args(annotation) if not isinstance(a, (str, int, float)))


class NotANumber:
    """A bool given for a number (`retry: true`) or a non-finite float (`timeout: inf`): it
    fails the field's own validation, so the error names the key."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data: Any) -> Any:
        """`retry: true` is a mistake, not 1 retry; `timeout: inf` is no limit at all."""
        if not isinstance(data, dict):
            return data
        wrong = {}
        for key, value in data.items():
            field = cls.model_fields.get(key) if isinstance(key, str) else None
            if field is None:
                continue
            if isinstance(value, bool) and not _takes(field.annotation, (bool,)):
                wrong[key] = NotANumber(value)
            elif isinstance(value, float) and not math.isfinite(value) and _takes(field.annotation, (int, float)):
                wrong[key] = NotANumber(value)
        return {**data, **wrong} if wrong else data


class ReasoningMarkersConfig(_Config):
    """A reasoning model's own thought delimiters (`reasoning: {start, end}` in a model config).

    `opened_by_prompt`: the chat template writes `start` into the prompt (Qwen3, DeepSeek-R1),
    so an output without `end` is a thought that never ended.
    """

    start: str = "<think>"
    end: str = Field("</think>", min_length=1)
    opened_by_prompt: bool = False


# The answer budget of a model with `reasoning: true` when no max_out_len is given: a
# benchmark's own (256, 512) is spent before most thoughts end.
REASONING_MAX_OUT_LEN = 32768

# Request fields Proctor sets itself: `extra_body` may not replace them (say them as settings).
_OWN_BODY_KEYS = ("model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "stop",
                  "n", "seed", "stream", "echo", "logprobs")


class _ReasoningSettings(_Config):
    """Settings every kind of model shares for reasoning models (see README, "Evaluating
    reasoning models")."""

    # True: a reasoning model (`<think>` tags; the answer budget is REASONING_MAX_OUT_LEN unless
    # max_out_len is given); a mapping: its own markers.
    reasoning: bool | ReasoningMarkersConfig = False
    # Sent first in every chat request of this model (instead of a benchmark's own system prompt).
    system_prompt: str | None = None

    @field_validator("reasoning", mode="before")
    @classmethod
    def _reasoning_shape(cls, value: Any) -> Any:
        """One line for a wrong value (not the union's two complaints)."""
        if isinstance(value, (bool, ReasoningMarkersConfig)):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"expected true, false or a mapping {{start, end}}, got {type(value).__name__}")
        unknown = [k for k in value if k not in ReasoningMarkersConfig.model_fields]
        if unknown:
            raise ValueError(f"unknown key {unknown[0]!r}; the markers are start, end, opened_by_prompt")
        for key in ("start", "end"):
            if key in value and not isinstance(value[key], str):
                raise ValueError(f"{key} must be a string, got {type(value[key]).__name__}")
        if "end" in value and not value["end"]:
            raise ValueError("end must be a non-empty marker (the answer follows it)")
        if not isinstance(value.get("opened_by_prompt", False), bool):
            raise ValueError("opened_by_prompt must be true or false")
        return value

    def reasoning_markers(self) -> Any:
        """The proctor.reasoning.ReasoningMarkers this model's outputs are split with (None: the
        default tags, which are always recognised)."""
        from proctor.reasoning import ReasoningMarkers

        if isinstance(self.reasoning, ReasoningMarkersConfig):
            r = self.reasoning
            return ReasoningMarkers(start=r.start, end=r.end, opened_by_prompt=r.opened_by_prompt)
        return ReasoningMarkers() if self.reasoning else None


# The upper bound of `max_concurrency: auto`: the window is found by AdaptiveLimit below it.
AUTO_CONCURRENCY = 1024


class ApiModelConfig(_ReasoningSettings):
    """A model behind an OpenAI-compatible HTTP API."""

    type: Literal["api"] = "api"
    abbr: str | None = None
    api_base: str
    model: str | None = None  # None: read it from GET /v1/models
    api_key_env: str = "OPENAI_API_KEY"
    # A key written in a config file; never serialised in clear.
    api_key: SecretStr | None = None
    api_type: Literal["chat", "completions"] = "chat"
    # What the server serves under this name (a checkpoint step, a date): part of the cache
    # identity, so answers of another checkpoint are never reused.
    revision: str | None = None
    max_concurrency: int = Field(32, ge=1)
    # Find the server's capacity (models/slots.AdaptiveLimit), max_concurrency the upper bound;
    # `max_concurrency: auto` is `adaptive: true` with a bound of AUTO_CONCURRENCY.
    adaptive: bool = False
    # The opening window: it doubles each round trip until the server first pushes back.
    adaptive_start: int | None = Field(None, ge=1)
    qps: float | None = Field(None, gt=0)
    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)  # tokens per minute: prompt + max_tokens, then usage
    retry: int = Field(3, ge=0)  # retries after the first attempt
    timeout: float = Field(60.0, gt=0)
    temperature: float = Field(0.0, ge=0)
    max_out_len: int = Field(256, ge=1)
    # Prompt + answer budget in tokens (estimated): few-shot examples are dropped to fit.
    max_seq_len: int | None = Field(None, ge=1)
    # OpenAI-style reasoning models: `reasoning_effort` sent as is ("low", "medium", "high", ...);
    # `max_completion_tokens: true` sends the answer budget under that name instead of
    # `max_tokens` (o-series), an integer N also makes N the budget (OpenCompass's setting).
    reasoning_effort: str | None = None
    max_completion_tokens: bool | int = False
    # Further request-body fields, merged into every generate request (vLLM/SGLang:
    # `chat_template_kwargs: {enable_thinking: true}`); part of the model's cache identity.
    extra_body: dict[str, Any] = Field(default_factory=dict)
    # The Batch API (/v1/files + /v1/batches, half price, answers within 24 h): the run's
    # requests go as JSONL files split at the provider's limits (models/batch.py); not part of
    # the identity, so batch and online answers share cache keys.
    batch: bool = False
    batch_max_requests: int = Field(50_000, ge=1)  # per batch file (OpenAI: 50,000)
    batch_max_bytes: int = Field(200_000_000, ge=1024)  # per batch file (OpenAI: 200 MB)
    batch_retry: Literal["online", "batch"] = "online"  # failed or expired lines go here
    batch_poll_s: float = Field(15.0, gt=0)  # first wait between status checks; grows x1.5
    batch_poll_max_s: float = Field(300.0, gt=0)
    # US$ per million tokens online, for --dry-run's cost estimate (the Batch API: half of it).
    price_per_million_input: float | None = Field(None, ge=0)
    price_per_million_output: float | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _completion_budget(cls, data: Any) -> Any:
        """`max_completion_tokens: N` is the budget N sent under that name."""
        if isinstance(data, dict):
            value = data.get("max_completion_tokens")
            if isinstance(value, int) and not isinstance(value, bool):
                if value < 1:
                    raise ValueError(f"max_completion_tokens must be at least 1 or true/false, got {value}")
                data = {**data, "max_completion_tokens": True}
                data.setdefault("max_out_len", value)
        return data

    @field_validator("extra_body")
    @classmethod
    def _no_own_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        own = [k for k in value if k in _OWN_BODY_KEYS]
        if own:
            raise ValueError(f"{own[0]!r} is set by Proctor; use the model's own setting (max_out_len, "
                             "temperature, max_completion_tokens, ...) instead of extra_body")
        return value

    def body_settings(self) -> dict[str, Any]:
        """What this config adds to a generate request's body (empty for a plain model)."""
        extra: dict[str, Any] = dict(self.extra_body)
        if self.reasoning_effort is not None:
            extra["reasoning_effort"] = self.reasoning_effort
        return extra

    @model_validator(mode="before")
    @classmethod
    def _auto_concurrency(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("max_concurrency") == "auto":
            return {**data, "max_concurrency": AUTO_CONCURRENCY, "adaptive": True}
        return data

    @field_validator("api_base")
    @classmethod
    def _parseable_url(cls, value: str) -> str:
        """A URL the HTTP client cannot parse fails here, before a run folder is made."""
        try:
            parts = urlsplit(value.strip())
            port = parts.port
        except ValueError as exc:
            reason = str(exc)
            if "IPv6" in reason:
                reason = "an unclosed '[' in the host"
            elif "out of range" in reason or "Port" in reason:
                reason = "a port that is not a number from 1 to 65535"
            raise PydanticCustomError("url_parsing", "not a valid URL: {reason}", {"reason": reason}) from None
        if port == 0:
            raise PydanticCustomError("url_parsing", "not a valid URL: port 0", {})
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            # Caught now, not when the model (or a judge, after all of inference) first starts.
            raise PydanticCustomError(
                "url_parsing", "{value} is not an http(s) URL; write it like http://127.0.0.1:8000/v1",
                {"value": repr(value)})
        return value

    @field_validator("api_key_env")
    @classmethod
    def _named_variable(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError(
                "empty", "empty: name the environment variable that holds the key (default OPENAI_API_KEY)", {})
        return value


# Device types torch knows that can run a model (`cuda`, `cuda:1`, ...); checked before torch loads.
_DEVICE = re.compile(r"(cpu|cuda|mps|xpu|npu|hpu|mtia|hip|xla|ipu)(:\d+)?")


def check_device(value: str | None) -> str | None:
    """A device name as torch writes it, or ValueError in one line."""
    if value is not None and not _DEVICE.fullmatch(value.strip()):
        raise ValueError(f"{value!r} is not a device: use cpu, cuda, cuda:N or mps")
    return value.strip() if value is not None else None


class HFModelConfig(_ReasoningSettings):
    """A local Hugging Face checkpoint run with transformers."""

    type: Literal["hf"] = "hf"
    abbr: str | None = None
    path: str
    tokenizer_path: str | None = None
    chat: bool | None = None  # None: true when the tokenizer has a chat template
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str | None = None  # None: cuda when available, else cpu
    num_gpus: int = Field(1, ge=0)
    batch_size: int | Literal["auto"] = 8
    max_seq_len: int = Field(2048, ge=1)
    max_out_len: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    trust_remote_code: bool = False
    # Given to the tokenizer's apply_chat_template (Qwen3: `{enable_thinking: true}`).
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str | None) -> str | None:
        return check_device(value)

    @field_validator("batch_size")
    @classmethod
    def _batch_size_positive(cls, value: int | str) -> int | str:
        if isinstance(value, int) and value < 1:
            raise ValueError("must be at least 1 (or 'auto')")
        return value


class VLLMModelConfig(_ReasoningSettings):
    """A local checkpoint run with vLLM (extra `proctor[vllm]`)."""

    type: Literal["vllm"] = "vllm"
    abbr: str | None = None
    path: str
    tokenizer_path: str | None = None
    chat: bool | None = None
    dtype: str = "auto"
    num_gpus: int = Field(1, ge=1)
    max_seq_len: int = Field(2048, ge=1)
    max_out_len: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    generation_kwargs: dict[str, Any] = Field(default_factory=dict)
    trust_remote_code: bool = False
    chat_template_kwargs: dict[str, Any] = Field(default_factory=dict)


ModelConfig = Annotated[
    Union[ApiModelConfig, HFModelConfig, VLLMModelConfig], Field(discriminator="type")
]


class DatasetConfig(_Config):
    """One scored unit: a benchmark subset in one mode (a row of the summary table)."""

    abbr: str  # e.g. "ceval-computer_network"; unique within a run
    benchmark: str  # the task spec's name, e.g. "ceval"
    subject: str = ""  # the subset; "" for a benchmark without subsets
    # A user's spec file or data file (`./my.jsonl`); None: the built-in spec `benchmark`.
    spec_path: str | None = None
    # A data file's OpenCompass meta.json (default: `<file>.meta.json` beside it) and its type.
    meta_path: str | None = None
    data_type: Literal["mcq", "qa"] | None = None
    mode: Literal["gen", "ppl"] = "gen"
    # ppl only: score the letters (" A".." D") or the option texts (adds acc_norm, length-normalised).
    continuations: Literal["letters", "options"] = "letters"
    # Multiple choice: ask each question in every cyclic option order (circular) or every order (all).
    variants: Literal["none", "circular", "all"] = "none"
    fewshot: int | None = Field(None, ge=0)  # None: the spec's default
    range: str | None = None  # OpenCompass-style slice of the eval split: "[0:10]", "[-5:]"
    limit: int | None = Field(None, ge=1)  # first N samples (after range)
    max_out_len: int | None = Field(None, ge=1)  # overrides the model's for this dataset
    # Times each question is asked (`#k<j>` items; avg@K, pass@K, maj@K); None: the spec's.
    repeats: int | None = Field(None, ge=1)
    # Another scorer than the spec's (e.g. `cascade`: the rule, then a judge model), with params.
    scorer: str | None = None
    scorer_params: dict[str, Any] | None = None
    data_dir: str | None = None  # overrides the run's data root (e.g. the bundled demo set)

    @model_validator(mode="before")
    @classmethod
    def _num_samples_is_repeats(cls, data: Any) -> Any:
        """`num_samples` (the older name, in config files and old runs' config.json) is `repeats`."""
        if isinstance(data, dict) and "num_samples" in data:
            data = dict(data)
            old = data.pop("num_samples")
            if data.get("repeats") is not None and old is not None and data["repeats"] != old:
                raise PydanticCustomError("repeats", "repeats {new} and num_samples {old} disagree; keep repeats",
                                          {"new": data["repeats"], "old": old})
            if data.get("repeats") is None:
                data["repeats"] = old
        return data


class RunConfig(_Config):
    models: list[ModelConfig]
    datasets: list[DatasetConfig]
    # The model that grades answers for the llm_judge and cascade scorers (any kind of model).
    judge: ModelConfig | None = None
    work_dir: str = "outputs"

    @field_validator("work_dir")
    @classmethod
    def _work_dir_named(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("empty", "empty: name the outputs folder (default outputs)", {})
        return value
    data_dir: str | None = None
    debug: bool = False
    max_num_workers: int | None = Field(None, ge=1)
    max_partition_size: int | None = Field(None, ge=1)
    mode: Literal["all", "infer", "eval", "report"] = "all"
    reuse: str | None = None
    cache: bool = True
    runner: Literal["local", "ray", "slurm"] = "local"
    ray_address: str | None = None
    # --runner slurm: sbatch options for every job (the user's own, shell-split, last), and how
    # often a failed or preempted job is submitted again.
    slurm_partition: str | None = None
    slurm_gres: str | None = None  # for local models that want GPUs (default gpu:<num_gpus>)
    slurm_time: str | None = None
    slurm_args: str | None = None
    slurm_retry: int = Field(2, ge=0)
    dry_run: bool = False
    seed: int = 0


def model_abbr(model: ApiModelConfig | HFModelConfig | VLLMModelConfig) -> str:
    """The name a model goes by in tables and output paths."""
    if model.abbr:
        return model.abbr
    if isinstance(model, ApiModelConfig):
        return model.model or "api-model"
    return model.path.rstrip("/").split("/")[-1] or "local-model"
