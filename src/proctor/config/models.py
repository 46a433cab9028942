"""Validating model configs from dicts, with errors that name the key."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError

from proctor.config.schema import ApiModelConfig, HFModelConfig, ModelConfig, VLLMModelConfig
from proctor.errors import ConfigError

AnyModelConfig = ApiModelConfig | HFModelConfig | VLLMModelConfig
_ADAPTER: TypeAdapter[Any] = TypeAdapter(ModelConfig)


def model_from_dict(data: dict[str, Any], *, where: str) -> AnyModelConfig:
    """Build a model config; `type` defaults to api when `api_base` is given, else hf."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of model settings, got {type(data).__name__}")
    data = dict(data)
    data.setdefault("type", "api" if "api_base" in data else "hf")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where)) from None


def validation_message(exc: ValidationError, where: str) -> str:
    """One line: `<where>.<key>: <what was expected>` for the first error (and a count)."""
    errors = exc.errors()
    first = errors[0]
    # The first loc element of a discriminated union is the tag ('api'); drop it.
    loc = [str(p) for p in first["loc"] if p not in ("api", "hf", "vllm")]
    key = ".".join(loc)
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    elif first["type"] == "missing":
        message = "required key is missing"
    return f"{where}{'.' + key if key else ''}: {message}{more}"
