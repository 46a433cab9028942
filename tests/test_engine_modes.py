"""--mode infer|eval|report re-run one stage from disk; --dry-run plans without running; bad run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from openai_server import OpenAIServer, free_port
from run_helpers import (
    KnownAnswers,
    dataset_names,
    only_run,
    predictions_path,
    read_records,
    read_result,
    read_summary,
    run_args,
    slice_fixtures,
)
from shared_data import needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("mmlu", "abstract_algebra", "test")]
DATASETS = dataset_names(SUBJECTS)
LIMIT = 10

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


def _args(base_url: str, work: Path, *extra: str) -> list[str]:
    return run_args(base_url, work, DATASETS, LIMIT, "--api-model", "m", "--no-cache", *extra)


def test_infer_then_eval_then_report_each_from_disk(
    tmp_path: Path, answers: KnownAnswers, slices: dict[str, list], capsys: pytest.CaptureFixture[str]
) -> None:
    work = tmp_path / "out"
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(_args(server.base_url, work, "--mode", "infer")) == 0
        assert len(server.post_requests()) == LIMIT * len(DATASETS)
    run = only_run(work)
    assert all(len(read_records(run, "m", d)) == LIMIT for d in DATASETS)
    assert not (run / "results").exists() and not (run / "summary").exists()
    config_before = (run / "config.json").read_text(encoding="utf-8")

    # eval needs no server: a closed port proves nothing is sent.
    closed = f"http://127.0.0.1:{free_port()}/v1"
    # Break one stored prediction: eval extracts the answers again from the raw outputs.
    path = predictions_path(run, "m", DATASETS[0])
    records = read_records(run, "m", DATASETS[0])
    records[0] = {**records[0], "prediction": "Z", "correct": False}
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    assert main(_args(closed, work, "--mode", "eval", "-r", "latest")) == 0
    for dataset, samples in slices.items():
        assert read_result(run, "m", dataset)["value"] == pytest.approx(answers.expected_accuracy(samples))
    assert (run / "summary" / "summary.txt").is_file() and (run / "report.html").is_file()
    assert (run / "config.json").read_text(encoding="utf-8") == config_before  # eval keeps the run's config

    # report reads results/*.json only: edit one and the table shows it; predictions are not needed.
    result_path = run / "results" / "m" / f"{DATASETS[1]}.json"
    result = json.loads(result_path.read_text(encoding="utf-8"))
    result_path.write_text(json.dumps({**result, "value": 12.34}), encoding="utf-8")
    for p in (run / "predictions").rglob("*.jsonl"):
        p.unlink()
    capsys.readouterr()
    assert main(_args(closed, work, "--mode", "report")) == 0  # no -r: the latest run
    assert "12.34" in read_summary(run)
    assert "12.34" in capsys.readouterr().out


def test_report_without_results_says_what_to_do(tmp_path: Path, answers: KnownAnswers,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(_args(server.base_url, tmp_path, "--mode", "infer")) == 0
        capsys.readouterr()
        assert main(_args(server.base_url, tmp_path, "--mode", "report")) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no results" in err and "--mode eval" in err


def test_dry_run_prints_the_plan_and_touches_nothing(
    tmp_path: Path, answers: KnownAnswers, slices: dict[str, list], capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"
    work = tmp_path / "out"
    assert main(_args(closed, work, "--dry-run", "--max-partition-size", "4")) == 0
    out = capsys.readouterr().out
    assert not work.exists()
    assert "plan: 6 tasks, 20 samples" in out
    for dataset in DATASETS:  # 10 samples in near-equal shards of at most 4
        for a, b in ((0, 3), (3, 7), (7, 10)):
            assert f"m/{dataset}[{a}:{b}]  ({b - a} samples)" in out

    # With -r: how much each task still has to send.
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(_args(server.base_url, work)) == 0
        run = only_run(work)
        path = predictions_path(run, "m", DATASETS[0])
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:6]) + lines[6][:20])  # 6 records and a half-written line
        server.reset()
        capsys.readouterr()
        assert main(_args(server.base_url, work, "--dry-run", "-r", "latest", "--max-partition-size", "5")) == 0
        out = capsys.readouterr().out
        assert server.post_requests() == []
    kept = {json.loads(line)["sample_id"] for line in lines[:6]}  # records are in completion order
    ids = [s.id for s in slices[DATASETS[0]]]
    for a, b in ((0, 5), (5, 10)):
        to_do = sum(1 for sid in ids[a:b] if sid not in kept)
        assert f"m/{DATASETS[0]}[{a}:{b}]  (5 samples, {to_do} to do)" in out
    assert f"m/{DATASETS[1]}[5:10]  (5 samples, 0 to do)" in out
    assert path.read_bytes().endswith(lines[6][:20])  # a dry run repairs nothing either


def test_dry_run_with_r_knows_a_discovered_model_id(
    tmp_path: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without --api-model the id comes from GET /v1/models at run time; the dry run used to say
    # `api-model/...` and count every sample as still to do.
    with OpenAIServer(answers, model_ids=["served/m"]) as server:
        args = [a for a in _args(server.base_url, tmp_path, "--limit", "3") if a not in ("--api-model", "m")]
        assert main(args) == 0
        capsys.readouterr()
        assert main([*args, "--dry-run", "-r", "latest"]) == 0
    out = capsys.readouterr().out
    for dataset in DATASETS:
        assert f"served/m/{dataset}  (3 samples, 0 to do)" in out


def test_run_folder_of_an_incompatible_version_is_refused(
    tmp_path: Path, answers: KnownAnswers, capsys: pytest.CaptureFixture[str]
) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        assert main(_args(server.base_url, tmp_path, "--limit", "2")) == 0
        run = only_run(tmp_path)
        config = json.loads((run / "config.json").read_text(encoding="utf-8"))
        (run / "config.json").write_text(json.dumps({**config, "proctor_layout": 99}), encoding="utf-8")
        server.reset()
        capsys.readouterr()
        assert main(_args(server.base_url, tmp_path, "-r", "latest")) == 2
        assert server.post_requests() == []
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "incompatible" in err and str(run) in err and "new run" in err


def test_latest_is_the_last_run_started(tmp_path: Path, answers: KnownAnswers) -> None:
    with OpenAIServer(answers, model_ids=["m"]) as server:
        for name in ("20240101_000000", "20240101_000000_2", "20240101_000000_10"):
            (tmp_path / name).mkdir()
            assert main(_args(server.base_url, tmp_path, "--limit", "1", "-r", name)) == 2  # no config yet
        for name in ("20240101_000000_10", "20240101_000000_2", "20240101_000000"):
            (tmp_path / name / "config.json").write_text(json.dumps({"proctor_layout": 1}), encoding="utf-8")
        # Resuming the oldest touches it last; `latest` is still the last one started (_10, not _2).
        assert main(_args(server.base_url, tmp_path, "--limit", "1", "-r", "20240101_000000")) == 0
        assert main(_args(server.base_url, tmp_path, "--limit", "1", "-r", "latest")) == 0
    assert (tmp_path / "20240101_000000_10" / "predictions").is_dir()
    assert not (tmp_path / "20240101_000000_2" / "predictions").exists()
