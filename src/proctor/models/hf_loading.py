"""Load a Hugging Face checkpoint for HFBackend: find it, check it, load it, name it.

Every way a checkpoint can be unusable becomes one BackendError line that names
the path (or hub id) and what was expected.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from proctor.config.schema import HFModelConfig
from proctor.errors import BackendError
from proctor.models.identity import TOKENIZER_FILES, generation_settings, model_identity

log = logging.getLogger("proctor.models.hf")

# Small files fetched first for a hub id (weights come through from_pretrained).
_HUB_SMALL_FILES = ["*.json", "*.jinja", "*.model", "*.txt", "*.tiktoken", "*.py"]
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_TRUST_HINT = (
    "set trust_remote_code: true (or --trust-remote-code) if you trust this model's code"
)


@dataclass
class LoadedModel:
    """A model ready to run, with everything the backend needs to know about it."""

    model: Any  # transformers PreTrainedModel
    tokenizer: Any  # transformers tokenizer (left padding, pad token set)
    device: torch.device  # where inputs go
    dtype: str
    source: str  # what from_pretrained was given (local dir or hub id)
    model_dir: Path  # local directory of the checkpoint (hub snapshot for a hub id)
    identity: str
    chat: bool
    batch_size: int


def load_model(config: HFModelConfig) -> LoadedModel:
    """Resolve, check and load the checkpoint of `config` (blocking: run it in a thread)."""
    model_src, model_dir = resolve_checkpoint(config.path, "model")
    check_model_dir(model_dir, config.path, config.trust_remote_code)
    if config.tokenizer_path:
        tok_src, tok_dir = resolve_checkpoint(config.tokenizer_path, "tokenizer")
    else:
        tok_src, tok_dir = model_src, model_dir
    check_tokenizer_dir(tok_dir, config.tokenizer_path or config.path, config.trust_remote_code)

    device, device_map = pick_device(config)
    dtype = pick_dtype(config.dtype, device)
    tokenizer = _load_tokenizer(tok_src, config)
    model = _load_model(model_src, config, dtype, device, device_map)
    # With device_map the model may span devices: inputs go where the embeddings are.
    input_device = model.get_input_embeddings().weight.device
    chat = config.chat if config.chat is not None else bool(tokenizer.chat_template)
    batch_size = (
        auto_batch_size(model, input_device, config.max_seq_len)
        if config.batch_size == "auto"
        else int(config.batch_size)
    )
    identity = model_identity("hf", model_dir, tok_dir, tokenizer, dtype, generation_settings(config))
    log.info(
        "loaded %s on %s (%s, batch size %d, chat=%s)", model_src, input_device, dtype,
        batch_size, chat,
    )
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        device=input_device,
        dtype=dtype,
        source=model_src,
        model_dir=model_dir,
        identity=identity,
        chat=chat,
        batch_size=batch_size,
    )


def resolve_checkpoint(path: str, what: str) -> tuple[str, Path]:
    """(what to give from_pretrained, local directory) for a local path or a hub id."""
    local = Path(path).expanduser()
    if local.is_dir():
        return str(local.resolve()), local.resolve()
    if local.exists():
        raise BackendError(
            f"{what} path '{path}' is a file; expected a directory with a Hugging Face "
            "checkpoint (config.json, weights, tokenizer files)"
        )
    if path.startswith(("/", ".", "~")) or not _HUB_ID.match(path):
        raise BackendError(
            f"{what} path '{path}' does not exist; expected a local checkpoint directory "
            "or a Hugging Face hub id such as 'Qwen/Qwen2.5-0.5B-Instruct'"
        )
    return path, _snapshot(path, what)


def _hub_offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or env in {"1", "true", "yes", "on"}


def _snapshot(repo_id: str, what: str) -> Path:
    """Fetch (or find in the local cache) the small files of a hub repo; its snapshot dir."""
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hub_errors

    offline = _hub_offline()
    try:
        return Path(
            snapshot_download(
                repo_id, allow_patterns=_HUB_SMALL_FILES, local_files_only=offline
            )
        )
    except (hub_errors.GatedRepoError, hub_errors.RepositoryNotFoundError) as exc:
        raise BackendError(
            f"{what} '{repo_id}' is not a local directory and the Hugging Face hub refused it "
            f"({type(exc).__name__}): check the id, or run `hf auth login` for a gated model"
        ) from None
    except Exception as exc:  # offline, no network, cache miss: all mean "not available here"
        if offline:
            reason = "is not in the local Hugging Face cache and the hub is offline (HF_HUB_OFFLINE)"
        else:
            reason = f"could not be fetched from the Hugging Face hub ({type(exc).__name__})"
        raise BackendError(
            f"{what} '{repo_id}' is not a local directory and {reason}: pass a local "
            f"checkpoint path, or download it first with `hf download {repo_id}`"
        ) from None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise BackendError(f"{path} does not hold a JSON object")
    return data


def check_model_dir(model_dir: Path, shown: str, trust_remote_code: bool) -> None:
    """Fail early, with one clear line, on a directory transformers could not load."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise BackendError(
            f"model path '{shown}' is not a Hugging Face model directory: no config.json in "
            f"{model_dir} (expected config.json, model weights and tokenizer files)"
        )
    config = _read_json(config_file)
    if trust_remote_code:
        return
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    if config.get("auto_map") and model_type not in CONFIG_MAPPING:
        raise BackendError(
            f"model '{shown}' (model_type {model_type!r}) needs its own Python code from "
            f"{model_dir}: {_TRUST_HINT}"
        )
    if model_type is not None and model_type not in CONFIG_MAPPING:
        import transformers

        raise BackendError(
            f"model '{shown}' has model_type {model_type!r}, unknown to transformers "
            f"{transformers.__version__}: upgrade transformers, or {_TRUST_HINT}"
        )


def check_tokenizer_dir(tok_dir: Path, shown: str, trust_remote_code: bool) -> None:
    if not any((tok_dir / name).is_file() for name in TOKENIZER_FILES):
        raise BackendError(
            f"no tokenizer files in '{shown}' (expected tokenizer.json or tokenizer_config.json "
            "with its vocabulary); set tokenizer_path to the directory that has them"
        )
    cfg_file = tok_dir / "tokenizer_config.json"
    if trust_remote_code or not cfg_file.is_file():
        return
    cfg = _read_json(cfg_file)
    auto_map = cfg.get("auto_map")
    tok_class = str(cfg.get("tokenizer_class") or "")
    if auto_map and tok_class:
        import transformers

        known = hasattr(transformers, tok_class) or hasattr(transformers, tok_class + "Fast")
        if not known:
            raise BackendError(
                f"tokenizer '{shown}' ({tok_class}) needs its own Python code: {_TRUST_HINT}"
            )


def pick_device(config: HFModelConfig) -> tuple[torch.device, Any]:
    """(main device, device_map for from_pretrained or None)."""
    if config.device:
        try:
            device = torch.device(config.device)
        except (RuntimeError, ValueError):
            raise BackendError(f"device {config.device!r} is not a device torch knows: use cpu, cuda, cuda:N or mps") from None
    elif config.num_gpus == 0 or not torch.cuda.is_available():
        device = torch.device("cpu")
    else:
        device = torch.device("cuda", 0)
    if device.type == "cuda" and config.num_gpus > 1:
        available = torch.cuda.device_count()
        if config.num_gpus > available:
            raise BackendError(
                f"num_gpus is {config.num_gpus} but only {available} GPU(s) are visible"
            )
        try:
            import accelerate  # noqa: F401  (device_map needs it)
        except ImportError:
            raise BackendError(
                f"num_gpus: {config.num_gpus} needs the 'accelerate' package: pip install accelerate"
            ) from None
        return device, "auto"
    return device, None


def pick_dtype(name: str, device: torch.device) -> str:
    """The dtype name to load with: 'auto' is bfloat16 on GPU (float16 if unsupported), float32 on CPU."""
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    return "float32"


def _load_tokenizer(source: str, config: HFModelConfig) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(source, trust_remote_code=config.trust_remote_code)
    except Exception as exc:
        raise _load_error("tokenizer", source, exc) from None
    # Left padding: every row's last real token sits at the end, so generation
    # appends after it and the last position is the one to read logits from.
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
        else:
            raise BackendError(f"tokenizer '{source}' has no pad, eos or unk token to pad with")
    return tok


def _load_model(
    source: str, config: HFModelConfig, dtype: str, device: torch.device, device_map: Any
) -> Any:
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    # transformers' per-tensor "Loading weights" bar would interleave with Proctor's progress bars.
    hf_logging.disable_progress_bar()
    kwargs: dict[str, Any] = {"trust_remote_code": config.trust_remote_code, "dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
        kwargs["max_memory"] = _max_memory(config.num_gpus)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except Exception as exc:
        raise _load_error("model", source, exc) from None
    if device_map is None:
        try:
            model.to(device)
        except (RuntimeError, AssertionError, ValueError) as exc:  # no CUDA, no MPS, an index too high
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise BackendError(f"cannot put model '{source}' on device {device}: {first}") from None
    model.eval()
    return model


def _max_memory(num_gpus: int) -> dict[Any, str]:
    # Only the first num_gpus GPUs; the rest stay free for other workers.
    limits: dict[Any, str] = {}
    for i in range(num_gpus):
        free, _ = torch.cuda.mem_get_info(i)
        limits[i] = f"{int(free * 0.9) // 2**20}MiB"
    return limits


def _load_error(what: str, source: str, exc: Exception) -> BackendError:
    text = str(exc)
    if "trust_remote_code" in text:
        return BackendError(f"{what} '{source}' needs its own Python code: {_TRUST_HINT}")
    if isinstance(exc, OSError) and ("model.safetensors" in text or "pytorch_model.bin" in text):
        return BackendError(
            f"no model weights in '{source}' (expected model.safetensors or pytorch_model.bin)"
        )
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return BackendError(
            f"{what} '{source}' does not fit in GPU memory: use more GPUs (num_gpus) or a smaller dtype"
        )
    first = text.strip().splitlines()[0] if text.strip() else ""
    return BackendError(f"cannot load {what} '{source}': {type(exc).__name__}: {first}")


def auto_batch_size(model: Any, device: torch.device, max_seq_len: int) -> int:
    """batch_size 'auto': 8 on CPU; on GPU, what free memory allows for full-length rows.

    Deliberately rough: an out-of-memory batch is retried at half size anyway.
    """
    if device.type != "cuda":
        return 8
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    layers = getattr(cfg, "num_hidden_layers", 32)
    heads = getattr(cfg, "num_attention_heads", 32)
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    elem = torch.finfo(model.dtype).bits // 8
    kv_per_token = 2 * layers * kv_heads * head_dim * elem
    # float32 logits (and their log-softmax) dominate for big vocabularies.
    per_token = kv_per_token + 8 * cfg.vocab_size
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(64, int(0.8 * free / (max_seq_len * per_token))))
