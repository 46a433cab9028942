"""Circular evaluation end to end: a server that picks answers by option *text* gets exactly the
circular and per-rotation accuracy it intends; a killed circular run resumes item by item."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import only_run, read_records, read_result, read_summary, run_args
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.core import Sample
from proctor.tasks import load_samples
from shared_data import SHARED_DATASETS

pytestmark = needs_shared_data

DATASET = "ceval-computer_network"
LIMIT = 12
LABELS = "ABCD"


def _kind(sample: Sample) -> str:
    """What the simulated model does with this question, in every option order:
    knows (picks the right text), fooled (picks one fixed wrong text) or biased (always says A)."""
    return ("knows", "fooled", "biased")[int(hashlib.sha256(sample.question.encode()).hexdigest(), 16) % 3]


class ByOptionText:
    """Reads the options as shown and answers by their text, never by a fixed letter."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = {s.question.strip(): s for s in samples}

    def sample_of(self, prompt: str) -> Sample:
        return next(s for q, s in self.samples.items() if q in prompt)

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        sample = self.sample_of(prompt)
        shown = [line[3:].strip() for line in prompt.splitlines() if line[:3] in {f"{c}. " for c in LABELS}]
        right_text = sample.option(sample.target).strip()
        kind = _kind(sample)
        if kind == "biased":
            return "答案：A"
        wrong_text = sample.choices[(LABELS.index(sample.target) + 1) % 4].strip()
        text = right_text if kind == "knows" else wrong_text
        letter = LABELS[shown.index(text)]
        # Half the questions answered with the letter, half with the option text alone.
        return f"答案是{letter}。" if len(sample.question) % 2 else text


def _expected(samples: list[Sample]) -> dict[str, float]:
    n = len(samples)
    knows = sum(_kind(s) == "knows" for s in samples)
    biased = sum(_kind(s) == "biased" for s in samples)
    # A biased answer is right in the one rotation that shows the right option first:
    # rotation k shows original option k at A, so rotation k is right when target index == k.
    per_rotation = [100.0 * (knows + sum(_kind(s) == "biased" and LABELS.index(s.target) == k for s in samples)) / n
                    for k in range(4)]
    return {
        "circular": 100.0 * knows / n,
        "more_1_4": 100.0 * (knows + biased) / n,
        "more_2_4": 100.0 * knows / n,
        **{f"acc_r{k}": v for k, v in enumerate(per_rotation)},
    }


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    return load_samples("ceval", "computer_network", "val", str(SHARED_DATASETS))[:LIMIT]


def test_circular_accuracy_is_what_the_server_intends(tmp_path: Path, samples: list[Sample]) -> None:
    kinds = Counter(_kind(s) for s in samples)
    assert min(kinds.values()) >= 2, kinds  # the slice exercises every behaviour
    with OpenAIServer(ByOptionText(samples), model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, [f"{DATASET}_circular"], LIMIT, "--fewshot", "0")) == 0
        assert len(server.post_requests()) == 4 * LIMIT
    run = only_run(tmp_path)
    abbr = f"{DATASET}_circular"
    result = read_result(run, "m", abbr)
    expected = _expected(samples)
    assert result["metric"] == "circular" and result["n"] == LIMIT
    assert result["value"] == pytest.approx(expected["circular"])
    for key in ("acc_r0", "acc_r1", "acc_r2", "acc_r3", "more_1_4", "more_2_4"):
        assert result["extra_metrics"][key] == pytest.approx(expected[key]), key
    assert result["extra_metrics"]["extraction_rate"] == pytest.approx(100.0)
    records = read_records(run, "m", abbr)
    assert sorted(r["item_id"] for r in records) == sorted(f"{s.id}#r{k}" for s in samples for k in range(4))
    assert all(r["sample_id"] == r["item_id"].split("#")[0] for r in records)
    summary = read_summary(run)
    assert abbr in summary and "more_4_4" in summary


def test_circular_from_a_config_entry_and_rotation_zero_is_the_plain_prompt(tmp_path: Path, samples: list[Sample]) -> None:
    config = tmp_path / "eval.yaml"
    with OpenAIServer(ByOptionText(samples), model_ids=["m"]) as server:
        config.write_text(
            f"models: [{{api_base: '{server.base_url}'}}]\n"
            f"datasets:\n  - {{name: {DATASET}, circular: true, limit: 3, fewshot: 0}}\n"
            f"  - {{name: {DATASET}, limit: 3, fewshot: 0}}\n"
            f"data_dir: '{SHARED_DATASETS}'\nwork_dir: '{tmp_path / 'out'}'\n",
            encoding="utf-8",
        )
        assert main(["run", str(config), "--no-cache"]) == 0
        bodies = [json.dumps(r.json, sort_keys=True) for r in server.post_requests()]
    # 3 x 4 rotations + 3 plain questions, and rotation 0 asks exactly the plain question.
    assert len(bodies) == 15 and len(set(bodies)) == 12
    run = only_run(tmp_path / "out")
    plain = {r["item_id"]: r["prompt"] for r in read_records(run, "m", DATASET)}
    rotated = {r["item_id"]: r["prompt"] for r in read_records(run, "m", f"{DATASET}_circular")}
    assert all(rotated[f"{sid}#r0"] == prompt for sid, prompt in plain.items())
    assert all(rotated[f"{sid}#r1"] != prompt for sid, prompt in plain.items())


def _lines(work: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in work.glob("*/predictions/*/*.jsonl"))


def test_a_killed_circular_run_resumes_item_by_item(tmp_path: Path, samples: list[Sample]) -> None:
    total = 4 * LIMIT
    work = tmp_path / "killed"
    args = run_args("", work, [f"{DATASET}_circular"], LIMIT, "--fewshot", "0", "--no-cache",
                    "--max-concurrency", "2")
    with OpenAIServer(ByOptionText(samples), latency=0.05, model_ids=["m"]) as server:
        args[args.index("--api-base") + 1] = server.base_url
        proc = subprocess.Popen([sys.executable, "-m", "proctor", *args], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while _lines(work) < total // 3:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote no records"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        run = only_run(work)
        done = {r["item_id"] for r in read_records(run, "m", f"{DATASET}_circular") if r["error"] is None}
        assert total // 3 <= len(done) < total
        before = len(server.post_requests())
        assert main([*args, "-r", "latest"]) == 0
        resent = server.post_requests()[before:]
    # Only items without a record were asked again, each once.
    assert len(resent) == total - len(done)
    records = read_records(run, "m", f"{DATASET}_circular")
    assert len({r["item_id"] for r in records}) == total
    assert read_result(run, "m", f"{DATASET}_circular")["value"] == pytest.approx(_expected(samples)["circular"])
