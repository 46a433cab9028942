"""Model presets (`gpt-4o-mini`, `qwen2_5-0_5b-instruct-hf`, ...); dataset names live in `proctor.tasks`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from proctor.config.schema import ApiModelConfig, HFModelConfig, VLLMModelConfig
from proctor.config.suggest import did_you_mean
from proctor.errors import ConfigError

@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    config: dict[str, Any]


MODEL_PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset(
            "gpt-4o-mini",
            "OpenAI gpt-4o-mini (key in $OPENAI_API_KEY)",
            {"type": "api", "api_base": "https://api.openai.com/v1", "model": "gpt-4o-mini"},
        ),
        ModelPreset(
            "deepseek-chat",
            "DeepSeek chat API (key in $DEEPSEEK_API_KEY)",
            {
                "type": "api",
                "api_base": "https://api.deepseek.com/v1",
                "model": "deepseek-chat",
                "api_key_env": "DEEPSEEK_API_KEY",
            },
        ),
        ModelPreset(
            "qwen-plus",
            "Alibaba Qwen via DashScope's OpenAI-compatible mode (key in $DASHSCOPE_API_KEY)",
            {
                "type": "api",
                "api_base": "https://dashscope.aliyuncs.com/compatible-mode/v1",
                "model": "qwen-plus",
                "api_key_env": "DASHSCOPE_API_KEY",
            },
        ),
        ModelPreset(
            "local-api",
            "Any OpenAI-compatible server on 127.0.0.1:23333 (proctor serve, LMDeploy), model id discovered",
            {"type": "api", "api_base": "http://127.0.0.1:23333/v1", "abbr": "local-api"},
        ),
        ModelPreset(
            "internlm2_5-1_8b-chat-hf",
            "InternLM2.5-1.8B-Chat with transformers (needs trust_remote_code)",
            {
                "type": "hf",
                "abbr": "internlm2_5-1_8b-chat-hf",
                "path": "internlm/internlm2_5-1_8b-chat",
                "trust_remote_code": True,
            },
        ),
        ModelPreset(
            "qwen2_5-0_5b-instruct-hf",
            "Qwen2.5-0.5B-Instruct with transformers",
            {"type": "hf", "abbr": "qwen2_5-0_5b-instruct-hf", "path": "Qwen/Qwen2.5-0.5B-Instruct"},
        ),
    ]
}


def resolve_model_preset(name: str) -> ApiModelConfig | HFModelConfig | VLLMModelConfig:
    preset = MODEL_PRESETS.get(name)
    if preset is None:
        raise ConfigError(
            f"unknown model {name!r}" + did_you_mean(name, MODEL_PRESETS) + " (see `proctor list models`)"
        )
    from proctor.config.models import model_from_dict

    return model_from_dict(preset.config, where=f"preset {name}")
