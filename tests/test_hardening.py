"""Defects found by trying Proctor as a new user and attacking it on purpose (the hardening issue):
each test failed before its fix."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import (
    KnownAnswers, only_run, predictions_path, read_records, read_result, read_scores, read_summary, run_args,
)
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.engine.rundir import LOCK_FILE
from proctor.engine.store import PredictionStore
from proctor.tasks import load_samples

pytestmark = needs_shared_data

DATASETS = ["ceval-law", "ceval-logic"]


@pytest.fixture(scope="module")
def answers() -> KnownAnswers:
    return KnownAnswers.of(s for d in DATASETS for s in load_samples("ceval", d.split("-")[1], "val", str(SHARED_DATASETS))[:4])


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_a_partial_benchmark_is_labelled_with_its_coverage(tmp_path: Path, answers: KnownAnswers) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, DATASETS, 4)) == 0
    summary = read_summary(only_run(tmp_path))
    assert "ceval (2/52 subjects)" in summary
    assert "ceval-humanities (2/11 subjects)" not in summary  # same members as the benchmark row: not repeated
    assert not re.search(r"^ceval\s{2,}", summary, re.M)  # never the bare name of the whole benchmark


def test_names_that_clean_to_one_file_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text(
        "models:\n  - {api_base: 'http://127.0.0.1:9/v1', abbr: 'team/m1'}\n"
        "  - {api_base: 'http://127.0.0.1:9/v1', abbr: 'team_m1'}\ndatasets: [ceval-law]\n", encoding="utf-8")
    err = _error(capsys, ["run", str(config), "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "o")])
    assert "'team/m1' and 'team_m1' would write the same files" in err


def test_a_damaged_middle_line_costs_that_line_only(tmp_path: Path, answers: KnownAnswers,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, DATASETS[:1], 4, "--no-cache")) == 0
        run = only_run(tmp_path)
        path = predictions_path(run, "m", DATASETS[0])
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        damaged = json.loads(lines[1])["item_id"]
        lines[1] = lines[1][:20] + "\n"  # an editor or a disk error broke line 2
        path.write_text("".join(lines), encoding="utf-8")
        capsys.readouterr()
        records = PredictionStore(path).load()
        assert len(records) == 3 and damaged not in records
        assert "skipped 1 damaged line(s) (line 2)" in capsys.readouterr().err
        before = len(server.post_requests())
        assert main(run_args(server.base_url, tmp_path, DATASETS[:1], 4, "--no-cache", "-r", "latest")) == 0
        assert len(server.post_requests()) - before == 1  # only the damaged item is asked again
    assert read_result(run, "m", DATASETS[0])["n"] == 4


def test_a_second_process_on_a_run_is_refused_naming_the_holder(
    tmp_path: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        argv = run_args(server.base_url, tmp_path, DATASETS[:1], 2)
        assert main(argv) == 0
        run = only_run(tmp_path)
        # Another process holds the run (as a `proctor run -r` still going would).
        holder = subprocess.Popen(
            [sys.executable, "-c",
             "import fcntl, os, sys, time\n"
             f"fd = os.open({str(run / LOCK_FILE)!r}, os.O_RDWR)\n"
             "fcntl.flock(fd, fcntl.LOCK_EX)\nos.ftruncate(fd, 0); os.write(fd, str(os.getpid()).encode())\n"
             "print('held', flush=True); time.sleep(30)"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            sent = len(server.post_requests())
            capsys.readouterr()
            err = _error(capsys, [*argv, "-r", "latest", "--no-cache"])
            assert f"is in use by process {holder.pid}" in err
            assert len(server.post_requests()) == sent
        finally:
            holder.kill()
            holder.wait()
        assert main([*argv, "-r", "latest"]) == 0  # free again once the holder is gone


def test_command_line_datasets_and_models_replace_the_files(tmp_path: Path, answers: KnownAnswers) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        config = tmp_path / "eval.yaml"
        config.write_text(
            f"models: [{{api_base: 'http://127.0.0.1:9/v1', abbr: never-used}}]\n"
            f"datasets: [ceval-logic, mmlu-anatomy]\ndata_dir: '{SHARED_DATASETS}'\nwork_dir: '{tmp_path / 'o'}'\n",
            encoding="utf-8")
        assert main(["run", str(config), "--datasets", "ceval-law", "--api-base", server.base_url, "--limit", "2"]) == 0
    run = only_run(tmp_path / "o")
    assert sorted(p.name for p in (run / "predictions").iterdir()) == ["m"]
    assert sorted(p.name for p in (run / "predictions" / "m").iterdir()) == ["ceval-law.jsonl"]


def test_a_python_config_imports_its_sibling(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "models_cfg.py").write_text("models = [{'api_base': 'http://127.0.0.1:9/v1', 'abbr': 'x'}]\n")
    (tmp_path / "eval.py").write_text("from models_cfg import models\ndatasets = ['ceval-law']\n")
    main(["run", str(tmp_path / "eval.py"), "--dry-run", "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "o")])
    out = capsys.readouterr().out
    assert "x/ceval-law" in out
    (tmp_path / "bad.py").write_text("import sys\nsys.exit(3)\n")
    assert "bad.py: the config called sys.exit(3)" in _error(capsys, ["run", str(tmp_path / "bad.py")])


def test_empty_selection_is_an_error_and_results_hold_no_nan(
    tmp_path: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _error(capsys, run_args("http://127.0.0.1:9/v1", tmp_path, ["ceval-law"], 5, "--range", "[100:200]"))
    assert "dataset ceval-law: range [100:200] selects none of its 24 samples" in err
    with OpenAIServer(answers, model_ids=["m"], failures=None) as server:
        # Every request fails: the value is missing, written as null (NaN is not JSON).
        server_url = server.base_url
        assert main(run_args(server_url, tmp_path, ["ceval-law"], 1, "--retry", "0", "--api-model", "nope")) in (1, 2)
    for path in tmp_path.glob("*/results/*/*.json"):
        text = path.read_text(encoding="utf-8")
        assert "NaN" not in text
        json.loads(text)


def test_fewshot_beyond_what_exists_says_how_many_it_uses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(run_args("http://127.0.0.1:9/v1", tmp_path, ["ceval-law"], 1, "--fewshot", "100", "--dry-run"))
    assert "ceval-law: 100 few-shot examples asked for, the dev split has 5; using 5" in capsys.readouterr().err


def test_r_cannot_reach_outside_the_work_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "elsewhere" / "RUN").mkdir(parents=True)
    err = _error(capsys, run_args("http://127.0.0.1:9/v1", tmp_path / "w", ["ceval-law"], 1, "-r", "../elsewhere/RUN"))
    assert "not a path" in err


def test_a_config_names_its_data_files_relative_to_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "quiz.jsonl").write_text('{"question": "1+1?", "A": "2", "B": "3", "answer": "A"}\n', encoding="utf-8")
    (project / "eval.yaml").write_text(
        "models: [{api_base: 'http://127.0.0.1:9/v1', abbr: m}]\ndatasets: [./quiz.jsonl, {name: ./quiz.jsonl, mode: ppl}]\n",
        encoding="utf-8")
    monkeypatch.chdir(tmp_path)  # not the config's folder
    assert main(["run", "project/eval.yaml", "--dry-run", "-w", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "m/quiz  (1 samples)" in out and "m/quiz_ppl  (1 samples)" in out


def test_filtered_and_refused_answers_are_counted_not_read(tmp_path: Path, answers: KnownAnswers) -> None:
    from openai_server import Withheld

    def sometimes_withheld(body: dict) -> object:
        sample = answers.sample_for(last_user_message(body))
        index = int(sample.id)
        if index == 0:
            return Withheld(finish_reason="content_filter")
        if index == 1:
            return Withheld(finish_reason="stop", refusal="I can't help with that.")
        return answers(body)

    with OpenAIServer(sometimes_withheld, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, DATASETS[:1], 4)) == 0
    run = only_run(tmp_path)
    scores = read_scores(run, "m", DATASETS[0])
    assert (scores["0"]["rule"], scores["0"]["answer"], scores["0"]["correct"]) == ("content_filter", None, False)
    assert scores["1"]["rule"] == "refused"
    result = read_result(run, "m", DATASETS[0])
    assert result["n"] == 4 and result["extra_metrics"]["withheld"] == pytest.approx(50.0)
    assert "withheld" in read_summary(run)


def test_resuming_after_the_prompt_changed_says_so(tmp_path: Path, answers: KnownAnswers,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, DATASETS[:1], 2, "--fewshot", "1")) == 0
        capsys.readouterr()
        assert main(run_args(server.base_url, tmp_path, DATASETS[:1], 2, "--fewshot", "2", "-r", "latest")) == 0
    err = capsys.readouterr().err
    assert "-r: ceval-law: few-shot examples: 1 -> 2" in err
