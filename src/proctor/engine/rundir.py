"""The layout of one run's folder, `outputs/<run-id>/`."""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from proctor.config.schema import RunConfig
from proctor.core import path_part
from proctor.config.secrets import redact_argv, redact_url
from proctor.engine.diskio import write_json_atomic
from proctor.errors import ConfigError

LAYOUT_VERSION = 1
LOCK_FILE = ".lock"


@dataclass(frozen=True)
class RunDir:
    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    def predictions(self, model: str, dataset: str) -> Path:
        return self.root / "predictions" / path_part(model) / f"{path_part(dataset)}.jsonl"

    def result(self, model: str, dataset: str) -> Path:
        return self.root / "results" / path_part(model) / f"{path_part(dataset)}.json"

    def judgements(self, model: str, dataset: str) -> Path:
        return self.root / "judgements" / path_part(model) / f"{path_part(dataset)}.jsonl"

    def scores(self, model: str, dataset: str) -> Path:
        return self.root / "scores" / path_part(model) / f"{path_part(dataset)}.jsonl"

    def log(self, model: str, dataset: str) -> Path:
        return self.root / "logs" / path_part(model) / f"{path_part(dataset)}.log"

    @property
    def summary_dir(self) -> Path:
        return self.root / "summary"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"


def new_run_dir(work_dir: str | Path) -> RunDir:
    base = Path(work_dir)
    check_work_dir(base)
    stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
    for n in range(1000):
        root = base / (stamp if n == 0 else f"{stamp}_{n}")
        try:
            root.mkdir(parents=True, exist_ok=False)
            return RunDir(root)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"-w {base}: cannot create a run folder there ({exc.strerror or exc}); "
                              "choose another folder with -w / work_dir") from None
    raise ConfigError(f"cannot create a run folder under {base}")


def check_work_dir(base: Path) -> None:
    """A work dir that is a file (or lies under one), or that cannot be written, in one line."""
    for folder in (base, *base.parents):
        if folder.exists():
            if not folder.is_dir():
                what = "is a file" if folder == base else f"lies under {folder}, which is a file"
                raise ConfigError(f"-w {base}: {what}, not a folder; choose a folder with -w / work_dir")
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(f"-w {base}: {folder} is not writable; choose another folder with -w / work_dir")
            return


def read_config(run: RunDir) -> dict[str, Any]:
    """The run's config.json as written (secrets redacted), or {} when unreadable."""
    try:
        data = json.loads(run.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remove_temp_files(run: RunDir) -> int:
    """Remove the `.name.*.tmp` files a killed writer left behind (see diskio); how many."""
    removed = 0
    if not run.root.is_dir():
        return 0
    for path in run.root.rglob(".*.tmp"):
        if path.relative_to(run.root).parts[0] == "slurm":
            continue  # Slurm jobs write there while no process holds the run
        try:
            if path.is_file():
                path.unlink()
                removed += 1
        except OSError:
            pass
    return removed


_RUN_ID = re.compile(r"(\d{8}_\d{6})(?:_(\d+))?")


def _started(path: Path) -> tuple[str, int, float]:
    """Sort key: the start time in the run id (`20250101_120000_2`), else the folder's mtime."""
    match = _RUN_ID.fullmatch(path.name)
    if match:
        return match.group(1), int(match.group(2) or 0), 0.0
    return "", 0, path.stat().st_mtime


def find_run_dir(work_dir: str | Path, run_id: str, *, mode: str | None = None) -> RunDir:
    """The run folder `-r/--reuse` names: a run id, or `latest` (the last one started).

    `mode`: `--mode eval|report` without -r looks for the latest run; its error names that flag.
    """
    base = Path(work_dir)
    if run_id != "latest" and (Path(run_id).name != run_id or run_id in (".", "..")):
        # A path would reach another folder than -w; a run is named by its id only.
        raise ConfigError(f"-r {run_id}: give a run id under {base} (e.g. 20250101_120000), not a path; use -w for the folder")
    runs = sorted((p for p in base.glob("*") if (p / "config.json").is_file()), key=_started) if base.is_dir() else []
    if run_id == "latest":
        if not runs and mode:
            raise ConfigError(f"--mode {mode}: no run to read in {base}; run the inference first (without --mode)")
        if not runs:
            raise ConfigError(f"-r latest: no earlier run in {base}; start one without -r")
        return _check_version(RunDir(runs[-1]))
    root = base / run_id
    if not (root / "config.json").is_file():
        known = ", ".join(p.name for p in runs[-5:]) or "none"
        raise ConfigError(f"-r {run_id}: no run with that id in {base} (recent runs: {known})")
    return _check_version(RunDir(root))


def _check_version(run: RunDir) -> RunDir:
    try:
        data = json.loads(run.config_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{run.config_path}: unreadable ({exc}); start a new run") from None
    version = data.get("proctor_layout")
    if version != LAYOUT_VERSION:
        raise ConfigError(
            f"{run.root}: written by an incompatible Proctor (layout {version!r}, this one reads {LAYOUT_VERSION}); "
            "start a new run instead of -r"
        )
    return run


@contextmanager
def locked(run: RunDir) -> Iterator[None]:
    """Hold the run folder for this process: a second `proctor run -r` on it would send every
    pending request again. It gets one line naming the holder's pid instead."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; nothing to hold
        yield
        return
    run.root.mkdir(parents=True, exist_ok=True)
    fd = os.open(run.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ConfigError(
            f"run {run.run_id} is in use by process {holder}; wait for it to finish (or stop it), then run again"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode("ascii"))
    # Held now: no writer of this run is alive, so any temporary file is a killed stage's leftover.
    remove_temp_files(run)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def write_config(run: RunDir, config: RunConfig, argv: list[str] | None = None) -> None:
    """config.json: the resolved config; SecretStr fields dump as '**********'."""
    data: dict[str, Any] = {"proctor_layout": LAYOUT_VERSION, **config.model_dump(mode="json")}
    for model in [*data.get("models", []), *([data["judge"]] if data.get("judge") else [])]:
        if model.get("api_base"):
            model["api_base"] = redact_url(model["api_base"])
    if argv is not None:
        data["argv"] = redact_argv(argv)
    write_json_atomic(run.config_path, data)
