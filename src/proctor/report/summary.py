"""The summary table as frozen data: one row per (dataset, metric), one value per model."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from proctor.core import Result
from proctor.errors import ConfigError
from proctor.metrics import MEAN_OF_QUESTIONS, MEAN_OF_SUBJECTS, common_metric, group_results

MISSING = "-"
RowKind = Literal["dataset", "group"]


@dataclass(frozen=True)
class SummaryGroup:
    """A named average over datasets; a member may also name another group (expanded)."""

    name: str
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        # Accept any sequence from callers but keep the object hashable and immutable.
        object.__setattr__(self, "members", tuple(self.members))


@dataclass(frozen=True)
class DatasetRowInfo:
    """What the table says about a dataset besides its scores."""

    abbr: str
    version: str = MISSING
    mode: str = MISSING


@dataclass(frozen=True)
class SummaryRow:
    """One table row; `values`, `stderrs` and `failed` align with `Summary.models` (None = missing)."""

    dataset: str
    version: str
    metric: str
    mode: str
    values: tuple[float | None, ...]
    failed: tuple[int | None, ...]
    stderrs: tuple[float | None, ...] = ()
    kind: RowKind = "dataset"
    members: tuple[str, ...] = ()  # the leaf datasets of a group row


@dataclass(frozen=True)
class Summary:
    models: tuple[str, ...]
    rows: tuple[SummaryRow, ...]

    @property
    def has_failures(self) -> bool:
        return any(f for row in self.rows for f in row.failed if f)

    def value(self, dataset: str, model: str, metric: str | None = None) -> float | None:
        """The value of the first row for `dataset` (and `metric`, when given) for `model`."""
        index = self.models.index(model)
        for row in self.rows:
            if row.dataset == dataset and (metric is None or row.metric == metric):
                return row.values[index]
        raise KeyError(f"no summary row for dataset {dataset!r} metric {metric!r}")


def _number(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _leaves(name: str, groups: dict[str, SummaryGroup], trail: tuple[str, ...] = ()) -> list[str]:
    """The dataset abbrs under a group, with nested groups expanded in order, without repeats."""
    if name in trail:
        cycle = " -> ".join((*trail, name))
        raise ConfigError(f"summary group {trail[0]!r} contains itself ({cycle}): remove the cycle")
    out: list[str] = []
    for member in groups[name].members:
        for leaf in _leaves(member, groups, (*trail, name)) if member in groups else [member]:
            if leaf not in out:
                out.append(leaf)
    return out


def _extra_keys(results: Sequence[Result | None]) -> list[str]:
    keys: list[str] = []
    for result in results:
        for key in result.extra_metrics if result else ():
            if key not in keys:
                keys.append(key)
    return keys


def _group_value(result: Result | None, key: str | None) -> float | None:
    if result is None:
        return None
    return _number(result.value if key is None else result.extra_metrics.get(key))


def _dataset_rows(info: DatasetRowInfo, per_model: list[Result | None]) -> list[SummaryRow]:
    present = [r for r in per_model if r is not None]
    metric = present[0].metric if present else MISSING
    failed = tuple(r.n_failed if r else None for r in per_model)
    rows = [
        SummaryRow(
            dataset=info.abbr,
            version=info.version,
            metric=metric,
            mode=info.mode,
            values=tuple(_number(r.value) if r else None for r in per_model),
            failed=failed,
            stderrs=tuple(_number(r.stderr) if r else None for r in per_model),
        )
    ]
    for key in _extra_keys(per_model):
        rows.append(
            SummaryRow(
                dataset=info.abbr,
                version=info.version,
                metric=key,
                mode=info.mode,
                values=tuple(_number(r.extra_metrics.get(key)) if r else None for r in per_model),
                failed=failed,
                stderrs=tuple(_number(r.extra_stderrs.get(key)) if r else None for r in per_model),
            )
        )
    return rows


def _group_rows(
    group: SummaryGroup,
    leaves: list[str],
    models: Sequence[str],
    index: dict[tuple[str, str], Result],
    modes: dict[str, str],
) -> list[SummaryRow]:
    averaged: list[tuple[Result, Result] | None] = []
    failed: list[int | None] = []
    for model in models:
        members = [index.get((model, leaf)) for leaf in leaves]
        found = [r for r in members if r is not None]
        failed.append(sum(r.n_failed for r in found) if found else None)
        # Any member missing: no value for this model, rather than an average of a part.
        averaged.append(group_results(group.name, found) if len(found) == len(members) else None)

    member_modes = {modes[leaf] for leaf in leaves if leaf in modes}
    mode = member_modes.pop() if len(member_modes) == 1 else ("mixed" if member_modes else MISSING)
    # Named as group_results names its Results, also for a group no model has complete.
    base = common_metric(r.metric for m in models for leaf in leaves if (r := index.get((m, leaf))))
    subjects = [pair[0] if pair else None for pair in averaged]
    questions = [pair[1] if pair else None for pair in averaged]
    rows: list[SummaryRow] = []
    # The main metric first, then extra ones (acc_norm), each as (subjects, questions).
    for key in [None, *_extra_keys(subjects)]:
        for kind, picked in ((MEAN_OF_SUBJECTS, subjects), (MEAN_OF_QUESTIONS, questions)):
            rows.append(
                SummaryRow(
                    dataset=group.name,
                    version=MISSING,
                    metric=f"{key or base} ({kind})",
                    mode=mode,
                    values=tuple(_group_value(r, key) for r in picked),
                    failed=tuple(failed),
                    stderrs=tuple(_number(r.stderr) if r and key is None else None for r in picked),
                    kind="group",
                    members=tuple(leaves),
                )
            )
    return rows


def build_summary(
    results: Sequence[Result],
    datasets: Sequence[DatasetRowInfo],
    groups: Sequence[SummaryGroup],
    models: Sequence[str],
) -> Summary:
    """Rows in `datasets` order (plus extra-metric rows like acc_norm), then two rows per group.

    A group is listed when at least one of its (leaf) members is among `datasets`;
    for a model that lacks any member it shows no value.
    """
    models = tuple(models)
    index = {(r.model, r.dataset): r for r in results}
    rows: list[SummaryRow] = []
    for info in datasets:
        rows.extend(_dataset_rows(info, [index.get((m, info.abbr)) for m in models]))

    by_name = {g.name: g for g in groups}
    modes = {info.abbr: info.mode for info in datasets}
    for group in groups:
        leaves = _leaves(group.name, by_name)
        if not any(leaf in modes for leaf in leaves):
            continue
        rows.extend(_group_rows(group, leaves, models, index, modes))
    return Summary(models=models, rows=tuple(rows))
