"""The settings of one `proctor serve` process, independent of argparse."""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from proctor.errors import ConfigError

API_KEY_ENV = "PROCTOR_SERVE_API_KEY"
DEFAULT_PORT = 23333
DEFAULT_MAX_TOKENS = 256

BackendName = Literal["hf", "vllm", "lmdeploy"]


def check_model_path(path: str) -> None:
    """A missing local directory is a one-line error; `org/name` may be a hub id."""
    if Path(path).expanduser().is_dir() or re.fullmatch(r"[\w.-]+/[\w.-]+", path):
        return
    raise ConfigError(f"model directory {path} does not exist (give a local checkpoint directory)")


@dataclass(frozen=True)
class ServeOptions:
    """Everything `proctor serve` needs; `api_key` is kept out of the repr."""

    model_path: str
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    served_model_name: str = ""
    api_key: str | None = field(default=None, repr=False)
    backend: BackendName = "hf"
    max_batch_size: int = 32
    chat_template: str | None = None  # a file path or a Jinja string
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    device: str | None = None
    max_seq_len: int | None = None  # None: the model's own limit
    trust_remote_code: bool = False
    # How long the batcher waits for more requests after the first one arrives.
    batch_wait_s: float = 0.005
    log_level: str = "info"

    @property
    def model_name(self) -> str:
        """The name clients must send as `model` (default: last path component)."""
        if self.served_model_name:
            return self.served_model_name
        # "." or "models/.." name no folder: use the folder they resolve to.
        name = Path(self.model_path.rstrip("/\\")).name
        if name in ("", ".", ".."):
            name = Path(self.model_path).resolve().name
        return name or self.model_path

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "ServeOptions":
        """Build options from parsed `proctor serve` arguments, checking ranges."""
        if args.max_batch_size < 1:
            raise ConfigError(f"--max-batch-size must be >= 1, got {args.max_batch_size}")
        if args.max_seq_len is not None and args.max_seq_len < 1:
            raise ConfigError(f"--max-seq-len must be >= 1, got {args.max_seq_len}")
        if args.device is not None:
            from proctor.config.schema import check_device

            try:
                check_device(args.device)
            except ValueError as exc:
                raise ConfigError(f"--device {exc}") from None
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"--port must be between 0 and 65535, got {args.port}")
        converted = {
            "model_path": args.path,
            "served_model_name": args.served_model_name or "",
            # An empty env var means "no key", not "the empty key".
            "api_key": args.api_key or os.environ.get(API_KEY_ENV) or None,
            "batch_wait_s": args.batch_wait_ms / 1000.0,
        }
        # Every other field is the flag of the same name (see cli.add_arguments).
        same = {f.name: getattr(args, f.name) for f in fields(cls) if f.name not in converted}
        return cls(**same, **converted)
