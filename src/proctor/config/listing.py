"""`proctor list`: dataset names and model presets."""

from __future__ import annotations

from typing import Any


def print_listing(what: str | None, pattern: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from proctor.config.registry import FAMILIES, MODEL_PRESETS, MODES
    from proctor.datasets import get_benchmark

    console = Console()
    needle = (pattern or "").lower()
    if what in (None, "datasets"):
        table = Table(title="datasets (use with --datasets)")
        table.add_column("name")
        table.add_column("what")
        for family in FAMILIES:
            bench = get_benchmark(family)
            for mode in MODES:
                kind = "generation, answer extracted" if mode == "gen" else "log-likelihood of A/B/C/D"
                _row(table, needle, f"{family}_{mode}", f"{bench.title}: all {len(bench.subjects)} subjects, {kind}")
        for mode in MODES:
            _row(table, needle, f"demo_{mode}", "the small demo set shipped with Proctor")
        for family in FAMILIES:
            bench = get_benchmark(family)
            for s in bench.subjects:
                title = f"{s.title} ({s.title_zh})" if s.title_zh else s.title
                _row(table, needle, f"{family}-{s.name}", f"{bench.title} {title}, {s.category}")
        _print_table(console, table, "dataset", pattern)
        console.print("a subject name with the suffix _ppl is scored by log-likelihood, e.g. ceval-law_ppl")
    if what in (None, "models"):
        table = Table(title="model presets (use with --models)")
        table.add_column("name")
        table.add_column("what")
        for preset in MODEL_PRESETS.values():
            _row(table, needle, preset.name, preset.description)
        _print_table(console, table, "model preset", pattern)
        if what == "models":
            console.print("any OpenAI-compatible endpoint: --api-base URL; any local checkpoint: --hf-path PATH")


def _print_table(console: Any, table: Any, what: str, pattern: str | None) -> None:
    # An empty table with a wrapped title reads as broken output; say what matched nothing instead.
    if table.row_count == 0:
        console.print(f"no {what} matches {pattern!r}", markup=False, highlight=False)
    else:
        console.print(table)


def _row(table: object, needle: str, name: str, description: str) -> None:
    if needle in name.lower() or needle in description.lower():
        table.add_row(name, description)  # type: ignore[attr-defined]
