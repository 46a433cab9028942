"""Validating model configs from dicts, with errors that name the key.

A model dict may use OpenCompass's names for the same settings (`path`, `key`,
`openai_api_base`, `query_per_second`, `run_cfg`, `type='OpenAISDK'`, ...): those that map one
to one are translated; OpenCompass settings Proctor has no use for are ignored with a warning.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Iterable

from pydantic import BaseModel, TypeAdapter, ValidationError

from proctor.config.schema import ApiModelConfig, HFModelConfig, ModelConfig, NotANumber, VLLMModelConfig
from proctor.config.suggest import close_matches
from proctor.errors import ConfigError

log = logging.getLogger("proctor.config")

AnyModelConfig = ApiModelConfig | HFModelConfig | VLLMModelConfig
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelConfig)
_CLASSES: dict[str, type[BaseModel]] = {"api": ApiModelConfig, "hf": HFModelConfig, "vllm": VLLMModelConfig}

# OpenCompass model classes that are the same thing as one of Proctor's kinds (and whether the
# class formats prompts with the chat template). TurboMind (LMDeploy) checkpoints are Hugging Face
# checkpoints: Proctor runs them with transformers.
OPENCOMPASS_TYPES: dict[str, tuple[str, bool | None]] = {
    "OpenAI": ("api", None),
    "OpenAISDK": ("api", None),
    "HuggingFacewithChatTemplate": ("hf", True),
    "HuggingFaceBaseModel": ("hf", False),
    "HuggingFace": ("hf", None),
    "HuggingFaceCausalLM": ("hf", False),
    "TurboMindModel": ("hf", False),
    "TurboMindModelwithChatTemplate": ("hf", True),
    "VLLM": ("vllm", False),
    "VLLMwithChatTemplate": ("vllm", True),
}
# OpenCompass model settings with no Proctor equivalent: ignored, with one warning that says why.
OPENCOMPASS_IGNORED: dict[str, str] = {
    "batch_padding": "Proctor pads batches itself",
    "model_kwargs": "Proctor loads the model itself, taking only trust_remote_code and torch_dtype",
    "tokenizer_kwargs": "Proctor loads the tokenizer itself, taking only trust_remote_code",
    "pad_token_id": "Proctor pads batches itself",
    "end_str": "answers end where the model stops",
    "stop_words": "answers end where the model stops",
    "peft_path": "adapters are not supported, merge them into the checkpoint",
    "peft_kwargs": "adapters are not supported, merge them into the checkpoint",
    "mode": "prompts are never cut, few-shot examples are dropped to fit max_seq_len",
    "drop_middle": "prompts are never cut, few-shot examples are dropped to fit max_seq_len",
    "use_fastchat_template": "chat prompts use the tokenizer's chat template",
    "min_out_len": "not supported",
    "tokenizer_only": "not supported",
    "sync_rank": "not needed",
    "engine_config": "LMDeploy engine settings do not apply to transformers",
    "gen_config": "LMDeploy generation settings do not apply to transformers",
    "backend": "LMDeploy settings do not apply to transformers",
    "rpm_verbose": "not needed",
    "verbose": "use --debug",
    "org": "not supported",
    "openai_proxy_url": "set HTTPS_PROXY instead",
    "logprobs": "not supported",
    "top_logprobs": "not supported",
    "think_tag": "the answer always follows </think>; set `reasoning: {start, end}` for other markers",
    "pred_postprocessor": "answers are extracted by the dataset's scorer",
    "meta_template": "chat prompts use the tokenizer's chat template, base prompts are plain text",
    "tokenizer_path": "API prompt lengths are estimated without a tokenizer",  # api models only
}
_OPENCOMPASS_RENAMES = {"query_per_second": "qps", "key": "api_key", "openai_api_base": "api_base", "url": "api_base"}


def model_from_dict(
    data: dict[str, Any],
    *,
    where: str,
    notes: list[str] | None = None,
    names: dict[str, str] | None = None,
) -> AnyModelConfig:
    """Build a model config; `type` defaults to api when `api_base` is given, else hf.

    `notes`: collects `where.key` of ignored OpenCompass settings (the caller warns once);
    without it, a warning is logged here. `names`: how keys are shown in errors
    (`{"timeout": "--timeout"}` for command-line flags).
    """
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of model settings, got {type(data).__name__}")
    ignored: list[str] = []
    data = _from_opencompass(dict(data), where, ignored)
    try:
        config = _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where, names=names)) from None
    if notes is not None:
        notes.extend(ignored)
    elif ignored:
        log.warning(ignored_message(ignored))
    return config


def ignored_message(ignored: Iterable[str]) -> str:
    """One line naming the ignored OpenCompass settings and why."""
    ignored = list(ignored)
    reasons: dict[str, list[str]] = {}
    for item in ignored:
        key = item.rsplit(".", 1)[-1]
        reasons.setdefault(OPENCOMPASS_IGNORED.get(key, "not used by Proctor"), []).append(item)
    why = "; ".join(f"{', '.join(items)} ({reason})" for reason, items in reasons.items())
    return f"ignoring OpenCompass settings Proctor has no use for: {why}"


def _kind(value: Any, where: str) -> tuple[str, bool | None]:
    """Proctor's model kind for a `type` value: api/hf/vllm, or an OpenCompass class (name)."""
    name = value if isinstance(value, str) else getattr(value, "__name__", None)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.type: expected api, hf or vllm, got {value!r}")
    if name in _CLASSES:
        return name, None
    short = name.rsplit(".", 1)[-1]  # "opencompass.models.OpenAISDK"
    if short in OPENCOMPASS_TYPES:
        return OPENCOMPASS_TYPES[short]
    close = close_matches(short, [*_CLASSES, *OPENCOMPASS_TYPES])
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(
        f"{where}.type: {name!r} is not a model type Proctor runs; {hint}use api (any OpenAI-compatible "
        "server, e.g. OpenCompass's OpenAISDK), hf (transformers) or vllm"
    )


def _from_opencompass(data: dict[str, Any], where: str, ignored: list[str]) -> dict[str, Any]:
    """OpenCompass's names for the same settings, as Proctor's; ignored keys go to `ignored`."""
    chat: bool | None = None
    opencompass_class = False
    if "type" in data:
        opencompass_class = getattr(data["type"], "__name__", data["type"]) not in _CLASSES
        data["type"], chat = _kind(data["type"], where)
    elif any(k in data for k in ("api_base", "openai_api_base", "url")):
        data["type"] = "api"
    else:
        data["type"] = "hf"
    kind = data["type"]
    if kind == "api":
        if "path" in data:  # OpenCompass names an API model's id `path`
            data.setdefault("model", data.pop("path"))
        if "batch_size" in data:  # an OpenCompass API batch is sent concurrently
            data.setdefault("max_concurrency", data.pop("batch_size"))
    for old, new in _OPENCOMPASS_RENAMES.items():
        if old in data and (kind == "api" or new != "api_base" and new != "api_key"):
            value = data.pop(old)
            if new in data:
                raise ConfigError(f"{where}: both {old!r} and {new!r} are given; keep {new!r}")
            data[new] = value
    if kind == "api" and data.get("api_key") == "ENV":  # OpenCompass: read $OPENAI_API_KEY
        data.pop("api_key")
    if chat is not None and kind != "api":
        data.setdefault("chat", chat)
    run_cfg = data.pop("run_cfg", None)
    if isinstance(run_cfg, dict):
        if kind != "api" and "num_gpus" in run_cfg:
            data.setdefault("num_gpus", run_cfg["num_gpus"])
    elif run_cfg is not None:
        raise ConfigError(f"{where}.run_cfg: expected a mapping such as dict(num_gpus=1), got {type(run_cfg).__name__}")
    for key in ("model_kwargs", "tokenizer_kwargs"):
        extra = data.get(key)
        if kind == "api" or not isinstance(extra, dict):
            continue
        extra = dict(extra)
        if "trust_remote_code" in extra:
            data.setdefault("trust_remote_code", extra.pop("trust_remote_code"))
        dtype = str(extra.pop("torch_dtype", "")).replace("torch.", "")
        if dtype in ("float16", "bfloat16", "float32", "auto"):
            data.setdefault("dtype", dtype)
        elif dtype:
            extra["torch_dtype"] = dtype
        extra.pop("device_map", None)  # Proctor places the model (device, num_gpus)
        if extra:
            data[key] = extra
        else:
            data.pop(key)
    if opencompass_class and kind != "api":
        # OpenCompass loads its Hugging Face models with trust_remote_code=True unless told not to
        # (InternLM's checkpoints need it): a config written for it means the same here.
        data.setdefault("trust_remote_code", True)
    if kind == "api" and isinstance(data.get("generation_kwargs"), dict):
        kwargs = dict(data.pop("generation_kwargs"))
        if "temperature" in kwargs:
            data.setdefault("temperature", kwargs.pop("temperature"))
        if kwargs:
            ignored.extend(f"{where}.generation_kwargs.{k}" for k in kwargs)
    if "meta_template" in data:
        template = data.pop("meta_template")
        if not (kind == "api" and _plain_api_roles(template)):
            ignored.append(f"{where}.meta_template")
    fields = _CLASSES[kind].model_fields
    for key in list(data):
        if key not in fields and key in OPENCOMPASS_IGNORED:
            data.pop(key)
            ignored.append(f"{where}.{key}")
    return data


def _plain_api_roles(template: Any) -> bool:
    """OpenCompass's usual API template (HUMAN/BOT/SYSTEM mapped to the API's roles): it says
    what a chat API does anyway, so it is honoured as it is."""
    if not isinstance(template, dict) or set(template) - {"round", "reserved_roles"}:
        return False
    roles = [*(template.get("round") or []), *(template.get("reserved_roles") or [])]
    plain = {("HUMAN", "HUMAN"), ("BOT", "BOT"), ("SYSTEM", "SYSTEM")}
    return all(
        isinstance(r, dict) and not set(r) - {"role", "api_role", "generate"}
        and (r.get("role"), r.get("api_role")) in plain
        for r in roles
    )


_TAGS = ("api", "hf", "vllm")
_UNION_MEMBER = re.compile(r"^(int|float|str|bool|none|dict\[.*|list\[.*|literal\[.*|function-.*|.*-.*\[.*\])$")


def validation_problems(
    exc: ValidationError,
    where: str,
    *,
    known: Iterable[str] | None = None,
    names: dict[str, str] | None = None,
) -> list[str]:
    """One `<where>.<key>: <problem>` per error; unknown keys get a did-you-mean from `known`
    (for a model, its kind's fields)."""
    lines: list[str] = []
    seen: set[str] = set()
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        fields: Iterable[str] = known or ()
        if loc and loc[0] in _TAGS:  # a discriminated union's first loc element is the tag
            fields = _CLASSES[loc[0]].model_fields
            loc = loc[1:]
        # A union's members add their type to the loc (`batch_size.int`, `batch_size.literal['auto']`).
        loc = [p for i, p in enumerate(loc) if p not in _TAGS and not (i and _UNION_MEMBER.match(p))]
        key = ".".join(loc)
        if key in seen:
            continue  # one line per key: the first member's complaint
        seen.add(key)
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            close = close_matches(loc[-1], [f for f in fields if f != "type"]) if loc else []
            message = "unknown key" + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
        elif error["type"] == "missing":
            message = "required key is missing"
        elif isinstance(error.get("input"), NotANumber):
            value = error["input"].value
            message = f"expected a {'finite ' if isinstance(value, float) else ''}number, got {value!r}"
        elif message.startswith("Value error, "):
            message = message[len("Value error, "):]
        if names and key in names:
            lines.append(f"{names[key]}: {message}")
        else:
            sep = " " if where.endswith(":") else "."
            lines.append(f"{where}{sep + key if key else ''}: {message}")
    return lines


def validation_message(
    exc: ValidationError,
    where: str,
    *,
    known: Iterable[str] | None = None,
    names: dict[str, str] | None = None,
) -> str:
    """Every problem, one line each: `<where>.<key>: <what was expected>`."""
    return "\n".join(validation_problems(exc, where, known=known, names=names))
