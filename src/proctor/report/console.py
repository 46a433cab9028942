"""The summary printed at the end of a run: the headline, not every table.

One row per benchmark and model (a benchmark's average, or a dataset in no group), then the
groups (categories), and the subsets only when there are few; each name says how much of the
benchmark was run when `--limit`/`--range` cut it (`gsm8k (10/1,319)`). The full tables, every
subset and metric, are in summary/ and report.html.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from proctor.core import Result
from proctor.report.headline import HeadlineRow, build_headline
from proctor.report.summary import Summary

# Subset rows are printed when a run has at most this many (a handful of subjects); more stay
# in summary/ (`ceval_gen --circular --limit 5` printed 711 lines).
MAX_SUBSET_ROWS = 12

Coverage = Mapping[str, tuple[int, int]]  # dataset -> (questions run, questions in its split)


def _with_coverage(row: HeadlineRow, coverage: Coverage) -> str:
    members = row.members or (row.name,)
    known = [coverage[m] for m in members if m in coverage]
    if len(known) != len(members):
        return row.name
    done, total = sum(k[0] for k in known), sum(k[1] for k in known)
    if done >= total:
        return row.name
    count = f"{done:,}/{total:,}"
    if row.kind == "group" and row.name.endswith(")"):
        return f"{row.name[:-1]}; {count} questions)"
    return f"{row.name} ({count})"


def _cell(row: HeadlineRow | None) -> str:
    if row is None or row.value is None:
        return "-"
    failed = f" ({row.failed} failed)" if row.failed else ""
    return f"{row.value:.2f}{failed}"


def format_headline(summary: Summary, results: Mapping[tuple[str, str], Result], coverage: Coverage,
                    groups: Mapping[str, Sequence[str]] = {}, full_tables: Path | None = None) -> str:
    """The headline table as aligned text (see the module docstring)."""
    rows = build_headline(summary, results, groups)
    subsets = {r.name for r in rows if r.section == "subset"}
    keep = [r for r in rows if r.section != "subset" or len(subsets) <= MAX_SUBSET_ROWS]
    order: list[tuple[str, str]] = []
    cells: dict[tuple[str, str], dict[str, HeadlineRow]] = {}
    for row in keep:
        key = (row.section, row.name)
        if key not in cells:
            order.append(key)
            cells[key] = {}
        cells[key][row.model] = row
    table = [["benchmark", "metric", *summary.models]]
    for section, name in order:
        by_model = cells[(section, name)]
        first = next(iter(by_model.values()))
        label = _with_coverage(first, coverage)
        table.append([("  " if section != "benchmark" else "") + label, first.metric,
                      *(_cell(by_model.get(m)) for m in summary.models)])
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for i, r in enumerate(table):
        lines.append("  ".join(c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(r, widths))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    hidden = len(subsets) if len(subsets) > MAX_SUBSET_ROWS else 0
    where = f" in {full_tables}" if full_tables else " in summary/"
    more = f"{hidden} subsets, " if hidden else ""
    lines.append(f"full tables ({more}every metric){where}/summary.txt and report.html")
    return "\n".join(lines) + "\n"


def print_headline(summary: Summary, results: Sequence[Result], coverage: Coverage, *,
                   console: Any = None, full_tables: Path | None = None) -> None:
    from rich.console import Console

    by_key = {(r.model, r.dataset): r for r in results}
    text = format_headline(summary, by_key, coverage, full_tables=full_tables)
    (console or Console()).print(text, markup=False, highlight=False, soft_wrap=True, end="")
