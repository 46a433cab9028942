"""The summary table as text, CSV and Markdown (OpenCompass columns), on disk and on the console."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from proctor.errors import DataError
from proctor.report.summary import MISSING, Summary, SummaryRow

if TYPE_CHECKING:
    from rich.console import Console

FIXED_COLUMNS = ("dataset", "version", "metric", "mode")
FAILED_COLUMN = "failed"
GROUP_MARK = "(mean of "
# What to do about a damaged summary.csv: it is derived data (see write_html_report).
_REBUILD = "delete the file to rebuild it from results/"


def format_value(value: float | None) -> str:
    """Two decimals, as OpenCompass prints percentages; "-" when missing."""
    return MISSING if value is None or math.isnan(value) else f"{value:.2f}"


def _failed_cell(summary: Summary, row: SummaryRow) -> str:
    counts = [MISSING if f is None else str(f) for f in row.failed]
    if len(summary.models) == 1:
        return counts[0]
    return " ".join(f"{model}:{count}" for model, count in zip(summary.models, counts))


def summary_columns(summary: Summary) -> list[str]:
    """dataset, version, metric, mode, one column per model, then `failed` if any request failed."""
    columns = [*FIXED_COLUMNS, *summary.models]
    if summary.has_failures:
        columns.append(FAILED_COLUMN)
    return columns


def summary_cells(summary: Summary) -> list[list[str]]:
    """The table body as strings, in column order."""
    body = []
    for row in summary.rows:
        cells = [row.dataset, row.version, row.metric, row.mode]
        cells.extend(format_value(v) for v in row.values)
        if summary.has_failures:
            cells.append(_failed_cell(summary, row))
        body.append(cells)
    return body


def format_text(summary: Summary) -> str:
    """An aligned plain-text table (display width aware, so CJK names line up)."""
    from rich.cells import cell_len

    columns = summary_columns(summary)
    body = summary_cells(summary)
    widths = [max(cell_len(c) for c in col) for col in zip(columns, *body)]
    numeric = {i for i, name in enumerate(columns) if i >= len(FIXED_COLUMNS) and name != FAILED_COLUMN}

    def line(cells: list[str]) -> str:
        parts = []
        for i, (cell, width) in enumerate(zip(cells, widths)):
            pad = " " * (width - cell_len(cell))
            parts.append(pad + cell if i in numeric else cell + pad)
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(columns), rule, *(line(cells) for cells in body)]) + "\n"


def format_csv(summary: Summary) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(summary_columns(summary))
    writer.writerows(summary_cells(summary))
    return buffer.getvalue()


def format_markdown(summary: Summary) -> str:
    def cell(text: str) -> str:
        return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")

    columns = summary_columns(summary)
    numeric = [i >= len(FIXED_COLUMNS) and c != FAILED_COLUMN for i, c in enumerate(columns)]
    align = ["---:" if right else "---" for right in numeric]
    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "| " + " | ".join(align) + " |"]
    lines.extend("| " + " | ".join(cell(c) for c in cells) + " |" for cells in summary_cells(summary))
    return "\n".join(lines) + "\n"


def write_summary(summary: Summary, directory: Path | str) -> list[Path]:
    """Write summary.txt, summary.csv and summary.md into `directory`; return their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in (
        ("summary.txt", format_text(summary)),
        ("summary.csv", format_csv(summary)),
        ("summary.md", format_markdown(summary)),
    ):
        path = directory / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    _write_groups(summary, directory)
    return paths


GROUPS_FILE = "groups.json"


def _write_groups(summary: Summary, directory: Path) -> None:
    """summary/groups.json: each group row's member datasets (summary.csv cannot hold them);
    read by the report (charts per group, headline) and by `proctor compare` (group rows)."""
    import json

    groups: dict[str, list[str]] = {}
    for row in summary.rows:
        if row.kind == "group" and row.members:
            groups.setdefault(row.dataset, list(row.members))
    path = directory / GROUPS_FILE
    if groups:
        path.write_text(json.dumps({"groups": groups}, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    elif path.is_file():
        path.unlink()


def read_groups_file(directory: Path | str) -> dict[str, tuple[str, ...]]:
    """The groups `write_summary` recorded in `directory` ({} when none, or unreadable)."""
    import json

    try:
        data = json.loads((Path(directory) / GROUPS_FILE).read_text(encoding="utf-8"))
        groups = data["groups"]
        return {str(k): tuple(map(str, v)) for k, v in groups.items() if isinstance(v, list)}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def print_summary(summary: Summary, console: Console | None = None) -> None:
    """Print the plain aligned table (as summary.txt), never cropped to the terminal width."""
    from rich.console import Console

    (console or Console()).print(format_text(summary), markup=False, highlight=False, soft_wrap=True)


def _parse_value(text: str, where: str) -> float | None:
    if text.strip() in ("", MISSING):
        return None
    try:
        return float(text)
    except ValueError:
        raise DataError(
            f"{where}: value {text!r} is not a number: {_REBUILD}"
        ) from None


def _parse_failed(text: str, models: tuple[str, ...], where: str) -> tuple[int | None, ...]:
    def count(token: str) -> int | None:
        return None if token == MISSING else int(token)

    if len(models) == 1:
        pattern = r"(\d+|-)"
    else:
        # Built from the known model names so a name holding ':' still parses.
        pattern = " ".join(rf"{re.escape(m)}:(\d+|-)" for m in models)
    match = re.fullmatch(pattern, text.strip())
    if not match:
        raise DataError(
            f"{where}: failed counts {text!r} do not match the models {list(models)}: {_REBUILD}"
        )
    return tuple(count(g) for g in match.groups())


def read_summary_csv(path: Path | str) -> Summary:
    """Read back a summary.csv written by `write_summary` (stderrs and group members are not stored)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        # DataError, so write_html_report falls back to rebuilding the table.
        raise DataError(f"{path}: cannot read the summary ({err.__class__.__name__}): {_REBUILD}") from None
    if not rows or tuple(rows[0][: len(FIXED_COLUMNS)]) != FIXED_COLUMNS:
        expected = ", ".join(FIXED_COLUMNS)
        raise DataError(f"{path}: not a Proctor summary (expected columns {expected}, ...): {_REBUILD}")
    header = rows[0]
    has_failed = header[-1] == FAILED_COLUMN
    models = tuple(header[len(FIXED_COLUMNS) : len(header) - (1 if has_failed else 0)])
    parsed = []
    for number, cells in enumerate(rows[1:], start=2):
        where = f"{path} row {number}"
        if len(cells) != len(header):
            raise DataError(f"{where}: {len(cells)} cells, the header has {len(header)}: {_REBUILD}")
        values = cells[len(FIXED_COLUMNS) : len(FIXED_COLUMNS) + len(models)]
        numbers = tuple(_parse_value(v, where) for v in values)
        if has_failed:
            failed = _parse_failed(cells[-1], models, where)
        else:
            # Without the column nothing failed; "-" values had no result at all.
            failed = tuple(None if v is None else 0 for v in numbers)
        parsed.append(
            SummaryRow(
                dataset=cells[0],
                version=cells[1],
                metric=cells[2],
                mode=cells[3],
                values=numbers,
                failed=failed,
                stderrs=tuple(None for _ in models),
                kind="group" if GROUP_MARK in cells[2] else "dataset",
            )
        )
    return Summary(models=models, rows=tuple(parsed))
