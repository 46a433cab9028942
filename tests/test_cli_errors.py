"""Every bad input gets one clear line on stderr, exit code 2 and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import OpenAIServer, free_port
from run_helpers import run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main


def _error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The default work dir (outputs/) is relative: keep it in tmp_path. conftest isolates the cache.
    monkeypatch.chdir(tmp_path)


def test_unknown_dataset_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "cmmlu_gne"])
    assert "unknown dataset 'cmmlu_gne'" in err and "cmmlu_gen" in err


def test_unknown_subject_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "mmlu-abstract_algebr"])
    assert "abstract_algebra" in err


def test_unknown_model_preset_suggests(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "--models", "deepseek-chta", "--datasets", "mmlu-anatomy"])
    assert "unknown model 'deepseek-chta'" in err and "deepseek-chat" in err


def test_bad_range(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "mmlu-anatomy", "--range", "0-10"])
    assert "bad range '0-10'" in err and "[0:10]" in err


@needs_shared_data
def test_bad_range_in_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "eval.yaml").write_text(
        "models: [{api_base: 'http://127.0.0.1:1/v1'}]\ndatasets: [{name: mmlu-anatomy, range: '[x:]'}]\n",
        encoding="utf-8",
    )
    err = _error(capsys, ["run", str(tmp_path / "eval.yaml"), "--data-dir", str(SHARED_DATASETS)])
    assert "mmlu-anatomy" in err and "bad range" in err


def test_config_file_error_names_file_and_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "eval.yaml").write_text(
        "models: [{api_base: 'http://x/v1', qps: -1}]\ndatasets: [mmlu-anatomy]\n", encoding="utf-8"
    )
    err = _error(capsys, ["run", str(tmp_path / "eval.yaml")])
    assert "eval.yaml: models[0].qps" in err


def test_missing_data_says_where_and_how(capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROCTOR_DATA", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    err = _error(capsys, ["run", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "ceval-law", "--data-dir", str(empty)])
    assert str(empty) in err and "proctor data fetch ceval" in err


@needs_shared_data
def test_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    err = _error(capsys, run_args(url, None, ["mmlu-anatomy"], 1))
    assert url in err and "cannot reach" in err


@needs_shared_data
@pytest.mark.parametrize("status_key", ["missing", "wrong"])
def test_missing_or_wrong_api_key(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, status_key: str) -> None:
    secret = "sk-right-key-0000"
    wrong = "sk-wrong-key-1111"
    if status_key == "missing":
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", wrong)
    with OpenAIServer(api_key=secret) as server:
        err = _error(capsys, run_args(server.base_url, None, ["mmlu-anatomy"], 1))
    assert "401" in err and "OPENAI_API_KEY" in err
    assert secret not in err and wrong not in err


@needs_shared_data
def test_forbidden(capsys: pytest.CaptureFixture[str]) -> None:
    from openai_server import Reject

    def forbid(body: dict) -> str:
        raise Reject(403, "this key may not use this model")

    with OpenAIServer(forbid) as server:
        err = _error(capsys, run_args(server.base_url, None, ["mmlu-anatomy"], 1))
    assert "403" in err


def test_no_model_or_no_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    assert "no model given" in _error(capsys, ["run", "--datasets", "mmlu-anatomy"])
    assert "no dataset given" in _error(capsys, ["run", "--api-base", "http://127.0.0.1:1/v1"])


def test_unknown_run_id(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    err = _error(capsys, ["run", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "mmlu-anatomy", "-w", str(tmp_path), "-r", "20990101_000000"])
    assert "20990101_000000" in err


def test_no_traceback_from_the_real_command(tmp_path: Path) -> None:
    env = {**os.environ, "PROCTOR_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "proctor", "run", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "ceval_gne"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: unknown dataset") and "Traceback" not in proc.stderr
    debug = subprocess.run(
        [sys.executable, "-m", "proctor", "run", "--debug", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "ceval_gne"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    # A plain mistake in the input gets no traceback under --debug either (issue 21 §3).
    assert debug.returncode == 2 and "Traceback" not in debug.stderr and "unknown dataset" in debug.stderr


@needs_shared_data
def test_a_run_that_cannot_start_leaves_no_folder_for_r_latest(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    work = tmp_path / "out"
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert "cannot reach" in _error(capsys, run_args(url, work, ["mmlu-anatomy"], 1))
    assert "no C-Eval data" in _error(capsys, ["run", "--api-base", url, "--datasets", "ceval-law", "--data-dir", str(tmp_path), "-w", str(work)])
    # An empty folder would become "latest" and hide the last real run from -r and --mode eval|report.
    assert not work.exists() or not any(work.iterdir())
    err = _error(capsys, run_args(url, work, ["mmlu-anatomy"], 1, "--mode", "eval"))
    assert err == f"error: --mode eval: no run to read in {work}; run the inference first (without --mode)"


def test_an_empty_range_is_a_mistake(capsys: pytest.CaptureFixture[str]) -> None:
    err = _error(capsys, ["run", "--api-base", "http://127.0.0.1:1/v1", "--datasets", "mmlu-anatomy", "--range", "[5:2]"])
    assert "'[5:2]' selects nothing" in err


def test_list_takes_a_bare_pattern(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "abstract_alg"]) == 0
    out = capsys.readouterr().out
    assert "mmlu-abstract_algebra" in out and "no model preset matches 'abstract_alg'" in out
    # A pattern nothing matches is a mistake (a script's typo): one line, exit 2.
    assert main(["list", "datasets", "zzz-nothing"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip().splitlines() == [
        "error: no dataset matches 'zzz-nothing'; `proctor list` shows them all"]
    assert main(["list", "nosuch"]) == 2
    assert "no dataset or model preset matches 'nosuch'" in capsys.readouterr().err
    assert "is not a list" in _error(capsys, ["list", "dataset", "ceval"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--api-base", "http://127.0.0.1:1/v1", "--batch-size", "4"], "--batch-size applies to a --hf-path model"),
        (["--hf-path", "/nope", "--qps", "3"], "--qps applies to a --api-base model"),
        (["--models", "gpt-4o-mini", "--no-chat"], "--chat/--no-chat applies to a --hf-path model"),
    ],
)
def test_flags_of_another_kind_of_model_are_not_silently_ignored(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert message in _error(capsys, ["run", *argv, "--datasets", "mmlu-anatomy"])


def test_list_shows_specs_whole_when_piped(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "datasets"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split("\t")[0]: line.split("\t") for line in lines if "\t" in line}
    # Never cut to a terminal's width: the longest subject name is there whole, with kind and scorer.
    assert rows["ceval-environmental_impact_assessment_engineer"][1:3] == ["multiple choice", "choice"]
    assert rows["ceval_gen"][1:3] == ["multiple choice, gen", "choice"]
    assert rows["mmlu_ppl"][1] == "multiple choice, ppl" and "cmmlu_gen_circular" in rows
    assert "环境影响评价工程师" in rows["ceval-environmental_impact_assessment_engineer"][3]
    assert len([n for n in rows if n.startswith("cmmlu-")]) == 67


def test_humaneval_gen_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "datasets", "humaneval"]) == 0
    names = [line.split("\t")[0] for line in capsys.readouterr().out.splitlines()]
    assert "humaneval" in names and "humaneval_gen" in names
