"""The Python entry point: `proctor.api.evaluate(...)`, and assembling a RunConfig."""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import ValidationError

from proctor.config.models import model_from_dict, validation_message
from proctor.config.schema import DatasetConfig, RunConfig
from proctor.errors import ConfigError

# Settings that `evaluate()` applies to every dataset (the rest are run options).
DATASET_OPTIONS = ("limit", "range", "fewshot", "continuations", "circular", "repeats", "num_samples", "judge")


def build_run_config(
    *,
    config_file: str | None = None,
    models: Sequence[Any] = (),
    datasets: Sequence[Any] = (),
    api: dict[str, Any] | None = None,
    hf: dict[str, Any] | None = None,
    judge: dict[str, Any] | str | None = None,
    dataset_overrides: dict[str, Any] | None = None,
    run_options: dict[str, Any] | None = None,
    model_overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Merge a config file, named presets, `--api-base`/`--hf-path` models and dataset names.

    The command line overrides the file: models given on it (`--models`, `--api-base`,
    `--hf-path`) replace the file's models, `--datasets` replaces its datasets, and run
    options win over the file's. Unset (None) values are ignored.

    `model_overrides` (model field -> value, the command line's model flags) set that field on
    every model that has it (the file's, presets, `-r`'s); a field no model of the run has is
    refused, never dropped. A `--max-out-len` also wins over a file dataset's `max_out_len`.
    """
    from proctor.config.files import load_config_file
    from proctor.config.registry import resolve_model_preset
    from proctor.tasks import resolve_datasets, with_overrides

    overrides = {k: v for k, v in (dataset_overrides or {}).items() if v is not None}
    model_configs: list[Any] = []
    dataset_configs: list[DatasetConfig] = []
    options: dict[str, Any] = {}
    cli_options = {k: v for k, v in (run_options or {}).items() if v is not None}
    pinned = None
    given_models = bool(models or api or hf)
    if not config_file and not (given_models and datasets) and (
        cli_options.get("reuse") or cli_options.get("mode") in ("eval", "report")
    ):
        # `proctor run -r latest` / `--mode report -r ID` without models or datasets: the run's own.
        stored_models, stored_datasets, stored_options = _from_run(
            cli_options, need_models=not given_models, need_datasets=not datasets
        )
        if not given_models:
            model_configs += stored_models
        if not datasets:
            dataset_configs += [with_overrides(d, overrides) for d in stored_datasets]
        options.update(stored_options)
        pinned = stored_options["reuse"]
    if config_file:
        loaded = load_config_file(config_file)
        if not (models or api or hf):
            model_configs += loaded.models
        if not datasets:
            dataset_configs += [with_overrides(d, overrides) for d in loaded.datasets]
        options.update(loaded.run_options)
    for model in models:
        model_configs.extend(_models_named(model) if isinstance(model, str) else [model])
    model_flags = {k: v for k, v in (model_overrides or {}).items() if v is not None}
    model_configs = [_override_model(m, model_flags) for m in model_configs]
    if api:
        model_configs.append(model_from_dict(api, where="--api-base", names=_flags(api, "api_base", "--api-base")))
    if hf:
        model_configs.append(model_from_dict(hf, where="--hf-path", names=_flags(hf, "path", "--hf-path")))
    if judge:
        # The judge flags replace a judge the file named, as model flags replace its models.
        options["judge"] = resolve_model_preset(judge) if isinstance(judge, str) else model_from_dict(
            judge, where="--judge-api-base", names=_JUDGE_FLAGS)
    # With --runner slurm, --retry also counts a failed job's resubmissions (no API model needed).
    slurm = (cli_options.get("runner") or options.get("runner")) == "slurm"
    if slurm and "retry" in model_flags and "slurm_retry" not in cli_options:
        options["slurm_retry"] = model_flags["retry"]
    _refuse_unused_flags({k: v for k, v in model_flags.items() if not (slurm and k == "retry")}, model_configs)
    datasets = [f"{d}.py" if isinstance(d, str) and _is_dataset_file_name(d) else d for d in datasets]
    names = [d for d in datasets if isinstance(d, str) and not d.endswith(".py")]
    # A config object (`--custom-dataset-path`, `evaluate(datasets=[DatasetConfig(...)])`) takes the
    # overrides as a name or a file's entry does: --limit must not be dropped for it.
    dataset_configs += [with_overrides(d, overrides) for d in datasets if isinstance(d, DatasetConfig)]
    for name in datasets:  # a dataset config file, as OpenCompass's run.py --datasets takes
        if isinstance(name, str) and name.endswith(".py"):
            from proctor.config.files import load_datasets_file

            dataset_configs += [with_overrides(d, overrides) for d in load_datasets_file(name)]
    from proctor.config.opencompass import proctor_dataset_name

    names = [proctor_dataset_name(n) or n for n in names]  # cmmlu_gen_c13365 -> cmmlu_gen
    if names:
        try:
            dataset_configs += resolve_datasets(names, **overrides)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, "--datasets", names=_DATASET_FLAGS)) from None
    if "max_out_len" in model_flags:  # after every source of datasets: a --datasets FILE.py entry's too
        dataset_configs = [d.model_copy(update={"max_out_len": None}) if d.max_out_len else d for d in dataset_configs]
    if overrides.get("range"):
        from proctor.config.ranges import parse_range

        parse_range(overrides["range"], where="--range")
    options.update(cli_options)
    if pinned:
        options["reuse"] = pinned  # the run found above is the run resumed, whatever starts meanwhile
    _check_data_dir(options.get("data_dir"), "--data-dir" if cli_options.get("data_dir") else "data_dir")
    if not model_configs:
        raise ConfigError("no model given: use --api-base URL, --hf-path PATH, --models NAME or a config file")
    if not dataset_configs:
        raise ConfigError("no dataset given: use --datasets NAME ... (see `proctor list datasets`)")
    try:
        return RunConfig(models=model_configs, datasets=dataset_configs, **options)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, f"{config_file}:" if config_file else "run option:")) from None


# The flags that set dataset fields, for errors about them.
_DATASET_FLAGS = {"limit": "--limit", "range": "--range", "fewshot": "--fewshot", "repeats": "--repeats",
                  "continuations": "--ppl-continuations"}
_JUDGE_FLAGS = {"api_base": "--judge-api-base", "model": "--judge-api-model", "api_key_env": "--judge-api-key-env"}
# Command-line flags by model field, for errors about --api-base / --hf-path models.
_FLAG_FIELDS = {"model": "--api-model", "path": "--hf-path", "api_base": "--api-base", "batch": "--api-batch"}


def _is_dataset_file_name(name: str) -> bool:
    """`--datasets demo_cmmlu_chat_gen`: not a dataset name Proctor knows, and NAME.py is here
    (OpenCompass's run.py finds its dataset configs by name too)."""
    from pathlib import Path

    from proctor.config.opencompass import proctor_dataset_name
    from proctor.tasks import resolve_datasets

    if name.endswith(".py") or not Path(f"{name}.py").is_file():
        return False
    try:
        resolve_datasets([proctor_dataset_name(name) or name])
    except ConfigError:
        return True
    return False


def _models_named(name: str) -> list[Any]:
    """`--models NAME`: a preset, a model config file (`puyu_api.py`) or an OpenCompass model
    config Proctor has (`hf_internlm2_5_1_8b_chat`)."""
    from pathlib import Path

    from proctor.config.files import load_models_file
    from proctor.config.opencompass import MODEL_MODULES, models_of_module
    from proctor.config.registry import MODEL_PRESETS, resolve_model_preset

    if name.endswith((".py", ".yaml", ".yml")) or Path(name).is_file():
        return load_models_file(name)
    if Path(f"{name}.py").is_file():  # OpenCompass's run.py finds `--models NAME` as NAME.py
        return load_models_file(f"{name}.py")
    if name in MODEL_PRESETS:
        return [resolve_model_preset(name)]
    entries = models_of_module(name)
    if entries is None:
        from proctor.config.suggest import did_you_mean

        raise ConfigError(f"unknown model {name!r}" + did_you_mean(name, [*MODEL_PRESETS, *MODEL_MODULES])
                          + " (see `proctor list models`; a model config file: --models FILE.py)")
    return [model_from_dict(e, where=f"--models {name}") for e in entries]


def _flag_of(field: str) -> str:
    """The command-line flag that sets a model field."""
    return "--chat/--no-chat" if field == "chat" else _FLAG_FIELDS.get(field, "--" + field.replace("_", "-"))


def _override_model(model: Any, flags: dict[str, Any]) -> Any:
    """`model` with the command line's settings for the fields it has, validated again."""
    update = {k: v for k, v in flags.items() if k in type(model).model_fields}
    if not update:
        return model
    # Only the fields the file set, plus the flags: what was left at its default stays unset
    # (the spec's answer length applies unless max_out_len was set somewhere).
    data = {**model.model_dump(exclude_unset=True), "type": model.type, **update}
    try:
        return type(model).model_validate(data)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, "command line", names={k: _flag_of(k) for k in update})) from None


def _refuse_unused_flags(flags: dict[str, Any], configs: Sequence[Any]) -> None:
    """A model flag that no model of the run has would be silently ignored: refuse it."""
    from proctor.config.schema import ApiModelConfig, HFModelConfig, VLLMModelConfig

    kinds = {"api": ("--api-base", ApiModelConfig), "hf": ("--hf-path", HFModelConfig), "vllm": ("vllm", VLLMModelConfig)}
    for field in flags:
        if configs and not any(field in type(m).model_fields for m in configs):
            owners = [flag for flag, cls in kinds.values() if field in cls.model_fields]
            what = " or ".join(f"a {o} model" for o in owners)
            raise ConfigError(f"{_flag_of(field)} applies to {what}, and no model of this run is one")


def _flags(fields: dict[str, Any], anchor: str, anchor_flag: str) -> dict[str, str]:
    return {k: _FLAG_FIELDS.get(k, "--" + k.replace("_", "-")) for k in fields if k != "type"} | {anchor: anchor_flag}


def _check_data_dir(data_dir: Any, label: str) -> None:
    from pathlib import Path

    if isinstance(data_dir, str) and Path(data_dir).expanduser().exists() and not Path(data_dir).expanduser().is_dir():
        raise ConfigError(f"{label} {data_dir}: is a file, not a folder; give the folder that holds the benchmark data")


# Run options `-r` takes from the run's config.json when the command line gives no models/datasets.
_STORED_OPTIONS = ("data_dir", "max_num_workers", "max_partition_size", "cache", "runner", "ray_address", "seed")


def _from_run(
    cli_options: dict[str, Any], *, need_models: bool, need_datasets: bool
) -> tuple[list[Any], list[DatasetConfig], dict[str, Any]]:
    """The models, datasets and run options of the run `-r` (or `--mode eval|report`) names.

    config.json holds no secrets: an API key comes from the environment again (warned once
    when a model had one and its variable is not set now).
    """
    import logging
    import os

    from proctor.config.secrets import MASK
    from proctor.engine.rundir import find_run_dir, read_config

    reuse, mode = cli_options.get("reuse"), cli_options.get("mode") or "all"
    run = find_run_dir(cli_options.get("work_dir") or "outputs", reuse or "latest", mode=None if reuse else mode)
    data = read_config(run)
    flag = f"-r {reuse}" if reuse else f"--mode {mode}"
    where = f"{flag}: {run.config_path}"
    for key, needed, flags in (("models", need_models, "--api-base, --hf-path or --models"), ("datasets", need_datasets, "--datasets")):
        if needed and not isinstance(data.get(key), list):
            raise ConfigError(f"{where} names no {key}; give them with {flags}")
    missing_keys: list[str] = []

    def model(entry: Any, label: str, contacted: bool) -> Any:
        entry = {k: v for k, v in dict(entry).items() if v is not None}
        if entry.get("api_key") == MASK:
            entry.pop("api_key")
            if contacted and not os.environ.get(entry.get("api_key_env") or "OPENAI_API_KEY"):
                missing_keys.append(f"{label} needs ${entry.get('api_key_env') or 'OPENAI_API_KEY'}")
        if contacted and MASK in str(entry.get("api_base", "")):
            raise ConfigError(
                f"{where}: {label}'s api_base held a password, which config.json does not keep; "
                "give the models again (--api-base URL or a config file)"
            )
        return model_from_dict(entry, where=f"{where}: {label}")

    infer = mode in ("all", "infer") and need_models
    models = [model(m, f"models[{i}]", infer) for i, m in enumerate(data["models"])] if need_models else []
    try:
        datasets = [DatasetConfig(**d) for d in data["datasets"]] if need_datasets else []
    except (ValidationError, TypeError) as exc:
        raise ConfigError(f"{where}: its datasets cannot be read ({str(exc).splitlines()[0]}); give --datasets") from None
    options: dict[str, Any] = {k: data[k] for k in _STORED_OPTIONS if data.get(k) is not None}
    if data.get("judge"):
        options["judge"] = model(data["judge"], "judge", mode != "report")
    if missing_keys:
        logging.getLogger("proctor.config").warning(
            "%s: the run's API keys are not kept in config.json and are not in the environment now: %s",
            flag, "; ".join(missing_keys),
        )
    options["reuse"] = run.run_id
    return models, datasets, options


def evaluate(models: Sequence[Any], datasets: Sequence[Any], **options: Any) -> Any:
    """Run an evaluation from Python and return its outcome (run folder, results, failures).

    `models`: preset names, model config objects or dicts; `datasets`: names or DatasetConfig.
    """
    from proctor.engine.run import execute

    model_list = [model_from_dict(m, where=f"models[{i}]") if isinstance(m, dict) else m for i, m in enumerate(models)]
    overrides = {k: options.pop(k) for k in DATASET_OPTIONS if k in options}
    config = build_run_config(models=model_list, datasets=datasets, dataset_overrides=overrides, run_options=options)
    return execute(config)
