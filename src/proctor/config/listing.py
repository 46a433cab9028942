"""`proctor list`: dataset names (from the task specs) and model presets."""

from __future__ import annotations

import sys
from typing import Any, Sequence

Row = tuple[str, ...]


def _dataset_rows() -> list[Row]:
    """(name, kind, scorer, what) for every collection, demo set and subset."""
    from proctor.scoring.base import scorer_class as get_scorer_class
    from proctor.tasks import builtin_specs

    rows: list[Row] = []
    specs = builtin_specs().values()
    for spec in specs:
        kind = "multiple choice" if spec.multiple_choice else "free-form"
        subsets = f"all {len(spec.subsets)} subjects, " if spec.subsets else ""
        reads = getattr(get_scorer_class(spec.scorer.name), "reads", "answer extracted")
        for mode in spec.modes:
            how = f"generation, {reads}" if mode == "gen" else "log-likelihood of the options"
            bare = mode == "gen" and (not spec.subsets or len(spec.modes) == 1)
            name = spec.name if bare else f"{spec.name}_{mode}"
            # The description says how big the benchmark is (`AIME 2024: 30 competition problems ...`).
            what = f"{spec.description}; {how}" if spec.description else f"{spec.display_title}: {subsets}{how}"
            rows.append((name, f"{kind}, {mode}", spec.scorer.name, what))
            if name == spec.name:  # `humaneval_gen` names it too, as OpenCompass users write it
                rows.append((f"{name}_gen", f"{kind}, {mode}", spec.scorer.name, f"the same as {name}"))
            if spec.multiple_choice and spec.reorder_options:
                rows.append((f"{name}_circular", f"{kind}, {mode}", spec.scorer.name,
                             f"{spec.display_title}: every question in each rotation of its options (CircularEval)"))
    for mode in ("gen", "ppl"):
        rows.append((f"demo_{mode}", f"multiple choice, {mode}", "choice", "the small demo set shipped with Proctor"))
    for spec in specs:
        kind = "multiple choice" if spec.multiple_choice else "free-form"
        for s in spec.subsets:
            title = s.title or s.name
            title = f"{title} ({s.title_zh})" if s.title_zh else title
            where = f", {s.category}" if s.category else ""
            # A subset may read and score its own way (AGIEval's cloze tasks are free-form).
            scorer = spec.scorer_for(s.name).name
            own_kind = "free-form" if spec.fields_for(s.name).choices == () else kind
            rows.append((f"{spec.name}-{s.name}", own_kind, scorer, f"{spec.display_title} {title}{where}"))
    return rows


def _model_rows() -> list[Row]:
    from proctor.config.registry import MODEL_PRESETS

    return [(p.name, p.description) for p in MODEL_PRESETS.values()]


def _opencompass_rows() -> list[Row]:
    """OpenCompass config module names Proctor has, and what each stands for."""
    from proctor.config.opencompass import DATASET_MODULES, MODEL_MODULES

    rows: list[Row] = [(name, f"dataset: {proctor}") for name, (proctor, _) in DATASET_MODULES.items()]
    return rows + [(name, "model config") for name in MODEL_MODULES]


def _matching(rows: list[Row], needles: Sequence[str]) -> list[Row]:
    """Rows one of the patterns is found in (any cell); all rows without patterns."""
    if not needles:
        return rows
    return [r for r in rows if any(n in cell.lower() for n in needles for cell in r)]


def print_listing(what: str | None, pattern: str | Sequence[str] | None) -> None:
    """The lists; several patterns list what matches any of them, and each must match something
    (`proctor list internlm ceval`, as OpenCompass's list_configs.py)."""
    from proctor.errors import ConfigError

    patterns = [pattern] if isinstance(pattern, str) else list(pattern or [])
    needles = [p.lower() for p in patterns]
    shown = patterns[0] if len(patterns) == 1 else " or ".join(repr(p) for p in patterns)
    tables = {
        "datasets": (_dataset_rows, "datasets (use with --datasets)", ("name", "kind", "scorer", "what"), "dataset"),
        "models": (_model_rows, "model presets (use with --models)", ("name", "what"), "model preset"),
    }
    chosen = {k: v for k, v in tables.items() if what in (None, k)}
    found = {k: _matching(rows(), needles) for k, (rows, *_rest) in chosen.items()}
    extra = _matching(_opencompass_rows(), needles) if what is None and needles else []
    if needles and not extra and not any(found.values()):
        # Nothing to show: one line and a failing exit code (a script's typo shows).
        kinds = {"datasets": "dataset", "models": "model preset"}.get(what or "", "dataset or model preset")
        raise ConfigError(f"no {kinds} matches {shown!r}; `proctor list` shows them all")
    if len(patterns) > 1:
        every = [row for rows in found.values() for row in rows] + extra
        missing = [p for p in patterns if not any(p.lower() in cell.lower() for row in every for cell in row)]
        if missing:
            raise ConfigError(f"proctor list: nothing matches {missing[0]!r} (each pattern must match a name)")
    if "datasets" in chosen:
        _, title, columns, noun = chosen["datasets"]
        _print(title, columns, found["datasets"], noun, shown)
        print("a subject name with the suffix _ppl is scored by log-likelihood (ceval-law_ppl), _circular asks "
              "every option order; a file path (./my.jsonl, ./my.csv, ./mybench.yaml) runs your own data")
    if "models" in chosen:
        _, title, columns, noun = chosen["models"]
        _print(title, columns, found["models"], noun, shown)
        if what == "models":
            print("any OpenAI-compatible endpoint: --api-base URL; any local checkpoint: --hf-path PATH")
    if extra:
        _print("OpenCompass config names (in read_base imports, --datasets, --models)", ("name", "what"), extra,
               "OpenCompass config", shown)


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
