"""The Python entry point: `proctor.api.evaluate(...)`, and assembling a RunConfig."""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import ValidationError

from proctor.config.models import model_from_dict, validation_message
from proctor.config.schema import DatasetConfig, RunConfig
from proctor.errors import ConfigError

# Settings that `evaluate()` applies to every dataset (the rest are run options).
DATASET_OPTIONS = ("limit", "range", "fewshot", "continuations", "circular", "num_samples", "judge")


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
) -> RunConfig:
    """Merge a config file, named presets, `--api-base`/`--hf-path` models and dataset names.

    The command line overrides the file: models given on it (`--models`, `--api-base`,
    `--hf-path`) replace the file's models, `--datasets` replaces its datasets, and run
    options win over the file's. Unset (None) values are ignored.
    """
    from proctor.config.files import load_config_file
    from proctor.config.registry import resolve_model_preset
    from proctor.tasks import resolve_datasets, with_overrides

    overrides = {k: v for k, v in (dataset_overrides or {}).items() if v is not None}
    model_configs: list[Any] = []
    dataset_configs: list[DatasetConfig] = []
    options: dict[str, Any] = {}
    if config_file:
        loaded = load_config_file(config_file)
        if not (models or api or hf):
            model_configs += loaded.models
        if not datasets:
            dataset_configs += [with_overrides(d, overrides) for d in loaded.datasets]
        options.update(loaded.run_options)
    for model in models:
        model_configs.append(resolve_model_preset(model) if isinstance(model, str) else model)
    if api:
        model_configs.append(model_from_dict(api, where="--api-base"))
    if hf:
        model_configs.append(model_from_dict(hf, where="--hf-path"))
    if judge:
        # The judge flags replace a judge the file named, as model flags replace its models.
        options["judge"] = resolve_model_preset(judge) if isinstance(judge, str) else model_from_dict(
            judge, where="--judge-api-base")
    names = [d for d in datasets if isinstance(d, str)]
    dataset_configs += [d for d in datasets if isinstance(d, DatasetConfig)]
    if names:
        try:
            dataset_configs += resolve_datasets(names, **overrides)
        except ValidationError as exc:
            raise ConfigError(validation_message(exc, "--datasets")) from None
    if overrides.get("range"):
        from proctor.config.ranges import parse_range

        parse_range(overrides["range"], where="--range")
    options.update({k: v for k, v in (run_options or {}).items() if v is not None})
    if not model_configs:
        raise ConfigError("no model given: use --api-base URL, --hf-path PATH, --models NAME or a config file")
    if not dataset_configs:
        raise ConfigError("no dataset given: use --datasets NAME ... (see `proctor list datasets`)")
    try:
        return RunConfig(models=model_configs, datasets=dataset_configs, **options)
    except ValidationError as exc:
        raise ConfigError(validation_message(exc, config_file or "run options")) from None


def evaluate(models: Sequence[Any], datasets: Sequence[Any], **options: Any) -> Any:
    """Run an evaluation from Python and return its outcome (run folder, results, failures).

    `models`: preset names, model config objects or dicts; `datasets`: names or DatasetConfig.
    """
    from proctor.engine.run import execute

    model_list = [model_from_dict(m, where=f"models[{i}]") if isinstance(m, dict) else m for i, m in enumerate(models)]
    overrides = {k: options.pop(k) for k in DATASET_OPTIONS if k in options}
    config = build_run_config(models=model_list, datasets=datasets, dataset_overrides=overrides, run_options=options)
    return execute(config)
