"""A full disk: one clear line, and every record written before it stays valid and is kept on resume."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import (
    KnownAnswers,
    dataset_names,
    dataset_of,
    only_run,
    predictions_path,
    read_result,
    run_args,
    slice_fixtures,
)
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.core import Record
from proctor.engine.diskio import WriteError, write_text_atomic
from proctor.engine.store import PredictionStore

SUBJECTS = [("ceval", "computer_network", "val"), ("mmlu", "abstract_algebra", "test")]
DATASETS = dataset_names(SUBJECTS)
LIMIT = 12
FILE_SIZE_LIMIT = 12_000  # bytes: a predictions file reaches it after a few 5-shot records

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


def _record(sample_id: str) -> Record:
    return Record(item_id=sample_id, prompt="p" * 100, output="A", loglikelihoods=None)


def test_disk_full_on_append_is_one_line_and_nothing_is_half_written(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    full = tmp_path / "full.jsonl"
    full.symlink_to("/dev/full")  # every write to it fails with ENOSPC, for real
    store = PredictionStore(full)
    with pytest.raises(WriteError) as info:
        store.append(_record("1"))
    message = str(info.value)
    assert "\n" not in message and "No space left on device" in message and str(full) in message
    assert "-r latest" in message
    store.close()
    # Reading such a path must not try to read a device forever.
    with pytest.raises(Exception, match="not a regular file"):
        PredictionStore(full).load()


def test_a_failed_atomic_write_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text('{"old": true}\n', encoding="utf-8")
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1000, hard))  # files in this process may not pass 1000 bytes
    try:
        with pytest.raises(WriteError) as info:
            write_text_atomic(target, json.dumps({"new": "x" * 5000}))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert "File too large" in str(info.value) and str(target) in str(info.value)
    assert target.read_text(encoding="utf-8") == '{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


def _limit_file_size() -> None:
    # In the child: files may not grow past the limit; a write past it fails with EFBIG
    # (instead of the signal killing the process), as a full disk fails with ENOSPC.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, FILE_SIZE_LIMIT))


@needs_shared_data
def test_file_size_limit_mid_run_then_resume(
    tmp_path: Path, answers: KnownAnswers, slices: dict[str, list]
) -> None:
    work = tmp_path / "out"
    with OpenAIServer(answers, model_ids=["m"]) as server:
        args = run_args(server.base_url, work, DATASETS, LIMIT, "--no-cache", "--max-concurrency", "2")
        proc = subprocess.run([sys.executable, "-m", "proctor", *args], capture_output=True, text=True,
                              preexec_fn=_limit_file_size, timeout=120)
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(errors) == 1 and errors[0].startswith("error: cannot write "), proc.stderr
        assert "File too large" in errors[0] and ".jsonl" in errors[0] and "-r latest" in errors[0]
        assert "Traceback" not in proc.stderr + proc.stdout

        run = only_run(work)
        kept: dict[str, set[str]] = {}
        for dataset in DATASETS:
            path = predictions_path(run, "m", dataset)
            data = path.read_bytes() if path.exists() else b""
            assert data == b"" or data.endswith(b"\n")  # no half-written line was left behind
            lines = data.splitlines()
            kept[dataset] = {json.loads(line)["sample_id"] for line in lines}  # every line is a whole record
            assert len(data) <= FILE_SIZE_LIMIT
        n_kept = sum(len(v) for v in kept.values())
        assert 0 < n_kept < LIMIT * len(DATASETS)

        server.reset()
        assert main([*args, "-r", "latest"]) == 0
        resent = [answers.sample_for(last_user_message(r.json)) for r in server.post_requests()]
    assert len(resent) == LIMIT * len(DATASETS) - n_kept
    for sample in resent:  # nothing that had a record was sent again
        assert sample.id not in kept[dataset_of(slices, sample)]
    for dataset, samples in slices.items():
        result = read_result(run, "m", dataset)
        assert result["n"] == LIMIT and result["value"] == pytest.approx(answers.expected_accuracy(samples))
