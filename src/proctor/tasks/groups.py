"""Summary groups from the specs: benchmark averages, categories and named groups (C-Eval-Hard)."""

from __future__ import annotations

import re
from typing import Sequence

from proctor.config.schema import DatasetConfig
from proctor.report import SummaryGroup
from proctor.tasks.resolve import ResolvedTask


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _style(d: DatasetConfig) -> tuple[str, str]:
    return (d.mode if d.mode == "gen" else f"ppl-{d.continuations}", d.variants)


def _suffix(d: DatasetConfig) -> str:
    """The group's name ends like its members' abbrs (`ceval-law_ppl_options` -> `ceval_ppl_options`)."""
    from proctor.tasks.names import dataset_abbr

    return dataset_abbr("", "", d.mode, d.continuations, d.variants)


def summary_groups(datasets: Sequence[tuple[DatasetConfig, ResolvedTask]]) -> list[SummaryGroup]:
    """A group per benchmark and style present, then one per category and named group.

    A group covering only part of its subsets says so in its name (`ceval (2/52 subjects)`),
    so a partial run is never read as the whole benchmark. Groups with fewer than two
    members in the run are left out: a one-subject average would only repeat its row.
    """
    groups: list[SummaryGroup] = []
    keys = sorted({(d.benchmark, d.spec_path or "", _style(d)) for d, _ in datasets})
    for benchmark, spec_path, style in keys:
        members = [(d, t) for d, t in datasets
                   if d.benchmark == benchmark and (d.spec_path or "") == spec_path and _style(d) == style]
        spec = members[0][1].spec
        if not spec.subsets:
            continue
        suffix = _suffix(members[0][0])
        subset_of = {d.abbr: t.subset for d, t in members}
        candidates: list[tuple[str, list[str], int]] = [(spec.name, [d.abbr for d, _ in members], len(spec.subsets))]
        for category in spec.categories:
            in_spec = [s for s in spec.subsets if category in s.categories]
            in_run = [d.abbr for d, _ in members if category in subset_of[d.abbr].categories]
            candidates.append((f"{spec.name}-{_slug(category)}", in_run, len(in_spec)))
        for group in spec.groups:
            in_run = [d.abbr for d, _ in members if subset_of[d.abbr].name in group.subsets]
            candidates.append((f"{spec.name}-{_slug(group.name)}", in_run, len(group.subsets)))
        whole = {d.abbr for d, _ in members}
        for i, (name, group_members, size) in enumerate(candidates):
            # A category holding every subject of the run would only repeat the benchmark's rows.
            if i > 0 and set(group_members) == whole:
                continue
            if len(group_members) >= 2:
                coverage = "" if len(group_members) == size else f" ({len(group_members)}/{size} subjects)"
                groups.append(SummaryGroup(name + suffix + coverage, tuple(group_members)))
    return groups
