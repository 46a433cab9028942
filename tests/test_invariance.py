"""Same answer everywhere: the records and scores of a run do not depend on how it was run.

The same tiny local model answers the same real rows (C-Eval and MMLU subjects from
shared/datasets; *_ppl with letters and with option texts, and _gen) at batch sizes 1, 4
and 16, with 1 and 2 workers, in shards, one subject per run (each task alone on the model)
or all subjects in one run (every task batched together through the model's shared queue),
and through a SIGKILL mid-run followed by `-r latest`. Every way gives the same generations,
predictions and scores, and log-likelihoods within 1e-5. The API backend gives the same
records at `--max-concurrency 1` and 64, timing apart.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import pytest
from openai_server import OpenAIServer
from run_helpers import KnownAnswers, load_slices, model_run_args, only_run, run_new
from shared_data import needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data

LIMIT = 5
PPL = ["ceval-computer_network_ppl", "mmlu-abstract_algebra_ppl", "mmlu-astronomy_ppl"]
GEN = ["ceval-computer_network_gen", "mmlu-astronomy_gen"]
FAMILIES = {
    # log-likelihood of the letters " A".." D", and generation
    "letters": (PPL + GEN, ["--ppl-continuations", "letters"]),
    # log-likelihood of each option's text
    "options": (PPL, ["--ppl-continuations", "options"]),
}
COMMON = ["--no-cache", "--fewshot", "1", "--max-out-len", "12"]
TIMING = ("latency_s", "attempts", "cached")
TOLERANCE = 1e-5

View = dict[tuple[str, str], dict[str, Any]]


def _argv(model: Path, work: Path, family: str, datasets: Sequence[str] | None = None,
          batch_size: int = 4, *extra: str) -> list[str]:
    names, family_args = FAMILIES[family]
    names = list(datasets or names)
    if not any(n.endswith("_ppl") for n in names):
        family_args = []  # --ppl-continuations on generation datasets only is refused
    return model_run_args(["--hf-path", str(model)], work, names, LIMIT, *COMMON,
                          *family_args, "--batch-size", str(batch_size), *extra)


def _view(run: Path) -> View:
    """Every record of the run (the last of an item id wins), timing fields dropped, with
    its score merged in: {(dataset, item id): fields}."""
    out: View = {}
    for path in sorted((run / "predictions").glob("*/*.jsonl")):
        dataset = path.stem
        scores = {}
        score_path = run / "scores" / path.parent.name / path.name
        if score_path.is_file():
            for line in score_path.read_text(encoding="utf-8").splitlines():
                s = json.loads(line)
                scores[s["item_id"]] = s
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            for key in TIMING:
                record.pop(key, None)
            record["score"] = scores.get(record["item_id"])
            out[(dataset, record["item_id"])] = record
    return out


def _assert_same(got: View, want: View, how: str) -> None:
    assert sorted(got) == sorted(want), f"{how}: other items"
    worst = 0.0
    for key, expected in want.items():
        actual = dict(got[key])
        lls, want_lls = actual.pop("loglikelihoods"), expected.get("loglikelihoods")
        rest = {k: v for k, v in expected.items() if k != "loglikelihoods"}
        assert actual == rest, f"{how}: {key} differs"
        assert (lls is None) == (want_lls is None), f"{how}: {key}"
        if lls is not None:
            assert len(lls) == len(want_lls)
            worst = max([worst, *(abs(a - b) for a, b in zip(lls, want_lls))])
    assert worst <= TOLERANCE, f"{how}: log-likelihoods differ by up to {worst:.2e}"


def _complete(view: View, datasets: Sequence[str]) -> None:
    assert len({d for d, _ in view}) == len(datasets)
    assert len(view) == LIMIT * len(datasets)
    assert all(r["error"] is None and r["score"] is not None for r in view.values())


@pytest.fixture(scope="module")
def references(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, View]:
    """Each family run once the plain way: batch size 4, all subjects in one run."""
    refs = {}
    for family in FAMILIES:
        work = tmp_path_factory.mktemp(f"reference-{family}")
        refs[family] = _view(run_new(_argv(tiny_model_dir, work, family), work))
        _complete(refs[family], FAMILIES[family][0])
    assert all(d.endswith("_ppl_options") for d, _ in refs["options"])
    return refs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_batch_size_workers_shards_and_the_shared_queue_change_nothing(
    family: str, tiny_model_dir: Path, tmp_path: Path, references: dict[str, View]
) -> None:
    reference = references[family]
    ways = {
        "batch size 1": (1, []),
        "batch size 16": (16, []),
        # one task at a time: no batching across subjects
        "1 worker": (4, ["--max-num-workers", "1"]),
        "2 workers, shards of 2": (4, ["--max-num-workers", "2", "--max-partition-size", "2"]),
    }
    for how, (batch_size, extra) in ways.items():
        work = tmp_path / how.replace(" ", "_").replace(",", "")
        _assert_same(_view(run_new(_argv(tiny_model_dir, work, family, None, batch_size, *extra), work)),
                     reference, how)

    # One subject per run: each task alone on the model, never batched with another subject.
    alone: View = {}
    for dataset in FAMILIES[family][0]:
        work = tmp_path / f"alone-{dataset}"
        alone.update(_view(run_new(_argv(tiny_model_dir, work, family, [dataset], 16), work)))
    _assert_same(alone, reference, "one subject per run")


def _lines(work: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in work.glob("*/predictions/*/*.jsonl"))


def test_sigkill_mid_run_then_resume_changes_nothing(
    tiny_model_dir: Path, tmp_path: Path, references: dict[str, View]
) -> None:
    family = "letters"
    total = LIMIT * len(FAMILIES[family][0])
    work = tmp_path / "killed"
    # Batch size 1 and one task at a time: records arrive one by one, so there is a middle.
    argv = _argv(tiny_model_dir, work, family, None, 1, "--max-num-workers", "1")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "proctor", *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 120
        while _lines(work) < total // 4:
            if proc.poll() is not None:
                pytest.fail(f"the run ended before it could be killed: {proc.stderr.read()[-2000:]!r}")
            assert time.monotonic() < deadline, "the run wrote no records"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        assert proc.stderr is not None
        proc.stderr.close()
    run = only_run(work)
    written = _lines(work)
    assert total // 4 <= written < total, "the kill did not land mid-run"

    # Resumed at another batch size with all tasks at once: only the rest is sent.
    assert main(_argv(tiny_model_dir, work, family, None, 16, "-r", "latest")) == 0
    view = _view(run)
    _assert_same(view, references[family], "killed, then -r latest")
    sent_again = _lines(work) - written
    assert sent_again <= total - written + 1  # + the one a kill can cut in half


# ---------------------------------------------------------------------------- API backend

API_SUBJECTS = [("ceval", "computer_network", "val"), ("mmlu", "abstract_algebra", "test"),
                ("mmlu", "astronomy", "test")]


def test_api_records_do_not_depend_on_concurrency(tmp_path: Path) -> None:
    answers = KnownAnswers.of_slices(load_slices(API_SUBJECTS, LIMIT))
    runs = {
        # chat: generation, answer extracted
        "chat": (["--api-type", "chat"], [f"{b}-{s}_gen" for b, s, _ in API_SUBJECTS]),
        # completions: generation, and letters scored through echo + logprobs
        "completions": (["--api-type", "completions"],
                        [f"{b}-{s}_{m}" for b, s, _ in API_SUBJECTS for m in ("gen", "ppl")]),
    }
    with OpenAIServer(answers, model_ids=["m"]) as server:
        for name, (kind, datasets) in runs.items():
            views = {}
            for concurrency in (1, 64):
                work = tmp_path / f"{name}-{concurrency}"
                argv = model_run_args(["--api-base", server.base_url, *kind], work, datasets, LIMIT,
                                      "--no-cache", "--max-concurrency", str(concurrency))
                views[concurrency] = _view(run_new(argv, work))
            _complete(views[1], datasets)
            assert views[64] == views[1], f"{name}: concurrency 64 differs from 1"
