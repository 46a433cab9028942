"""Dataset names (`ceval_gen`, `cmmlu-anatomy_ppl`, `gsm8k`, `./my.jsonl`) -> DatasetConfigs."""

from __future__ import annotations

from typing import Any, Iterable

from proctor.config.schema import DatasetConfig
from proctor.config.suggest import did_you_mean
from proctor.errors import ConfigError
from proctor.tasks.load import builtin_specs
from proctor.tasks.spec import Mode, TaskSpec, Variants

MODES: tuple[Mode, ...] = ("gen", "ppl")
# Name suffix -> option-order variants (on any multiple-choice name).
VARIANT_SUFFIXES: dict[str, Variants] = {"_circular": "circular", "_permutations": "all"}
SPEC_SUFFIXES = (".yaml", ".yml")
DATA_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".parquet")


def dataset_abbr(
    benchmark: str, subset: str, mode: str, continuations: str = "letters", variants: str = "none"
) -> str:
    """`ceval-computer_network` for gen; `_ppl` marks the log-likelihood variant, `_ppl_options`
    the one that scores option texts; `_circular` / `_permutations` the option-order variants."""
    base = f"{benchmark}-{subset}" if subset else benchmark
    suffix = "" if mode == "gen" else ("_ppl" if continuations == "letters" else "_ppl_options")
    variant = next((s for s, v in VARIANT_SUFFIXES.items() if v == variants), "")
    return base + suffix + variant


def is_path_name(name: str) -> bool:
    """A dataset name that is a user's file: a spec (.yaml) or a data file (.jsonl, .csv, ...)."""
    lowered = name.lower()
    return lowered.endswith(SPEC_SUFFIXES + DATA_SUFFIXES) or "/" in name or name.startswith(".")


def _collections(spec: TaskSpec) -> list[str]:
    if not spec.subsets or _bare_name_is_whole(spec):
        return [spec.name] + [f"{spec.name}_{m}" for m in spec.modes]
    return [f"{spec.name}_{m}" for m in spec.modes]


def _bare_name_is_whole(spec: TaskSpec) -> bool:
    """A benchmark with parts and one mode answers to its own name (`aime2025`: its I and II exams)."""
    return bool(spec.subsets) and len(spec.modes) == 1


def dataset_names() -> list[str]:
    """Every name `--datasets` accepts, collections first (circular variants aside)."""
    specs = builtin_specs().values()
    names = [n for spec in specs for n in _collections(spec)]
    names += ["demo_gen", "demo_ppl"]
    for spec in specs:
        names += [f"{spec.name}-{s.name}" for s in spec.subsets]
    return names


Expansion = tuple[TaskSpec, str, Mode, str | None, str | None]  # spec, subset, mode, data_dir, spec_path


def resolve_datasets(names: Iterable[str], **overrides: Any) -> list[DatasetConfig]:
    """Expand dataset names into one DatasetConfig per (subset, mode).

    `overrides` (fewshot, range, limit, data_dir, max_out_len, continuations, variants, mode,
    repeats, or its older name num_samples) apply to every config; `circular=True` is `variants="circular"`.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.pop("circular", False):
        overrides["variants"] = "circular"
    mode_override = overrides.pop("mode", None)
    judge = overrides.pop("judge", False)
    configs: list[DatasetConfig] = []
    for name in names:
        base, variants = _variant_suffix(name.strip())
        for spec, subset, mode, data_dir, spec_path in _expand(base):
            mode = mode_override or mode
            fields: dict[str, Any] = {"variants": variants, **overrides}
            if mode == "ppl" and "continuations" not in fields and spec.request.continuations != "letters":
                fields["continuations"] = spec.request.continuations  # the spec's own (PIQA: option texts)
            _check_fits(spec, name, mode, fields)
            fields.update(
                abbr=dataset_abbr(spec.name, subset, mode, fields.get("continuations", "letters"), fields["variants"]),
                benchmark=spec.name,
                subject=subset,
                mode=mode,
            )
            if spec_path:
                fields["spec_path"] = spec_path
            if judge and not spec.multiple_choice and "scorer" not in fields:
                fields["scorer"] = "cascade"  # the benchmark's own rule first, the judge behind it
            if data_dir and "data_dir" not in overrides:
                fields["data_dir"] = data_dir
            configs.append(DatasetConfig(**fields))
    return _drop_duplicates(configs)


def _variant_suffix(name: str) -> tuple[str, Variants]:
    if not is_path_name(name):
        for suffix, variants in VARIANT_SUFFIXES.items():
            if name.endswith(suffix):
                return name[: -len(suffix)], variants
    return name, "none"


def _check_fits(spec: TaskSpec, name: str, mode: str, fields: dict[str, Any]) -> None:
    """Refuse settings the benchmark cannot honour, naming the dataset."""
    if mode not in spec.modes:
        raise ConfigError(f"dataset {name!r}: {spec.display_title} has no {mode} mode (it offers {', '.join(spec.modes)})")
    if fields.get("variants", "none") != "none" and not spec.multiple_choice:
        raise ConfigError(f"dataset {name!r}: circular evaluation needs multiple-choice questions; {spec.display_title} is free-form")
    if fields.get("variants", "none") != "none" and not spec.reorder_options:
        raise ConfigError(f"dataset {name!r}: {spec.display_title}'s options carry their own letters in their text, "
                          "so they cannot be shown in another order (no circular evaluation)")
    repeats = fields.get("repeats") or fields.get("num_samples") or spec.request.repeats
    if fields.get("variants", "none") != "none" and repeats > 1:
        # Circular accuracy counts a question right only when every order is: over repeats too it
        # would be a stricter score than its name says.
        raise ConfigError(f"dataset {name!r}: circular evaluation and --repeats {repeats} cannot be combined; "
                          "run them separately")


def _drop_duplicates(configs: list[DatasetConfig]) -> list[DatasetConfig]:
    """Drop repeated names, but refuse two different datasets under one abbr.

    `demo_gen` holds `ceval-computer_network` too, from the demo files: keeping either one
    silently would score the wrong questions under the right name.
    """
    seen: dict[str, DatasetConfig] = {}
    for config in configs:
        kept = seen.setdefault(config.abbr, config)
        if kept != config:
            if kept.data_dir != config.data_dir:
                raise ConfigError(
                    f"dataset {config.abbr!r} is asked for twice with different data "
                    f"(data_dir {kept.data_dir or 'the data root'} and {config.data_dir or 'the data root'}); "
                    "run the demo set and the real benchmark in separate runs"
                )
            raise ConfigError(
                f"dataset {config.abbr!r} is asked for twice with different settings; "
                "give each entry its own `abbr` in a config file"
            )
    return list(seen.values())


def with_overrides(config: DatasetConfig, overrides: dict[str, Any]) -> DatasetConfig:
    """A config with command-line overrides; a default abbr follows a change of mode or variants."""
    overrides = dict(overrides)
    if overrides.pop("circular", False):
        overrides["variants"] = "circular"
    from proctor.tasks.resolve import JUDGES

    if (overrides.pop("judge", False) and not config.scorer and not spec_of(config).multiple_choice
            and spec_of(config).scorer.name not in JUDGES):  # a judged benchmark keeps its own judge
        overrides["scorer"] = "cascade"
    if not overrides:
        return config
    updated = config.model_copy(update=overrides)
    default = dataset_abbr(config.benchmark, config.subject, config.mode, config.continuations, config.variants)
    if config.abbr == default:
        updated = updated.model_copy(
            update={
                "abbr": dataset_abbr(
                    updated.benchmark, updated.subject, updated.mode, updated.continuations, updated.variants
                )
            }
        )
    return updated


def _demo_subsets() -> list[tuple[TaskSpec, str]]:
    """(spec, subset) pairs of the demo set shipped with Proctor."""
    from proctor.datasets import DEMO_DATA_DIR

    pairs = []
    for spec in builtin_specs().values():
        for subset in spec.subset_names:
            for rel in spec.data_source().candidates(subset, spec.splits.eval):
                if (DEMO_DATA_DIR / rel).is_file():
                    pairs.append((spec, subset))
                    break
    return pairs


def _expand(name: str) -> list[Expansion]:
    if is_path_name(name):
        from proctor.tasks.custom import spec_of_path

        spec, path = spec_of_path(name)
        default: Mode = "ppl" if spec.request.kind == "loglikelihood" else "gen"
        return [(spec, s, default, None, str(path)) for s in spec.subset_names if s or not spec.subsets]
    specs = builtin_specs()
    for spec in specs.values():
        if not spec.subsets and name == spec.name:
            return [(spec, "", "gen", None, None)]
        for mode in MODES:
            if name == f"{spec.name}_{mode}" or (name == spec.name and _bare_name_is_whole(spec) and mode in spec.modes):
                return [(spec, s, mode, None, None) for s in spec.subset_names]
    for mode in MODES:
        if name == f"demo_{mode}":
            from proctor.datasets import DEMO_DATA_DIR

            return [(spec, s, mode, str(DEMO_DATA_DIR), None) for spec, s in _demo_subsets()]
    family, sep, rest = name.partition("-")
    spec = specs.get(family)
    if sep and spec is not None and spec.subsets:
        subsets = spec.subset_names
        mode: Mode = "gen"
        for candidate in MODES:
            suffix = f"_{candidate}"
            if rest.endswith(suffix) and rest[: -len(suffix)] in subsets:
                rest, mode = rest[: -len(suffix)], candidate
        if rest in subsets:
            return [(spec, rest, mode, None, None)]
        raise ConfigError(
            f"unknown {family} subject {rest!r} in dataset name {name!r}"
            + did_you_mean(rest, subsets)
            + f" (see `proctor list datasets {family}`)"
        )
    raise ConfigError(
        f"unknown dataset {name!r}" + did_you_mean(name, dataset_names()) + " (see `proctor list datasets`)"
    )


def spec_of(config: DatasetConfig) -> TaskSpec:
    """The spec a dataset config names: a built-in one, or the user's file it was made from."""
    if config.spec_path:
        from proctor.tasks.custom import spec_of_path

        return spec_of_path(config.spec_path, config.meta_path, config.data_type)[0]
    spec = builtin_specs().get(config.benchmark)
    if spec is None:
        from proctor.config.suggest import unknown_name_error

        raise unknown_name_error("benchmark", config.benchmark, builtin_specs())
    return spec

