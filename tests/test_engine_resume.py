"""Nothing is lost and nothing is computed twice: SIGKILL mid-run, resume, same answers everywhere."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from openai_server import OpenAIServer, last_user_message
from run_helpers import (
    KnownAnswers,
    dataset_names,
    dataset_of,
    only_run,
    predictions_path,
    read_records,
    read_result,
    run_args,
    slice_fixtures,
)
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.engine.store import PredictionStore

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("cmmlu", "anatomy", "test"), ("mmlu", "abstract_algebra", "test")]
DATASETS = dataset_names(SUBJECTS)
LIMIT = 12
CONCURRENCY = 3

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


def _args(server: OpenAIServer, work: Path, *extra: str) -> list[str]:
    return run_args(server.base_url, work, DATASETS, LIMIT, "--max-concurrency", str(CONCURRENCY), *extra)


def _body_key(body: Any) -> str:
    return json.dumps(body, sort_keys=True, ensure_ascii=False)


def _answers_by_sample(run: Path, model: str) -> dict[tuple[str, str], tuple[Any, ...]]:
    """What a run concluded for each sample (no timings): comparable across runs."""
    out = {}
    for dataset in DATASETS:
        for r in read_records(run, model, dataset):
            out[(dataset, r["sample_id"])] = (r["output"], r["prediction"], r["correct"], r["error"], r["prompt"])
    return out


def _results(run: Path, model: str) -> dict[str, dict[str, Any]]:
    return {d: read_result(run, model, d) for d in DATASETS}


def _lines(work: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in work.glob("*/predictions/*/*.jsonl"))


def _wait_until_idle(server: OpenAIServer, timeout: float = 30.0) -> None:
    """Until the server holds no connection (a dead client's are closed once all it sent has been
    read: nothing more can arrive from it) and has finished every request it read."""
    connections = server._server.server_state.connections  # uvicorn's open connections
    deadline = time.monotonic() + timeout
    while connections or any(r.done is None for r in server.requests):
        assert time.monotonic() < deadline, "the server still had requests in flight"
        time.sleep(0.01)


def test_sigkill_mid_run_then_resume_resends_only_what_was_in_flight(
    tmp_path: Path, answers: KnownAnswers, slices: dict[str, list]
) -> None:
    total = LIMIT * len(DATASETS)
    work = tmp_path / "killed"
    with OpenAIServer(answers, latency=0.1, model_ids=["m"]) as server:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "proctor", *_args(server, work, "--no-cache")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 60
        while _lines(work) < total // 2:
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "the run wrote no records"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
        _wait_until_idle(server)  # the requests in flight at the kill finish on the server
        first = server.post_requests()
        run = only_run(work)
        done_after_kill = {
            d: {sid for sid, r in PredictionStore(predictions_path(run, "m", d)).load().items()
                if not r.failed}
            for d in DATASETS
        }
        n_done = sum(len(v) for v in done_after_kill.values())
        assert total // 2 <= n_done < total

        assert main(_args(server, work, "--no-cache", "-r", "latest")) == 0
        second = server.post_requests()[len(first):]

    # Every request was sent; none twice except those in flight when the process died. A request
    # the kill cut off while it was being uploaded reaches the server without its body.
    cut_off = [r for r in first if not isinstance(r.json, dict)]
    first = [r for r in first if isinstance(r.json, dict)]
    sent = Counter(_body_key(r.json) for r in first + second)
    assert len(sent) == total
    twice = {k for k, n in sent.items() if n > 1}
    assert all(n <= 2 for n in sent.values())
    assert len(twice) + len(cut_off) <= CONCURRENCY
    assert len(second) == total - n_done
    first_keys = [_body_key(r.json) for r in first]
    for key in twice:
        assert key in first_keys  # sent before the kill, answered too late to be recorded
    # The resumed run sent nothing that already had a record.
    for r in second:
        sample = answers.sample_for(last_user_message(r.json))
        assert sample.id not in done_after_kill[dataset_of(slices, sample)]

    # One record per sample, and the same answers and scores as an uninterrupted run.
    for dataset in DATASETS:
        ids = [r["sample_id"] for r in read_records(run, "m", dataset)]
        assert sorted(ids) == sorted(s.id for s in slices[dataset])
    clean = tmp_path / "clean"
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(_args(server, clean, "--no-cache")) == 0
    assert _results(run, "m") == _results(only_run(clean), "m")
    assert _answers_by_sample(run, "m") == _answers_by_sample(only_run(clean), "m")


def test_resume_cuts_a_half_written_line_and_is_shard_safe(
    tmp_path: Path, answers: KnownAnswers, slices: dict[str, list]
) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(_args(server, tmp_path, "--no-cache")) == 0
        run = only_run(tmp_path)
        reference = _answers_by_sample(run, "m"), _results(run, "m")
        # Simulate crashes: keep the first 5 records of one file and half of the 6th; drop 7 of another.
        path = predictions_path(run, "m", DATASETS[0])
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:5]) + lines[5][: len(lines[5]) // 2])
        other = predictions_path(run, "m", DATASETS[2])
        other.write_bytes(b"".join(other.read_bytes().splitlines(keepends=True)[7:]))
        server.reset()
        # Resume with shards that cut across what is left: only the 7 + 7 missing samples are sent.
        assert main(_args(server, tmp_path, "--no-cache", "-r", "latest", "--max-partition-size", "5")) == 0
        assert len(server.post_requests()) == (LIMIT - 5) + 7
    for dataset in DATASETS:
        ids = [r["sample_id"] for r in read_records(run, "m", dataset)]
        assert len(ids) == len(set(ids)) == LIMIT
    assert (_answers_by_sample(run, "m"), _results(run, "m")) == reference


def test_results_do_not_depend_on_workers_shards_or_debug(
    tmp_path: Path, answers: KnownAnswers
) -> None:
    variants = {
        "default": [],
        "one-worker-small-shards": ["--max-num-workers", "1", "--max-partition-size", "5"],
        "many-shards": ["--max-partition-size", "2", "--max-concurrency", "1"],
        "debug": ["--debug"],
    }
    seen = {}
    with OpenAIServer(answers, model_ids=["m"]) as server:
        for name, extra in variants.items():
            work = tmp_path / name
            assert main(_args(server, work, "--no-cache", *extra)) == 0
            run = only_run(work)
            seen[name] = (_answers_by_sample(run, "m"), _results(run, "m"))
    reference = seen.pop("default")
    assert len(reference[0]) == LIMIT * len(DATASETS)
    for name, got in seen.items():
        assert got == reference, name


def test_a_record_made_with_another_prompt_is_not_reused(tmp_path: Path, answers: KnownAnswers) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(_args(server, tmp_path, "--no-cache", "--fewshot", "1")) == 0
        server.reset()
        # Same run, now 2-shot: every old record was answered to another prompt and is sent again.
        assert main(_args(server, tmp_path, "--no-cache", "--fewshot", "2", "-r", "latest")) == 0
        assert len(server.post_requests()) == LIMIT * len(DATASETS)
        server.reset()
        assert main(_args(server, tmp_path, "--no-cache", "--fewshot", "2", "-r", "latest")) == 0
        assert server.post_requests() == []
    run = only_run(tmp_path)
    first = read_records(run, "m", DATASETS[0])[-1]["prompt"]
    assert [m["role"] for m in first] == ["user", "assistant"] * 2 + ["user"]


def test_ctrl_c_names_the_run_to_resume_and_loses_nothing(tmp_path: Path) -> None:
    total = LIMIT * len(DATASETS)
    work = tmp_path / "interrupted"
    with OpenAIServer(lambda body: "A", latency=0.1, model_ids=["m"]) as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "proctor", *_args(server, work, "--no-cache")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        while _lines(work) < total // 3:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        run = only_run(work)
        assert f"-r {run.name}" in err and f"-w {work}" in err and "Traceback" not in err
        done = _lines(work)
        assert main(_args(server, work, "--no-cache", "-r", run.name)) == 0
        assert len(server.post_requests()) <= total + CONCURRENCY  # only in-flight requests are sent twice
    assert _lines(work) >= total
    for dataset in DATASETS:
        assert len({r["sample_id"] for r in read_records(run, "m", dataset)}) == LIMIT
    assert done < total
