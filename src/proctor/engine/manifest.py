"""manifest.json: what produced a run (versions, data hashes, prompt versions, model identities)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping, Sequence

from proctor import __version__
from proctor.engine.prepare import PreparedDataset
from proctor.engine.rundir import RunDir

_LIBRARIES = ("httpx", "pydantic", "torch", "transformers", "tokenizers", "vllm", "ray", "fastapi")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
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
    return out.stdout.strip() or None if out.returncode == 0 else None


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_manifest(
    run: RunDir,
    *,
    datasets: Sequence[PreparedDataset],
    models: Mapping[str, Mapping[str, Any]],
    seed: int,
    argv: Sequence[str] | None,
) -> None:
    """`models`: abbr -> {identity, type, ...} (never secrets)."""
    files: dict[str, str] = {}
    for prepared in datasets:
        for path in prepared.files:
            files.setdefault(str(path), _sha256(path))
    data = {
        "proctor": {"version": __version__, "git_commit": _git_commit()},
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "libraries": _library_versions(),
        "seed": seed,
        "command": list(argv) if argv is not None else None,
        "models": dict(models),
        "datasets": {
            p.config.abbr: {"prompt_version": p.version, "n": len(p.samples), "fewshot": len(p.shots)}
            for p in datasets
        },
        "data_files": files,
    }
    run.manifest_path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_model_names(run: RunDir) -> list[str]:
    """The model abbrs a run used (API model ids may have been discovered at run time)."""
    if not run.manifest_path.is_file():
        return []
    return list(json.loads(run.manifest_path.read_text(encoding="utf-8")).get("models", {}))
