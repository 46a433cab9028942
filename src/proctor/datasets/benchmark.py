"""What a benchmark is, independent of where its files live: subjects, splits, categories."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from proctor.config.suggest import close_matches
from proctor.errors import ConfigError


@dataclass(frozen=True)
class Subject:
    """One subject (task) of a benchmark, e.g. C-Eval `computer_network`."""

    name: str
    title: str  # English title, e.g. "Computer Network"
    title_zh: str | None  # Chinese title, where the benchmark has one
    # Every summary group the subject counts in, the official category first
    # (a CMMLU subject can also count in "China specific").
    categories: tuple[str, ...]
    hard: bool = False  # part of C-Eval-Hard

    @property
    def category(self) -> str:
        """The official category (the first of `categories`)."""
        return self.categories[0]


@dataclass(frozen=True)
class Benchmark:
    """A multiple-choice benchmark family: its subjects, splits and category groups."""

    name: str  # "ceval", "cmmlu", "mmlu"
    title: str  # "C-Eval", "CMMLU", "MMLU"
    language: str  # "zh" or "en"
    eval_split: str  # the split that is scored
    fewshot_split: str  # the split few-shot examples come from
    splits: tuple[str, ...]
    subjects: tuple[Subject, ...]
    categories: tuple[str, ...]  # official category names, in the official order

    def __post_init__(self) -> None:
        # Catch slips in the embedded metadata at import time, not mid-run.
        if len(set(self.subject_names)) != len(self.subjects):
            raise ValueError(f"{self.name}: duplicate subject names")
        unknown = {c for s in self.subjects for c in s.categories} - set(self.categories)
        if unknown:
            raise ValueError(f"{self.name}: subjects use unknown categories {sorted(unknown)}")
        if not {self.eval_split, self.fewshot_split} <= set(self.splits):
            raise ValueError(f"{self.name}: eval/few-shot split not among {self.splits}")

    @property
    def subject_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subjects)

    def subject(self, name: str) -> Subject:
        """The subject called `name`; ConfigError with close matches when there is none."""
        for subject in self.subjects:
            if subject.name == name:
                return subject
        raise unknown_name_error(f"{self.title} subject", name, self.subject_names)

    def check_split(self, split: str) -> str:
        """Return `split` if the benchmark has it, else raise ConfigError."""
        if split not in self.splits:
            raise unknown_name_error(f"{self.title} split", split, self.splits)
        return split

    def category_subjects(self, category: str) -> tuple[Subject, ...]:
        """The subjects counted in `category` (official order)."""
        if category not in self.categories:
            raise unknown_name_error(f"{self.title} category", category, self.categories)
        return tuple(s for s in self.subjects if category in s.categories)


def unknown_name_error(what: str, name: str, known: Iterable[str]) -> ConfigError:
    """A one-line ConfigError for an unknown name, suggesting the closest known ones."""
    known = list(known)
    close = close_matches(name, known)
    if close:
        hint = "did you mean " + " or ".join(repr(c) for c in close) + "?"
    else:
        shown = ", ".join(known[:8]) + (", ..." if len(known) > 8 else "")
        hint = f"known: {shown}"
    return ConfigError(f"unknown {what} {name!r}: {hint}")
