"""Inputs that used to be accepted silently (or end in a traceback) get one line and exit 2;
the server answers malformed and huge requests with a 400 without stalling other clients."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from openai_server import OpenAIServer
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

DATA = ["--data-dir", str(SHARED_DATASETS)]


def _one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@needs_shared_data
@pytest.mark.parametrize(
    ("extra", "datasets", "expected"),
    [
        (["--max-seq-len", "1"], ["ceval-computer_network"], "--max-seq-len 1 (model api-model) leaves no room for a prompt"),
        (["--api-key-env", ""], ["ceval-computer_network"], "--api-key-env: empty: name the environment variable"),
        (["-w", ""], ["ceval-computer_network"], "-w/--work-dir is empty"),
        (["--judge"], ["ceval-computer_network"], "--judge: no judge model is given"),
        (["--judge", "--judge-api-base", "{url}"], ["ceval-computer_network"],
         "--judge: no dataset of this run is free-form (ceval-computer_network is scored by its own rule)"),
        (["--judge", "--judge-api-base", "nope"], ["gsm8k"],
         "--judge-api-base: 'nope' is not an http(s) URL; write it like http://127.0.0.1:8000/v1"),
        (["--judge-api-base", "{url}"], ["gsm8k"], "--judge-api-base: no dataset of this run is scored by a judge"),
        (["--ppl-continuations", "options"], ["ceval-computer_network"],
         "--ppl-continuations applies to *_ppl datasets"),
        (["--hf-path", "{tiny}", "--device", "banana"], ["ceval-computer_network"],
         "--device: 'banana' is not a device: use cpu, cuda, cuda:N or mps"),
    ],
)
def test_silently_accepted_flags_are_refused_in_one_line(
    extra: list[str], datasets: list[str], expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(model_ids=["m"]) as server:
        model = [] if "--hf-path" in extra else ["--api-base", server.base_url]
        fill = {"{url}": server.base_url, "{tiny}": str(tmp_path)}
        argv = ["run", *model, *[fill.get(a, a) for a in extra], "--datasets", *datasets, "--limit", "1", *DATA]
        if "-w" not in extra:
            argv += ["-w", str(tmp_path / "out")]
        line = _one_line_error(capsys, argv)
        assert server.post_requests() == []  # refused before anything was asked
    assert expected in line, line
    assert not (tmp_path / "out").exists()


def test_an_unset_key_variable_is_said_once(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from proctor.config.schema import ApiModelConfig
    from proctor.models import api as api_mod
    from proctor.models.api import ApiBackend

    monkeypatch.delenv("PROCTOR_UNSET_KEY_VAR", raising=False)
    monkeypatch.setattr(api_mod, "_NOTED_NO_KEY", set())
    with caplog.at_level(logging.INFO, logger="proctor.models.api"):
        for _ in range(3):
            ApiBackend(ApiModelConfig(api_base="http://127.0.0.1:9/v1", api_key_env="PROCTOR_UNSET_KEY_VAR"))
    said = [r for r in caplog.records if "PROCTOR_UNSET_KEY_VAR is not set" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "without an API key (fine for a local server)" in said[0].getMessage()


def test_a_key_given_twice_in_a_yaml_config_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "eval.yaml"
    config.write_text("models:\n  - {api_base: 'http://127.0.0.1:9/v1', model: a}\n"
                      "datasets: [ceval-computer_network]\n"
                      "models:\n  - {api_base: 'http://127.0.0.1:9/v1', model: b}\n", encoding="utf-8")
    line = _one_line_error(capsys, ["run", str(config), "--dry-run"])
    assert "eval.yaml: line 4" in line and "the key 'models' is given twice (first on line 1)" in line
    # YAML merge keys are not repeats.
    config.write_text("models:\n  - &a {api_base: 'http://127.0.0.1:9/v1', model: a}\n  - {<<: *a, model: b}\n"
                      "datasets: [nosuch_dataset]\n", encoding="utf-8")
    assert "unknown dataset 'nosuch_dataset'" in _one_line_error(capsys, ["run", str(config), "--dry-run"])


def test_a_closed_pipe_ends_the_listing_quietly() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "proctor", "list"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # `proctor list | head` whose head has gone: every write fails
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


# --- proctor serve ------------------------------------------------------------------


def test_serve_refuses_a_device_that_is_none(tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_line_error(capsys, ["serve", str(tiny_model_dir), "--device", "banana", "--port", "0"])
    assert line == "error: --device 'banana' is not a device: use cpu, cuda, cuda:N or mps"
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():  # a device torch knows but this machine lacks
        line = _one_line_error(capsys, ["serve", str(tiny_model_dir), "--device", "cuda:3", "--port", "0"])
        assert line.startswith(f"error: cannot put model '{tiny_model_dir}' on device cuda:3: "), line


def test_serve_answers_deep_json_and_huge_prompts_with_400_without_stalling(tiny_model_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from serve_helpers import running_server

    with running_server(tiny_model_dir, served_model_name="m") as server:
        url = server.base_url + "/v1"
        deep = '{"model": "m", "messages": [{"role": "user", "content": ' + "[" * 100_000 + "]" * 100_000 + "}]}"
        for path in ("/chat/completions", "/completions"):
            r = httpx.post(url + path, content=deep.replace("messages", "messages" if "chat" in path else "prompt"),
                           headers={"content-type": "application/json"}, timeout=60)
            assert r.status_code == 400 and "nested too deeply" in r.json()["error"]["message"], r.text

        big: dict[str, float | int | str] = {}

        def huge() -> None:
            started = time.monotonic()
            r = httpx.post(url + "/completions", json={"model": "m", "prompt": "hello world, 你好 " * 700_000,
                                                       "max_tokens": 4}, timeout=120)
            big.update(status=r.status_code, message=r.json()["error"]["message"], seconds=time.monotonic() - started)

        thread = threading.Thread(target=huge)
        thread.start()
        time.sleep(0.2)  # the 10M-character body is on its way
        started = time.monotonic()
        small = httpx.post(url + "/completions", json={"model": "m", "prompt": "Hi", "max_tokens": 2}, timeout=120)
        small_s = time.monotonic() - started
        thread.join(timeout=120)
    assert small.status_code == 200 and small_s < 5, small_s
    assert big["status"] == 400 and "maximum context length" in str(big["message"]), big
    assert "at least" in str(big["message"]) and float(big["seconds"]) < 10, big
    assert json.loads(small.text)["choices"][0]["text"] is not None
