"""Building the backend for a model config; each backend module is imported only when used."""

from __future__ import annotations

from proctor.config.schema import ApiModelConfig, HFModelConfig, VLLMModelConfig
from proctor.models.base import Backend


def create_backend(config: ApiModelConfig | HFModelConfig | VLLMModelConfig) -> Backend:
    if isinstance(config, ApiModelConfig):
        from proctor.models.api import ApiBackend

        return ApiBackend(config)
    if isinstance(config, HFModelConfig):
        from proctor.models.hf import HFBackend

        return HFBackend(config)
    from proctor.models.vllm import VLLMBackend

    return VLLMBackend(config)
