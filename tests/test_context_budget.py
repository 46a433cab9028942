"""A local model's prompts fit its context and are never cut (issues 20 §5 and 21 §2): the
answer budget shrinks to what the whole prompt leaves, few-shot examples are dropped only when
that is too little (counted in the results), and a prompt that does not fit even without them
is a failed record saying so, never a prompt truncated into another question."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_helpers import only_run, read_records
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data


def _run(tmp_path: Path, model: Path, *extra: str) -> int:
    return main(["run", "--hf-path", str(model), "--datasets", "ceval-computer_network", "--limit", "2",
                 "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out"), *extra])


def test_a_prompt_longer_than_the_context_is_a_failed_record(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _run(tmp_path, tiny_model_dir, "--max-seq-len", "40", "--max-out-len", "8") == 1
    err = capsys.readouterr().err
    assert "truncated from the left" not in err and "do not fit at all" in err
    records = read_records(only_run(tmp_path / "out"), "tiny-chat", "ceval-computer_network")
    assert len(records) == 2
    for r in records:
        assert r["error"].startswith("context too long: the prompt is "), r["error"]
        assert "even with all 5 few-shot examples dropped, the model's context (max_seq_len) is 40" in r["error"]
        assert r["output"] is None and r["attempts"] == 0


def test_examples_are_dropped_only_when_the_answer_would_have_too_little_room(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    # First the whole 5-shot prompt's length, then a context that leaves it under 32 tokens to answer.
    assert _run(tmp_path, tiny_model_dir, "--max-out-len", "4") == 0
    run = only_run(tmp_path / "out")
    full = read_records(run, "tiny-chat", "ceval-computer_network")
    longest = max(r["prompt_tokens"] for r in full)
    shortest = min(r["prompt_tokens"] for r in full)
    assert longest > shortest + 8
    # The longer prompt leaves under 32 tokens (examples dropped); the shorter one keeps them all.
    context = shortest + 40
    assert context - longest < 32
    assert _run(tmp_path, tiny_model_dir, "--max-out-len", "64", "--max-seq-len", str(context), "--no-cache") == 0
    (new,) = [p for p in (tmp_path / "out").iterdir() if p != run and (p / "config.json").is_file()]
    records = {r["item_id"]: r for r in read_records(new, "tiny-chat", "ceval-computer_network")}
    before = {r["item_id"]: r for r in full}
    for item_id, r in records.items():
        assert r["prompt_tokens"] + r["completion_tokens"] <= context
        if before[item_id]["prompt_tokens"] == shortest:
            assert not r.get("fewshot_dropped") and r["prompt_tokens"] == shortest  # kept all five, less room
        else:
            assert r["fewshot_dropped"] >= 1 and r["prompt_tokens"] < longest
    result = json.loads((new / "results" / "tiny-chat" / "ceval-computer_network.json").read_text(encoding="utf-8"))
    assert result["extra_metrics"]["fewshot_dropped_rate"] == 50.0


def test_a_bbh_prompt_is_never_cut_from_the_left(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BBH's three worked examples live in the prompt itself (no examples to drop): a context
    shorter than the prompt is a failed record, not the prompt's last tokens."""
    assert main(["run", "--hf-path", str(tiny_model_dir), "--datasets", "bbh-navigate", "--limit", "1",
                 "--max-seq-len", "600", "--data-dir", str(SHARED_DATASETS), "-w", str(tmp_path / "out")]) == 1
    assert "truncated from the left" not in capsys.readouterr().err
    (record,) = read_records(only_run(tmp_path / "out"), "tiny-chat", "bbh-navigate")
    assert record["error"].startswith("context too long: the prompt is ")
    assert record["error"].endswith("tokens, the model's context (max_seq_len) is 600")
