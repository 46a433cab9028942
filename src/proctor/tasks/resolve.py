"""A dataset config resolved against its spec: what to load, how to ask, how to score."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proctor.config.schema import DatasetConfig
from proctor.core import Item, Sample
from proctor.prompts import PromptPlan, Wording, items_of
from proctor.tasks.names import spec_of
from proctor.tasks.spec import SubsetSpec, TaskSpec


@dataclass(frozen=True)
class ResolvedTask:
    """One (spec, subset, mode) with the config's settings applied; the engine passes it through."""

    spec: TaskSpec
    subset: SubsetSpec
    plan: PromptPlan
    fewshot: int
    variants: str
    n: int  # answers per question
    scorer: str
    scorer_params: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.plan.kind

    def load(self, split: str, data_dir: str | Path | None) -> list[Sample]:
        from proctor.datasets import load_samples

        return load_samples(self.spec.data_source(), self.spec.fields, self.subset.name, split, data_dir)

    def files(self, split: str, data_dir: str | Path | None) -> list[Path]:
        from proctor.datasets import data_files

        return data_files(self.spec.data_source(), self.subset.name, split, data_dir)

    def items(self, sample: Sample) -> list[Item]:
        return items_of(sample, self.variants, self.n)  # type: ignore[arg-type]


def subject_title(spec: TaskSpec, subset: SubsetSpec) -> str:
    """The subject as the instruction names it: Chinese benchmarks use the Chinese title, as their
    official prompts do."""
    if spec.prompt.language == "zh":
        return subset.title_zh or subset.title or subset.name
    return subset.title or subset.name


def resolve_task(config: DatasetConfig) -> ResolvedTask:
    spec = spec_of(config)
    subset = spec.subset(config.subject)
    texts = spec.prompt.wording
    kind = "loglikelihood" if config.mode == "ppl" else "generate"
    plan = PromptPlan(
        preset=spec.prompt.preset,
        wording=Wording(texts.instruction, texts.answer_cue, texts.template, texts.shot_answer, texts.shot_separator),
        subject=subject_title(spec, subset),
        kind=kind,
        continuations=config.continuations,
        format=spec.prompt.format,
        stop=spec.prompt.stop,
        max_out_len=config.max_out_len or spec.prompt.max_out_len,
    )
    return ResolvedTask(
        spec=spec,
        subset=subset,
        plan=plan,
        fewshot=spec.prompt.fewshot if config.fewshot is None else config.fewshot,
        variants=config.variants if config.variants != "none" else spec.variants,
        n=config.num_samples or spec.request.n,
        scorer=spec.scorer.name,
        scorer_params=dict(spec.scorer.params),
    )
