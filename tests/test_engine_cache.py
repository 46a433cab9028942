"""The response cache end to end: a repeated run sends nothing; never reused when it must not be."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer
from run_helpers import KnownAnswers, dataset_names, read_records, read_result, run_args, run_new, slice_fixtures
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.core import Response
from proctor.engine.cache import ResponseCache

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("mmlu", "abstract_algebra", "test")]
DATASETS = dataset_names(SUBJECTS)
# The server names the checkpoint behind "m", so its answers may be reused across runs.
NAMED = {"m": {"root": "/checkpoints/m-step-1000"}}
LIMIT = 10
TOTAL = LIMIT * len(DATASETS)

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROCTOR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _run(server: OpenAIServer, work: Path, *extra: str) -> Path:
    work = work / "outputs"
    return run_new(run_args(server.base_url, work, DATASETS, LIMIT, *extra), work)


def _outcome(run: Path) -> dict[str, Any]:
    return {
        d: (read_result(run, "m", d)["value"], [(r["sample_id"], r["output"], r["prediction"]) for r in sorted(
            read_records(run, "m", d), key=lambda r: r["sample_id"])])
        for d in DATASETS
    }


def _cache_cli(capsys: pytest.CaptureFixture[str], action: str) -> str:
    capsys.readouterr()
    assert main(["cache", action]) == 0
    return capsys.readouterr().out


def test_repeated_run_sends_nothing_and_cache_cli(
    tmp_path: Path, cache_dir: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, latency=0.05, model_ids=["m"], model_info=NAMED) as server:
        first = _run(server, tmp_path)
        assert len(server.post_requests()) == TOTAL
        assert f": {TOTAL} responses" in _cache_cli(capsys, "stats")
        assert str(cache_dir) in _cache_cli(capsys, "stats")

        server.reset()
        started = time.perf_counter()
        second = _run(server, tmp_path)  # a new run folder, same requests
        elapsed = time.perf_counter() - started
        assert server.post_requests() == []
        assert elapsed < 5.0  # nothing sent: no 50 ms waits (the bound leaves a busy box room)
        assert _outcome(second) == _outcome(first)
        records = [r for d in DATASETS for r in read_records(second, "m", d)]
        assert all(r["cached"] and r["attempts"] == 0 for r in records)

        # Generation parameters are part of the key: another max_tokens is another request.
        server.reset()
        _run(server, tmp_path, "--max-out-len", "64")
        assert len(server.post_requests()) == TOTAL

        assert f"removed {2 * TOTAL} responses" in _cache_cli(capsys, "clear")
        assert ": 0 responses" in _cache_cli(capsys, "stats")
        server.reset()
        _run(server, tmp_path)
        assert len(server.post_requests()) == TOTAL


def test_sampled_requests_are_never_cached(
    tmp_path: Path, cache_dir: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, model_ids=["m"], model_info=NAMED) as server:
        _run(server, tmp_path, "--temperature", "0.7")
        _run(server, tmp_path, "--temperature", "0.7")
        assert len(server.post_requests()) == 2 * TOTAL
        assert all(r.json["temperature"] == 0.7 for r in server.post_requests())
    assert ": 0 responses" in _cache_cli(capsys, "stats")


def test_no_cache_flag_sends_everything_and_stores_nothing(
    tmp_path: Path, cache_dir: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, model_ids=["m"], model_info=NAMED) as server:
        _run(server, tmp_path, "--no-cache")
        _run(server, tmp_path, "--no-cache")
        assert len(server.post_requests()) == 2 * TOTAL
    assert ": 0 responses" in _cache_cli(capsys, "stats")


def test_corrupted_cache_file_is_reported_and_rebuilt(
    tmp_path: Path, cache_dir: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, model_ids=["m"], model_info=NAMED) as server:
        first = _run(server, tmp_path)
        db = cache_dir / "responses.sqlite"
        with sqlite3.connect(db) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        data = bytearray(db.read_bytes())
        data[100:4000] = b"\x5a" * 3900  # garbage over the schema page
        db.write_bytes(bytes(data))
        server.reset()
        second = _run(server, tmp_path)
        assert len(server.post_requests()) == TOTAL  # nothing trusted from the broken file
    captured = capsys.readouterr()
    warning = " ".join((captured.out + captured.err).split())  # wherever the CLI's log handler writes
    assert "unusable" in warning and "rebuilt" in warning
    assert list(cache_dir.glob("responses.corrupt-*"))
    assert _outcome(second) == _outcome(first)


def test_a_damaged_entry_is_dropped_never_served(
    tmp_path: Path, cache_dir: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, model_ids=["m"], model_info=NAMED) as server:
        first = _run(server, tmp_path)
        with sqlite3.connect(cache_dir / "responses.sqlite") as conn:
            keys = [k for (k,) in conn.execute("SELECT key FROM responses ORDER BY key LIMIT 3")]
            for key in keys:
                (value,) = conn.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
                forged = json.loads(value)
                forged["text"] = "The answer is (D)." if "D" not in forged["text"] else "The answer is (A)."
                conn.execute("UPDATE responses SET value = ? WHERE key = ?", (json.dumps(forged), key))
        server.reset()
        second = _run(server, tmp_path)
        assert len(server.post_requests()) == 3
    captured = capsys.readouterr()
    assert " ".join((captured.out + captured.err).split()).count("is damaged") == 3
    assert _outcome(second) == _outcome(first)


def test_a_cache_written_by_another_schema_is_set_aside_not_misread(tmp_path: Path) -> None:
    path = tmp_path / "responses.sqlite"
    with sqlite3.connect(path) as conn:  # what an older Proctor would have left
        conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
        conn.execute("INSERT INTO meta VALUES ('schema', '1')")
        conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)")
        conn.execute("INSERT INTO responses VALUES ('k', '{\"text\": \"old\"}', 0)")
    cache = ResponseCache(path)
    assert cache.get_many(["k"]) == {} and cache.stats().entries == 0
    cache.put("k", Response(text="new"))
    assert cache.get_many(["k"])["k"].text == "new"
    cache.close()
    assert len(list(tmp_path.glob("responses.corrupt-*"))) == 1


def test_a_server_silent_about_its_checkpoint_reuses_answers_within_a_run_only(
    tmp_path: Path, answers: KnownAnswers
) -> None:
    # Nothing in GET /models says which checkpoint is served: next time it may be another one.
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, DATASETS, LIMIT)) == 0
        first = len(server.post_requests())
        assert main(run_args(server.base_url, tmp_path, DATASETS, LIMIT)) == 0  # a new run: asks again
        assert len(server.post_requests()) == 2 * first
        assert main(run_args(server.base_url, tmp_path, DATASETS, LIMIT, "--mode", "infer", "-r", "latest")) == 0
        assert len(server.post_requests()) == 2 * first  # the same run: nothing to send
