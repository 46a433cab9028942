"""The Batch API (`--api-batch`, `batch: true`) against a real server with /v1/files and /v1/batches."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from batch_server import BatchServer
from openai_server import OpenAIServer, last_user_message
from run_helpers import KnownAnswers, load_slices, only_run, read_records, read_result, model_run_args
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.models.batch_files import split_sizes

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("ceval", "operating_system", "val")]
DATASETS = ["ceval-computer_network", "ceval-operating_system"]
LIMIT = 4
KEY = "sk-batch-test-0123456789abcdef"
# Fields of a record that say how it was fetched, not what was answered.
_HOW = ("latency_s", "attempts", "cached")


@pytest.fixture(scope="module")
def answers() -> KnownAnswers:
    return KnownAnswers.of_slices(load_slices(SUBJECTS, LIMIT))


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATCH_TEST_KEY", KEY)


def _config(tmp_path: Path, base_url: str, name: str = "cfg.yaml", **model: Any) -> str:
    """A model config file with tiny polling intervals (and `model`'s other settings)."""
    fields = {"type": "api", "api_base": base_url, "model": "test-model", "api_key_env": "BATCH_TEST_KEY",
              "batch_poll_s": 0.02, "batch_poll_max_s": 0.05, **model}
    path = tmp_path / name
    path.write_text(json.dumps({"models": [fields]}), encoding="utf-8")  # JSON is YAML
    return str(path)


def _argv(config: str, work: Path, *extra: str, datasets: list[str] = DATASETS) -> list[str]:
    return model_run_args([config], work, datasets, LIMIT, "--no-cache", *extra)


def _records(run: Path, datasets: list[str] = DATASETS) -> dict[str, list[dict[str, Any]]]:
    """Each dataset's records by item id, without the fields that say how they were fetched."""
    out = {}
    for dataset in datasets:
        rows = {r["item_id"]: {k: v for k, v in r.items() if k not in _HOW} for r in read_records(run, "test-model", dataset)}
        out[dataset] = [rows[k] for k in sorted(rows)]
    return out


def _online(tmp_path: Path, answers: Any, datasets: list[str] = DATASETS, **server: Any) -> dict[str, Any]:
    """The records of the same run, online."""
    work = tmp_path / "online"
    with OpenAIServer(answers, api_key=KEY, **server) as srv:
        assert main(_argv(_config(tmp_path, srv.base_url, "online.yaml"), work, datasets=datasets)) == 0
    return _records(only_run(work), datasets)


def _run_files(run: Path) -> str:
    return "".join(p.read_text(encoding="utf-8", errors="replace") for p in run.rglob("*") if p.is_file())


def test_batch_run_gives_the_online_records_and_scores(tmp_path: Path, answers: KnownAnswers) -> None:
    work = tmp_path / "batch"
    with BatchServer(answers, api_key=KEY, validating_polls=2, in_progress_polls=3) as srv:
        assert main(_argv(_config(tmp_path, srv.base_url), work, "--api-batch")) == 0
        app = srv.app
        # Both datasets' requests went in one file and one batch; nothing was sent online.
        assert (app.uploads, app.creations, app.online) == (1, 1, 0)
        assert app.polls >= 2 + 3 + 1
        (batch,) = app.batches.values()
        assert batch.endpoint == "/v1/chat/completions" and batch.status == "completed"
        lines = [json.loads(x) for x in app.files[batch.input_file_id].splitlines()]
    assert len(lines) == 2 * LIMIT and len({x["custom_id"] for x in lines}) == 2 * LIMIT
    assert all(x["method"] == "POST" and x["url"] == "/v1/chat/completions" for x in lines)
    run = only_run(work)
    batch_records = _records(run)
    assert batch_records == _online(tmp_path, answers)
    for dataset in DATASETS:
        samples = load_slices([s for s in SUBJECTS if f"ceval-{s[1]}" == dataset], LIMIT)[dataset]
        assert read_result(run, "test-model", dataset)["value"] == pytest.approx(answers.expected_accuracy(samples))
    state = json.loads((run / "batches" / "test-model" / "state.json").read_text())
    assert [(e["file_id"], e["batch_id"], e["delivered"]) for e in state["entries"]] == [("file-1", "batch_1", True)]
    assert KEY not in _run_files(run)  # nor any part of it in the batch files, state or logs


def test_batch_answers_reuse_the_online_cache(tmp_path: Path, answers: KnownAnswers, monkeypatch: pytest.MonkeyPatch) -> None:
    # Same cache keys: an online run's answers make the batch run send nothing at all.
    monkeypatch.setenv("PROCTOR_CACHE_DIR", str(tmp_path / "cache"))
    with BatchServer(answers, api_key=KEY) as srv:
        config = _config(tmp_path, srv.base_url, revision="r1")
        argv = model_run_args([config], tmp_path / "w", DATASETS, LIMIT)
        assert main(argv) == 0
        assert srv.app.online == 2 * LIMIT
        assert main([*argv, "--api-batch"]) == 0
        assert (srv.app.uploads, srv.app.creations, srv.app.online) == (0, 0, 2 * LIMIT)


def test_loglikelihood_requests_go_in_a_completions_batch(tmp_path: Path) -> None:
    datasets = ["ceval-computer_network_ppl"]
    with BatchServer(model_ids=["test-model"], api_key=KEY) as srv:
        config = _config(tmp_path, srv.base_url, api_type="completions")
        assert main(_argv(config, tmp_path / "batch", "--api-batch", datasets=datasets)) == 0
        (batch,) = srv.app.batches.values()
        assert batch.endpoint == "/v1/completions" and srv.app.online == 0
    batch_records = _records(only_run(tmp_path / "batch"), datasets)
    work = tmp_path / "online"
    with OpenAIServer(model_ids=["test-model"], api_key=KEY) as srv:
        assert main(_argv(_config(tmp_path, srv.base_url, "o.yaml", api_type="completions"), work, datasets=datasets)) == 0
    assert batch_records == _records(only_run(work), datasets)
    assert all(len(r["loglikelihoods"]) == 4 for r in batch_records[datasets[0]])


def _wait_for(condition: Any, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the run never got there"
        time.sleep(0.02)


def _spawn(argv: list[str], tmp_path: Path) -> subprocess.Popen[bytes]:
    log = (tmp_path / "child.log").open("wb")
    return subprocess.Popen([sys.executable, "-m", "proctor", *argv], stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PROCTOR_CACHE_DIR": str(tmp_path / "cache")})


def _kill(child: subprocess.Popen[bytes]) -> None:
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=30)


@pytest.mark.parametrize("moment", ["in_progress", "before the batch id is recorded"])
def test_sigkill_then_resume_submits_nothing_new(tmp_path: Path, answers: KnownAnswers, moment: str) -> None:
    work = tmp_path / "w"
    delay = 30.0 if moment != "in_progress" else 0.0
    with BatchServer(answers, api_key=KEY, create_delay=delay) as srv:
        app = srv.app
        # `batch: true` in the model config; an api_base query (Azure's api-version) kept on every call.
        query = "?api-version=2024-10-21" if delay else ""
        config = _config(tmp_path, srv.base_url + query, batch=True)
        app.hold.clear()  # batches stay in_progress until the test lets them finish
        child = _spawn(_argv(config, work), tmp_path)
        try:
            if moment == "in_progress":
                _wait_for(lambda: app.polls >= 3)  # polling: the ids were recorded before
                assert all(b.status == "in_progress" for b in app.batches.values())
            else:
                _wait_for(lambda: app.creations == 1)  # made, but its id not yet back to the client
            _kill(child)
        finally:
            if child.poll() is None:
                _kill(child)
        app.hold.set()
        app.create_delay = 0.0
        assert main([*_argv(config, work), "-r", "latest"]) == 0
        assert (app.uploads, app.creations, app.online) == (1, 1, 0)
        batch_calls = [r for r in srv.requests if r.path.startswith(("/v1/files", "/v1/batches"))]
    if delay:  # the batch was found in the listing by its input file
        listed = [parse_qs(r.query) for r in batch_calls if r.method == "GET" and r.path == "/v1/batches"]
        assert listed and listed[0]["limit"] == ["100"]
        assert all(parse_qs(r.query)["api-version"] == ["2024-10-21"] for r in batch_calls)
    run = only_run(work)
    assert _records(run) == _online(tmp_path, answers)
    assert KEY not in _run_files(run)


def test_expired_lines_and_line_errors_are_retried_online(tmp_path: Path, answers: KnownAnswers) -> None:
    def expire(body: dict[str, Any]) -> bool:
        return "____" in last_user_message(body)[-60:]  # some questions of each subject

    def line_error(body: dict[str, Any]) -> bool:
        return not expire(body) and len(last_user_message(body)) % 2 == 0

    work = tmp_path / "w"
    with BatchServer(answers, api_key=KEY, expire=expire, line_error=line_error) as srv:
        assert main(_argv(_config(tmp_path, srv.base_url), work, "--api-batch", "--batch-retry", "online")) == 0
        app = srv.app
        (batch,) = app.batches.values()
        errors = [json.loads(x) for x in app.files[batch.error_file_id].splitlines()]
        codes = sorted((e["error"] or {}).get("code") or str(e["response"]["status_code"]) for e in errors)
        assert batch.status == "expired" and "batch_expired" in codes and "500" in codes
        # Exactly the lines without an answer were asked again, online; no second batch.
        assert app.online == len(errors) and app.creations == 1
    assert _records(only_run(work)) == _online(tmp_path, answers)


def test_a_batch_made_with_its_answer_lost_is_not_made_twice(tmp_path: Path, answers: KnownAnswers) -> None:
    work = tmp_path / "w"
    with BatchServer(answers, api_key=KEY) as srv:
        srv.app.lose_creations = 1
        assert main(_argv(_config(tmp_path, srv.base_url), work, "--api-batch", datasets=DATASETS[:1])) == 0
        assert (srv.app.creations, srv.app.online) == (1, 0)
    assert _records(only_run(work), DATASETS[:1]) == _online(tmp_path, answers, DATASETS[:1])


def test_results_the_provider_deleted_are_asked_again(tmp_path: Path, answers: KnownAnswers) -> None:
    work = tmp_path / "w"
    with BatchServer(answers, api_key=KEY) as srv:
        srv.app.results_gone = True  # GET /files/{output}/content: 404
        assert main(_argv(_config(tmp_path, srv.base_url), work, "--api-batch", datasets=DATASETS[:1])) == 0
        assert (srv.app.creations, srv.app.online) == (1, LIMIT)
    assert _records(only_run(work), DATASETS[:1]) == _online(tmp_path, answers, DATASETS[:1])


def test_a_failed_batch_is_retried_in_a_new_batch(tmp_path: Path, answers: KnownAnswers) -> None:
    work = tmp_path / "w"
    with BatchServer(answers, api_key=KEY, fail_first=1) as srv:
        assert main(_argv(_config(tmp_path, srv.base_url), work, "--api-batch", "--batch-retry", "batch")) == 0
        assert (srv.app.creations, srv.app.online) == (2, 0)
        assert [b.status for b in srv.app.batches.values()] == ["failed", "completed"]
    assert _records(only_run(work)) == _online(tmp_path, answers)


def test_a_failed_batch_without_retries_leaves_failed_records(tmp_path: Path, answers: KnownAnswers,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    work = tmp_path / "w"
    with BatchServer(answers, api_key=KEY, fail_first=5) as srv:
        config = _config(tmp_path, srv.base_url, retry=0, batch_retry="batch")
        assert main(_argv(config, work, "--api-batch")) == 1
        assert srv.app.creations == 1
        records = read_records(only_run(work), "test-model", DATASETS[0])
        assert all(r["error"] and "token_limit_exceeded" in r["error"] and "batch_1 (failed)" in r["error"]
                   for r in records)
        assert "were not scored" in capsys.readouterr().err
        assert main([*_argv(config, work, "--api-batch", "--dry-run"), "-r", "latest"]) == 0
        assert f"test-model: {2 * LIMIT} requests in 1 batch file" in capsys.readouterr().out
        # -r submits the failed lines in a new batch (the failed one is settled): now it works.
        srv.app.fail_first = 0
        assert main([*_argv(config, work, "--api-batch"), "-r", "latest"]) == 0
        assert (srv.app.uploads, srv.app.creations, srv.app.online) == (2, 2, 0)
    assert _records(only_run(work)) == _online(tmp_path, answers)


def test_dry_run_counts_requests_batch_files_and_the_saving(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1", batch_max_requests=3)  # nothing listens: never asked
    argv = _argv(config, tmp_path / "w", "--api-batch", "--dry-run", "--price-per-million-input", "2.5",
                 "--price-per-million-output", "10")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"test-model: {2 * LIMIT} requests in 3 batch files" in out  # 8 requests, at most 3 a file
    assert "saved (50%)" in out and "online" in out
    online = float(out.split("at most $")[1].split(" online")[0])
    batch = float(out.split("online, $")[1].split(" as a batch")[0])
    assert online > 0 and batch == pytest.approx(online / 2, abs=1e-4)
    assert not (tmp_path / "w").exists()
    assert main(_argv(_config(tmp_path, "http://127.0.0.1:9/v1"), tmp_path / "w", "--api-batch", "--dry-run")) == 0
    assert "--price-per-million-input" in capsys.readouterr().out  # no price: how to get one


def test_batch_files_split_at_the_count_and_size_limits() -> None:
    assert split_sizes([10] * 7, 3, 1000) == [range(0, 3), range(3, 6), range(6, 7)]
    assert split_sizes([400, 400, 400, 100], 100, 1000) == [range(0, 2), range(2, 4)]
    assert split_sizes([2000, 10], 100, 1000) == [range(0, 1), range(1, 2)]  # an oversized line alone
    assert split_sizes([], 3, 100) == []


@pytest.mark.parametrize("runner", ["ray", "slurm"])
def test_batch_with_another_runner_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                          runner: str) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    assert main(_argv(config, tmp_path / "w", "--api-batch", "--runner", runner)) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"leave out --runner {runner}")


def test_open_batches_are_named_when_a_run_goes_on_without_batch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from proctor.config.schema import ApiModelConfig
    from proctor.models.api import ApiBackend
    from proctor.models.batch_files import BatchEntry, BatchState

    folder = tmp_path / "batches" / "m"
    BatchState(folder, [BatchEntry("batch-0001", "/v1/chat/completions", 3, 100, file_id="file-1", batch_id="b1"),
                        BatchEntry("batch-0002", "/v1/chat/completions", 3, 100, file_id="file-2", batch_id="b2",
                                   delivered=True)]).save()
    ApiBackend(ApiModelConfig(api_base="http://127.0.0.1:9/v1", abbr="m")).attach_run(folder)
    assert "1 batches of this run are still open at the Batch API" in caplog.text
