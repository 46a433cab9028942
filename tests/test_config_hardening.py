"""Config and command-line hardening (items 10, 11 and 16 of the hardening issue): every
problem of a config file at once, OpenCompass's names, `-r` without repeating the models and
datasets, and one clear line (exit 2, no traceback, no run folder) for each bad input.
Each test failed before its fix."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from run_helpers import only_run, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.config.files import load_config_file
from proctor.config.schema import ApiModelConfig, HFModelConfig
from proctor.errors import ConfigError


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default work dir (outputs/) stays in tmp_path


def _error(capsys: pytest.CaptureFixture[str], argv: list[str], lines: int = 1) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "Traceback" not in err, err
    assert len(err.splitlines()) == lines, err
    return err


def _no_run_folder(work: Path) -> None:
    assert not work.exists() or not [p for p in work.iterdir() if p.is_dir()], list(work.iterdir())


# ---------------------------------------------------------------- 10: every problem, OpenCompass names


def test_a_config_file_reports_every_problem_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "eval.yaml").write_text(
        "models:\n"
        "  - {api_base: 'http://127.0.0.1:9/v1', retry: true, qps: 0, tmeout: 3}\n"
        "  - {type: hf, path: /m, bach_size: 4}\n"
        "datasets: [{name: ceval-law, limt: 2}]\n"
        "wrk_dir: out\nmax_num_workers: 0\n",
        encoding="utf-8",
    )
    err = _error(capsys, ["run", "eval.yaml"], lines=7)
    lines = err.removeprefix("error: ").splitlines()
    assert lines == [
        "eval.yaml: unknown key 'wrk_dir'; did you mean 'work_dir'?",
        "eval.yaml: models[0].qps: Input should be greater than 0",
        "eval.yaml: models[0].retry: expected a number, got True",
        "eval.yaml: models[0].tmeout: unknown key; did you mean 'timeout'?",
        "eval.yaml: models[1].bach_size: unknown key; did you mean 'batch_size'?",
        "eval.yaml: datasets[0].limt: unknown key; did you mean 'limit'?",
        "eval.yaml: max_num_workers: Input should be greater than or equal to 1",
    ]
    _no_run_folder(tmp_path / "outputs")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("{api_base: 'http://x/v1', retry: true}", "models[0].retry: expected a number, got True"),
        ("{api_base: 'http://x/v1', max_concurrency: false}", "models[0].max_concurrency: expected a number, got False"),
        ("{type: hf, path: /m, batch_size: true}", "models[0].batch_size: expected a number, got True"),
        ("{api_base: 'http://x/v1', timeout: .inf}", "models[0].timeout: expected a finite number, got inf"),
    ],
)
def test_booleans_and_infinities_are_not_numbers(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "eval.yaml"
    path.write_text(f"models: [{entry}]\ndatasets: [ceval-law]\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert str(caught.value) == f"eval.yaml: {message}"


def test_opencompass_model_dicts_are_understood(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "oc_eval.py"
    path.write_text(
        "api_meta_template = dict(round=[dict(role='HUMAN', api_role='HUMAN'), dict(role='BOT', api_role='BOT', generate=True)])\n"
        "models = [\n"
        "    dict(abbr='gpt', type='OpenAISDK', path='gpt-4o-mini', key='sk-file-key', openai_api_base='http://127.0.0.1:9/v1',\n"
        "         meta_template=api_meta_template, query_per_second=2, max_out_len=100, max_seq_len=4096,\n"
        "         batch_size=8, retry=2, run_cfg=dict(num_gpus=0)),\n"
        "    dict(abbr='qwen', type='HuggingFacewithChatTemplate', path='Qwen/Qwen2.5-0.5B-Instruct', max_out_len=50,\n"
        "         batch_size=4, run_cfg=dict(num_gpus=2, num_procs=1), generation_kwargs=dict(do_sample=False),\n"
        "         model_kwargs=dict(trust_remote_code=True, device_map='auto', torch_dtype='torch.bfloat16'),\n"
        "         tokenizer_kwargs=dict(padding_side='left'), batch_padding=True, pad_token_id=0, end_str='<eos>'),\n"
        "    dict(abbr='base', type='opencompass.models.HuggingFaceBaseModel', path='/ckpt', max_seq_len=1024),\n"
        "    dict(abbr='tm', type='TurboMindModel', path='/tm', run_cfg=dict(num_gpus=1)),\n"
        "]\n"
        "datasets = [dict(name='ceval-law', test_range='[0:5]')]\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="proctor.config"):
        loaded = load_config_file(path)
    api, chat, base, turbomind = loaded.models
    assert isinstance(api, ApiModelConfig)
    assert (api.abbr, api.model, api.api_base, api.qps, api.max_out_len, api.max_seq_len, api.max_concurrency, api.retry) == (
        "gpt", "gpt-4o-mini", "http://127.0.0.1:9/v1", 2.0, 100, 4096, 8, 2)
    assert api.api_key is not None and api.api_key.get_secret_value() == "sk-file-key"
    assert isinstance(chat, HFModelConfig)
    assert (chat.chat, chat.num_gpus, chat.batch_size, chat.trust_remote_code, chat.dtype, chat.generation_kwargs) == (
        True, 2, 4, True, "bfloat16", {"do_sample": False})
    assert isinstance(base, HFModelConfig) and (base.chat, base.max_seq_len) == (False, 1024)
    assert isinstance(turbomind, HFModelConfig) and (turbomind.path, turbomind.num_gpus) == ("/tm", 1)
    assert loaded.datasets[0].range == "[0:5]"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one line for the whole file
    (warning,) = warnings
    assert warning.startswith("oc_eval.py: ignoring OpenCompass settings Proctor has no use for: ")
    for key in ("models[1].batch_padding", "models[1].pad_token_id", "models[1].end_str", "models[1].tokenizer_kwargs"):
        assert key in warning
    assert "meta_template" not in warning  # the plain API template is what a chat API does: honoured
    assert "Proctor pads batches itself" in warning and "\n" not in warning


def test_a_meta_template_that_cannot_be_honoured_is_ignored_with_why(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "eval.py"
    path.write_text(
        "models = [dict(type='HuggingFaceCausalLM', path='/m', meta_template=dict(round=[dict(role='HUMAN', begin='<|User|>:')]))]\n"
        "datasets = ['ceval-law']\n",
        encoding="utf-8",
    )
    with caplog.at_level(logging.WARNING, logger="proctor.config"):
        load_config_file(path)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "models[0].meta_template (chat prompts use the tokenizer's chat template, base prompts are plain text)" in warning


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("dict(type='ZhiPuAI', path='glm-4')", "eval.py: models[0].type: 'ZhiPuAI' is not a model type Proctor runs"),
        ("dict(type='OpenAISDk', path='m', url='http://x/v1')", "did you mean 'OpenAISDK'?"),
        ("dict(type='OpenAISDK', path='m', openai_api_base='http://x/v1', qpsx=3)", "eval.py: models[0].qpsx: unknown key; did you mean 'qps'?"),
        ("dict(type='hf', path='/m', not_a_key_anywhere=1)", "eval.py: models[0].not_a_key_anywhere: unknown key"),
    ],
)
def test_other_types_and_keys_are_still_errors(tmp_path: Path, model: str, message: str) -> None:
    path = tmp_path / "eval.py"
    path.write_text(f"models = [{model}]\ndatasets = ['ceval-law']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_config_file(path)


@needs_shared_data
def test_an_opencompass_api_config_runs_against_a_real_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIServer(lambda body: "A", model_ids=["served-model"], api_key="sk-oc-key") as server:
        (tmp_path / "oc.py").write_text(
            "models = [dict(abbr='oc', type='OpenAISDK', path='served-model', key='sk-oc-key',\n"
            f"              openai_api_base='{server.base_url}', query_per_second=50, batch_size=2, max_out_len=16)]\n"
            "datasets = [dict(name='ceval-law', test_range='[0:3]')]\n"
            f"data_dir = {str(SHARED_DATASETS)!r}\nwork_dir = 'out'\n",
            encoding="utf-8",
        )
        assert main(["run", "oc.py"]) == 0
        posts = server.post_requests()
    assert len(posts) == 3  # test_range [0:3]
    assert {p.json["model"] for p in posts} == {"served-model"}
    assert {p.json.get("max_tokens") for p in posts} == {16}
    assert {p.headers.get("authorization") for p in posts} == {"Bearer sk-oc-key"}
    run = only_run(tmp_path / "out")
    assert "sk-oc-key" not in (run / "config.json").read_text(encoding="utf-8")


def test_a_misspelt_run_key_in_a_python_config_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "eval.py"
    path.write_text(
        "import os\n"
        "def helper(x):\n    return x\n"
        "data = 3\n"  # a helper, not a near-miss of data_dir
        "model = dict(api_base='http://x/v1')\n"  # `models` is set: `model` is a helper
        "models = [model]\ndatasets = ['ceval-law']\n"
        "wrk_dir = 'out'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    assert str(caught.value) == "eval.py: unknown key 'wrk_dir'; did you mean 'work_dir'?"
    path.write_text(path.read_text(encoding="utf-8").replace("wrk_dir", "work_dir"), encoding="utf-8")
    assert load_config_file(path).run_options == {"work_dir": "out"}


def test_config_file_sys_exit_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.py").write_text("import sys\nsys.exit(3)\n", encoding="utf-8")
    assert _error(capsys, ["run", "bad.py"]) == "error: bad.py: the config called sys.exit(3)"


# ---------------------------------------------------------------- 11: -r without models and datasets


@needs_shared_data
def test_r_latest_alone_takes_the_runs_models_and_datasets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with OpenAIServer(lambda body: "A", model_ids=["m"], api_key="sk-file-key", failures=None) as server:
        (tmp_path / "eval.yaml").write_text(
            f"models: [{{api_base: '{server.base_url}', api_key: sk-file-key, abbr: m}}]\n"
            f"datasets: [ceval-law, ceval-logic]\ndata_dir: '{SHARED_DATASETS}'\nwork_dir: w\n",
            encoding="utf-8",
        )
        assert main(["run", "eval.yaml", "--limit", "2"]) == 0
        run = only_run(tmp_path / "w")
        stored = (run / "config.json").read_text(encoding="utf-8")
        assert "sk-file-key" not in stored
        # Lose two answers: `-r latest` alone must send exactly those again, to the run's server.
        path = run / "predictions" / "m" / "ceval-law.jsonl"
        path.write_text(path.read_text(encoding="utf-8").splitlines(keepends=True)[0], encoding="utf-8")
        server.reset()
        capsys.readouterr()
        # The key is never read back from config.json: without it in the environment, the server says 401.
        assert main(["run", "-r", "latest", "-w", "w"]) == 2
        err = capsys.readouterr().err
        assert "-r latest: the run's API keys are not kept in config.json and are not in the environment now: " \
               "models[0] needs $OPENAI_API_KEY" in err
        assert "401" in err and "sk-file-key" not in err
        monkeypatch.setenv("OPENAI_API_KEY", "sk-file-key")
        server.reset()
        assert main(["run", "-r", "latest", "-w", "w", "--no-cache"]) == 0
        assert len(server.post_requests()) == 1
        assert "WARNING" not in capsys.readouterr().err
        server.reset()
        assert main(["run", "--mode", "report", "-r", run.name, "-w", "w"]) == 0
        assert main(["run", "--mode", "eval", "-w", "w"]) == 0
        assert server.post_requests() == []
    assert [p for p in (tmp_path / "w").iterdir()] == [run]


@needs_shared_data
def test_resuming_with_other_datasets_is_refused_and_leaves_config_json_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "w"
    with OpenAIServer(lambda body: "A", model_ids=["m"]) as server:
        assert main(run_args(server.base_url, work, ["ceval-law", "ceval-logic"], 2)) == 0
        run = only_run(work)
        before = (run / "config.json").read_bytes()
        server.reset()
        err = _error(capsys, run_args(server.base_url, work, ["ceval-law"], 2, "-r", "latest"))
        assert err == (
            f"error: -r latest: run {run.name} was made with other datasets (ceval-logic left out); give the run's "
            f"datasets (`proctor run -r {run.name}` alone takes them from its config.json) or leave out -r to start a new run"
        )
        err = _error(capsys, run_args(server.base_url, work, ["ceval-law", "ceval-logic"], 3, "-r", run.name))
        assert "ceval-law limit 3 (run: 2)" in err
        err = _error(capsys, run_args(server.base_url, work, ["ceval-law", "ceval-logic", "ceval-art_studies"], 2,
                                      "--mode", "eval"))
        assert "--mode eval: run" in err and "ceval-art_studies not in the run" in err
        assert server.post_requests() == []
        assert (run / "config.json").read_bytes() == before
        # The same datasets resume as before.
        assert main(run_args(server.base_url, work, ["ceval-logic", "ceval-law"], 2, "-r", "latest")) == 0


# ---------------------------------------------------------------- 16: one line, exit 2, no run folder


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--api-base", "http://127.0.0.1:99999/v1"], "error: --api-base: not a valid URL: a port that is not a number from 1 to 65535"),
        (["--api-base", "http://[::1/v1"], "error: --api-base: not a valid URL: an unclosed '[' in the host"),
        (["--api-base", "http://127.0.0.1:9/v1", "--timeout", "inf"], "error: --timeout: expected a finite number, got inf"),
        (["--api-base", "http://127.0.0.1:9/v1", "--timeout", "nan"], "error: --timeout: expected a finite number, got nan"),
        (["--api-base", "http://127.0.0.1:9/v1", "--timeout", "-1"], "error: --timeout: Input should be greater than 0"),
        # A 300-character model id is fine: its files get a short unique name (core.path_part).
        (["--api-base", "http://127.0.0.1:9/v1", "--api-model", "m" * 300], "error: cannot reach http://127.0.0.1:9/v1"),
    ],
)
def test_bad_command_line_values_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    work = tmp_path / "w"
    argv = ["run", *extra, "--datasets", "ceval-law", "--limit", "1", "--data-dir", str(SHARED_DATASETS), "-w", str(work)]
    assert _error(capsys, argv).startswith(message)
    _no_run_folder(work)


def test_a_work_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    base = ["run", "--api-base", "http://127.0.0.1:9/v1", "--datasets", "ceval-law", "--limit", "1",
            "--data-dir", str(SHARED_DATASETS)]
    if not (SHARED_DATASETS / "ceval").is_dir():
        pytest.skip("needs the shared data")
    assert _error(capsys, [*base, "-w", "afile"]) == "error: -w afile: is a file, not a folder; choose a folder with -w / work_dir"
    err = _error(capsys, [*base, "-w", "afile/runs"])
    assert err == "error: -w afile/runs: lies under afile, which is a file, not a folder; choose a folder with -w / work_dir"
    assert (tmp_path / "afile").read_text(encoding="utf-8") == "x"
    if sys.platform == "linux" and Path("/sys/kernel").is_dir():  # a place no one may create folders in
        err = _error(capsys, [*base, "-w", "/sys/proctor-runs"])
        assert err.startswith("error: -w /sys/proctor-runs: cannot create a run folder there (")
        assert not Path("/sys/proctor-runs").exists()


def test_data_dir_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.txt").write_text("x", encoding="utf-8")
    err = _error(capsys, ["run", "--api-base", "http://127.0.0.1:9/v1", "--datasets", "ceval-law", "--data-dir", "data.txt"])
    assert err == "error: --data-dir data.txt: is a file, not a folder; give the folder that holds the benchmark data"
    _no_run_folder(tmp_path / "outputs")


@pytest.mark.parametrize("suffix", [".yaml", ".py"])
def test_a_config_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str], suffix: str) -> None:
    body = ("models = [{'api_base': 'http://x/v1', 'abbr': 'é'}]\ndatasets = ['ceval-law']\n" if suffix == ".py"
            else "models: [{api_base: 'http://x/v1', abbr: é}]\ndatasets: [ceval-law]\n")
    (tmp_path / f"eval{suffix}").write_bytes(body.encode("gbk"))
    err = _error(capsys, ["run", f"eval{suffix}"])
    assert err == f"error: eval{suffix}: line 1: not UTF-8 text (byte 0xa8); save the file as UTF-8"


def test_a_config_path_that_is_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "configs").mkdir()
    assert _error(capsys, ["run", "configs"]) == "error: config file configs is a folder; give a .py or .yaml file"


@needs_shared_data
def test_device_cuda_without_cuda(tmp_path: Path, capsys: pytest.CaptureFixture[str], tiny_model_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    work = tmp_path / "w"
    err = _error(capsys, ["run", "--hf-path", str(tiny_model_dir), "--device", "cuda", "--datasets", "ceval-law",
                          "--limit", "1", "--data-dir", str(SHARED_DATASETS), "-w", str(work)])
    assert err == ("error: --device cuda (model tiny-chat): CUDA is not available on this machine (torch sees no GPU); "
                   "use --device cpu or leave the device unset")
    _no_run_folder(work)


def test_debug_keeps_a_plain_mistake_to_one_line_and_its_exit_code(tmp_path: Path) -> None:
    """A config mistake is not a bug: --debug prints no traceback for it either (issue 21 §3)."""
    argv = [sys.executable, "-m", "proctor", "run", "--debug", "--api-base", "http://127.0.0.1:99999/v1",
            "--datasets", "ceval-law", "-w", str(tmp_path / "w")]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, "PROCTOR_CACHE_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.strip().endswith(
        "error: --api-base: not a valid URL: a port that is not a number from 1 to 65535")
    _no_run_folder(tmp_path / "w")


# ---------------------------------------------------------------- small things


@needs_shared_data
def test_dry_run_says_cpu_on_a_machine_without_gpus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible, whatever the machine has
    assert main(["run", "--hf-path", str(tmp_path / "ckpt"), "--datasets", "ceval-law", "--limit", "2",
                 "--data-dir", str(SHARED_DATASETS), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "ckpt/ceval-law  (2 samples)\n" in out and "GPU)" not in out
    assert "ckpt runs on CPU (no GPU visible)" in out


def test_tiny_model_module_prints_its_help(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "proctor.tiny_model", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("usage: python -m proctor.tiny_model")
    assert list(tmp_path.iterdir()) == []  # --help builds nothing


def test_fetch_retries_are_one_line_each(capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("huggingface_hub")
    from huggingface_hub.utils import logging as hub_logging

    from proctor.cli import _setup_logging
    from proctor.datasets.fetch import _one_line_per_retry

    hub_logging.get_logger("huggingface_hub")  # the hub's own stderr handler, as at download time
    _setup_logging(False)
    http = logging.getLogger("huggingface_hub.utils._http")
    with _one_line_per_retry():
        for n in (1, 2):
            http.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://huggingface.co/x")
            http.warning(f"Retrying in {n}s [Retry {n}/5].")
    lines = capfd.readouterr().err.strip().splitlines()
    assert [line.split(" ", 1)[1] for line in lines] == [
        "WARNING download failed ([Errno -2] Name or service not known); retrying in 1s [Retry 1/5].",
        "WARNING download failed ([Errno -2] Name or service not known); retrying in 2s [Retry 2/5].",
    ]


@needs_shared_data
def test_temporary_files_of_a_killed_stage_are_removed_on_resume(tmp_path: Path) -> None:
    work = tmp_path / "w"
    with OpenAIServer(lambda body: "A", model_ids=["m"]) as server:
        assert main(run_args(server.base_url, work, ["ceval-law"], 2)) == 0
        run = only_run(work)
        leftovers = [run / "results" / "m" / ".ceval-law.json.k3j9x.tmp", run / ".config.json.a1b2c3.tmp"]
        for path in leftovers:
            path.write_text("{half", encoding="utf-8")
        keep = run / "predictions" / "m" / "notes.tmp"  # not a writer's temporary name
        keep.write_text("mine", encoding="utf-8")
        assert main(run_args(server.base_url, work, ["ceval-law"], 2, "-r", "latest")) == 0
    assert not any(p.exists() for p in leftovers)
    assert keep.read_text(encoding="utf-8") == "mine"
    assert not list(run.rglob(".*.tmp"))


def test_run_help_says_the_command_line_overrides_the_file(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "config file and command line: the command line wins" in out
    assert "--datasets replaces its datasets" in out


def test_the_stored_config_is_json(tmp_path: Path) -> None:
    # config.json stays the one inference wrote; -r reads it back as models and datasets.
    from proctor.engine.rundir import RunDir, read_config

    (tmp_path / "config.json").write_text(json.dumps({"proctor_layout": 1, "datasets": []}), encoding="utf-8")
    assert read_config(RunDir(tmp_path)) == {"proctor_layout": 1, "datasets": []}
    (tmp_path / "config.json").write_text("{broken", encoding="utf-8")
    assert read_config(RunDir(tmp_path)) == {}
