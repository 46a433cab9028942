"""manifest.json: what produced a run (versions, data hashes, prompt hashes, model identities)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from proctor import __version__
from proctor.config.schema import ApiModelConfig
from proctor.config.secrets import public_url
from proctor.core import Request
from proctor.engine.diskio import write_json_atomic
from proctor.engine.prepare import PreparedDataset
from proctor.engine.rundir import RunDir

_LIBRARIES = ("aiohttp", "httpx", "pydantic", "torch", "transformers", "tokenizers", "accelerate", "vllm", "ray", "fastapi")
# Files of a local checkpoint that decide its answers besides the weights (hashed; weights are listed).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt",
                    "special_tokens_map.json", "added_tokens.json")
_CHAT_TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def requests_digest(requests: Iterable[Request]) -> str:
    """One hash of every request exactly as rendered: changes when any prompt changes."""
    digest = hashlib.sha256()
    for request in requests:
        digest.update(json.dumps(request.payload(), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


_SHOWN_SETTINGS = ("temperature", "max_out_len", "max_seq_len", "batch_size", "qps", "rpm", "max_concurrency",
                   "dtype", "revision")


def _settings_digest(config: Any) -> str:
    """Hash of the model's settings as configured, secrets excluded."""
    data = config.model_dump(mode="json", exclude={"api_key"})
    if data.get("system_prompt") is None:
        data.pop("system_prompt", None)  # unset: the digest older runs have
    return sha256_text(json.dumps(data, sort_keys=True))


def local_checkpoint_info(path: str) -> dict[str, Any]:
    """Hashes of a local checkpoint's config, tokenizer and chat template; weight files by name and size."""
    root = Path(path).expanduser()
    info: dict[str, Any] = {"path": str(root.resolve()) if root.exists() else path}
    if not root.is_dir():
        return info  # a hub id: the revision the backend resolves is in its identity
    config = root / "config.json"
    if config.is_file():
        info["config_sha256"] = sha256_file(config)
    tokenizer = hashlib.sha256()
    present = [name for name in _TOKENIZER_FILES if (root / name).is_file()]
    for name in present:
        tokenizer.update(name.encode() + b"\0" + bytes.fromhex(sha256_file(root / name)))
    if present:
        info["tokenizer_sha256"] = tokenizer.hexdigest()
        info["tokenizer_files"] = present
    template = _chat_template(root)
    info["chat_template_sha256"] = sha256_text(template) if template else None
    info["weights"] = {
        p.name: p.stat().st_size for p in sorted(root.iterdir()) if p.is_file() and p.suffix in _WEIGHT_SUFFIXES
    }
    return info


def _chat_template(root: Path) -> str | None:
    for name in _CHAT_TEMPLATE_FILES:
        if (root / name).is_file():
            return (root / name).read_text(encoding="utf-8")
    tokenizer_config = root / "tokenizer_config.json"
    if tokenizer_config.is_file():
        try:
            template = json.loads(tokenizer_config.read_text(encoding="utf-8")).get("chat_template")
        except ValueError:
            return None
        if template is not None:
            return template if isinstance(template, str) else json.dumps(template, sort_keys=True)
    return None


def model_info(config: Any, *, identity: str | None, chat: bool | None) -> dict[str, Any]:
    """What identifies a model in the manifest (never a secret)."""
    info: dict[str, Any] = {
        "type": config.type,
        "identity": identity,
        "chat": chat,
        "settings_sha256": _settings_digest(config),
        # What ran, readable (the command line's flags included): the digest covers every setting.
        "settings": {k: getattr(config, k) for k in _SHOWN_SETTINGS if getattr(config, k, None) is not None},
    }
    if isinstance(config, ApiModelConfig):
        info["api_base"] = public_url(config.api_base)
        info["api_type"] = config.api_type
        info["model_id"] = identity.split("|")[2] if identity and identity.count("|") >= 3 else config.model
    else:
        info.update(local_checkpoint_info(config.path))
        if config.tokenizer_path and config.tokenizer_path != config.path:
            tok = local_checkpoint_info(config.tokenizer_path)
            info["tokenizer"] = {k: v for k, v in tok.items() if k != "weights"}
    return info


def scorer_info(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The scorer a dataset is scored with: name, parameters, and the version of its behaviour."""
    from proctor.scoring import get_scorer

    scorer = get_scorer(name, params)
    info: dict[str, Any] = {"name": name, "params": dict(params), "version": scorer.version}
    # What the scorer ran in, where that decides the score (the code sandbox's isolation).
    environment = getattr(scorer, "environment", None)
    if callable(environment):
        info["environment"] = environment()
    return info


class Manifest:
    """Written when inference starts and again as each model starts (local models start late)."""

    def __init__(
        self,
        run: RunDir,
        *,
        datasets: Sequence[PreparedDataset],
        seed: int,
        argv: Sequence[str] | None,
        runner: str,
    ) -> None:
        self.run = run
        files: dict[str, str] = {}
        for prepared in datasets:
            for path in prepared.files:
                files.setdefault(str(path), sha256_file(path))
        self.data: dict[str, Any] = {
            "proctor": {"version": __version__, "git_commit": _git_commit()},
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "libraries": _library_versions(),
            "seed": seed,
            "command": list(argv) if argv is not None else None,
            "runner": runner,
            "models": {},
            "datasets": {
                p.config.abbr: {
                    "benchmark": p.config.benchmark,
                    "subject": p.config.subject,
                    "mode": p.config.mode,
                    "prompt_version": p.version,
                    "n": len(p.samples),
                    "items": len(p.items),
                    "variants": p.task.variants,
                    "fewshot": len(p.shots),
                    "scorer": scorer_info(p.task.scorer, p.task.scorer_params),
                    "data_files": {str(path): files[str(path)] for path in p.files},
                }
                for p in datasets
            },
            "data_files": files,
            "requests_sha256": {},
            "invocations": [],
        }
        # A resumed run keeps what its earlier invocations recorded (models not run again, commands).
        previous = read_manifest(run)
        self.previous_models: dict[str, Any] = dict(previous.get("models") or {})
        self.data["models"].update(self.previous_models)
        self.data["datasets"] = {**(previous.get("datasets") or {}), **self.data["datasets"]}
        self.data["data_files"] = {**(previous.get("data_files") or {}), **files}
        for model, digests in (previous.get("requests_sha256") or {}).items():
            self.data["requests_sha256"][model] = dict(digests)
        self.data["invocations"] = list(previous.get("invocations") or []) + [
            {"command": self.data["command"], "proctor": __version__, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        ]

    def add_model(self, name: str, info: Mapping[str, Any]) -> None:
        self.data["models"][name] = dict(info)

    def add_requests(self, model: str, dataset: str, digest: str) -> None:
        self.data["requests_sha256"].setdefault(model, {})[dataset] = digest

    def write(self) -> None:
        write_json_atomic(self.run.manifest_path, self.data)


def read_manifest(run: RunDir) -> dict[str, Any]:
    if not run.manifest_path.is_file():
        return {}
    try:
        return dict(json.loads(run.manifest_path.read_text(encoding="utf-8")))
    except ValueError:
        return {}


def read_model_names(run: RunDir) -> list[str]:
    """The model abbrs a run used (API model ids may have been discovered at run time)."""
    return list(read_manifest(run).get("models", {}))
