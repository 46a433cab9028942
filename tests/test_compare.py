"""`proctor compare`: paired tests computed by hand on run folders written by hand, manifest
checks, questions in one run only, and a real comparison of two runs against the test server."""

from __future__ import annotations

import csv
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import KnownAnswers, dataset_names, run_args, slice_fixtures
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.report.compare import compare_runs, resolve_run, unit_value
from proctor.report.manifests import diff_manifests, measured_changes
from proctor.report.stats import (
    binomial_two_sided,
    mcnemar_exact,
    paired_bootstrap,
    paired_test,
    quantile,
    verdict,
)

NET, ARCH, ALG = "ceval-computer_network", "ceval-computer_architecture", "mmlu-abstract_algebra"

# ---------------------------------------------------------------- writing run folders by hand

Line = dict[str, Any]


def scored(item: str, right: bool | float, answer: Any = None, sample: str | None = None, target: Any = "A") -> Line:
    value = float(right)
    return {"item_id": item, "sample_id": sample or item, "status": "scored", "target": target,
            "answer": answer if answer is not None else ("A" if value >= 1 else "B"), "value": value,
            "correct": value >= 1.0, "rule": "explicit"}


def failed(item: str, sample: str | None = None) -> Line:
    return {"item_id": item, "sample_id": sample or item, "status": "failed", "target": "A", "error": "HTTP 500"}


def manifest(datasets: dict[str, dict[str, Any]], models: Sequence[str]) -> dict[str, Any]:
    return {
        "proctor": {"version": "0.2.0"},
        "seed": 0,
        "models": {m: {"type": "api", "identity": f"api|http://x/v1|{m}|chat"} for m in models},
        "datasets": {
            abbr: {"benchmark": abbr.split("-")[0], "mode": "gen", "prompt_version": "v1", "n": 10, "items": 10,
                   "variants": "none", "fewshot": 5, "scorer": {"name": "choice", "params": {}, "version": 1},
                   "data_files": {f"/data/{abbr}.csv": "ab" * 32}, **info}
            for abbr, info in datasets.items()
        },
    }


def write_side(run: Path, model: str, dataset: str, lines: Sequence[Line], metric: str = "accuracy") -> None:
    (run / "scores" / model).mkdir(parents=True, exist_ok=True)
    (run / "results" / model).mkdir(parents=True, exist_ok=True)
    (run / "scores" / model / f"{dataset}.jsonl").write_text(
        "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines), encoding="utf-8")
    values = [line["value"] for line in lines if line["status"] == "scored"]
    result = {"model": model, "dataset": dataset, "metric": metric,
              "value": 100 * sum(values) / len(values) if values else None, "stderr": 1.0, "n": len(values),
              "n_failed": len(lines) - len(values), "extra_metrics": {}}
    (run / "results" / model / f"{dataset}.json").write_text(json.dumps(result), encoding="utf-8")


def make_run(root: Path, run_id: str, sides: dict[str, dict[str, Sequence[Line]]],
             datasets_info: dict[str, dict[str, Any]] | None = None, groups: dict[str, list[str]] | None = None) -> Path:
    run = root / run_id
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"proctor_layout": 1}), encoding="utf-8")
    datasets = list(dict.fromkeys(d for per in sides.values() for d in per))
    info = {d: (datasets_info or {}).get(d, {}) for d in datasets}
    (run / "manifest.json").write_text(json.dumps(manifest(info, list(sides))), encoding="utf-8")
    for model, per in sides.items():
        for dataset, lines in per.items():
            write_side(run, model, dataset, lines)
    if groups:
        (run / "summary").mkdir()
        (run / "summary" / "groups.json").write_text(json.dumps({"groups": groups}), encoding="utf-8")
    return run


def pairs(both_right: int, a_only: int, b_only: int, both_wrong: int, prefix: str = "q") -> tuple[list[Line], list[Line]]:
    """Right/wrong lines for A and B with the given counts of each combination."""
    a, b = [], []
    kinds = [(1, 1)] * both_right + [(1, 0)] * a_only + [(0, 1)] * b_only + [(0, 0)] * both_wrong
    for i, (x, y) in enumerate(kinds):
        a.append(scored(f"{prefix}{i}", bool(x)))
        b.append(scored(f"{prefix}{i}", bool(y)))
    return a, b


# ---------------------------------------------------------------- statistics by hand


def test_exact_mcnemar_p_values_by_hand() -> None:
    # 2 pairs A right/B wrong, 8 the other way: p = 2 * (C(10,0) + C(10,1) + C(10,2)) / 2^10 = 2 * 56 / 1024
    assert mcnemar_exact(2, 8) == pytest.approx(112 / 1024, abs=1e-15)
    assert mcnemar_exact(8, 2) == pytest.approx(112 / 1024, abs=1e-15)
    # 1 vs 9: 2 * (1 + 10) / 1024
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024, abs=1e-15)
    # 0 vs 5: 2 / 32; balanced or empty: 1
    assert mcnemar_exact(0, 5) == pytest.approx(0.0625)
    assert mcnemar_exact(4, 4) == 1.0 and mcnemar_exact(0, 0) == 1.0 and mcnemar_exact(3, 4) == 1.0
    # Past the integer limit the log-space sum gives the same number as exact fractions.
    m, k = 1500, 700
    exact = Fraction(2 * sum(math.comb(m, i) for i in range(k + 1)), 2**m)
    assert binomial_two_sided(k, m) == pytest.approx(float(exact), rel=1e-9)
    with pytest.raises(ValueError):
        binomial_two_sided(5, 3)


def test_paired_interval_for_right_wrong_by_hand() -> None:
    # 10 both right, 2 A only, 8 B only, 5 both wrong: n = 25, d = +1 x8, -1 x2, 0 x15.
    a = [1.0] * 10 + [1.0] * 2 + [0.0] * 8 + [0.0] * 5
    b = [1.0] * 10 + [0.0] * 2 + [1.0] * 8 + [0.0] * 5
    test = paired_test(a, b)
    assert test.test == "mcnemar" and test.n == 25
    assert (test.mean_a, test.mean_b, test.diff) == pytest.approx((12 / 25, 18 / 25, 6 / 25))
    # The exact interval: Clopper-Pearson of 8 of the 10 changed questions, [0.443904, 0.974790]
    # (Beta(8, 3) 2.5% and Beta(9, 2) 97.5% quantiles), scaled by 10/25 to B - A = 10 (2 pi - 1) / 25.
    assert (test.ci_low, test.ci_high) == pytest.approx((10 * (2 * 0.443904 - 1) / 25, 10 * (2 * 0.974790 - 1) / 25),
                                                        abs=1e-5)
    assert test.ci_low < 0 < test.ci_high  # p = 0.109: the interval holds 0, as the verdict says
    assert test.p_value == pytest.approx(112 / 1024)
    assert (test.b_better, test.a_better) == (8, 2)
    assert verdict(test) == "no significant difference"
    assert verdict(paired_test([1.0] * 9 + [0.0], [0.0] * 9 + [1.0])) == "A better"  # 9 vs 1: p = 22/1024
    assert verdict(paired_test([0.0] * 9 + [1.0], [1.0] * 9 + [0.0])) == "B better"
    assert verdict(paired_test([], [])) == "no paired items"


def test_paired_bootstrap_by_hand_and_reproducible() -> None:
    # Every difference 0.5: every resample mean is 0.5, none as far from it as 0 is: p = 1 / (R + 1).
    low, high, p = paired_bootstrap([0.5] * 12, resamples=999)
    assert (low, high, p) == (0.5, 0.5, 1 / 1000)
    # No difference at all: p = 1.
    assert paired_bootstrap([0.0] * 7, resamples=99)[2] == 1.0
    diffs = [0.25, -0.5, 0.75, 0.0, 0.5, 0.25, 1.0, -0.25]
    first = paired_bootstrap(diffs)
    assert paired_bootstrap(diffs) == first  # fixed seed
    assert first[0] < sum(diffs) / len(diffs) < first[1]
    test = paired_test([0.5, 0.25, 0.0], [0.75, 0.25, 1.0])
    assert test.test == "bootstrap" and test.diff == pytest.approx(1.25 / 3)
    assert quantile([0.0, 1.0, 2.0, 3.0], 0.5) == 1.5


def test_question_scores_follow_the_metric() -> None:
    lines = [scored("s#r0", True, sample="s"), scored("s#r1", False, sample="s"), scored("s#r2", True, sample="s")]
    assert unit_value("circular", lines) == 0.0
    assert unit_value("pass@1", lines) == pytest.approx(2 / 3)
    assert unit_value("accuracy", [scored("x", 0.4)]) == pytest.approx(0.4)


# ---------------------------------------------------------------- comparing run folders written by hand


def test_compare_two_hand_written_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a_net, b_net = pairs(10, 1, 9, 5)  # p = 22/1024: B better
    a_arch, b_arch = pairs(4, 2, 2, 2, prefix="r")  # no difference
    # Questions in one run only and a failed one: A has r10, r11; B has r12; r3 failed in B.
    a_arch += [scored("r10", True), scored("r11", False)]
    b_arch += [scored("r12", True)]
    b_arch[3] = failed("r3")
    groups = {"ceval (2/52 subjects)": [NET, ARCH]}
    work = tmp_path / "outputs"
    make_run(work, "20250101_000000", {"m": {NET: a_net, ARCH: a_arch, ALG: [scored("z", True)]}}, groups=groups)
    later = make_run(work, "20250102_000000", {"m": {NET: b_net, ARCH: b_arch}}, groups=groups)

    code = main(["compare", "latest~1", "latest", "-w", str(work), "--diff", NET])
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads((later / "compare.json").read_text(encoding="utf-8"))
    (comp,) = data["comparisons"]
    assert comp["a"]["run_id"] == "20250101_000000" and comp["b"]["run_id"] == "20250102_000000"
    rows = {r["name"]: r for r in comp["rows"]}
    net = rows[NET]
    assert net["n"] == 25 and net["test"] == "mcnemar"
    assert net["p_value"] == pytest.approx(22 / 1024)
    assert net["verdict"] == "B better" and (net["b_better"], net["a_better"]) == (9, 1)
    assert net["diff"] == pytest.approx(100 * 8 / 25)

    arch = rows[ARCH]
    assert (arch["only_a"], arch["only_b"], arch["failed_a"], arch["failed_b"]) == (2, 1, 0, 1)
    assert arch["n"] == 9  # 10 in both, one failed in B
    assert arch["verdict"] == "no significant difference"

    group = rows["ceval (2/52 subjects)"]
    assert group["kind"] == "group" and group["n"] == 25 + 9
    # Pooled: discordant 1 + (A right/B wrong in arch, r3 dropped) vs 9 + 2.
    a_arch_right = sum(1 for x, y in zip(a_arch[:10], b_arch[:10]) if x["value"] > y.get("value", -1) and y["status"] == "scored")
    b_arch_right = sum(1 for x, y in zip(a_arch[:10], b_arch[:10]) if y["status"] == "scored" and y["value"] > x["value"])
    assert (group["a_better"], group["b_better"]) == (1 + a_arch_right, 9 + b_arch_right)
    assert group["p_value"] == pytest.approx(mcnemar_exact(1 + a_arch_right, 9 + b_arch_right))
    assert comp["datasets_only_a"] == [ALG] and comp["datasets_only_b"] == []

    # The console table, the --diff list, and the files.
    assert "B better" in out and "Datasets in A only (not compared): mmlu-abstract_algebra" in out
    assert f"Questions of {NET} whose score changed (10):" in out
    assert len(comp["diff"][NET]) == 10
    assert {(i["a_answers"][0], i["b_answers"][0]) for i in comp["diff"][NET]} == {("A", "B"), ("B", "A")}
    md = (later / "compare.md").read_text(encoding="utf-8")
    assert "| dataset | metric | n | A | B | B-A | 95% CI | p |" in md and "B better" in md
    with (later / "compare.csv").open(encoding="utf-8") as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["ceval (2/52 subjects)", NET, ARCH]  # the benchmark first
    assert table[1]["verdict"] == "B better"
    assert float(table[1]["p_holm"]) == pytest.approx(2 * 22 / 1024)  # the smaller of two p, times 2
    # The later run's report now shows the comparison.
    page = (later / "report.html").read_text(encoding="utf-8")
    assert '<h2 id="compare">Comparison</h2>' in page and "B better" in page
    assert "<script" not in page


def test_two_models_of_one_run_and_bootstrap_for_pass_at_k(tmp_path: Path) -> None:
    def passk(model_right: Sequence[int]) -> list[Line]:
        lines = []
        for q, right in enumerate(model_right):  # 4 answers per question, `right` of them right
            lines += [scored(f"q{q}#n{k}", k < right, sample=f"q{q}") for k in range(4)]
        return lines

    run = make_run(tmp_path, "run", {"a": {}, "b": {}})
    write_side(run, "a", "humaneval", passk([0, 1, 2, 4, 0, 1]), metric="pass@1")
    write_side(run, "b", "humaneval", passk([4, 4, 3, 4, 2, 1]), metric="pass@1")
    (comp,) = compare_runs(run, run, ["a", "b"])
    row = comp.row("humaneval")
    assert row.test.test == "bootstrap" and row.test.n == 6
    assert row.test.mean_a == pytest.approx((0 + 1 + 2 + 4 + 0 + 1) / 24)
    assert row.test.diff == pytest.approx((4 + 3 + 1 + 0 + 2 + 0) / 24)
    assert (row.test.b_better, row.test.a_better) == (4, 0)
    assert row.test.ci_low <= row.test.diff <= row.test.ci_high
    again = compare_runs(run, run, ["a", "b"])[0].row("humaneval")
    assert (again.test.ci_low, again.test.ci_high, again.test.p_value) == (
        row.test.ci_low, row.test.ci_high, row.test.p_value)


def test_mismatched_prompt_versions_are_flagged_and_strict_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = pairs(5, 1, 1, 3)
    work = tmp_path / "w"
    make_run(work, "20250101_000000", {"m": {NET: a}})
    later = make_run(work, "20250102_000000", {"m": {NET: b}},
                     datasets_info={NET: {"prompt_version": "v2", "scorer": {"name": "choice", "params": {}, "version": 2}}})
    assert main(["compare", "20250101_000000", "20250102_000000", "-w", str(work)]) == 0
    out = capsys.readouterr().out
    head = out.split("\n\n")[0]
    assert "WARNING: A and B do not measure the same thing:" in head
    assert f"! {NET}: prompt version: v1 -> v2" in head and f"! {NET}: scorer version: 1 -> 2" in head
    comp = json.loads((later / "compare.json").read_text(encoding="utf-8"))["comparisons"][0]
    assert {c["where"] for c in comp["changes"] if c["kind"] == "measure"} == {
        f"{NET}: prompt version", f"{NET}: scorer version"}
    assert "do not measure the same thing" in (later / "report.html").read_text(encoding="utf-8")

    (later / "compare.json").unlink()
    code = main(["compare", str(work / "20250101_000000"), str(later), "--strict"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: --strict: A and B do not measure the same thing: ") and "prompt version" in err
    assert not (later / "compare.json").exists()


def test_manifest_diff_kinds() -> None:
    old = manifest({NET: {}, ARCH: {}}, ["m"])
    same_bytes_elsewhere = manifest({NET: {"data_files": {"/other/place/ceval-computer_network.csv": "ab" * 32}},
                                     ARCH: {}}, ["m"])
    assert diff_manifests(old, same_bytes_elsewhere) == []
    new = manifest({NET: {"data_files": {f"/data/{NET}.csv": "cd" * 32}, "n": 12, "items": 12},
                    ARCH: {"fewshot": 0}}, ["m"])
    new["models"]["m"]["identity"] = "api|http://y/v1|m|chat"
    new["proctor"]["version"] = "0.3.0"
    changes = diff_manifests(old, new)
    kinds = [(c.kind, c.where) for c in changes]
    assert kinds[:2] == [("measure", f"{NET}: data file {NET}.csv"), ("measure", f"{ARCH}: few-shot examples")]
    assert ("coverage", f"{NET}: questions") in kinds and ("model", "model m: identity") in kinds
    assert kinds[-1] == ("environment", "proctor version")
    assert [c.where for c in measured_changes(changes)] == [f"{NET}: data file {NET}.csv", f"{ARCH}: few-shot examples"]
    assert changes[0].message == f"{NET}: data file {NET}.csv: {'ab' * 6} -> {'cd' * 6} (different contents)"
    assert diff_manifests({}, new) == []


def test_run_names_resolve_and_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = pairs(3, 0, 0, 1)
    work = tmp_path / "w"
    first = make_run(work, "20250101_000000", {"m": {NET: a}})
    second = make_run(work, "20250103_000000", {"m": {NET: b}})
    assert resolve_run("latest", work) == second and resolve_run("latest~1", work) == first
    assert resolve_run(str(first), work) == first and resolve_run("20250101_000000", work) == first
    assert main(["compare", "latest~2", "latest", "-w", str(work)]) == 2
    assert "latest~2" in capsys.readouterr().err
    assert main(["compare", "latest", "-w", str(work)]) == 2  # one run, one model
    assert "--models A B" in capsys.readouterr().err
    assert main(["compare", "latest~1", "latest", "-w", str(work), "--diff", "nope"]) == 2
    assert "--diff nope: not a dataset" in capsys.readouterr().err
    out = tmp_path / "elsewhere"
    assert main(["compare", "latest~1", "latest", "-w", str(work), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["compare.csv", "compare.json", "compare.md"]


# ---------------------------------------------------------------- a real comparison against the test server

SUBJECTS = [("ceval", "computer_network", "val"), ("ceval", "computer_architecture", "val"),
            ("mmlu", "abstract_algebra", "test")]
LIMIT = 15

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


class Improved:
    """Answers like KnownAnswers (about 2 in 3 right); `better` answers every question right."""

    def __init__(self, answers: KnownAnswers, better: bool) -> None:
        self.answers, self.better = answers, better

    def __call__(self, body: dict[str, Any]) -> str:
        sample = self.answers.sample_for(last_user_message(body))
        letter = sample.target if self.better else self.answers.letter(sample)
        return f"答案：{letter}"


@needs_shared_data
def test_real_runs_where_b_answers_more_right(
    tmp_path: Path, slices: dict[str, list], answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "out"
    for better in (False, True):
        with OpenAIServer(Improved(answers, better), model_ids=["served"]) as server:
            assert main(run_args(server.base_url, work, dataset_names(SUBJECTS), LIMIT, "--no-cache")) == 0
    capsys.readouterr()
    assert main(["compare", "latest~1", "latest", "-w", str(work)]) == 0
    out = capsys.readouterr().out
    later = resolve_run("latest", work)
    comp = json.loads((later / "compare.json").read_text(encoding="utf-8"))["comparisons"][0]
    assert not [c for c in comp["changes"] if c["kind"] == "measure"]  # same data, prompts, scorer
    rows = {r["name"]: r for r in comp["rows"]}
    wrong_total = 0
    for dataset, samples in slices.items():
        wrong = sum(1 for s in samples if not answers.is_right(s))
        wrong_total += wrong
        row = rows[dataset]
        assert (row["n"], row["b_better"], row["a_better"]) == (LIMIT, wrong, 0)
        assert row["a"] == pytest.approx(answers.expected_accuracy(samples)) and row["b"] == 100.0
        assert row["p_value"] == pytest.approx(2 / 2**wrong if wrong else 1.0)
    # Each subject's verdict uses its Holm-adjusted p (two subjects tested).
    by_p = sorted(slices, key=lambda d: rows[d]["p_value"])
    for rank, dataset in enumerate(by_p):
        adjusted = min(1.0, max((len(by_p) - r) * rows[d]["p_value"] for r, d in enumerate(by_p[: rank + 1])))
        assert rows[dataset]["p_holm"] == pytest.approx(adjusted)
        assert rows[dataset]["verdict"] == ("B better" if adjusted < 0.05 else "no significant difference")
    for dataset in slices:
        row = rows[dataset]
        assert (row["only_a"], row["only_b"], row["failed_a"], row["failed_b"]) == (0, 0, 0, 0)
    (group,) = [r for r in comp["rows"] if r["kind"] == "group"]
    assert group["members"] == [NET, ARCH]
    ceval_wrong = rows[NET]["b_better"] + rows[ARCH]["b_better"]
    assert group["b_better"] == ceval_wrong and group["verdict"] == "B better"
    assert group["p_value"] == pytest.approx(2 / 2**ceval_wrong)
    assert wrong_total > 0 and "B better" in out
    page = (later / "report.html").read_text(encoding="utf-8")
    assert "Comparison" in page and "Headline" in page


def test_the_exact_interval_agrees_with_mcnemar_everywhere() -> None:
    """The interval holds 0 exactly when p >= 0.05 (a normal interval said [-72.01, -7.99] beside
    p = 0.125, 'no significant difference')."""
    from proctor.report.stats import mcnemar_interval

    for a_better in range(0, 13):
        for b_better in range(0, 13):
            if a_better + b_better == 0:
                continue
            n = a_better + b_better + 5
            low, high = mcnemar_interval(a_better, b_better, n)
            diff = (b_better - a_better) / n
            assert low <= diff <= high
            assert (low > 0 or high < 0) == (mcnemar_exact(a_better, b_better) < 0.05), (a_better, b_better)
    # The issue's case: 4 of 4 changed questions went A's way (p = 0.125): the interval holds 0.
    low, high = mcnemar_interval(4, 0, 5)
    assert low < 0 < high


def test_holm_by_hand() -> None:
    from proctor.report.stats import holm

    # Sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1, kept monotone: 0.04, 0.09, 0.09, 0.5.
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([]) == []


def test_latest_is_found_in_a_configured_work_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """A config's `work_dir = 'outputs/demo'` puts runs one level down: `proctor compare latest~1
    latest` without -w finds them there (it said `outputs holds 0 run(s)`)."""
    monkeypatch.chdir(tmp_path)
    work = tmp_path / "outputs" / "demo"
    scores = [scored(str(i), i % 2 == 0) for i in range(6)]
    first = make_run(work, "20250101_000000", {"m": {NET: scores}})
    second = make_run(work, "20250102_000000", {"m": {NET: scores}})
    assert main(["compare", "latest~1", "latest"]) == 0
    data = json.loads((second / "compare.json").read_text(encoding="utf-8"))
    assert data["comparisons"][0]["a"]["run_id"] == first.name
    make_run(tmp_path / "outputs" / "other", "20250103_000000", {"m": {NET: scores}})
    assert main(["compare", "latest~1", "latest"]) == 2
    assert "say which with -w" in capsys.readouterr().err
