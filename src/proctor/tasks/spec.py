"""The TaskSpec: everything that makes a benchmark, as data (one YAML file per benchmark)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from proctor.datasets import DataSource, FieldMap, SourceSpec

Language = Literal["zh", "en"]
Mode = Literal["gen", "ppl"]
Variants = Literal["none", "circular", "all"]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScorerSpec(_Spec):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class SubsetSpec(_Spec):
    """One subject (task) of a benchmark; `categories` lists the summary groups it counts in,
    the official category first. A subset whose rows or scoring differ from the others' (AGIEval's
    cloze and multiple-answer tasks) gives its own `fields`, `scorer` or prompt `language`."""

    name: str
    title: str | None = None
    title_zh: str | None = None
    categories: tuple[str, ...] = ()
    language: Language | None = None
    fields: FieldMap | None = None
    scorer: ScorerSpec | None = None

    @property
    def category(self) -> str | None:
        return self.categories[0] if self.categories else None


class GroupSpec(_Spec):
    """An extra summary group over named subsets (C-Eval-Hard)."""

    name: str
    title: str | None = None
    subsets: tuple[str, ...]


class SplitsSpec(_Spec):
    eval: str = "test"  # the split that is scored
    fewshot: str | None = None  # where few-shot examples come from (None: none)
    available: tuple[str, ...] = ()  # every split the benchmark has (default: eval + fewshot)
    # Splits cut out of one file by id ranges ("11-510"): a split named here keeps, in file
    # order, the rows whose (integer) id lies in one of its ranges (MBPP: test 11-510, prompt 2-4).
    ids: dict[str, tuple[str, ...]] = Field(default_factory=dict)

    @field_validator("ids")
    @classmethod
    def _ranges(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for split, ranges in value.items():
            for r in ranges:
                lo, sep, hi = r.partition("-")
                if not (lo.strip().isdigit() and (not sep or hi.strip().isdigit())) or (sep and int(lo) > int(hi)):
                    raise ValueError(f"ids.{split}: {r!r} is not a range of ids such as 11-510")
        return value

    def select(self, split: str, samples: list[Any]) -> list[Any]:
        """The samples of `split` (all of them unless `ids` cuts the split out by id ranges).

        Every id of the ranges must be a row: a truncated file would otherwise be scored as if it
        were the whole split (MBPP's 500 tasks from a file that stops at task 300)."""
        ranges = self.ids.get(split)
        if not ranges:
            return samples
        from proctor.errors import DataError

        bounds = [(int(lo), int(hi or lo)) for lo, _, hi in (r.partition("-") for r in ranges)]
        keep = [s for s in samples if str(s.id).strip().isdigit() and any(lo <= int(s.id) <= hi for lo, hi in bounds)]
        if not keep:
            raise DataError(f"split {split!r}: no row has an id in {', '.join(ranges)}")
        wanted = set().union(*(range(lo, hi + 1) for lo, hi in bounds))
        missing = sorted(wanted - {int(s.id) for s in keep})
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise DataError(f"split {split!r} is ids {', '.join(ranges)}, but the data has no row with id {shown} "
                            f"({len(missing)} of {len(wanted)} missing): the file is incomplete; download it again")
        return keep

    @property
    def all(self) -> tuple[str, ...]:
        return self.available or tuple(s for s in (self.fewshot, self.eval) if s)


class PromptTexts(_Spec):
    """The wording of a preset: an instruction (formatted with {subject}) and the cue that the
    answer follows; `template` formats the question block (`{question}` and any field, or Jinja:
    `{{ passage }}\n{{ question }}`, `{{ test_list | join("\n") }}`)."""

    instruction: str = ""
    answer_cue: str = ""
    template: str | None = None
    # The few-shot answer format of a free-form question ({answer}, or {explanation} and {answer}).
    shot_answer: str | None = None
    shot_separator: str = "\n\n"
    # auto: Jinja when a template holds `{{ name }}`, `{% %}` or `{# #}`, else the `{field}` form.
    syntax: Literal["auto", "format", "jinja"] = "auto"


class _PromptParts(_Spec):
    texts: dict[str, PromptTexts] = Field(default_factory=dict)  # by language; the spec's language is used
    # Few-shot examples written in the spec (rows with the data's field names); when given they are
    # used instead of the few-shot split (e.g. the 8 chain-of-thought exemplars of Wei et al.).
    examples: tuple[dict[str, Any], ...] = ()
    stop: tuple[str, ...] | None = None  # None: the preset's default
    max_out_len: int | None = Field(None, ge=1)


class BasePrompt(_PromptParts):
    """The prompt for base (non-chat) models, where it differs from the chat one."""

    fewshot: int = Field(0, ge=0)


class PromptSpec(_PromptParts):
    preset: str = "multiple_choice"  # a name in the preset registry (proctor.prompts.presets)
    # The benchmark's system prompt, sent first to chat models (a model's own `system_prompt` wins).
    system: str | None = None
    language: Language = "en"
    fewshot: int = Field(5, ge=0)
    format: Literal["auto", "chat", "text"] = "auto"  # auto: chat for chat models
    # A file under the data roots ({subset} placeholder) whose text fills {prefix} in the template,
    # e.g. BBH's chain-of-thought exemplars per task; lines up to `prefix_after` are dropped (a
    # canary header).
    prefix_file: str | None = None
    prefix_after: str | None = None
    base: BasePrompt | None = None
    # The prompt for log-likelihood scoring (ppl mode), where it differs: PIQA's `Question: ...
    # Answer:` with each solution as the continuation, as lm-evaluation-harness asks it.
    ppl: BasePrompt | None = None

    def texts_for(self, parts: _PromptParts) -> PromptTexts:
        return parts.texts.get(self.language) or PromptTexts()

    @property
    def wording(self) -> PromptTexts:
        return self.texts_for(self)


class RequestSpec(_Spec):
    kind: Literal["generate", "loglikelihood"] = "generate"
    # loglikelihood over a multiple-choice question: score the letters or the option texts.
    continuations: Literal["letters", "options"] = "letters"
    # Times each question is asked by default (`--repeats` overrides; > 1 needs temperature > 0).
    # `n` is its older name.
    repeats: int = Field(1, ge=1, validation_alias=AliasChoices("repeats", "n"))


class ConversationSpec(_Spec):
    """A sample that is a conversation: `turns` names the row field holding the user turns (a list
    of texts); the model answers each in turn with its own earlier answers in the context."""

    turns: str = "turns"


class TaskSpec(_Spec):
    """A benchmark. Built-in ones live in `proctor/tasks/builtin/*.yaml`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.]*$")
    title: str | None = None
    description: str = ""
    subsets: tuple[SubsetSpec, ...] = ()  # none: one unnamed subset
    categories: tuple[str, ...] = ()  # official category names, in order
    groups: tuple[GroupSpec, ...] = ()
    source: SourceSpec
    splits: SplitsSpec = SplitsSpec()
    fields: FieldMap = FieldMap()
    prompt: PromptSpec = PromptSpec()
    request: RequestSpec = RequestSpec()
    modes: tuple[Mode, ...] = ("gen",)  # which of gen / ppl the benchmark offers
    variants: Variants = "none"
    # Whether options may be shown in other orders (circular / permutation variants): not when the
    # option texts carry their own letters ("(A)..." in AGIEval), which a new order would contradict.
    reorder_options: bool = True
    scorer: ScorerSpec = ScorerSpec(name="choice")
    metrics: tuple[str, ...] = ("accuracy",)
    # Sample fields whose values split the score into extra rows (MATH: subject, level).
    breakdown: tuple[str, ...] = ()
    conversation: ConversationSpec | None = None  # several user turns per sample (MT-Bench)

    @model_validator(mode="after")
    def _consistent(self) -> "TaskSpec":
        # Each message starts with the key at fault, as pydantic's own messages do.
        names = [s.name for s in self.subsets]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"subsets.{i}.name: subset {name!r} is listed twice")
        if self.categories:
            for i, subset in enumerate(self.subsets):
                unknown = [c for c in subset.categories if c not in self.categories]
                if unknown:
                    raise ValueError(f"subsets.{i}.categories: {unknown[0]!r} is not one of `categories` "
                                     f"{list(self.categories)}")
        for i, group in enumerate(self.groups):
            missing = [s for s in group.subsets if s not in names]
            if missing:
                from proctor.config.suggest import did_you_mean

                raise ValueError(f"groups.{i}.subsets: group {group.name!r} names unknown subset {missing[0]!r}"
                                 + did_you_mean(missing[0], names))
        if self.splits.available and not {self.splits.eval, *filter(None, [self.splits.fewshot])} <= set(
            self.splits.available
        ):
            raise ValueError(f"splits: eval/fewshot not among splits.available {list(self.splits.available)}")
        self._check_names()
        if not self.multiple_choice and ("ppl" in self.modes or self.variants != "none"):
            key = "modes" if "ppl" in self.modes else "variants"
            raise ValueError(f"{key}: a free-form benchmark has no options: ppl mode and circular variants "
                             "need multiple choice")
        if not self.reorder_options and self.variants != "none":
            raise ValueError("variants: reorder_options is false, so the options keep their order")
        if self.conversation is not None and (self.multiple_choice or self.request.repeats > 1):
            raise ValueError("conversation: a conversation is asked free-form (prompt.preset free_form), once")
        if self.request.kind == "loglikelihood" and "ppl" not in self.modes:
            raise ValueError("request.kind: loglikelihood needs `ppl` among `modes`")
        self._check_scorer()
        self._check_answerless()
        return self

    def _check_answerless(self) -> None:
        """Answerless rows (the spec's or a subset's own field map) need a scorer that reads no answer,
        whichever scorer that subset has: another would compare every output with None."""
        from proctor.scoring import get_scorer

        pairs = [("fields", self.fields, self.scorer)]
        pairs += [(f"subsets.{i}.fields", self.fields_for(s.name), self.scorer_for(s.name))
                  for i, s in enumerate(self.subsets)]
        for key, fields, scorer in pairs:
            if not fields.answerless:
                continue
            if getattr(get_scorer(scorer.name, scorer.params), "needs_answer", True):
                raise ValueError(f"{key}.answerless: the rows have no answer, but scorer {scorer.name!r} "
                                 "compares with one; use a scorer that needs none (ifeval)")
            if self.multiple_choice:
                raise ValueError(f"{key}.answerless: answerless rows need the free_form prompt preset")

    def _check_scorer(self) -> None:
        """An unknown scorer or a bad param fails when the spec is read, not after inference."""
        from proctor.errors import ConfigError
        from proctor.scoring import get_scorer

        scorers = [("scorer", self.scorer)]
        scorers += [(f"subsets.{i}.scorer", s.scorer) for i, s in enumerate(self.subsets) if s.scorer]
        for key, scorer in scorers:
            try:
                get_scorer(scorer.name, scorer.params)
            except ConfigError as err:
                raise ValueError(f"{key}: {err}") from None

    def _check_names(self) -> None:
        """Metrics and the prompt preset are registry names: an unknown one is refused here."""
        from proctor.errors import ConfigError
        from proctor.metrics import get_metric
        from proctor.prompts.presets import get_preset

        try:
            get_preset(self.prompt.preset)
        except ConfigError as err:
            raise ValueError(f"prompt.preset: {err}") from None
        if not self.metrics:
            raise ValueError("metrics: name at least one (the first is the headline)")
        for i, name in enumerate(self.metrics):
            try:
                get_metric(name)
            except ConfigError as err:
                raise ValueError(f"metrics.{i}: {err}") from None

    def fields_for(self, subset: str) -> FieldMap:
        """The field map of a subset: its own, else the spec's."""
        own = next((s.fields for s in self.subsets if s.name == subset), None)
        return own or self.fields

    def scorer_for(self, subset: str) -> ScorerSpec:
        """The scorer of a subset: its own, else the spec's."""
        own = next((s.scorer for s in self.subsets if s.name == subset), None)
        return own or self.scorer

    @property
    def display_title(self) -> str:
        return self.title or self.name

    @property
    def subset_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subsets) or ("",)

    def subset(self, name: str) -> SubsetSpec:
        for subset in self.subsets:
            if subset.name == name:
                return subset
        if not self.subsets and name == "":
            return SubsetSpec(name="", title=self.title)
        from proctor.config.suggest import unknown_name_error

        raise unknown_name_error(f"{self.display_title} subset", name, self.subset_names)

    def data_source(self) -> DataSource:
        return DataSource(self.name, self.display_title, self.source, self.subset_names, self.splits.all)

    @property
    def multiple_choice(self) -> bool:
        from proctor.errors import ConfigError
        from proctor.prompts.presets import get_preset

        try:
            return get_preset(self.prompt.preset).multiple_choice
        except ConfigError:
            return False  # refused by _check_names
