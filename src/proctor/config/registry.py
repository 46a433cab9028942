"""Built-in dataset names (`ceval_gen`, `cmmlu-anatomy`, ...) and model presets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal

from proctor.config.schema import ApiModelConfig, DatasetConfig, HFModelConfig, VLLMModelConfig
from proctor.config.suggest import did_you_mean
from proctor.errors import ConfigError

Mode = Literal["gen", "ppl"]
MODES: tuple[Mode, ...] = ("gen", "ppl")
FAMILIES = ("ceval", "cmmlu", "mmlu")


def dataset_abbr(benchmark: str, subject: str, mode: Mode, continuations: str = "letters") -> str:
    """`ceval-computer_network` for gen; `_ppl` marks the log-likelihood variant,
    `_ppl_options` the one that scores option texts."""
    suffix = "" if mode == "gen" else ("_ppl" if continuations == "letters" else "_ppl_options")
    return f"{benchmark}-{subject}{suffix}"


def _subjects(benchmark: str) -> list[str]:
    from proctor.datasets import get_benchmark

    return [s.name for s in get_benchmark(benchmark).subjects]


def _demo_subjects() -> list[tuple[str, str]]:
    """(benchmark, subject) pairs of the demo set shipped with Proctor."""
    from proctor.datasets import DEMO_DATA_DIR, get_benchmark

    pairs = []
    for family in FAMILIES:
        bench = get_benchmark(family)
        for subject in bench.subjects:
            if any(DEMO_DATA_DIR.glob(f"{family}/**/{subject.name}_{bench.eval_split}.csv")) or any(
                DEMO_DATA_DIR.glob(f"{family}/**/{bench.eval_split}/{subject.name}.csv")
            ):
                pairs.append((family, subject.name))
    return pairs


def dataset_names() -> list[str]:
    """Every name `--datasets` accepts, collections first."""
    names = [f"{family}_{mode}" for family in FAMILIES for mode in MODES]
    names += ["demo_gen", "demo_ppl"]
    for family in FAMILIES:
        names += [f"{family}-{subject}" for subject in _subjects(family)]
    return names


def resolve_datasets(names: Iterable[str], **overrides: Any) -> list[DatasetConfig]:
    """Expand dataset names into one DatasetConfig per (subject, mode).

    `overrides` (fewshot, range, limit, data_dir, max_out_len) apply to every config.
    """
    overrides = {k: v for k, v in overrides.items() if v is not None}
    configs: list[DatasetConfig] = []
    for name in names:
        for benchmark, subject, mode, data_dir in _expand(name):
            fields: dict[str, Any] = {
                "abbr": dataset_abbr(benchmark, subject, mode, overrides.get("continuations", "letters")),
                "benchmark": benchmark,
                "subject": subject,
                "mode": mode,
                **({"data_dir": data_dir} if data_dir else {}),
                **overrides,
            }
            configs.append(DatasetConfig(**fields))
    return _drop_duplicates(configs)


def _drop_duplicates(configs: list[DatasetConfig]) -> list[DatasetConfig]:
    """Drop repeated names, but refuse two different datasets under one abbr.

    `demo_gen` holds `ceval-computer_network` too, from the demo files: keeping either one
    silently would score the wrong questions under the right name.
    """
    seen: dict[str, DatasetConfig] = {}
    for config in configs:
        kept = seen.setdefault(config.abbr, config)
        if kept != config:
            raise ConfigError(
                f"dataset {config.abbr!r} is asked for twice with different data "
                f"(data_dir {kept.data_dir or 'the data root'} and {config.data_dir or 'the data root'}); "
                "run the demo set and the real benchmark in separate runs"
            )
    return list(seen.values())


def with_overrides(config: DatasetConfig, overrides: dict[str, Any]) -> DatasetConfig:
    """A config with command-line overrides; a default abbr follows a change of continuations."""
    if not overrides:
        return config
    updated = config.model_copy(update=overrides)
    default = dataset_abbr(config.benchmark, config.subject, config.mode, config.continuations)
    if config.abbr == default:
        updated = updated.model_copy(
            update={"abbr": dataset_abbr(updated.benchmark, updated.subject, updated.mode, updated.continuations)}
        )
    return updated


def _expand(name: str) -> list[tuple[str, str, Mode, str | None]]:
    name = name.strip()
    for family in FAMILIES:
        for mode in MODES:
            if name == f"{family}_{mode}":
                return [(family, s, mode, None) for s in _subjects(family)]
    for mode in MODES:
        if name == f"demo_{mode}":
            from proctor.datasets import DEMO_DATA_DIR

            return [(b, s, mode, str(DEMO_DATA_DIR)) for b, s in _demo_subjects()]
    family, sep, rest = name.partition("-")
    if sep and family in FAMILIES:
        subjects = _subjects(family)
        mode: Mode = "gen"
        for candidate in MODES:
            suffix = f"_{candidate}"
            if rest.endswith(suffix) and rest[: -len(suffix)] in subjects:
                rest, mode = rest[: -len(suffix)], candidate
        if rest in subjects:
            return [(family, rest, mode, None)]
        raise ConfigError(
            f"unknown {family} subject {rest!r} in dataset name {name!r}"
            + did_you_mean(rest, subjects)
            + f" (see `proctor list datasets {family}`)"
        )
    raise ConfigError(
        f"unknown dataset {name!r}" + did_you_mean(name, dataset_names()) + " (see `proctor list datasets`)"
    )


@dataclass(frozen=True)
class ModelPreset:
    name: str
    description: str
    config: dict[str, Any]


MODEL_PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset(
            "gpt-4o-mini",
            "OpenAI gpt-4o-mini (key in $OPENAI_API_KEY)",
            {"type": "api", "api_base": "https://api.openai.com/v1", "model": "gpt-4o-mini"},
        ),
        ModelPreset(
            "deepseek-chat",
            "DeepSeek chat API (key in $DEEPSEEK_API_KEY)",
            {
                "type": "api",
                "api_base": "https://api.deepseek.com/v1",
                "model": "deepseek-chat",
                "api_key_env": "DEEPSEEK_API_KEY",
            },
        ),
        ModelPreset(
            "qwen-plus",
            "Alibaba Qwen via DashScope's OpenAI-compatible mode (key in $DASHSCOPE_API_KEY)",
            {
                "type": "api",
                "api_base": "https://dashscope.aliyuncs.com/compatible-mode/v1",
                "model": "qwen-plus",
                "api_key_env": "DASHSCOPE_API_KEY",
            },
        ),
        ModelPreset(
            "local-api",
            "Any OpenAI-compatible server on 127.0.0.1:23333 (proctor serve, LMDeploy), model id discovered",
            {"type": "api", "api_base": "http://127.0.0.1:23333/v1", "abbr": "local-api"},
        ),
        ModelPreset(
            "internlm2_5-1_8b-chat-hf",
            "InternLM2.5-1.8B-Chat with transformers (needs trust_remote_code)",
            {
                "type": "hf",
                "abbr": "internlm2_5-1_8b-chat-hf",
                "path": "internlm/internlm2_5-1_8b-chat",
                "trust_remote_code": True,
            },
        ),
        ModelPreset(
            "qwen2_5-0_5b-instruct-hf",
            "Qwen2.5-0.5B-Instruct with transformers",
            {"type": "hf", "abbr": "qwen2_5-0_5b-instruct-hf", "path": "Qwen/Qwen2.5-0.5B-Instruct"},
        ),
    ]
}


def resolve_model_preset(name: str) -> ApiModelConfig | HFModelConfig | VLLMModelConfig:
    preset = MODEL_PRESETS.get(name)
    if preset is None:
        raise ConfigError(
            f"unknown model {name!r}" + did_you_mean(name, MODEL_PRESETS) + " (see `proctor list models`)"
        )
    from proctor.config.models import model_from_dict

    return model_from_dict(preset.config, where=f"preset {name}")
