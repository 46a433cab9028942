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
from proctor.tasks.spec import PromptTexts, SubsetSpec, TaskSpec

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
    hook_digest: str = ""  # sha256 of the row hook's file, read when the task was resolved

    @property
    def kind(self) -> str:
        return self.plan.kind

    def load(self, split: str, data_dir: str | Path | None) -> list[Sample]:
        from proctor.datasets import load_samples

        check = None
        if split == self.spec.splits.eval:  # the scored split: every gold must be one the scorer reads
            from proctor.scoring import get_scorer

            check = getattr(get_scorer(self.scorer, self.scorer_params), "check_sample", None)
        samples = load_samples(self.spec.data_source(), self.fields, self.subset.name, split, data_dir, check=check)
        return self.spec.splits.select(split, samples)

    def files(self, split: str, data_dir: str | Path | None) -> list[Path]:
        from proctor.datasets import data_files

        files = data_files(self.spec.data_source(), self.subset.name, split, data_dir, self.fields)
        hook = self.hook_file
        return files + [hook] if hook is not None and hook not in files else files

    @property
    def fields(self) -> Any:
        """The field map of this subset (its own, else the spec's)."""
        return self.spec.fields_for(self.subset.name)

    @property
    def version(self) -> str:
        """The summary's `version`: the prompt's, with the row hook's code folded in when there is one
        (the same spec with an edited hook reads other samples)."""
        import hashlib

        own = self.plan.version
        if self.spec.prompt.system or self.spec.conversation is not None:  # another prompt: another version
            what = f"{own}|{self.spec.prompt.system}|{self.spec.conversation}"
            own = hashlib.sha256(what.encode()).hexdigest()[:6] + own[-1]
        if not self.hook_digest:
            return own

        return hashlib.sha256(f"{own}|{self.hook_digest}".encode()).hexdigest()[:6] + own[-1]

    @property
    def hook_file(self) -> Path | None:
        """The file of the spec's row hook, when it has one (hashed into the dataset's version)."""
        if self.fields.hook is None:
            return None
        from proctor.datasets.hooks import hook_file

        return hook_file(self.fields.hook)

    def items(self, sample: Sample) -> list[Item]:
        if self.spec.conversation is not None:
            if self.repeats > 1 or self.variants != "none":
                from proctor.errors import ConfigError

                raise ConfigError(f"{self.spec.name} is a conversation benchmark: --repeats and --variants "
                                  "do not apply to it")
            from proctor.prompts.variants import turn_items

            return turn_items(sample, self.spec.conversation.turns)
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
            fields = self.fields.model_copy(update={"id": None})
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
    if (subset.language or spec.prompt.language) == "zh":
        return subset.title_zh or subset.title or subset.name
    return subset.title or subset.name


def _prefix(spec: TaskSpec, subset: SubsetSpec, data_dir: str | Path | None) -> tuple[str, Path | None]:
    """The text that fills {prefix}, from the spec's prefix file under the data roots."""
    if not spec.prompt.prefix_file:
        return "", None
    from proctor.datasets import DataSource, SourceSpec, data_files

    source = DataSource(spec.name, spec.display_title, SourceSpec(layouts=(spec.prompt.prefix_file,)),
                        spec.subset_names, spec.splits.all)
    path = data_files(source, subset.name, spec.splits.eval, data_dir)[0]
    text = path.read_text(encoding="utf-8")
    marker = spec.prompt.prefix_after
    if marker:
        lines = text.splitlines(keepends=True)
        cut = next((i for i, line in enumerate(lines) if line.strip() == marker), None)
        if cut is not None:
            text = "".join(lines[cut + 1 :])
    return text.strip("\n"), path


JUDGES = ("cascade", "llm_judge", "pairwise_judge", "rating_judge")


def _scorer(spec: TaskSpec, config: DatasetConfig) -> tuple[str, dict[str, Any]]:
    """The subset's scorer (its own, else the spec's), or the config's; a `cascade` without its own
    rule keeps that scorer as the rule, so `--judge` only adds the judge behind what the benchmark
    already does."""
    own = spec.scorer_for(config.subject)
    if not config.scorer:
        return own.name, dict(own.params)
    params = dict(config.scorer_params or {})
    if config.scorer == own.name and own.name in ("pairwise_judge", "rating_judge"):
        params = {**own.params, **params}  # a judged benchmark's judge settings, a few changed
    if config.scorer == "cascade" and "rule" not in params and own.name not in JUDGES:
        params = {"rule": own.name, "rule_params": dict(own.params), **params}
    return config.scorer, params


def resolve_task(config: DatasetConfig, data_dir: str | Path | None = None) -> ResolvedTask:
    spec = spec_of(config)
    subset = spec.subset(config.subject)
    prompt = spec.prompt
    prefix, prefix_file = _prefix(spec, subset, config.data_dir or data_dir)
    kind = "loglikelihood" if config.mode == "ppl" else "generate"
    language = subset.language or prompt.language
    # ppl mode asks the spec's log-likelihood prompt when it has one (no base variant then).
    own = prompt.ppl if kind == "loglikelihood" and prompt.ppl is not None else prompt

    def plan(parts: Any, base: PromptPlan | None = None) -> PromptPlan:
        texts = parts.texts.get(language) or PromptTexts()
        return PromptPlan(
            preset=prompt.preset,
            wording=Wording(texts.instruction, texts.answer_cue, texts.template, texts.shot_answer,
                            texts.shot_separator, prefix, texts.syntax),
            subject=subject_title(spec, subset),
            kind=kind,  # type: ignore[arg-type]
            continuations=config.continuations,
            format=prompt.format if base is not None or prompt.base is None or own is not prompt else "text",
            stop=parts.stop,
            max_out_len=parts.max_out_len,
            base=base,
        )

    base_plan = plan(prompt.base) if prompt.base is not None and own is prompt else None
    scorer, params = _scorer(spec, config)
    if spec.fields_for(subset.name).answerless and config.scorer:
        from proctor.errors import ConfigError
        from proctor.scoring import get_scorer

        if getattr(get_scorer(scorer, params), "needs_answer", True):
            raise ConfigError(f"dataset {config.abbr}: its rows have no answers, so scorer {scorer!r} (which compares "
                              f"with one) cannot score it; keep its own scorer ({spec.scorer.name!r})")
    return ResolvedTask(
        spec=spec,
        subset=subset,
        plan=plan(own, base_plan),
        fewshot=own.fewshot if config.fewshot is None else config.fewshot,
        base_fewshot=(prompt.base.fewshot if prompt.base else prompt.fewshot) if config.fewshot is None else config.fewshot,
        variants=config.variants if config.variants != "none" else spec.variants,
        repeats=config.repeats or spec.request.repeats,
        scorer=scorer,
        scorer_params=params,
        prefix_file=prefix_file,
        hook_digest=_hook_digest(spec.fields_for(subset.name).hook),
    )


def _hook_digest(hook: str | None) -> str:
    if hook is None:
        return ""
    import hashlib

    from proctor.datasets.hooks import hook_file

    path = hook_file(hook)
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() if path is not None else hook
    except OSError:
        return hook
