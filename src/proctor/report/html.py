"""report.html: one self-contained page, headline first.

The page opens with one row per benchmark and model (score, 95% interval, items, failed,
extraction rate) and its chart with error bars; then the comparison when the run folder
holds a compare.json (`proctor compare`); then groups, subsets, the other charts, the full
OpenCompass table, and the per-sample drill-down.

Model outputs and prompts are untrusted text: every string that reaches the page
goes through html.escape, and the page loads nothing from outside (no scripts,
no fonts, no stylesheets), so it can be mailed or archived as one file.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from proctor.core import Record, Result, path_part
from proctor.errors import DataError
from proctor.report.charts import MAX_CHART_ROWS, PALETTE, Band, DiffBand, bar_chart, diff_chart
from proctor.report.headline import HeadlineRow, build_headline
from proctor.report.stats import Z95
from proctor.report.scorelines import read_score_lines
from proctor.report.sample_view import BLOCK_CLOSE, BLOCK_OPEN, CSS as SAMPLE_CSS, TOOLBAR, SamplesPacker
from proctor.report.summary import DatasetRowInfo, Summary, build_summary
from proctor.report.writers import (
    FIXED_COLUMNS,
    format_value,
    read_groups_file,
    read_summary_csv,
    summary_cells,
    summary_columns,
)

__all__ = ["MAX_CHART_ROWS", "MAX_SAMPLES", "PALETTE", "write_html_report"]

MAX_SAMPLES = 200  # per (model, dataset): keeps the page small for large runs
MAX_TEXT = 3000  # characters of one prompt or output shown
MAX_DIFF_ITEMS = 300  # changed questions listed per dataset in the comparison section

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans CJK SC",sans-serif;
margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:16px 0 4px}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 8px;vertical-align:top}
th{background:#f4f4f4;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.group td{font-weight:600;background:#fafafa}
table.headline td.score{font-weight:600}
tbody.entry{border-top:2px solid #bbb}
.note{color:#666;font-size:13px}.warn{color:#a33}
.measure{color:#a33;font-weight:600}
td.verdict{white-space:nowrap}table.compare{font-size:13px}
td.v-b{color:#1a7f37;font-weight:600}td.v-a{color:#b3261e;font-weight:600}td.v-none{color:#666}
details.ds,details.full,details.diff{margin:6px 0;border:1px solid #ddd;border-radius:4px;padding:4px 8px}
details.ds>summary,details.full>summary,details.diff>summary{cursor:pointer}
table.samples{width:100%;table-layout:fixed;font-size:13px}
table.samples td{overflow-wrap:anywhere}
.msg{margin:2px 0;padding:2px 6px;border-left:3px solid #bbb}.msg.user{border-color:#48c}.msg.assistant{border-color:#4a4}
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
    if record.reasoning is not None:
        # The answer part is what is scored: first, then the thought, marked as such.
        if record.reasoning_ended is False:
            return f"[no answer: the reasoning never ended]\n\n[reasoning]\n{record.reasoning}"
        return f"{record.output or ''}\n\n[reasoning]\n{record.reasoning}"
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
) -> Iterator[_Section]:
    """The sections in page order, each read when it is reached (the page takes them one at
    a time: a run of 25k questions would otherwise hold 20k records at once)."""
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

    for key in sorted(found, key=rank):
        try:
            records, total, bad = _read_records(found[key], limit)
        except OSError as exc:
            notes.append(f"{found[key].relative_to(run_dir)}: unreadable ({exc.__class__.__name__})")
            continue
        scores_path = run_dir / "scores" / found[key].parent.name / found[key].name
        scores = read_score_lines(scores_path, {r.item_id for r in records})
        yield _Section(key[0], key[1], tuple(records), total, bad, scores)


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
    return f'<table class="summary"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


_SECTION_TITLES = {"benchmark": "benchmark", "group": "group", "subset": "subset"}


def _interval_cell(row: HeadlineRow) -> str:
    interval = row.interval
    if interval is None:
        return '<td class="num">-</td>'
    low, high = interval
    if row.value is not None and 0.0 <= row.value <= 100.0:
        low, high = max(low, 0.0), min(high, 100.0)  # a percentage: the interval is shown within 0..100
    title = f"{format_value(row.value)} ± {Z95 * (row.stderr or 0.0):.2f} (± 1.96 standard errors of {row.stderr:.2f})"
    return f'<td class="num" title="{_text(title)}">{low:.2f} – {high:.2f}</td>'


def _headline_table(rows: Sequence[HeadlineRow], section: str) -> str:
    with_rate = any(r.extraction_rate is not None for r in rows)
    # Cut-off replies: shown whenever a reasoning model ran out of budget (see README).
    with_cut = any(r.truncated or r.length for r in rows)
    columns = [_SECTION_TITLES[section], "metric", "model", "score", "95% interval", "items", "failed"]
    if with_rate:
        columns.append("extraction rate")
    if with_cut:
        columns += ["truncated", "cut by length"]
    head = "".join(f"<th>{_text(c)}</th>" for c in columns)
    by_name: dict[str, list[str]] = {}
    for row in rows:
        members = f' title="{_text(", ".join(row.members))}"' if row.members else ""
        cells = [
            f"<td{members}>{_text(row.name)}</td>",
            f"<td>{_text(row.metric)}</td>",
            f"<td>{_text(row.model)}</td>",
            f'<td class="num score">{_text(format_value(row.value))}</td>',
            _interval_cell(row),
            f'<td class="num">{"-" if row.n is None else row.n}</td>',
            f'<td class="num">{"-" if row.failed is None else row.failed}</td>',
        ]
        if with_rate:
            cells.append(f'<td class="num">{_text(format_value(row.extraction_rate))}</td>')
        if with_cut:
            cells += [f'<td class="num" title="reasoning cut off by the token limit: no answer, scored 0">'
                      f'{"-" if row.truncated is None else row.truncated}</td>',
                      f'<td class="num" title="answered, then cut by the token limit">'
                      f'{"-" if row.length is None else row.length}</td>']
        by_name.setdefault(row.name, []).append(f"<tr>{''.join(cells)}</tr>")
    # One tbody per benchmark, so its rows (one per model) read as one block.
    body = "".join(f'<tbody class="entry">{"".join(trs)}</tbody>' for trs in by_name.values())
    return f'<table class="headline {section}"><thead><tr>{head}</tr></thead>{body}</table>'


def _bands(rows: Sequence[HeadlineRow], models: Sequence[str]) -> list[Band]:
    by_name: dict[str, dict[str, HeadlineRow]] = {}
    for row in rows:
        by_name.setdefault(row.name, {})[row.model] = row
    bands = []
    for name, per_model in by_name.items():
        picked = [per_model.get(m) for m in models]
        values = tuple(r.value if r else None for r in picked)
        errors = tuple(Z95 * r.stderr if r and r.stderr is not None and r.value is not None else None for r in picked)
        bands.append(Band(name, values, errors))
    return bands


def _breakdown_bands(dataset: str, models: Sequence[str], results: Mapping[tuple[str, str], Result]) -> list[Band]:
    keys: list[str] = []
    for model in models:
        result = results.get((model, dataset))
        for key in result.extra_metrics if result else ():
            if "=" in key and key not in keys:
                keys.append(key)
    bands = []
    for key in keys:
        values = []
        for model in models:
            result = results.get((model, dataset))
            value = result.extra_metrics.get(key) if result else None
            values.append(None if value is None or math.isnan(value) else float(value))
        bands.append(Band(key, tuple(values)))
    return bands


def _charts(
    summary: Summary, headline: Sequence[HeadlineRow], results: Mapping[tuple[str, str], Result]
) -> tuple[str, str]:
    """(the headline chart: benchmarks with 95% error bars; the others: one per group's members, breakdowns)."""
    if not summary.models or not headline:
        return "", ""
    models = summary.models
    charts = []
    top = [r for r in headline if r.section == "benchmark"]
    first = bar_chart("Benchmarks (95% intervals)", _bands(top, models), models) if top else ""
    by_dataset = {r.name: r for r in headline if r.kind == "dataset"}
    datasets = [r for r in headline if r.kind == "dataset"]
    seen: set[str] = set()
    for row in headline:
        if row.kind != "group" or row.name in seen or not row.members:
            continue
        seen.add(row.name)
        members = [r for r in datasets if r.name in row.members]
        if members:
            charts.append(bar_chart(f"{row.name}: members", _bands(members, models), models))
    for dataset in dict.fromkeys(by_dataset):
        bands = _breakdown_bands(dataset, models, results)
        if bands:
            charts.append(bar_chart(f"{dataset}: breakdown", bands, models))
    return first, "".join(charts)


# ---------------------------------------------------------------- comparison (compare.json)


def _load_compare(run_dir: Path, notes: list[str]) -> dict[str, Any] | None:
    path = run_dir / "compare.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        notes.append(f"compare.json: unreadable ({exc.__class__.__name__}); comparison not shown")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("comparisons"), list):
        notes.append("compare.json: not a Proctor comparison; not shown")
        return None
    return data


def _fmt(value: Any, signed: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return "-"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _p(value: Any) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "-"
    return "<0.0001" if value < 1e-4 else f"{value:.4f}"


_VERDICT_CLASS = {"B better": "v-b", "A better": "v-a"}
_COMPARE_COLUMNS = ("dataset", "metric", "n", "A", "B", "B−A", "95% interval", "p", "p (Holm)", "test", "verdict",
                    "B>A", "A>B", "only A", "only B", "failed A", "failed B")


def _side(data: Any) -> str:
    data = data if isinstance(data, dict) else {}
    return f"{data.get('run_id', '?')} · {data.get('model', '?')}"


def _compare_rows_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f"<th>{_text(c)}</th>" for c in _COMPARE_COLUMNS)
    body = []
    for row in rows:
        verdict = str(row.get("verdict", "-"))
        interval = "-"
        if isinstance(row.get("ci_low"), (int, float)) and isinstance(row.get("ci_high"), (int, float)):
            interval = f"[{_fmt(row['ci_low'], True)}, {_fmt(row['ci_high'], True)}]"
        count = lambda key: _text(row.get(key, "-"))  # noqa: E731
        cells = [
            f"<td>{_text(row.get('name', '?'))}</td>", f"<td>{_text(row.get('metric', '-'))}</td>",
            f'<td class="num">{count("n")}</td>', f'<td class="num">{_fmt(row.get("a"))}</td>',
            f'<td class="num">{_fmt(row.get("b"))}</td>', f'<td class="num">{_fmt(row.get("diff"), True)}</td>',
            f'<td class="num">{_text(interval)}</td>', f'<td class="num">{_p(row.get("p_value"))}</td>',
            f'<td class="num">{_p(row.get("p_holm"))}</td>', f"<td>{_text(row.get('test') or '-')}</td>",
            f'<td class="verdict {_VERDICT_CLASS.get(verdict, "v-none")}">{_text(verdict)}</td>',
            *(f'<td class="num">{count(k)}</td>' for k in ("b_better", "a_better", "only_a", "only_b",
                                                            "failed_a", "failed_b")),
        ]
        css = ' class="group"' if row.get("kind") == "group" else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f'<table class="compare"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _diff_list(name: str, items: Sequence[Mapping[str, Any]]) -> str:
    shown = list(items[:MAX_DIFF_ITEMS])
    body = "".join(
        f"<tr><td>{_text(i.get('dataset', ''))}</td><td>{_text(i.get('id', ''))}</td>"
        f"<td>{_text(i.get('target', ''))}</td><td class=\"num\">{_fmt(i.get('a_value'))}</td>"
        f"<td><pre>{_text(' | '.join(map(str, i.get('a_answers') or [])))}</pre></td>"
        f"<td class=\"num\">{_fmt(i.get('b_value'))}</td>"
        f"<td><pre>{_text(' | '.join(map(str, i.get('b_answers') or [])))}</pre></td></tr>"
        for i in shown if isinstance(i, dict)
    )
    more = f'<p class="note">First {len(shown)} of {len(items)} shown.</p>' if len(items) > len(shown) else ""
    return (f'<details class="diff"><summary>{_text(name)}: {len(items)} question(s) whose score changed</summary>'
            "<table><thead><tr><th>dataset</th><th>id</th><th>target</th><th>A score</th><th>A answer</th>"
            f"<th>B score</th><th>B answer</th></tr></thead><tbody>{body}</tbody></table>{more}</details>")


def _compare_summary(data: Mapping[str, Any]) -> str:
    """`Comparison: B = run · model-b vs A = run · model-a: ceval B better, ...` (the first rows)."""
    heads = []
    for comp in data.get("comparisons", []):
        if not isinstance(comp, dict):
            continue
        rows = [r for r in comp.get("rows", []) if isinstance(r, dict)]
        first = [r for r in rows if r.get("kind") == "group"] or rows
        verdicts = "; ".join(f"{r.get('name', '?')}: {r.get('verdict', '-')}" for r in first[:4])
        heads.append(f"B = {_side(comp.get('b'))} vs A = {_side(comp.get('a'))}" + (f" — {verdicts}" if verdicts else ""))
    return f"<b>Comparison</b>: {_text(' | '.join(heads) or 'nothing compared')}"


def _compare_section(data: Mapping[str, Any]) -> str:
    parts = ['<h2 id="compare">Comparison</h2>']
    for comp in data.get("comparisons", []):
        if not isinstance(comp, dict):
            continue
        parts.append(f"<h3>B = {_text(_side(comp.get('b')))} vs A = {_text(_side(comp.get('a')))}</h3>")
        changes = [c for c in comp.get("changes", []) if isinstance(c, dict)]
        measured = [c for c in changes if c.get("kind") == "measure"]
        if measured:
            parts.append('<p class="measure">A and B do not measure the same thing:</p><ul class="measure">')
            parts.extend(f"<li>{_text(c.get('message', ''))}</li>" for c in measured)
            parts.append("</ul>")
        sides = [comp.get(k) if isinstance(comp.get(k), dict) else {} for k in ("a", "b")]
        same_model = sides[0].get("model") == sides[1].get("model")
        shown = ("coverage", "setting", "model") if same_model else ("coverage", "setting")
        others = [c for c in changes if c.get("kind") in shown]
        if others:
            parts.append('<ul class="note">')
            parts.extend(f"<li>{_text(c.get('kind'))}: {_text(c.get('message', ''))}</li>" for c in others)
            parts.append("</ul>")
        for key, side in (("datasets_only_a", "A"), ("datasets_only_b", "B")):
            names = comp.get(key) or []
            if names:
                parts.append(f'<p class="note">Datasets in {side} only (not compared): {_text(", ".join(map(str, names)))}</p>')
        parts.extend(f'<p class="warn">{_text(n)}</p>' for n in comp.get("notes", []))
        rows = [r for r in comp.get("rows", []) if isinstance(r, dict)]
        if not rows:
            parts.append('<p class="note">No dataset scored by both sides.</p>')
            continue
        parts.append(_compare_rows_table(rows))
        bands = [DiffBand(str(r.get("name", "?")), _number(r.get("diff")), _number(r.get("ci_low")),
                          _number(r.get("ci_high")), str(r.get("verdict", ""))) for r in rows]
        parts.append(diff_chart("B − A, points (95% intervals)", bands))
        diff = comp.get("diff")
        if isinstance(diff, dict):
            parts.extend(_diff_list(str(name), items) for name, items in diff.items() if isinstance(items, list))
    resamples = (data.get("bootstrap") or {}).get("resamples", "?") if isinstance(data.get("bootstrap"), dict) else "?"
    parts.append(
        '<p class="note">n: questions both sides answered; A, B: their scores on those questions; p: exact McNemar '
        f"test for right/wrong scores, else a paired bootstrap ({_text(resamples)} resamples, fixed seed); "
        "verdict at the 5% level; per-dataset verdicts use p adjusted for the number of datasets (Holm). Groups "
        "pool their members' questions and come first. The interval of a right/wrong difference is the exact one "
        "that goes with McNemar's test: it holds 0 exactly when the verdict is no significant difference.</p>"
    )
    return "".join(parts)


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def _status(record: Record, score: Mapping[str, Any] | None) -> tuple[str, str]:
    if record.error is not None:
        return "failed", f"failed: {record.error}"
    if score is None or score.get("status") != "scored":
        return "unscored", "not scored"
    if score.get("rule") in ("judge_pair", "judge_rating"):  # a preference or a rating, not right/wrong
        return "judged", f"judged {score.get('value', 0):.2f}"
    return ("correct", "correct") if score.get("correct") else ("wrong", "wrong")


def _sample_data(number: int, record: Record, score: Mapping[str, Any] | None) -> list[Any]:
    """One sample for the page's data block (see report.sample_view for the order)."""
    css, status = _status(record, score)
    answer = (score or {}).get("answer")
    rule = (score or {}).get("rule")
    return [number, record.item_id, _tail(_prompt_text(record.prompt)), _head(_output_text(record)),
            "-" if answer is None else str(answer), str((score or {}).get("target", "-")), css,
            f"{status} ({rule})" if rule else status, rule or "", _conversation_turns(record)]


def _conversation_turns(record: Record) -> list[list[str]] | None:
    """A conversation's turns ([role, text], the record's own answer last), or None."""
    prompt = record.prompt
    if not (isinstance(prompt, list) and all(isinstance(m, dict) and "content" in m for m in prompt)
            and any(m.get("role") == "assistant" for m in prompt)):
        return None
    turns = [[str(m.get("role", "?")), _head(str(m["content"]))] for m in prompt]
    return turns + [["assistant", _head(_output_text(record))]]


def _lazy_section(index: int, section: _Section, result: Result | None, limit: int) -> tuple[str, dict[str, Any]]:
    """The dataset's closed <details> (its rows drawn when opened) and its samples' data."""
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
    rows = [_sample_data(i, r, section.scores.get(r.item_id)) for i, r in enumerate(section.records, start=1)]
    html = (f'<details class="ds" data-section="{index}"><summary>{head}</summary>{note_html}'
            '<div class="rows"></div></details>')
    return html, {"model": section.model, "dataset": section.dataset, "rows": rows}


def _page(
    title: str,
    summary: Summary,
    results: dict[tuple[str, str], Result],
    sections: Sequence[str],
    notes: Sequence[str],
    groups: Mapping[str, Sequence[str]] = {},
    comparison: Mapping[str, Any] | None = None,
    settings: str = "",
    answer_table: str = "",
) -> str:
    """The page up to its samples' data block (`sections`: each dataset's <details>)."""
    headline = build_headline(summary, results, groups) if summary.rows else []
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Proctor report · {_text(title)}</title><style>{_CSS}{SAMPLE_CSS}</style></head><body>",
        f"<h1>Proctor report · {_text(title)}</h1>",
        f'<p class="note">{len(summary.models)} model(s): {_text(", ".join(summary.models) or "-")}</p>',
        settings,
    ]
    parts.extend(f'<p class="warn">{_text(n)}</p>' for n in notes)
    parts.append('<h2 id="headline">Headline</h2>')
    benchmarks = [r for r in headline if r.section == "benchmark"]
    if benchmarks:
        parts.append(_headline_table(benchmarks, "benchmark"))
        parts.append('<p class="note">Score ± 1.96 standard errors (95% interval); items: questions scored; '
                     "failed: requests that failed or were never answered, not scored.</p>")
    else:
        parts.append('<p class="note">No results yet.</p>')
    first_chart, charts = _charts(summary, headline, results)
    parts.append(first_chart)
    if comparison is not None:
        # Collapsed under the headline: its own summary line names both sides and the verdicts.
        parts.append(f'<details class="full" id="comparison"><summary>{_compare_summary(comparison)}</summary>'
                     f"{_compare_section(comparison)}</details>")
    group_rows = [r for r in headline if r.section == "group"]
    if group_rows:
        parts.append('<h2 id="groups">Groups</h2>')
        parts.append(_headline_table(group_rows, "group"))
    subset_rows = [r for r in headline if r.section == "subset"]
    if subset_rows:
        parts.append('<h2 id="subsets">Subsets</h2>')
        parts.append(_headline_table(subset_rows, "subset"))
    if charts:
        parts.append(f'<h2 id="charts">Charts</h2>{charts}')
    parts.append('<h2 id="table">All rows (OpenCompass columns)</h2>')
    parts.append(_summary_table(summary) if summary.rows else '<p class="note">No results yet.</p>')
    if answer_table:
        parts.append(f'<h2 id="answers">Answer distribution</h2>{answer_table}')
    parts.append('<h2 id="samples">Samples</h2>')
    if not sections:
        parts.append('<p class="note">No predictions found.</p>')
    else:
        parts.append(TOOLBAR)
    parts.extend(sections)
    return "\n".join(parts)


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
    from proctor.report.run_info import answer_distribution, settings_html

    out = run_dir / "report.html"
    # The samples' data is packed into a temporary file as each section is read (one section in
    # memory at a time); the page's top, with the notes reading them gave, is written first.
    with tempfile.TemporaryFile("w+", encoding="ascii") as data:
        packer = SamplesPacker(data)
        sections = []
        for i, section in enumerate(_load_sections(run_dir, summary, max_samples, notes)):
            html, rows = _lazy_section(i, section, results.get((section.model, section.dataset)), max_samples)
            sections.append(html)
            packer.add(rows)
        packer.close()
        groups = read_groups_file(run_dir / "summary")
        comparison = _load_compare(run_dir, notes)
        page = _page(run_dir.name, summary, results, sections, notes, groups, comparison,
                     settings=settings_html(run_dir), answer_table=answer_distribution(run_dir))
        with out.open("w", encoding="utf-8") as f:
            f.write(page)
            if sections:
                f.write(f"\n{BLOCK_OPEN}")
                data.seek(0)
                shutil.copyfileobj(data, f)
                f.write(BLOCK_CLOSE)
            f.write("\n</body></html>\n")
    return out
