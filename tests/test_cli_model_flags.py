"""The command line wins over a config file for every model setting, or refuses with one line
(issue 21 §2): `proctor run eval.py --max-seq-len 4096 --max-out-len 16 --temperature 0.5` ran
with the file's 2048 / 2048 / 0.0 before, and config.json said so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from run_helpers import only_run, read_manifest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import build_parser, main


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def _api_config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "eval.py"
    path.write_text(
        "models = [dict(type='OpenAISDK', abbr='m', path='test-model', key='sk-x', openai_api_base="
        f"{base_url!r}, max_seq_len=2048, max_out_len=2048, temperature=0.0, query_per_second=50)]\n"
        "datasets = [dict(name='ceval-computer_network', limit=2, max_out_len=64)]\n",
        encoding="utf-8",
    )
    return path


@needs_shared_data
def test_model_flags_win_over_the_file_and_are_recorded(tmp_path: Path) -> None:
    with OpenAIServer(responder=lambda body: "A") as server:
        config = _api_config(tmp_path, server.base_url)
        rc = main(["run", str(config), "--max-seq-len", "4096", "--max-out-len", "16", "--temperature", "0.5",
                   "--qps", "40", "-w", str(tmp_path / "out"), "--data-dir", str(SHARED_DATASETS)])
        sent = [r.json for r in server.requests if r.path.endswith("/chat/completions")]
    assert rc == 0
    assert sent and {b["max_tokens"] for b in sent} == {16}  # the dataset's 64 lost to the flag too
    assert {b["temperature"] for b in sent} == {0.5}
    run = only_run(tmp_path / "out")
    model = json.loads((run / "config.json").read_text(encoding="utf-8"))["models"][0]
    assert (model["max_seq_len"], model["max_out_len"], model["temperature"], model["qps"]) == (4096, 16, 0.5, 40.0)
    manifest = read_manifest(run)["models"]["m"]
    settings = manifest["settings"]  # the manifest says what ran, too
    assert (settings["max_seq_len"], settings["max_out_len"], settings["temperature"], settings["qps"]) == (
        4096, 16, 0.5, 40.0)


def test_a_flag_no_model_of_the_run_has_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _api_config(tmp_path, "http://127.0.0.1:9/v1")
    assert main(["run", str(config), "--batch-size", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --batch-size applies to a --hf-path model, and no model of this run is one", err
    assert not (tmp_path / "outputs").exists()


def test_hf_flags_set_a_file_hf_model(tmp_path: Path) -> None:
    from proctor.api import build_run_config

    (tmp_path / "eval.py").write_text(
        "models = [dict(type='HuggingFacewithChatTemplate', path='/m', max_out_len=2048, batch_size=8, "
        "run_cfg=dict(num_gpus=1)), dict(type='api', api_base='http://127.0.0.1:9/v1', model='x')]\n"
        "datasets = ['ceval-law']\n",
        encoding="utf-8",
    )
    config = build_run_config(config_file=str(tmp_path / "eval.py"),
                              model_overrides={"batch_size": 2, "max_seq_len": 1024, "qps": 3.0})
    hf, api = config.models
    assert (hf.batch_size, hf.max_seq_len, hf.max_out_len, hf.num_gpus) == (2, 1024, 2048, 1)
    assert (api.qps, api.max_seq_len) == (3.0, 1024)
    # A default the file left alone stays unset, so the spec's own answer length still applies.
    assert "max_out_len" not in api.model_fields_set


def test_a_bad_flag_value_names_the_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _api_config(tmp_path, "http://127.0.0.1:9/v1")
    assert main(["run", str(config), "--max-out-len", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --max-out-len: ") and len(err.splitlines()) == 1, err


def test_help_states_the_rule() -> None:
    run = build_parser()._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    text = " ".join(run.format_help().split())
    assert "sets it on every model of the run that has that setting, and is refused when none has" in text


@needs_shared_data
def test_a_repeated_run_says_once_why_the_cache_is_not_reused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The test server names no checkpoint: its answers are kept to one run, and the second run
    says so at WARNING with the fix (it was an INFO line, unseen without --debug)."""
    argv = ["run", "--api-base", "", "--datasets", "ceval-computer_network", "ceval-law", "--limit", "2",
            "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out")]
    with OpenAIServer(responder=lambda body: "A") as server:
        argv[2] = server.base_url
        assert main(argv) == 0
        assert "--revision" not in capsys.readouterr().err  # a first run loses nothing
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert err.count("the answers of earlier runs are not reused") == 1, err
        assert "--revision NAME" in err
        assert main([*argv, "--revision", "step-100"]) == 0
        assert main([*argv, "--revision", "step-100"]) == 0
        sent = len([r for r in server.requests if r.path.endswith("/chat/completions")])
    assert sent == 4 * 3  # the third run sent its 4 requests, the fourth none


def test_max_out_len_flag_wins_over_a_datasets_file_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`--datasets my_datasets.py --max-out-len 1024`: the file's entry (OpenCompass's
    inferencer max_out_len) no longer caps the answers below the flag (it did: the reset ran
    before dataset files were read)."""
    from proctor.api import build_run_config

    data = tmp_path / "quiz.jsonl"
    data.write_text(json.dumps({"question": "1+1?", "A": "2", "B": "3", "answer": "A"}) + "\n", encoding="utf-8")
    (tmp_path / "my_datasets.py").write_text(f"datasets = [dict(name={str(data)!r}, max_out_len=100)]\n",
                                             encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = build_run_config(datasets=["my_datasets.py"], model_overrides={"max_out_len": 1024},
                              api={"type": "api", "api_base": "http://127.0.0.1:1/v1", "model": "m", "max_out_len": 1024})
    assert [d.max_out_len for d in config.datasets] == [None]
    assert config.models[0].max_out_len == 1024
