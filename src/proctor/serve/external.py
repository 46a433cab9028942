"""`--backend vllm|lmdeploy`: hand over to that engine's own OpenAI-compatible server."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from proctor.errors import BackendError, ConfigError
from proctor.serve.options import ServeOptions, check_model_path


@dataclass(frozen=True)
class ExternalCommand:
    """The command line and extra environment that start an external server."""

    argv: tuple[str, ...]
    # Secrets go here, not in argv, wherever the engine allows it (argv is
    # visible to every user of the machine through `ps`).
    env: dict[str, str] = field(default_factory=dict, repr=False)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def vllm_command(options: ServeOptions) -> ExternalCommand:
    """`python -m vllm.entrypoints.openai.api_server ...` for these options."""
    if not _installed("vllm"):
        raise BackendError(
            "--backend vllm needs vLLM, which is not installed: pip install 'proctor[vllm]' "
            "(or use --backend hf)"
        )
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", options.model_path,
        "--host", options.host,
        "--port", str(options.port),
        "--served-model-name", options.model_name,
        "--max-num-seqs", str(options.max_batch_size),
        "--dtype", options.dtype,
    ]  # fmt: skip
    if options.max_seq_len is not None:
        argv += ["--max-model-len", str(options.max_seq_len)]
    if options.chat_template is not None:
        # vLLM accepts a file or the template text itself, as we do.
        argv += ["--chat-template", options.chat_template]
    if options.device is not None:
        argv += ["--device", options.device]
    if options.trust_remote_code:
        argv.append("--trust-remote-code")
    env = {"VLLM_API_KEY": options.api_key} if options.api_key else {}
    return ExternalCommand(tuple(argv), env)


def lmdeploy_command(options: ServeOptions) -> ExternalCommand:
    """`lmdeploy serve api_server PATH ...` for these options."""
    exe = shutil.which("lmdeploy")
    if exe is None and not _installed("lmdeploy"):
        raise BackendError(
            "--backend lmdeploy needs LMDeploy, which is not installed: pip install lmdeploy "
            "(or use --backend hf)"
        )
    if options.chat_template is not None:
        # LMDeploy's --chat-template is a JSON config or a built-in name, not Jinja.
        raise ConfigError(
            "--chat-template takes a Jinja template, which --backend lmdeploy cannot use; "
            "drop it (LMDeploy picks the template from the model) or use --backend hf/vllm"
        )
    base = [exe] if exe else [sys.executable, "-m", "lmdeploy"]
    argv = [
        *base, "serve", "api_server", options.model_path,
        "--server-name", options.host,
        "--server-port", str(options.port),
        "--model-name", options.model_name,
        "--max-batch-size", str(options.max_batch_size),
    ]  # fmt: skip
    if options.dtype in ("auto", "float16", "bfloat16"):
        argv += ["--dtype", options.dtype]
    else:
        raise ConfigError(f"--dtype {options.dtype} is not supported by LMDeploy (use auto, float16 or bfloat16)")
    if options.max_seq_len is not None:
        argv += ["--session-len", str(options.max_seq_len)]
    if options.device is not None:
        argv += ["--device", options.device]
    # --trust-remote-code has no LMDeploy flag: LMDeploy loads remote code itself.
    if options.api_key:
        # LMDeploy only takes keys on its command line.
        argv += ["--api-keys", options.api_key]
    return ExternalCommand(tuple(argv))


def external_command(options: ServeOptions) -> ExternalCommand:
    """The command for `options.backend` (vllm or lmdeploy)."""
    check_model_path(options.model_path)
    if options.backend == "vllm":
        return vllm_command(options)
    if options.backend == "lmdeploy":
        return lmdeploy_command(options)
    raise ConfigError(f"--backend {options.backend} is not an external engine")


def run_external(options: ServeOptions) -> int:
    """Run the external server in the foreground until it exits or Ctrl-C."""
    command = external_command(options)
    print(
        f"proctor serve: starting the {options.backend} server for {options.model_name} "
        f"at http://{options.host}:{options.port}/v1",
        file=sys.stderr,
        flush=True,
    )
    proc = subprocess.Popen(list(command.argv), env={**os.environ, **command.env})
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # The child got the same Ctrl-C; give it time to shut down cleanly.
        try:
            return proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
