"""Building the backend for a model config; each backend module is imported only when used."""

from __future__ import annotations

from typing import TYPE_CHECKING

from proctor.models.base import Backend

if TYPE_CHECKING:
    from proctor.config.schema import ApiModelConfig, HFModelConfig, VLLMModelConfig


def create_backend(config: ApiModelConfig | HFModelConfig | VLLMModelConfig) -> Backend:
    """The backend for config (not started)."""
    # Imported here, not at the top: `proctor.models` (hence `proctor.models.base`, which
    # the engine and `proctor serve` import) would otherwise load pydantic with it.
    from proctor.config.schema import ApiModelConfig, HFModelConfig

    if isinstance(config, ApiModelConfig):
        from proctor.models.api import ApiBackend

        return ApiBackend(config)
    if isinstance(config, HFModelConfig):
        from proctor.models.hf import HFBackend

        return HFBackend(config)
    from proctor.models.vllm import VLLMBackend

    return VLLMBackend(config)
