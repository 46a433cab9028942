"""`proctor serve` offers POST /tokenize as vLLM does, and `proctor run` over an API fits its
few-shot prompts to --max-seq-len with it (the server's own tokenizer and chat template) instead
of an estimate (issue 21 §2)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from run_helpers import only_run, read_records
from serve_helpers import served_model
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main


def test_tokenize_counts_as_the_chat_endpoint_does(tiny_model_dir: Path) -> None:
    messages = [{"role": "user", "content": "1 + 1 = ?"}]
    with served_model(tiny_model_dir, served_model_name="m", api_key="k", max_seq_len=512) as base_url:
        root = base_url.removesuffix("/v1")
        auth = {"Authorization": "Bearer k"}
        counted = httpx.post(f"{root}/tokenize", json={"model": "m", "messages": messages}, headers=auth).json()
        chat = httpx.post(f"{base_url}/chat/completions", headers=auth,
                          json={"model": "m", "messages": messages, "max_tokens": 1}).json()
        plain = httpx.post(f"{root}/tokenize", json={"prompt": "hello world"}, headers=auth).json()
        assert httpx.post(f"{root}/tokenize", json={"prompt": "x"}).status_code == 401
        assert httpx.post(f"{root}/tokenize", json={"model": "other", "prompt": "x"}, headers=auth).status_code == 404
        both = httpx.post(f"{root}/tokenize", json={"prompt": "x", "messages": messages}, headers=auth)
    assert counted == {"count": chat["usage"]["prompt_tokens"], "max_model_len": 512}
    assert plain["count"] > 0
    assert both.status_code == 400


@needs_shared_data
def test_api_prompts_fit_with_the_servers_count(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with served_model(tiny_model_dir, served_model_name="m") as base_url:
        argv = ["run", "--api-base", base_url, "--datasets", "ceval-computer_network", "--limit", "3",
                "--max-out-len", "4", "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out")]
        assert main(argv) == 0
        full = read_records(only_run(tmp_path / "out"), "m", "ceval-computer_network")
        budget = min(r["prompt_tokens"] for r in full) + 4 - 1  # one token short for the shortest 5-shot prompt
        assert main([*argv, "--max-seq-len", str(budget), "-w", str(tmp_path / "out2")]) == 0
    err = capsys.readouterr().err
    assert "checked with an estimate" not in err
    records = read_records(only_run(tmp_path / "out2"), "m", "ceval-computer_network")
    for r in records:
        assert r["prompt_tokens"] + 4 <= budget  # exact: the server's own count
        assert r["fewshot_dropped"] >= 1
        assert len([m for m in r["prompt"] if m["role"] == "user"]) == 6 - r["fewshot_dropped"]
