"""Summary groups: benchmark averages and their categories (C-Eval STEM, C-Eval-Hard, ...)."""

from __future__ import annotations

import re
from typing import Sequence

from proctor.config.schema import DatasetConfig
from proctor.report import SummaryGroup


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def summary_groups(datasets: Sequence[DatasetConfig]) -> list[SummaryGroup]:
    """A group per benchmark and mode present, then one per category (and C-Eval-Hard).

    Groups with fewer than two members in the run are left out: a one-subject
    average would only repeat its row.
    """
    from proctor.datasets import get_benchmark

    groups: list[SummaryGroup] = []
    def style(d: DatasetConfig) -> str:
        return d.mode if d.mode == "gen" else f"ppl-{d.continuations}"

    keys = sorted({(d.benchmark, style(d)) for d in datasets})
    for benchmark_name, key_style in keys:
        members = [d for d in datasets if d.benchmark == benchmark_name and style(d) == key_style]
        bench = get_benchmark(benchmark_name)
        subjects = {s.name: s for s in bench.subjects}
        # The group's name ends like its members' abbrs (`ceval-law_ppl_options` -> `ceval_ppl_options`).
        suffix = {"gen": "", "ppl-letters": "_ppl"}.get(key_style, "_ppl_options")
        candidates = [(bench.name, members)]
        for category in bench.categories:
            in_category = [d for d in members if category in subjects[d.subject].categories]
            candidates.append((f"{bench.name}-{_slug(category)}", in_category))
        hard = [d for d in members if getattr(subjects[d.subject], "hard", False)]
        candidates.append((f"{bench.name}-hard", hard))
        whole = {d.abbr for d in members}
        for i, (name, group_members) in enumerate(candidates):
            # A category holding every subject of the run would only repeat the benchmark's rows.
            if i > 0 and {d.abbr for d in group_members} == whole:
                continue
            if len(group_members) >= 2:
                groups.append(SummaryGroup(name + suffix, tuple(d.abbr for d in group_members)))
    return groups
