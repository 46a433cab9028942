"""The rows the report opens with: one per benchmark and model, then groups, then subsets.

A benchmark is a group no other group contains (a benchmark average such as
`ceval_gen (2/52 subjects)`) or a dataset in no group (`gsm8k`). Each row carries the
score with its standard error (the report shows the 95% interval, value ± 1.96·stderr),
the scored items, the failed ones and, for generated answers, the extraction rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from proctor.core import Result
from proctor.metrics import MEAN_OF_SUBJECTS, common_metric, group_results
from proctor.report.stats import Z95
from proctor.report.summary import Summary

Section = Literal["benchmark", "group", "subset"]
EXTRACTION = "extraction_rate"


@dataclass(frozen=True)
class HeadlineRow:
    section: Section
    name: str
    kind: Literal["dataset", "group"]
    metric: str
    model: str
    value: float | None
    stderr: float | None
    n: int | None
    failed: int | None
    extraction_rate: float | None = None
    members: tuple[str, ...] = ()
    # Generated answers: replies cut off inside their reasoning (no answer, scored 0), and
    # answers read from replies the token limit ended.
    truncated: int | None = None
    length: int | None = None

    @property
    def interval(self) -> tuple[float, float] | None:
        """value ± 1.96·stderr (the normal 95% interval), or None without a stderr."""
        if self.value is None or self.stderr is None:
            return None
        half = Z95 * self.stderr
        return self.value - half, self.value + half


def _finite(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summary_groups(summary: Summary, extra: Mapping[str, Sequence[str]] = {}) -> dict[str, tuple[str, ...]]:
    """Group name -> member datasets: from the summary's group rows, else from `extra` (groups.json)."""
    groups: dict[str, tuple[str, ...]] = {}
    for row in summary.rows:
        if row.kind == "group" and row.dataset not in groups:
            members = row.members or tuple(extra.get(row.dataset, ()))
            if members:
                groups[row.dataset] = tuple(members)
    return groups


def top_level(groups: Mapping[str, tuple[str, ...]]) -> list[str]:
    """Groups no other group contains (of groups with the same members, the first)."""
    names = list(groups)
    tops = []
    for i, name in enumerate(names):
        mine = set(groups[name])
        contained = any(
            mine < set(groups[other]) or (mine == set(groups[other]) and j < i)
            for j, other in enumerate(names)
            if other != name
        )
        if not contained:
            tops.append(name)
    return tops


def _dataset_row(section: Section, dataset: str, model: str, result: Result | None) -> HeadlineRow:
    if result is None:
        return HeadlineRow(section, dataset, "dataset", "-", model, None, None, None, None)
    return HeadlineRow(
        section, dataset, "dataset", result.metric, model, _finite(result.value), _finite(result.stderr),
        result.n, result.n_failed, _finite(result.extra_metrics.get(EXTRACTION)),
        truncated=result.truncated, length=result.length,
    )


def _group_row(section: Section, name: str, members: tuple[str, ...], model: str,
               results: Mapping[tuple[str, str], Result], summary: Summary) -> HeadlineRow:
    found = [results[(model, m)] for m in members if (model, m) in results]
    metric = f"{common_metric(r.metric for r in found)} ({MEAN_OF_SUBJECTS})" if found else "-"
    if found and len(found) == len(members):
        subjects, _ = group_results(name, found)
        n_total = sum(r.n for r in found)
        rates = [r.extra_metrics.get(EXTRACTION) for r in found]
        rate = (sum(x * r.n for x, r in zip(rates, found)) / n_total
                if n_total and all(isinstance(x, (int, float)) for x in rates) else None)
        return HeadlineRow(section, name, "group", subjects.metric, model, _finite(subjects.value),
                           _finite(subjects.stderr), n_total, sum(r.n_failed for r in found), _finite(rate), members,
                           truncated=sum(r.truncated for r in found), length=sum(r.length for r in found))
    # No results on disk (a summary given directly): the summary's own row.
    index = summary.models.index(model)
    for row in summary.rows:
        if row.kind == "group" and row.dataset == name and row.metric.endswith(f"({MEAN_OF_SUBJECTS})"):
            stderr = row.stderrs[index] if index < len(row.stderrs) else None
            return HeadlineRow(section, name, "group", row.metric, model, row.values[index], stderr,
                               None, row.failed[index], None, members)
    failed = sum(r.n_failed for r in found) if found else None
    return HeadlineRow(section, name, "group", metric, model, None, None, None, failed, None, members)


def _summary_dataset_row(section: Section, dataset: str, model: str, summary: Summary) -> HeadlineRow:
    index = summary.models.index(model)
    for row in summary.rows:
        if row.kind == "dataset" and row.dataset == dataset:
            stderr = row.stderrs[index] if index < len(row.stderrs) else None
            return HeadlineRow(section, dataset, "dataset", row.metric, model, row.values[index], stderr, None,
                               row.failed[index])
    return HeadlineRow(section, dataset, "dataset", "-", model, None, None, None, None)


def build_headline(
    summary: Summary, results: Mapping[tuple[str, str], Result], groups: Mapping[str, Sequence[str]] = {}
) -> list[HeadlineRow]:
    """Benchmark rows, then group rows, then subset rows; within each, one row per model."""
    datasets: list[str] = []
    for row in summary.rows:
        if row.kind == "dataset" and row.dataset not in datasets:
            datasets.append(row.dataset)
    all_groups = summary_groups(summary, groups)
    tops = top_level(all_groups)
    grouped = {m for members in all_groups.values() for m in members}

    def dataset_rows(section: Section, dataset: str) -> list[HeadlineRow]:
        out = []
        for model in summary.models:
            result = results.get((model, dataset))
            out.append(_dataset_row(section, dataset, model, result) if result is not None
                       else _summary_dataset_row(section, dataset, model, summary))
        return out

    rows: list[HeadlineRow] = []
    for name in tops:
        rows.extend(_group_row("benchmark", name, all_groups[name], m, results, summary) for m in summary.models)
    for dataset in datasets:
        if dataset not in grouped:
            rows.extend(dataset_rows("benchmark", dataset))
    for name, members in all_groups.items():
        if name not in tops:
            rows.extend(_group_row("group", name, members, m, results, summary) for m in summary.models)
    for dataset in datasets:
        if dataset in grouped:
            rows.extend(dataset_rows("subset", dataset))
    return rows
