"""A dataset config resolved against its spec: what to load, how to ask, how to score."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proctor.config.schema import DatasetConfig
from proctor.core import Item, Sample
from proctor.prompts import PromptPlan, Wording, items_of
from proctor.tasks.names import spec_of
from proctor.tasks.spec import SubsetSpec, TaskSpec

log = logging.getLogger("proctor.engine")


@dataclass(frozen=True)
class ResolvedTask:
    """One (spec, subset, mode) with the config's settings applied; the engine passes it through."""

    spec: TaskSpec
    subset: SubsetSpec
    plan: PromptPlan  # its `base` is the plan for base models, when the spec has one
    fewshot: int
    base_fewshot: int
    variants: str
    repeats: int  # times each question is asked (`#k<j>` items)
    scorer: str
    scorer_params: dict[str, Any]
    prefix_file: Path | None = None  # the file that filled {prefix} (hashed in the manifest)

    @property
    def kind(self) -> str:
        return self.plan.kind

    def load(self, split: str, data_dir: str | Path | None) -> list[Sample]:
        from proctor.datasets import load_samples

        return load_samples(self.spec.data_source(), self.spec.fields, self.subset.name, split, data_dir)

    def files(self, split: str, data_dir: str | Path | None) -> list[Path]:
        from proctor.datasets import data_files

        return data_files(self.spec.data_source(), self.subset.name, split, data_dir, self.spec.fields)

    def items(self, sample: Sample) -> list[Item]:
        return items_of(sample, self.variants, self.repeats)  # type: ignore[arg-type]

    def shots(self, data_dir: str | Path | None, *, base: bool = False) -> tuple[list[Sample], list[Path]]:
        """The few-shot examples (and the files they came from) of the chat or the base prompt:
        the spec's own examples when it has them, else the first rows of the few-shot split."""
        parts = self.spec.prompt.base if base and self.spec.prompt.base else self.spec.prompt
        count = self.base_fewshot if base else self.fewshot
        if not count:
            return [], []
        if parts.examples:
            from proctor.datasets import row_to_sample

            where = f"{self.spec.name} spec: prompt{'.base' if base else ''}.examples"
            # Examples are written in the spec: no id column; they are numbered.
            fields = self.spec.fields.model_copy(update={"id": None})
            rows = [row_to_sample(row, i, fields, f"{where}[{i}]") for i, row in enumerate(parts.examples)]
            if count > len(rows):
                log.warning("dataset %s: %d few-shot examples asked for, the spec has %d; using %d",
                            self.spec.name, count, len(rows), len(rows))
            return rows[:count], []
        split = self.spec.splits.fewshot
        if not split:
            return [], []
        available = self.load(split, data_dir)
        if count > len(available):
            log.warning("dataset %s: %d few-shot examples asked for, the %s split has %d; using %d",
                        f"{self.spec.name}-{self.subset.name}" if self.subset.name else self.spec.name,
                        count, split, len(available), len(available))
        return available[:count], self.files(split, data_dir)


def subject_title(spec: TaskSpec, subset: SubsetSpec) -> str:
    """The subject as the instruction names it: Chinese benchmarks use the Chinese title, as their
    official prompts do."""
    if spec.prompt.language == "zh":
        return subset.title_zh or subset.title or subset.name
    return subset.title or subset.name


def _prefix(spec: TaskSpec, subset: SubsetSpec, data_dir: str | Path | None) -> tuple[str, Path | None]:
    """The text that fills {prefix}, from the spec's prefix file under the data roots."""
    if not spec.prompt.prefix_file:
        return "", None
    from proctor.datasets import DataSource, SourceSpec, data_files

    source = DataSource(spec.name, spec.display_title, SourceSpec(layouts=(spec.prompt.prefix_file,)),
                        spec.subset_names, spec.splits.all)
    (path,) = data_files(source, subset.name, spec.splits.eval, data_dir)
    text = path.read_text(encoding="utf-8")
    marker = spec.prompt.prefix_after
    if marker:
        lines = text.splitlines(keepends=True)
        cut = next((i for i, line in enumerate(lines) if line.strip() == marker), None)
        if cut is not None:
            text = "".join(lines[cut + 1 :])
    return text.strip("\n"), path


JUDGES = ("cascade", "llm_judge")


def _scorer(spec: TaskSpec, config: DatasetConfig) -> tuple[str, dict[str, Any]]:
    """The spec's scorer, or the config's; a `cascade` without its own rule keeps the spec's
    scorer as the rule, so `--judge` only adds the judge behind what the benchmark already does."""
    if not config.scorer:
        return spec.scorer.name, dict(spec.scorer.params)
    params = dict(config.scorer_params or {})
    if config.scorer == "cascade" and "rule" not in params and spec.scorer.name not in JUDGES:
        params = {"rule": spec.scorer.name, "rule_params": dict(spec.scorer.params), **params}
    return config.scorer, params


def resolve_task(config: DatasetConfig, data_dir: str | Path | None = None) -> ResolvedTask:
    spec = spec_of(config)
    subset = spec.subset(config.subject)
    prompt = spec.prompt
    prefix, prefix_file = _prefix(spec, subset, config.data_dir or data_dir)
    kind = "loglikelihood" if config.mode == "ppl" else "generate"

    def plan(parts: Any, base: PromptPlan | None = None) -> PromptPlan:
        texts = prompt.texts_for(parts)
        return PromptPlan(
            preset=prompt.preset,
            wording=Wording(texts.instruction, texts.answer_cue, texts.template, texts.shot_answer,
                            texts.shot_separator, prefix, texts.syntax),
            subject=subject_title(spec, subset),
            kind=kind,  # type: ignore[arg-type]
            continuations=config.continuations,
            format=prompt.format if base is not None or prompt.base is None else "text",
            stop=parts.stop,
            max_out_len=parts.max_out_len,
            base=base,
        )

    base_plan = plan(prompt.base) if prompt.base is not None else None
    scorer, params = _scorer(spec, config)
    return ResolvedTask(
        spec=spec,
        subset=subset,
        plan=plan(prompt, base_plan),
        fewshot=prompt.fewshot if config.fewshot is None else config.fewshot,
        base_fewshot=(prompt.base.fewshot if prompt.base else prompt.fewshot) if config.fewshot is None else config.fewshot,
        variants=config.variants if config.variants != "none" else spec.variants,
        repeats=config.repeats or spec.request.repeats,
        scorer=scorer,
        scorer_params=params,
        prefix_file=prefix_file,
    )
