"""`proctor list`: dataset names (from the task specs) and model presets."""

from __future__ import annotations

import sys
from typing import Any, Sequence

Row = tuple[str, ...]


def _dataset_rows() -> list[Row]:
    """(name, kind, scorer, what) for every collection, demo set and subset."""
    from proctor.tasks import builtin_specs

    rows: list[Row] = []
    specs = builtin_specs().values()
    for spec in specs:
        kind = "multiple choice" if spec.multiple_choice else "free-form"
        subsets = f"all {len(spec.subsets)} subjects, " if spec.subsets else ""
        for mode in spec.modes:
            how = "generation, answer extracted" if mode == "gen" else "log-likelihood of the options"
            bare = mode == "gen" and (not spec.subsets or len(spec.modes) == 1)
            name = spec.name if bare else f"{spec.name}_{mode}"
            # The description says how big the benchmark is (`AIME 2024: 30 competition problems ...`).
            what = f"{spec.description}; {how}" if spec.description else f"{spec.display_title}: {subsets}{how}"
            rows.append((name, f"{kind}, {mode}", spec.scorer.name, what))
            if spec.multiple_choice:
                rows.append((f"{name}_circular", f"{kind}, {mode}", spec.scorer.name,
                             f"{spec.display_title}: every question in its 4 option rotations (CircularEval)"))
    for mode in ("gen", "ppl"):
        rows.append((f"demo_{mode}", f"multiple choice, {mode}", "choice", "the small demo set shipped with Proctor"))
    for spec in specs:
        kind = "multiple choice" if spec.multiple_choice else "free-form"
        for s in spec.subsets:
            title = s.title or s.name
            title = f"{title} ({s.title_zh})" if s.title_zh else title
            where = f", {s.category}" if s.category else ""
            rows.append((f"{spec.name}-{s.name}", kind, spec.scorer.name, f"{spec.display_title} {title}{where}"))
    return rows


def _model_rows() -> list[Row]:
    from proctor.config.registry import MODEL_PRESETS

    return [(p.name, p.description) for p in MODEL_PRESETS.values()]


def print_listing(what: str | None, pattern: str | None) -> None:
    needle = (pattern or "").lower()
    if what in (None, "datasets"):
        rows = [r for r in _dataset_rows() if any(needle in cell.lower() for cell in r)]
        _print("datasets (use with --datasets)", ("name", "kind", "scorer", "what"), rows, "dataset", pattern)
        print("a subject name with the suffix _ppl is scored by log-likelihood (ceval-law_ppl), _circular asks "
              "every option order; a file path (./my.jsonl, ./my.csv, ./mybench.yaml) runs your own data")
    if what in (None, "models"):
        rows = [r for r in _model_rows() if any(needle in cell.lower() for cell in r)]
        _print("model presets (use with --models)", ("name", "what"), rows, "model preset", pattern)
        if what == "models":
            print("any OpenAI-compatible endpoint: --api-base URL; any local checkpoint: --hf-path PATH")


def _print(title: str, columns: Sequence[str], rows: list[Row], what: str, pattern: str | None) -> None:
    # An empty table with a wrapped title reads as broken output; say what matched nothing instead.
    if not rows:
        print(f"no {what} matches {pattern!r}")
        return
    if not sys.stdout.isatty():
        # Piped (grep, a file): one whole line per name, never cut to a terminal's width.
        print(f"# {title}")
        for row in rows:
            print("\t".join(row))
        return
    from rich.console import Console
    from rich.table import Table

    table: Any = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, no_wrap=i == 0, overflow="fold")
    for row in rows:
        table.add_row(*row)
    Console().print(table)
