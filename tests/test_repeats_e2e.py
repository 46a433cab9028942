"""`--repeats 4` on AIME 2024 against a real HTTP server that samples: a different answer per seed.

The server answers as a reasoning model (a thought with a decoy answer in `<think>`, then its
conclusion); what it concludes comes from a table of this file (right, one of two decoys, or a
thought cut off by the token limit with the right answer inside it, by a hash of question and
seed). Every expected avg@4 / pass@4 / maj@4 and standard error is computed from that table
here, not by Proctor's code; a cut-off thought is scored 0 and casts no majority vote.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply, last_user_message
from run_helpers import only_run, predictions_path, read_result, read_summary, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Sample
from proctor.engine.store import PredictionStore

pytestmark = needs_shared_data

K = 4
ARGS = ["--repeats", str(K), "--temperature", "0.6", "--max-concurrency", "4"]


@pytest.fixture(scope="module")
def aime() -> list[Sample]:
    from proctor.tasks import load_samples

    return load_samples("aime2024", "", "test", SHARED_DATASETS)


def outcome(sample_id: str, seed: int, skill: int = 3) -> str:
    """What the model concludes on this question with this seed: right, decoy1, decoy2 or none."""
    draw = int(hashlib.sha256(f"{sample_id}:{seed}".encode()).hexdigest()[:8], 16) % 6
    return "right" if draw < skill else ("decoy1", "decoy2", "none", "right", "right", "right")[draw - 3]


def value_of(sample: Sample, kind: str) -> int | None:
    gold = int(sample.target)
    return {"right": gold, "decoy1": (gold + 1) % 1000, "decoy2": (gold + 2) % 1000, "none": None}[kind]


class Sampler:
    """A server-side model that samples: its answer depends on the request's seed."""

    def __init__(self, samples: list[Sample], skill: int = 3) -> None:
        self.by_problem = {s.question.strip(): s for s in samples}
        self.skill = skill
        self.seeds: list[tuple[str, int]] = []

    def sample_for(self, body: dict[str, Any]) -> Sample:
        prompt = last_user_message(body)
        return next(s for q, s in self.by_problem.items() if q in prompt)

    def __call__(self, body: dict[str, Any]) -> Reply:
        sample = self.sample_for(body)
        assert body["temperature"] == 0.6 and isinstance(body.get("seed"), int)
        gold = int(sample.target)
        value = value_of(sample, outcome(sample.id, body["seed"], self.skill))
        if value is None:  # cut off mid-thought, the right answer in it: never read
            return Reply(f"<think>Perhaps $\\boxed{{{gold}}}$. Let me verify this by", finish_reason="length")
        decoy = (gold + 500) % 1000
        return Reply(f"<think>First guess: \\boxed{{{decoy}}}. Check again.</think>"
                     f"Step by step.\nSo the answer is $\\boxed{{{value}}}$.")


def _se(values: list[float]) -> float:
    n = len(values)
    mean = sum(values) / n
    return 100.0 * math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n)


def expected(samples: list[Sample], skill: int = 3) -> dict[str, tuple[float, float]]:
    """(value, stderr) of avg@4, pass@4 and maj@4, from the server's table."""
    avg, passed, maj = [], [], []
    for s in samples:
        kinds = [outcome(s.id, j, skill) for j in range(K)]
        right = [k == "right" for k in kinds]
        avg.append(sum(right) / K)
        passed.append(1.0 if any(right) else 0.0)
        votes: dict[int, int] = {}
        for kind in kinds:
            value = value_of(s, kind)
            if value is not None:
                votes[value] = votes.get(value, 0) + 1
        best = max(votes.values(), default=0)
        winner = next((v for v in votes if votes[v] == best), None)  # the first value with most votes
        maj.append(1.0 if winner == int(s.target) else 0.0)
    return {name: (100.0 * sum(v) / len(v), _se(v)) for name, v in (("avg", avg), ("pass", passed), ("maj", maj))}


def _argv(server: OpenAIServer, work: Path, *extra: str) -> list[str]:
    return run_args(server.base_url, work, ["aime2024"], 30, *ARGS, *extra)


def test_repeats_4_on_aime2024_gives_avg_pass_maj_with_standard_errors(tmp_path: Path, aime: list[Sample]) -> None:
    sampler = Sampler(aime)
    # The server names its checkpoint (as vLLM's `root`): cached answers may serve a later run.
    with OpenAIServer(sampler, model_ids=["m"], model_info={"m": {"root": "/checkpoints/m"}}) as server:
        assert main(_argv(server, tmp_path / "a")) == 0
        bodies = [r.json for r in server.post_requests()]
        # One request per (question, repeat), repeat j sent with seed j.
        assert len(bodies) == 120
        assert Counter((sampler.sample_for(b).id, b["seed"]) for b in bodies) == Counter(
            {(s.id, j): 1 for s in aime for j in range(K)})
        server.reset()
        # A second run is served from the cache, each repeat from its own entry: nothing sent, same scores.
        assert main(_argv(server, tmp_path / "b")) == 0
        assert server.post_requests() == []
    run = only_run(tmp_path / "a")
    records = PredictionStore(predictions_path(run, "m", "aime2024")).load()
    assert sorted(records) == sorted(f"{s.id}#k{j}" for s in aime for j in range(K))
    result = read_result(run, "m", "aime2024")
    want = expected(aime)
    assert want["avg"][0] not in (want["pass"][0], want["maj"][0])  # the table tells the three apart
    assert (result["metric"], result["n"], result["n_failed"]) == ("avg@4", 30, 0)
    cut = sum(outcome(s.id, j) == "none" for s in aime for j in range(K))
    assert result["truncated"] == cut > 0
    log = (run / "logs" / "m" / "aime2024.log").read_text(encoding="utf-8")
    assert f"{cut} of 120 replies were cut off inside their reasoning" in log
    assert result["value"] == pytest.approx(want["avg"][0]) and result["stderr"] == pytest.approx(want["avg"][1])
    for name in ("pass", "maj"):
        assert result["extra_metrics"][f"{name}@4"] == pytest.approx(want[name][0])
        assert result["extra_stderrs"][f"{name}@4"] == pytest.approx(want[name][1])
    assert read_result(only_run(tmp_path / "b"), "m", "aime2024") == result
    rows = {line.split()[2]: line.split()[-1] for line in read_summary(run).splitlines()[2:]}
    assert rows["avg@4"] == f"{want['avg'][0]:.2f}" and rows["maj@4"] == f"{want['maj'][0]:.2f}"
    assert rows["pass@4"] == f"{want['pass'][0]:.2f}"


def _lines(work: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in work.glob("*/predictions/*/*.jsonl"))


def test_sigkill_mid_run_then_resume_sends_only_the_missing_repeats(tmp_path: Path, aime: list[Sample]) -> None:
    work = tmp_path / "killed"
    sampler = Sampler(aime)
    with OpenAIServer(sampler, latency=0.05, model_ids=["m"]) as server:
        proc = subprocess.Popen([sys.executable, "-m", "proctor", *_argv(server, work, "--no-cache")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 60
        while _lines(work) < 50:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote no records"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while any(r.done is None for r in server.requests):  # what was in flight finishes on the server
            assert time.monotonic() < deadline
            time.sleep(0.01)
        first = len(server.post_requests())
        run = only_run(work)
        done = {item for item, r in PredictionStore(predictions_path(run, "m", "aime2024")).load().items()
                if not r.failed}
        assert 50 <= len(done) < 120
        assert main(_argv(server, work, "--no-cache", "-r", "latest")) == 0
        resent = [r.json for r in server.post_requests()[first:]]
    # Exactly the repeats without a record were sent again, each once, with its own seed.
    asked = [f"{sampler.sample_for(b).id}#k{b['seed']}" for b in resent]
    assert sorted(asked) == sorted({f"{s.id}#k{j}" for s in aime for j in range(K)} - done)
    result = read_result(run, "m", "aime2024")
    assert result["value"] == pytest.approx(expected(aime)["avg"][0]) and result["n"] == 30


def test_compare_pairs_questions_over_their_repeats(tmp_path: Path, aime: list[Sample]) -> None:
    work = tmp_path / "w"
    for skill in (3, 5):  # B is right on 5 draws of 6 where A is on 3
        with OpenAIServer(Sampler(aime, skill), model_ids=["m"]) as server:
            assert main(_argv(server, work, "--no-cache")) == 0
    assert main(["compare", "latest~1", "latest", "-w", str(work)]) == 0
    later = max((p for p in work.iterdir() if (p / "compare.json").is_file()))
    (comparison,) = json.loads((later / "compare.json").read_text(encoding="utf-8"))["comparisons"]
    (row,) = [r for r in comparison["rows"] if r["name"] == "aime2024"]
    a, b = expected(aime, 3)["avg"][0], expected(aime, 5)["avg"][0]
    # 30 questions, each its mean over 4 repeats: the paired bootstrap over questions, not McNemar.
    assert (row["n"], row["metric"], row["test"]) == (30, "avg@4", "bootstrap")
    assert row["a"] == pytest.approx(a) and row["b"] == pytest.approx(b) and row["diff"] == pytest.approx(b - a)
    assert row["verdict"] == "B better" and row["ci_low"] <= row["diff"] <= row["ci_high"]
