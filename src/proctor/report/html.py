"""report.html: one self-contained page (summary table, SVG charts, per-sample drill-down).

Model outputs and prompts are untrusted text: every string that reaches the page
goes through html.escape, and the page loads nothing from outside (no scripts,
no fonts, no stylesheets), so it can be mailed or archived as one file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from proctor.core import Record, Result, path_part
from proctor.errors import DataError
from proctor.metrics import MEAN_OF_SUBJECTS
from proctor.report.summary import DatasetRowInfo, Summary, SummaryRow, build_summary
from proctor.report.writers import (
    FIXED_COLUMNS,
    format_value,
    read_summary_csv,
    summary_cells,
    summary_columns,
)

MAX_SAMPLES = 200  # per (model, dataset): keeps the page small for large runs
MAX_TEXT = 3000  # characters of one prompt or output shown
MAX_CHART_ROWS = 80
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f")

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;
margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.group td{font-weight:600;background:#fafafa}
.note{color:#666;font-size:13px}.warn{color:#a33}
details.ds{margin:6px 0;border:1px solid #ddd;border-radius:4px;padding:4px 8px}
details.ds>summary{cursor:pointer}
table.samples{width:100%;table-layout:fixed;font-size:13px}
table.samples td{overflow-wrap:anywhere}
pre{white-space:pre-wrap;margin:0;font:12px/1.35 ui-monospace,Menlo,Consolas,monospace}
tr.correct td.status{color:#1a7f37}tr.wrong td.status{color:#b3261e}tr.failed td{background:#fff4e5}
svg text{font:11px system-ui,sans-serif;fill:#333}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:12px;margin:2px 0 4px}
.key i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:-1px}
"""


@dataclass(frozen=True)
class _Section:
    model: str
    dataset: str
    records: tuple[Record, ...]
    total: int
    bad_lines: int
    scores: Mapping[str, Mapping[str, Any]]  # scores/<model>/<dataset>.jsonl lines by item id


def _text(value: Any) -> str:
    return escape(str(value), quote=True)


def _head(text: str, limit: int = MAX_TEXT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… ({len(text) - limit} more characters not shown)"


def _tail(text: str, limit: int = MAX_TEXT) -> str:
    # The end of a few-shot prompt is the question itself; the shots before it repeat.
    if len(text) <= limit:
        return text
    return f"… ({len(text) - limit} earlier characters not shown)\n{text[-limit:]}"


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt):
        return "\n\n".join(f"[{m.get('role', '?')}]\n{m['content']}" for m in prompt)
    if isinstance(prompt, dict) and "context" in prompt:
        continuations = json.dumps(prompt.get("continuations", []), ensure_ascii=False)
        return f"{prompt['context']}\n\n[continuations] {continuations}"
    return json.dumps(prompt, ensure_ascii=False, default=str)


def _output_text(record: Record) -> str:
    if record.output is not None:
        return record.output
    if record.loglikelihoods is not None:
        lls = ", ".join(f"{x:.4f}" for x in record.loglikelihoods)
        text = f"log-likelihoods: [{lls}]"
        if record.continuation_lengths is not None:
            text += f"\ncontinuation tokens: {record.continuation_lengths}"
        return text
    return ""


def _load_results(run_dir: Path, notes: list[str]) -> dict[tuple[str, str], Result]:
    results: dict[tuple[str, str], Result] = {}
    for path in sorted((run_dir / "results").glob("*/*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            result = Result.from_json(data)
        except (OSError, ValueError, TypeError) as exc:
            notes.append(f"{path.relative_to(run_dir)}: unreadable result ({exc.__class__.__name__})")
            continue
        results[(result.model, result.dataset)] = result
    return results


def _load_summary(
    run_dir: Path, results: dict[tuple[str, str], Result], notes: list[str]
) -> Summary:
    csv_path = run_dir / "summary" / "summary.csv"
    if csv_path.is_file():
        try:
            return read_summary_csv(csv_path)
        except DataError as exc:
            notes.append(f"{exc} (table rebuilt from results/)")
    models = sorted({model for model, _ in results})
    datasets = sorted({dataset for _, dataset in results})
    return build_summary(list(results.values()), [DatasetRowInfo(d) for d in datasets], [], models)


def _read_records(path: Path, limit: int) -> tuple[list[Record], int, int]:
    """The first `limit` records, the number of lines, and how many of the read lines were bad.

    Lines past the limit are counted, not parsed, so a huge run stays cheap.
    A killed run can leave a torn last line: it is counted as bad, not fatal.
    """
    records: list[Record] = []
    total = bad = 0
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if not line.strip():
                continue
            total += 1
            if len(records) + bad >= limit:
                continue
            try:
                records.append(Record.from_json(json.loads(line)))
            except (ValueError, TypeError):
                bad += 1
    return records, total, bad


def _load_sections(
    run_dir: Path, summary: Summary, limit: int, notes: list[str]
) -> list[_Section]:
    found: dict[tuple[str, str], Path] = {}
    # Folder names are path-safe forms of the model names (`Qwen/Qwen2.5` -> `Qwen_Qwen2.5`).
    real_name = {path_part(m): m for m in summary.models}
    for path in sorted((run_dir / "predictions").glob("*/*.jsonl")):
        found[(real_name.get(path.parent.name, path.parent.name), path.stem)] = path
    dataset_order = [row.dataset for row in summary.rows if row.kind == "dataset"]
    model_order = list(summary.models)

    def rank(key: tuple[str, str]) -> tuple[int, str, int, str]:
        model, dataset = key
        d = dataset_order.index(dataset) if dataset in dataset_order else len(dataset_order)
        m = model_order.index(model) if model in model_order else len(model_order)
        return (d, dataset, m, model)

    sections = []
    for key in sorted(found, key=rank):
        try:
            records, total, bad = _read_records(found[key], limit)
        except OSError as exc:
            notes.append(f"{found[key].relative_to(run_dir)}: unreadable ({exc.__class__.__name__})")
            continue
        scores_path = run_dir / "scores" / found[key].parent.name / found[key].name
        scores = _read_scores(scores_path, {r.item_id for r in records})
        sections.append(_Section(key[0], key[1], tuple(records), total, bad, scores))
    return sections


def _read_scores(path: Path, wanted: set[str]) -> dict[str, Mapping[str, Any]]:
    """The score lines of the shown records (none when the eval stage has not run)."""
    scores: dict[str, Mapping[str, Any]] = {}
    if not path.is_file():
        return scores
    with path.open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict) and data.get("item_id") in wanted:
                scores[data["item_id"]] = data
    return scores


# ---------------------------------------------------------------- rendering


def _summary_table(summary: Summary) -> str:
    columns = summary_columns(summary)
    first_value = len(FIXED_COLUMNS)  # model columns follow dataset, version, metric, mode
    head = "".join(f"<th>{_text(c)}</th>" for c in columns)
    body = []
    for row, cells in zip(summary.rows, summary_cells(summary)):
        tds = []
        for i, cell in enumerate(cells):
            model_index = i - first_value
            if 0 <= model_index < len(summary.models):
                se = row.stderrs[model_index] if model_index < len(row.stderrs) else None
                title = f' title="± {se:.2f} (standard error)"' if se is not None else ""
                tds.append(f'<td class="num"{title}>{_text(cell)}</td>')
            else:
                tds.append(f"<td>{_text(cell)}</td>")
        css = ' class="group"' if row.kind == "group" else ""
        body.append(f"<tr{css}>{''.join(tds)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _bar_chart(title: str, rows: Sequence[SummaryRow], models: Sequence[str]) -> str:
    """Horizontal bars: one band per row, one bar per model, 0..100 (or the max value)."""
    shown = list(rows[:MAX_CHART_ROWS])
    metrics = {row.metric for row in shown}
    labels = [row.dataset if len(metrics) == 1 else f"{row.dataset} · {row.metric}" for row in shown]
    values = [v for row in shown for v in row.values if v is not None]
    scale = max([100.0, *values])
    bar_h, gap, label_w, plot_w, legend_h = 12, 8, 250, 420, 6
    band = bar_h * len(models) + gap
    height = legend_h + band * len(shown) + 20
    width = label_w + plot_w + 70
    parts = [
        f'<svg width="{width}" height="{height}" '
        f'role="img" aria-label="{_text(title)}">'
    ]
    bottom = legend_h + band * len(shown)
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        tx = label_w + tick * plot_w
        parts.append(
            f'<line x1="{tx:.1f}" y1="{legend_h}" x2="{tx:.1f}" y2="{bottom}" stroke="#e5e5e5"/>'
            f'<text x="{tx:.1f}" y="{bottom + 14}" text-anchor="middle">{tick * scale:g}</text>'
        )
    for i, (row, label) in enumerate(zip(shown, labels)):
        y0 = legend_h + i * band
        short = label if len(label) <= 38 else label[:37] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y0 + band / 2 + 1:.1f}" text-anchor="end">'
            f"<title>{_text(label)}</title>{_text(short)}</text>"
        )
        for j, value in enumerate(row.values):
            y = y0 + j * bar_h
            if value is None:
                parts.append(f'<text x="{label_w + 2}" y="{y + bar_h - 2}">-</text>')
                continue
            w = max(value, 0.0) / scale * plot_w
            color = PALETTE[j % len(PALETTE)]
            parts.append(
                f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h - 2}" fill="{color}">'
                f"<title>{_text(models[j])}: {format_value(value)}</title></rect>"
            )
            parts.append(
                f'<text x="{label_w + w + 4:.1f}" y="{y + bar_h - 2}">{format_value(value)}</text>'
            )
    parts.append("</svg>")
    note = ""
    if len(rows) > len(shown):
        note = f'<p class="note">First {len(shown)} of {len(rows)} rows shown.</p>'
    return f"<h3>{_text(title)}</h3>{_legend(models)}{''.join(parts)}{note}"


def _legend(models: Sequence[str]) -> str:
    # HTML rather than SVG text, so long model names wrap instead of running off the chart.
    items = "".join(
        f'<span class="key"><i style="background:{PALETTE[j % len(PALETTE)]}"></i>{_text(m)}</span>'
        for j, m in enumerate(models)
    )
    return f'<div class="legend">{items}</div>'


def _charts(summary: Summary) -> str:
    if not summary.models or not summary.rows:
        return ""
    by_subjects = [
        r for r in summary.rows if r.kind == "group" and r.metric.endswith(f"({MEAN_OF_SUBJECTS})")
    ]
    overview_rows = by_subjects or [r for r in summary.rows if r.kind == "dataset"]
    title = "Groups (mean of subjects)" if by_subjects else "Datasets"
    charts = [_bar_chart(title, overview_rows, summary.models)]
    first_row = {}
    for row in summary.rows:
        if row.kind == "dataset":
            first_row.setdefault(row.dataset, row)
    seen: set[str] = set()
    for row in summary.rows:
        if row.kind != "group" or not row.members or row.dataset in seen:
            continue
        seen.add(row.dataset)
        members = [first_row[m] for m in row.members if m in first_row]
        if members:
            charts.append(_bar_chart(f"{row.dataset}: members", members, summary.models))
    return "".join(charts)


def _status(record: Record, score: Mapping[str, Any] | None) -> tuple[str, str]:
    if record.error is not None:
        return "failed", f"failed: {record.error}"
    if score is None or score.get("status") != "scored":
        return "unscored", "not scored"
    return ("correct", "correct") if score.get("correct") else ("wrong", "wrong")


def _sample_row(number: int, record: Record, score: Mapping[str, Any] | None) -> str:
    css, status = _status(record, score)
    prompt = _prompt_text(record.prompt)
    prompt_html = (
        f"<details><summary>prompt ({len(prompt)} chars)</summary>"
        f"<pre>{_text(_tail(prompt))}</pre></details>"
    )
    answer = (score or {}).get("answer")
    prediction = "-" if answer is None else answer
    target = (score or {}).get("target", "-")
    rule = (score or {}).get("rule")
    if rule:
        status = f"{status} ({rule})"
    return (
        f'<tr class="{css}"><td>{number}</td><td>{_text(record.item_id)}</td>'
        f"<td>{prompt_html}</td><td><pre>{_text(_head(_output_text(record)))}</pre></td>"
        f"<td>{_text(prediction)}</td><td>{_text(target)}</td>"
        f'<td class="status">{_text(status)}</td></tr>'
    )


def _section(section: _Section, result: Result | None, limit: int) -> str:
    if result is not None:
        score = (
            f"{result.metric} {format_value(result.value)} ± {format_value(result.stderr)}"
            f" (n={result.n}, failed {result.n_failed})"
        )
    else:
        score = f"{section.total} records, no result yet"
    head = f"<b>{_text(section.dataset)}</b> · {_text(section.model)} · {_text(score)}"
    notes = []
    if section.total > len(section.records) + section.bad_lines:
        shown = len(section.records) + section.bad_lines
        notes.append(f"First {shown} of {section.total} records shown (limit {limit}).")
    if section.bad_lines:
        notes.append(f"{section.bad_lines} unreadable line(s) skipped.")
    note_html = "".join(f'<p class="note">{_text(n)}</p>' for n in notes)
    rows = "".join(_sample_row(i, r, section.scores.get(r.item_id)) for i, r in enumerate(section.records, start=1))
    table = (
        '<table class="samples"><colgroup><col style="width:3em"><col style="width:9em"><col>'
        '<col><col style="width:6em"><col style="width:5em"><col style="width:9em"></colgroup>'
        "<thead><tr><th>#</th><th>id</th><th>prompt</th><th>output</th><th>prediction</th>"
        f"<th>target</th><th>status</th></tr></thead><tbody>{rows}</tbody></table>"
    )
    return f'<details class="ds"><summary>{head}</summary>{note_html}{table}</details>'


def _page(
    title: str,
    summary: Summary,
    results: dict[tuple[str, str], Result],
    sections: Iterable[_Section],
    notes: Sequence[str],
    limit: int,
) -> str:
    sections = list(sections)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Proctor report · {_text(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Proctor report · {_text(title)}</h1>",
        f'<p class="note">{len(summary.models)} model(s): {_text(", ".join(summary.models) or "-")}</p>',
    ]
    parts.extend(f'<p class="warn">{_text(n)}</p>' for n in notes)
    parts.append("<h2>Summary</h2>")
    parts.append(_summary_table(summary) if summary.rows else '<p class="note">No results yet.</p>')
    charts = _charts(summary)
    if charts:
        parts.append(f"<h2>Charts</h2>{charts}")
    parts.append("<h2>Samples</h2>")
    if not sections:
        parts.append('<p class="note">No predictions found.</p>')
    for section in sections:
        parts.append(_section(section, results.get((section.model, section.dataset)), limit))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_html_report(
    run_dir: Path | str, summary: Summary | None = None, *, max_samples: int = MAX_SAMPLES
) -> Path:
    """Write run_dir/report.html from the run's summary, results/ and predictions/.

    Without `summary`, the table is read from summary/summary.csv, or rebuilt
    from results/ when that file is missing or unreadable.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise DataError(
            f"run directory {run_dir} does not exist: pass the outputs/<run-id> folder of a run"
        )
    if max_samples < 0 or not math.isfinite(max_samples):
        raise ValueError("max_samples must be >= 0")
    notes: list[str] = []
    results = _load_results(run_dir, notes)
    if summary is None:
        summary = _load_summary(run_dir, results, notes)
    sections = _load_sections(run_dir, summary, max_samples, notes)
    out = run_dir / "report.html"
    out.write_text(_page(run_dir.name, summary, results, sections, notes, max_samples), encoding="utf-8")
    return out
