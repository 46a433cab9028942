"""Summary table, its txt/csv/md writers, the console table and report.html, on real files."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
from rich.cells import cell_len
from rich.console import Console

from proctor.core import Record, Result, Score
from proctor.errors import ConfigError, DataError
from proctor.metrics import accuracy_result
from proctor.report.sample_view import decode_samples
from proctor.report import (
    DatasetRowInfo,
    Summary,
    SummaryGroup,
    build_summary,
    format_markdown,
    format_text,
    print_summary,
    read_summary_csv,
    summary_cells,
    summary_columns,
    write_html_report,
    write_summary,
)

NET, ARCH, LAW = "ceval-computer_network", "ceval-computer_architecture", "ceval-law"
INFOS = [DatasetRowInfo(NET, "db9ce2", "gen"), DatasetRowInfo(ARCH, "db9ce2", "gen")]
GROUP = SummaryGroup("ceval-stem", (NET, ARCH))


def result(model: str, dataset: str, value: float, n: int, n_failed: int = 0, **extra: float) -> Result:
    p = value / 100
    stderr = math.sqrt(p * (1 - p) / (n - 1)) * 100
    return Result(model, dataset, "accuracy", value, stderr, n, n_failed, extra)


def two_models() -> list[Result]:
    return [
        result("m1", NET, 50.0, 20),
        result("m1", ARCH, 80.0, 10),
        result("m2", NET, 25.0, 20, n_failed=3),
        result("m2", ARCH, 70.0, 10),
    ]


# ---------------------------------------------------------------- the table


def test_columns_values_and_group_rows_are_exact() -> None:
    summary = build_summary(two_models(), INFOS, [GROUP], ["m1", "m2"])
    assert summary_columns(summary) == ["dataset", "version", "metric", "mode", "m1", "m2", "failed"]
    assert summary_cells(summary) == [
        [NET, "db9ce2", "accuracy", "gen", "50.00", "25.00", "m1:0 m2:3"],
        [ARCH, "db9ce2", "accuracy", "gen", "80.00", "70.00", "m1:0 m2:0"],
        # m1: (50 + 80) / 2 = 65 and (10 + 8) / 30 = 60; m2: (25 + 70) / 2 = 47.5 and (5 + 7) / 30 = 40
        ["ceval-stem", "-", "accuracy (mean of subjects)", "gen", "65.00", "47.50", "m1:0 m2:3"],
        ["ceval-stem", "-", "accuracy (mean of questions)", "gen", "60.00", "40.00", "m1:0 m2:3"],
    ]
    subjects = summary.rows[2]
    # stderr of the naive mean: sqrt(se1^2 + se2^2) / k
    se1, se2 = math.sqrt(0.25 / 19) * 100, math.sqrt(0.16 / 9) * 100
    assert subjects.stderrs[0] == pytest.approx(math.sqrt(se1**2 + se2**2) / 2)
    assert summary.rows[3].stderrs[0] == pytest.approx(math.sqrt(0.6 * 0.4 / 29) * 100)
    assert subjects.kind == "group" and subjects.members == (NET, ARCH)
    assert summary.value("ceval-stem", "m2", "accuracy (mean of questions)") == pytest.approx(40.0)


def test_missing_results_show_a_dash_and_void_the_group_for_that_model() -> None:
    results = [r for r in two_models() if not (r.model == "m2" and r.dataset == ARCH)]
    summary = build_summary(results, INFOS, [GROUP], ["m1", "m2"])
    cells = summary_cells(summary)
    assert cells[1][4:6] == ["80.00", "-"]
    assert [row[4:6] for row in cells[2:]] == [["65.00", "-"], ["60.00", "-"]]
    assert summary.rows[2].values[1] is None


def test_no_failed_column_without_failures_and_a_plain_count_for_one_model() -> None:
    clean = build_summary([result("m1", NET, 50.0, 20)], INFOS[:1], [], ["m1"])
    assert "failed" not in summary_columns(clean)
    single = build_summary([result("m1", NET, 50.0, 20, n_failed=4)], INFOS[:1], [], ["m1"])
    assert summary_cells(single) == [[NET, "db9ce2", "accuracy", "gen", "50.00", "4"]]


def test_acc_norm_gets_its_own_rows() -> None:
    results = [result("m1", NET, 50.0, 20, acc_norm=55.0), result("m1", ARCH, 80.0, 10, acc_norm=90.0)]
    summary = build_summary(results, INFOS, [GROUP], ["m1"])
    assert [(r[0], r[2], r[4]) for r in summary_cells(summary)] == [
        (NET, "accuracy", "50.00"),
        (NET, "acc_norm", "55.00"),
        (ARCH, "accuracy", "80.00"),
        (ARCH, "acc_norm", "90.00"),
        ("ceval-stem", "accuracy (mean of subjects)", "65.00"),
        ("ceval-stem", "accuracy (mean of questions)", "60.00"),
        ("ceval-stem", "acc_norm (mean of subjects)", "72.50"),
        ("ceval-stem", "acc_norm (mean of questions)", "66.67"),  # (55*20 + 90*10) / 30
    ]


def test_nested_groups_expand_and_unrelated_groups_are_left_out() -> None:
    results = [*two_models()[:2], result("m1", LAW, 40.0, 10)]
    infos = [*INFOS, DatasetRowInfo(LAW, "x1", "gen")]
    groups = [
        GROUP,
        SummaryGroup("ceval", ["ceval-stem", LAW]),  # a list is accepted and frozen
        SummaryGroup("mmlu", ("mmlu-anatomy",)),  # nothing of it in this run
    ]
    summary = build_summary(results, infos, groups, ["m1"])
    assert groups[1].members == ("ceval-stem", LAW)
    assert [row.dataset for row in summary.rows] == [NET, ARCH, LAW] + ["ceval-stem"] * 2 + ["ceval"] * 2
    assert summary.value("ceval", "m1", "accuracy (mean of subjects)") == pytest.approx((50 + 80 + 40) / 3)
    assert summary.value("ceval", "m1", "accuracy (mean of questions)") == pytest.approx(100 * 22 / 40)


def test_a_group_cycle_is_a_config_error() -> None:
    groups = [SummaryGroup("a", ("b", NET)), SummaryGroup("b", ("a",))]
    with pytest.raises(ConfigError, match="contains itself"):
        build_summary(two_models(), INFOS, groups, ["m1"])


# ---------------------------------------------------------------- writers


def test_txt_csv_md_files_round_trip(tmp_path: Path) -> None:
    summary = build_summary(two_models(), INFOS, [GROUP], ["m1", "m2"])
    paths = write_summary(summary, tmp_path / "summary")
    assert [p.name for p in paths] == ["summary.txt", "summary.csv", "summary.md"]

    back = read_summary_csv(paths[1])
    assert back.models == ("m1", "m2")
    for original, read in zip(summary.rows, back.rows, strict=True):
        assert (read.dataset, read.version, read.metric, read.mode, read.kind) == (
            original.dataset, original.version, original.metric, original.mode, original.kind
        )
        assert read.values == pytest.approx(original.values, abs=0.005)
        assert read.failed == original.failed

    md = paths[2].read_text(encoding="utf-8").splitlines()
    assert md[0] == "| dataset | version | metric | mode | m1 | m2 | failed |"
    assert md[1] == "| --- | --- | --- | --- | ---: | ---: | --- |"
    assert md[3] == f"| {ARCH} | db9ce2 | accuracy | gen | 80.00 | 70.00 | m1:0 m2:0 |"
    assert len(md) == 2 + len(summary.rows)

    assert paths[0].read_text(encoding="utf-8") == format_text(summary)


def test_text_table_aligns_columns_by_display_width() -> None:
    infos = [DatasetRowInfo("ceval-计算机网络", "v1", "gen"), DatasetRowInfo("x", "v1", "ppl")]
    results = [result("model-a", "ceval-计算机网络", 5.0, 20), result("model-a", "x", 100.0, 3)]
    lines = format_text(build_summary(results, infos, [], ["model-a"])).splitlines()
    assert lines[0].split() == ["dataset", "version", "metric", "mode", "model-a"]
    assert set(lines[1]) == {"-", " "}
    # model values are right-aligned under their header, whatever the width of the CJK names
    end = cell_len(lines[0])
    assert [cell_len(line) for line in lines[2:]] == [end, end]
    assert lines[2].endswith("   5.00") and lines[3].endswith(" 100.00")


def test_markdown_escapes_pipes() -> None:
    summary = build_summary([result("m|1", "a|b", 50.0, 4)], [DatasetRowInfo("a|b")], [], ["m|1"])
    assert "| a\\|b | - | accuracy | - | 50.00 |" in format_markdown(summary)


def test_print_summary_renders_with_rich() -> None:
    buffer = io.StringIO()
    print_summary(build_summary(two_models(), INFOS, [GROUP], ["m1", "m2"]), Console(file=buffer, width=200))
    text = buffer.getvalue()
    assert "accuracy (mean of subjects)" in text and "accuracy (mean of questions)" in text
    assert "47.50" in text and "m1:0 m2:3" in text


def test_a_malformed_csv_names_the_file_and_row(tmp_path: Path) -> None:
    bad = tmp_path / "summary.csv"
    bad.write_text("dataset,version,metric,mode,m1\nx,v,accuracy,gen,lots\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"summary\.csv row 2"):
        read_summary_csv(bad)
    bad.write_text("name,score\n", encoding="utf-8")
    with pytest.raises(DataError, match="not a Proctor summary"):
        read_summary_csv(bad)


# ---------------------------------------------------------------- report.html


Scored = tuple[Record, Score | None]


def make_record(i: int, *, correct: bool | None, output: str = "答案：A", error: str | None = None) -> Scored:
    """A prediction line and its score (None: failed, never scored)."""
    record = Record(
        item_id=f"{NET}-{i}",
        prompt=[{"role": "user", "content": f"问题 {i}：TCP 属于哪一层？\nA. 传输层\nB. 网络层"}],
        output=None if error else output,
        loglikelihoods=None,
        error=error,
    )
    score = None if error else Score(1.0 if correct else 0.0, answer="A" if correct else "B", rule="explicit")
    return record, score


def write_run(run_dir: Path, per_model: dict[str, list[Scored]], dataset: str = NET) -> list[Result]:
    """A run directory laid out like the engine's: predictions/, scores/, results/, summary/."""
    results = []
    for model, recs in per_model.items():
        for folder in ("predictions", "scores", "results"):
            (run_dir / folder / model).mkdir(parents=True, exist_ok=True)
        with (run_dir / "predictions" / model / f"{dataset}.jsonl").open("w", encoding="utf-8") as f:
            for rec, _ in recs:
                f.write(json.dumps(rec.to_json(), ensure_ascii=False) + "\n")
        with (run_dir / "scores" / model / f"{dataset}.jsonl").open("w", encoding="utf-8") as f:
            for rec, score in recs:
                line = {"item_id": rec.item_id, "target": "A", "status": "failed" if score is None else "scored"}
                if score is not None:
                    line.update(answer=score.answer, correct=score.correct, value=score.value, rule=score.rule)
                f.write(json.dumps(line, ensure_ascii=False) + "\n")
        scores = [s for _, s in recs if s is not None]
        res = accuracy_result(scores, model, dataset, n_failed=len(recs) - len(scores))
        (run_dir / "results" / model / f"{dataset}.json").write_text(json.dumps(res.to_json()), encoding="utf-8")
        results.append(res)
    return results


def test_report_from_a_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "20250101_000000"
    m1 = [make_record(0, correct=True), make_record(1, correct=True), make_record(2, correct=False),
          make_record(3, correct=None, error="HTTP 503 after 3 attempts")]
    m2 = [make_record(i, correct=i == 0) for i in range(4)]
    results = write_run(run, {"m1": m1, "m2": m2})
    write_summary(build_summary(results, INFOS[:1], [], ["m1", "m2"]), run / "summary")

    path = write_html_report(run)

    assert path == run / "report.html"
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "66.67" in page and "25.00" in page  # m1: 2 of 3 scored; m2: 1 of 4
    assert "m1:1 m2:0" in page  # the failed column
    assert page.count('<details class="ds"') == 2  # one drill-down per (model, dataset)
    # The samples travel as one packed data block, drawn by the page when a dataset is opened.
    rows = [r for s in decode_samples(page)["sections"] for r in s["rows"]]
    assert any("问题 2：TCP 属于哪一层？" in r[2] for r in rows)
    assert any(r[7] == "failed: HTTP 503 after 3 attempts" for r in rows)
    assert [r[6] for r in rows].count("correct") == 3 and [r[6] for r in rows].count("wrong") == 4
    assert [r[6] for r in rows].count("failed") == 1
    assert "accuracy 66.67 ± 33.33 (n=3, failed 1)" in page
    assert "<svg" in page
    # self-contained: nothing is fetched from anywhere; the only scripts are the data and its renderer
    assert page.count("<script") == 2
    for needle in ("<link", "src=", "href=", "@import", "url(", "http://", "https://"):
        assert needle not in page


def test_untrusted_text_is_escaped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    evil = "<script>alert('pwned')</script>答案：A"
    recs = [
        make_record(0, correct=True, output=evil),
        make_record(1, correct=None, error='<img src=x onerror="alert(1)">'),
    ]
    write_run(run, {"m1": recs})
    page = write_html_report(run).read_text(encoding="utf-8")
    # Model text is only in the packed (base64) data block; the page's script escapes it when it
    # draws a row (the browser test draws them).
    assert page.count("<script") == 2 and "<img" not in page and "pwned" not in page
    rows = [r for s in decode_samples(page)["sections"] for r in s["rows"]]
    assert rows[0][3] == evil and "onerror" in rows[1][7]
    assert "esc(r[3])" in page and "esc(r[2])" in page and "esc(r[7])" in page


def test_large_runs_are_capped_and_torn_lines_skipped(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, {"m1": [make_record(i, correct=i % 2 == 0) for i in range(250)]})
    page = write_html_report(run).read_text(encoding="utf-8")  # no summary.csv: rebuilt from results/
    assert sum(len(s["rows"]) for s in decode_samples(page)["sections"]) == 200
    assert "First 200 of 250 records shown (limit 200)." in page
    assert "50.00" in page

    with (run / "predictions" / "m1" / f"{NET}.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"sample_id": "torn')  # a run killed mid-write
    page = write_html_report(run, max_samples=300).read_text(encoding="utf-8")
    assert sum(len(s["rows"]) for s in decode_samples(page)["sections"]) == 250
    assert "1 unreadable line(s) skipped." in page


def test_report_with_a_summary_draws_a_chart_per_group(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    summary = build_summary(two_models(), INFOS, [GROUP], ["m1", "m2"])
    page = write_html_report(run, summary).read_text(encoding="utf-8")
    assert page.count("<svg") == 2  # the overview (groups) and one for the members of ceval-stem
    assert "ceval-stem: members" in page
    assert "No predictions found." in page


def test_report_needs_a_run_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        write_html_report(tmp_path / "nope")


def test_summary_is_frozen() -> None:
    summary: Summary = build_summary(two_models(), INFOS, [], ["m1", "m2"])
    with pytest.raises(AttributeError):
        summary.rows = ()  # type: ignore[misc]


def test_an_undecodable_summary_csv_is_rebuilt_from_results(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, {"m1": [make_record(0, correct=True), make_record(1, correct=False)]})
    (run / "summary").mkdir()
    (run / "summary" / "summary.csv").write_bytes(b"dataset,version,metric,mode,m1\n\xff\xfe,v\n")
    with pytest.raises(DataError, match=r"summary\.csv: cannot read the summary .*delete the file"):
        read_summary_csv(run / "summary" / "summary.csv")
    page = write_html_report(run).read_text(encoding="utf-8")
    assert "table rebuilt from results/" in page
    assert "50.00" in page  # the value from results/, 1 of 2 correct


# ---------------------------------------------------------------- headline, intervals, groups.json, comparison


def _headline_results() -> tuple[list[Result], list[DatasetRowInfo], list[SummaryGroup]]:
    results = [
        result("m1", NET, 50.0, 20), result("m1", ARCH, 80.0, 10), result("m1", LAW, 40.0, 10),
        result("m2", NET, 25.0, 20, n_failed=3), result("m2", ARCH, 70.0, 10), result("m2", LAW, 60.0, 10),
        # A generated benchmark with no group: extraction rate and a breakdown (MATH-500's `level=5`).
        Result("m1", "math500", "accuracy", 30.0, 4.0, 100, 2, {"extraction_rate": 97.0, "level=1": 60.0,
                                                                  "level=5": 10.0}),
        Result("m2", "math500", "accuracy", 45.0, 5.0, 100, 0, {"extraction_rate": 99.0, "level=1": 80.0,
                                                                  "level=5": 20.0}),
        # Circular and pass@k rows keep their metric names.
        Result("m1", "mmlu-x_circular", "circular", 20.0, 6.0, 30, 0, {"accuracy": 55.0, "acc_r0": 60.0}),
        Result("m2", "mmlu-x_circular", "circular", 35.0, 7.0, 30, 0, {"accuracy": 65.0, "acc_r0": 70.0}),
        Result("m1", "humaneval", "pass@1", 40.0, 3.0, 20, 0, {"pass@4": 70.0, "extraction_rate": 100.0}),
        Result("m2", "humaneval", "pass@1", 50.0, 3.5, 20, 0, {"pass@4": 80.0, "extraction_rate": 100.0}),
    ]
    infos = [*INFOS, DatasetRowInfo(LAW, "x1", "gen"), DatasetRowInfo("math500", "m1", "gen"),
             DatasetRowInfo("mmlu-x_circular", "c1", "gen"), DatasetRowInfo("humaneval", "h1", "gen")]
    groups = [SummaryGroup("ceval (3/52 subjects)", (NET, ARCH, LAW)), SummaryGroup("ceval-stem (2/20 subjects)", (NET, ARCH))]
    return results, infos, groups


def test_headline_rows_are_benchmarks_then_groups_then_subsets() -> None:
    from proctor.report.headline import build_headline

    results, infos, groups = _headline_results()
    summary = build_summary(results, infos, groups, ["m1", "m2"])
    index = {(r.model, r.dataset): r for r in results}
    rows = build_headline(summary, index)
    assert [(r.section, r.name, r.model) for r in rows] == [
        ("benchmark", "ceval (3/52 subjects)", "m1"), ("benchmark", "ceval (3/52 subjects)", "m2"),
        ("benchmark", "math500", "m1"), ("benchmark", "math500", "m2"),
        ("benchmark", "mmlu-x_circular", "m1"), ("benchmark", "mmlu-x_circular", "m2"),
        ("benchmark", "humaneval", "m1"), ("benchmark", "humaneval", "m2"),
        ("group", "ceval-stem (2/20 subjects)", "m1"), ("group", "ceval-stem (2/20 subjects)", "m2"),
        ("subset", NET, "m1"), ("subset", NET, "m2"), ("subset", ARCH, "m1"), ("subset", ARCH, "m2"),
        ("subset", LAW, "m1"), ("subset", LAW, "m2"),
    ]
    ceval = rows[0]
    assert ceval.metric == "accuracy (mean of subjects)" and ceval.value == pytest.approx((50 + 80 + 40) / 3)
    assert (ceval.n, ceval.failed) == (40, 0) and rows[1].failed == 3
    se = [math.sqrt(0.25 / 19) * 100, math.sqrt(0.16 / 9) * 100, math.sqrt(0.24 / 9) * 100]
    assert ceval.stderr == pytest.approx(math.sqrt(sum(x * x for x in se)) / 3)
    math500 = rows[2]
    assert (math500.value, math500.n, math500.failed, math500.extraction_rate) == (30.0, 100, 2, 97.0)
    assert math500.interval == pytest.approx((30.0 - 1.959964 * 4.0, 30.0 + 1.959964 * 4.0), abs=1e-5)
    assert rows[4].metric == "circular" and rows[6].metric == "pass@1"


def test_report_opens_with_the_headline_and_draws_error_bars(tmp_path: Path) -> None:
    results, infos, groups = _headline_results()
    run = tmp_path / "run"
    (run / "results").mkdir(parents=True)
    for r in results:
        (run / "results" / r.model).mkdir(exist_ok=True)
        (run / "results" / r.model / f"{r.dataset}.json").write_text(json.dumps(r.to_json()), encoding="utf-8")
    write_summary(build_summary(results, infos, groups, ["m1", "m2"]), run / "summary")
    assert json.loads((run / "summary" / "groups.json").read_text(encoding="utf-8")) == {
        "groups": {"ceval (3/52 subjects)": [NET, ARCH, LAW], "ceval-stem (2/20 subjects)": [NET, ARCH]}}

    page = write_html_report(run).read_text(encoding="utf-8")  # from summary.csv + groups.json
    order = [page.index(h) for h in ('<h2 id="headline">', '<h2 id="groups">', '<h2 id="subsets">',
                                      '<h2 id="charts">', '<h2 id="table">', '<h2 id="samples">')]
    assert order == sorted(order)
    headline = page[order[0]:order[1]]
    # math500, m1: 30 ± 1.96 * 4 -> 22.16 – 37.84; its extraction rate; the circular and pass@k rows.
    assert "<td>math500</td><td>accuracy</td><td>m1</td>" in headline
    assert "22.16 – 37.84" in headline and "97.00" in headline
    assert "<td>circular</td>" in headline and "<td>pass@1</td>" in headline
    assert headline.index("ceval (3/52 subjects)") < headline.index("math500")
    # Charts: the benchmarks (with error bars), each group's members, the breakdown by level.
    assert page.count('<svg class="chart"') == 4
    assert "ceval-stem (2/20 subjects): members" in page and "math500: breakdown" in page
    assert page.count('class="errbar"') >= 8
    assert "level=5" in page
    for needle in ("<script", "<link", "src=", "href=", "@import", "url(", "http://", "https://"):
        assert needle not in page


def test_interval_of_a_percentage_stays_within_0_and_100() -> None:
    from proctor.report.html import _interval_cell
    from proctor.report.headline import HeadlineRow

    row = HeadlineRow("benchmark", "x", "dataset", "accuracy", "m", 95.0, 5.0, 10, 0)
    assert ">85.20 – 100.00<" in _interval_cell(row)


def test_compare_json_in_the_run_folder_becomes_an_escaped_section(tmp_path: Path) -> None:
    run = tmp_path / "run"
    write_run(run, {"m1": [make_record(0, correct=True)]})
    evil = "<script>alert(1)</script>"
    (run / "compare.json").write_text(json.dumps({"comparisons": [{
        "a": {"run_id": "r1", "model": "m1"}, "b": {"run_id": "r2", "model": evil},
        "changes": [{"kind": "measure", "message": f"{NET}: prompt version v1 -> {evil}"}],
        "rows": [{"name": evil, "kind": "dataset", "metric": "accuracy", "n": 3, "a": 50.0, "b": 75.0,
                  "diff": 25.0, "ci_low": -5.0, "ci_high": 55.0, "p_value": 0.5, "test": "mcnemar",
                  "verdict": "no significant difference", "b_better": 1, "a_better": 0, "only_a": 0,
                  "only_b": 2, "failed_a": 1, "failed_b": 0}],
        "diff": {NET: [{"dataset": NET, "id": evil, "target": "A", "a_value": 0, "b_value": 1,
                        "a_answers": [evil], "b_answers": ["A"]}]},
    }]}), encoding="utf-8")
    page = write_html_report(run).read_text(encoding="utf-8")
    assert '<h2 id="compare">Comparison</h2>' in page and page.count("<script") == 2  # only the samples' own
    assert "A and B do not measure the same thing" in page and "&lt;script&gt;" in page
    assert "[-5.00, +55.00]" in page and '<svg class="chart diff"' in page
    assert "1 question(s) whose score changed" in page

    (run / "compare.json").write_text("{not json", encoding="utf-8")
    page = write_html_report(run).read_text(encoding="utf-8")
    assert "compare.json: unreadable" in page and "Comparison</h2>" not in page
