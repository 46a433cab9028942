"""Reading run configs from Python or YAML files.

A config file defines `models` and `datasets`. Entries may be dicts, Proctor
config objects, or names (model presets; dataset names such as `ceval_gen`).
A dataset dict with `name` expands that name and applies the other keys
(`{"name": "ceval_gen", "range": "[0:10]", "fewshot": 0}`). Any other top-level
key of a YAML file (or upper-case-free variable of a Python file listed in
RUN_KEYS) sets a run option such as `work_dir` or `max_num_workers`.
"""

from __future__ import annotations

import difflib
import logging
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from pydantic import BaseModel, ValidationError

from proctor.config.models import (
    AnyModelConfig, ignored_message, model_from_dict, validation_message, validation_problems,
)
from proctor.config.registry import resolve_model_preset
from proctor.config.schema import DatasetConfig, RunConfig
from proctor.config.suggest import close_matches
from proctor.errors import ConfigError, ProctorError

log = logging.getLogger("proctor.config")

RUN_KEYS = set(RunConfig.model_fields) - {"models", "datasets"}
# The command line's --limit/--range/--fewshot look like run options; in a file they belong to a
# dataset entry. Named at the top level (even of a Python file) they would otherwise be ignored.
DATASET_KEYS = {"limit", "range", "fewshot", "continuations", "circular", "repeats", "num_samples", "scorer"}


@dataclass(frozen=True)
class FileConfig:
    models: list[AnyModelConfig]
    datasets: list[DatasetConfig]
    run_options: dict[str, Any] = field(default_factory=dict)


def load_config_file(path: str | Path) -> FileConfig:
    """The models, datasets and run options of a config file; every problem in it is reported
    at once, one `file: key: problem` line each."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file {path} is a folder; give a .py or .yaml file")
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    raw = _read(path)
    where = path.name
    problems: list[str] = []
    known = RUN_KEYS | {"models", "datasets"}
    if path.suffix == ".py":
        # Helper variables, imports and functions are fine; a name one typo away from a run key is not.
        unknown = sorted(k for k in raw if k not in known | DATASET_KEYS and _looks_like_a_key(k, raw[k], raw))
    else:
        unknown = sorted(k for k in raw if k not in known | DATASET_KEYS)
    for key in unknown:
        close = close_matches(key, sorted(known), n=3)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
            f"expected models, datasets or one of {', '.join(sorted(RUN_KEYS))}")
        problems.append(f"{where}: unknown key {key!r}; {hint}")
    if "models" not in raw and "datasets" not in raw:
        problems.append(f"{where}: defines neither `models` nor `datasets`; define both as lists")
        raise ConfigError("\n".join(problems))
    ignored: list[str] = []
    models = _models(raw, where, problems, ignored)
    datasets: list[DatasetConfig] = []
    for i, entry in enumerate(_collect(problems, lambda: _as_list(raw, "datasets", where)) or []):
        datasets.extend(_collect(problems, lambda: _datasets(entry, f"{where}: datasets[{i}]", path.resolve().parent)) or [])
    for key in sorted(k for k in raw if k in DATASET_KEYS and not _used_by_entries(path, raw, k)):
        problems.append(
            f"{where}: `{key}` is a per-dataset setting, not a run option; write it in a dataset entry "
            f"({{\"name\": \"ceval_gen\", \"{key}\": ...}}) or pass --{key.replace('continuations', 'ppl-continuations')}"
        )
    options = {k: v for k, v in raw.items() if k in RUN_KEYS}
    if options.get("judge") is not None:
        options["judge"] = _collect(problems, lambda: _model(options["judge"], f"{where}: judge", ignored))
    plain = {k: v for k, v in options.items() if k != "judge"}
    try:
        RunConfig(models=[], datasets=[], **plain)
    except ValidationError as exc:
        problems += validation_problems(exc, f"{where}:", known=RUN_KEYS)
    if problems:
        raise ConfigError("\n".join(problems))
    if ignored:
        log.warning("%s: %s", where, ignored_message(item.split(": ", 1)[-1] for item in ignored))
    return FileConfig(models=models, datasets=datasets, run_options=options)


T = TypeVar("T")


def _collect(problems: list[str], make: Callable[[], T]) -> T | None:
    """`make()`, or None with its ConfigError's lines added to `problems`."""
    try:
        return make()
    except ConfigError as exc:
        problems.extend(str(exc).splitlines())
        return None


def _looks_like_a_key(name: str, value: Any, raw: dict[str, Any]) -> bool:
    """A top-level name of a Python config that is a misspelt run key (`wrk_dir = ...`): a plain
    value one typo away from a key the config does not set itself."""
    if isinstance(value, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)):
        return False
    close = difflib.get_close_matches(name, sorted(RUN_KEYS | {"models", "datasets"}), n=1, cutoff=0.8)
    return bool(close) and close[0] not in raw


def _used_by_entries(path: Path, raw: dict[str, Any], key: str) -> bool:
    """A Python config may name a helper `limit = 10` and use it in its dataset dicts: that one is fine."""
    if path.suffix != ".py":
        return False
    entries = raw.get("datasets")
    return isinstance(entries, (list, tuple)) and any(isinstance(e, dict) and key in e for e in entries)


def _read(path: Path) -> dict[str, Any]:
    if path.suffix in (".yaml", ".yml"):
        import yaml

        from proctor.yamlfile import load_yaml

        try:
            data = load_yaml(_text(path))
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path.name}:{at} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path.name}: expected a mapping with `models` and `datasets` at the top")
        return data
    if path.suffix == ".py":
        from proctor.config.opencompass import run_python_config

        # The config's folder is importable while it runs, so a config can compose others
        # (`from models_cfg import models`); OpenCompass's imports and read_base() work too.
        try:
            namespace = run_python_config(path, lambda p: _text(p, python=True))
        except ProctorError:
            raise
        except SystemExit as exc:
            raise ConfigError(f"{path.name}: the config called sys.exit({exc.code})") from None
        except SyntaxError as exc:
            raise ConfigError(f"{Path(exc.filename or path).name}: line {exc.lineno}: {exc.msg}") from None
        except Exception as exc:  # the user's code failed; say where, without our frames
            raise ConfigError(f"{path.name}: running the config raised {type(exc).__name__}: {exc}") from None
        return {k: v for k, v in namespace.items() if not k.startswith("_")}
    raise ConfigError(f"{path}: unsupported config type; use a .py or .yaml file")


def _text(path: Path, *, python: bool = False) -> str:
    """The file's text; a file that is not UTF-8 (saved as GBK or Latin-1) says so."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        head = data.split(b"\n", 2)[:2]
        if python and any(b"coding" in line and line.lstrip().startswith(b"#") for line in head):
            return data.decode("utf-8", "replace")  # a PEP 263 coding line: Python decodes it
        line = data[: exc.start].count(b"\n") + 1
        raise ConfigError(
            f"{path.name}: line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def _as_list(raw: dict[str, Any], key: str, where: str) -> list[Any]:
    value = raw.get(key, [])
    if isinstance(value, (list, tuple)):
        return list(value)
    raise ConfigError(f"{where}: `{key}` must be a list, got {type(value).__name__}")


def _model(entry: Any, where: str, ignored: list[str] | None = None) -> AnyModelConfig:
    if isinstance(entry, str):
        return resolve_model_preset(entry)
    if isinstance(entry, BaseModel):
        entry = entry.model_dump()
    return model_from_dict(entry, where=where, notes=ignored)


def _anchored(name: Any, folder: Path) -> Any:
    """A relative file name in a config is relative to the config's folder (where it usually
    lies beside it), else to the current directory."""
    from proctor.tasks.names import is_path_name

    if isinstance(name, str) and is_path_name(name) and not Path(name).expanduser().is_absolute():
        beside = folder / name
        here = Path(name).expanduser()
        if beside.exists() and not (here.exists() and here.resolve() == beside.resolve()):
            return str(beside)
    return name


def _datasets(entry: Any, where: str, folder: Path) -> list[DatasetConfig]:
    from proctor.tasks import resolve_datasets

    if isinstance(entry, str):
        return resolve_datasets([_anchored(entry, folder)])
    if isinstance(entry, DatasetConfig):
        return [entry]
    from proctor.config.opencompass import dataset_from_opencompass, is_opencompass_dataset

    if is_opencompass_dataset(entry):  # from an OpenCompass config module, maybe edited
        return [dataset_from_opencompass(entry, where)]
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: expected a dataset name or mapping, got {type(entry).__name__}")
    entry = dict(entry)
    if "test_range" in entry:  # OpenCompass's name (in its reader_cfg)
        if "range" in entry:
            raise ConfigError(f"{where}: both 'test_range' and 'range' are given; keep 'range'")
        entry["range"] = entry.pop("test_range")
    if "name" in entry:
        name = _anchored(entry.pop("name"), folder)
        allowed = {"fewshot", "range", "limit", "data_dir", "max_out_len", "continuations", "circular",
                   "variants", "mode", "repeats", "num_samples", "abbr", "scorer", "scorer_params", "judge"}
        extra = sorted(set(entry) - allowed)
        if extra:
            lines = []
            for key in extra:
                close = close_matches(str(key), sorted(allowed))
                hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else (
                    f"with `name` use {', '.join(sorted(allowed))}")
                lines.append(f"{where}.{key}: unknown key; {hint}")
            raise ConfigError("\n".join(lines))
        abbr = entry.pop("abbr", None)
        try:
            configs = resolve_datasets([name], **entry)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, where)) from None
        if abbr is None:
            return configs
        if len(configs) != 1:
            raise ConfigError(f"{where}.abbr: {name!r} holds {len(configs)} datasets; an abbr names one")
        try:
            return [configs[0].model_copy(update={"abbr": str(abbr)})]
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, where)) from None
    try:
        return [DatasetConfig(**entry)]
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, where, known=DatasetConfig.model_fields)) from None


def _config_file(path: str | Path, flag: str) -> tuple[Path, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{flag} {path}: no such file")
    return path, _read(path)


def load_models_file(path: str | Path) -> list[AnyModelConfig]:
    """The `models` of a model config file (`--models puyu_api.py`, as OpenCompass's run.py takes)."""
    path, raw = _config_file(path, "--models")
    where = path.name
    if "models" not in raw:
        raise ConfigError(f"--models {path}: defines no `models` list")
    problems: list[str] = []
    ignored: list[str] = []
    models = _models(raw, where, problems, ignored)
    if problems:
        raise ConfigError("\n".join(problems))
    if ignored:
        log.warning("%s: %s", where, ignored_message(item.split(": ", 1)[-1] for item in ignored))
    return models


def load_datasets_file(path: str | Path) -> list[DatasetConfig]:
    """The datasets of a dataset config file (`--datasets demo_cmmlu_chat_gen.py`): its `datasets`,
    else every `*_datasets` list it defines, in order (as OpenCompass's run.py collects them)."""
    path, raw = _config_file(path, "--datasets")
    where = path.name
    keys = ["datasets"] if "datasets" in raw else [k for k in raw if k.endswith("_datasets")]
    if not keys:
        raise ConfigError(f"--datasets {path}: defines neither `datasets` nor a `*_datasets` list")
    problems: list[str] = []
    datasets: list[DatasetConfig] = []
    for key in keys:
        for i, entry in enumerate(_collect(problems, lambda: _as_list(raw, key, where)) or []):
            datasets.extend(_collect(problems, lambda: _datasets(entry, f"{where}: {key}[{i}]", path.resolve().parent)) or [])
    if problems:
        raise ConfigError("\n".join(problems))
    return datasets


def _models(raw: dict[str, Any], where: str, problems: list[str], ignored: list[str]) -> list[AnyModelConfig]:
    """The file's `models` list; each entry's problem goes to `problems` (all are said at once)."""
    models: list[AnyModelConfig] = []
    for i, entry in enumerate(_collect(problems, lambda: _as_list(raw, "models", where)) or []):
        model = _collect(problems, lambda: _model(entry, f"{where}: models[{i}]", ignored))
        if model is not None:
            models.append(model)
    return models
