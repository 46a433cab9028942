"""--runner slurm against a real one-node Slurm cluster (slurmctld + slurmd + munged, started here):
the local runner's records and results, a cancelled job submitted again, and `-r` after the
submitting process was killed waiting for the jobs it had submitted instead of submitting twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from openai_server import OpenAIServer
from run_helpers import (
    KnownAnswers,
    dataset_names,
    model_run_args,
    only_run,
    predictions_path,
    read_manifest,
    read_records,
    read_result,
    run_args,
    slice_fixtures,
)
from shared_data import SHARED_DATASETS, needs_shared_data
from slurm_cluster import SlurmCluster, start_cluster

import proctor
from proctor.cli import main
from proctor.errors import ProctorError

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("mmlu", "abstract_algebra", "test")]
DATASETS = dataset_names(SUBJECTS)
LIMIT = 4
SECRET = "sk-slurm-test-5a6b7c8d"

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    started = start_cluster(tmp_path_factory.mktemp("slurm"))
    if isinstance(started, str):
        pytest.skip(started)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PYTHONPATH")}
    os.environ["SLURM_CONF"] = started.env["SLURM_CONF"]
    # The jobs import this very proctor (a worktree's src, not another install).
    src = str(Path(proctor.__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (src, saved["PYTHONPATH"]) if p)
    yield started
    started.stop()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _args(base_url: str, work: Path, *extra: str) -> list[str]:
    return run_args(base_url, work, DATASETS, LIMIT, "--no-cache", "--api-model", "m", "--max-partition-size", "2",
                    "--api-key-env", "SLURM_TEST_KEY", *extra)


def _conclusions(run: Path) -> dict[str, Any]:
    """Per dataset: the result and each sample's output and verdict (no timings)."""
    return {
        d: (
            read_result(run, "m", d),
            sorted((r["sample_id"], r["output"], r["prediction"], r["correct"], json.dumps(r["prompt"]))
                   for r in read_records(run, "m", d)),
        )
        for d in DATASETS
    }


def _jobs(run: Path) -> dict[str, list[str]]:
    return json.loads((run / "slurm" / "jobs.json").read_text(encoding="utf-8"))["jobs"]


def _wait_for(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _submitter(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """`proctor run ...` as its own process (so that it can be killed)."""
    return subprocess.Popen([sys.executable, "-m", "proctor", *argv], stdout=log.open("wb"), stderr=subprocess.STDOUT)


def test_slurm_jobs_give_the_local_runners_records_and_results(
    tmp_path: Path, cluster: SlurmCluster, answers: KnownAnswers, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("SLURM_TEST_KEY", SECRET)
    with OpenAIServer(answers, model_ids=["m"], api_key=SECRET) as server:
        assert main(_args(server.base_url, tmp_path / "local")) == 0
        server.reset()
        assert main(_args(server.base_url, tmp_path / "slurm", "--runner", "slurm")) == 0
        assert len(server.post_requests()) == LIMIT * len(DATASETS)
    local, on_slurm = only_run(tmp_path / "local"), only_run(tmp_path / "slurm")
    assert _conclusions(on_slurm) == _conclusions(local)
    # One job per (model, shard), all in one job array: 2 datasets x 2 shards.
    jobs = _jobs(on_slurm)
    assert len(jobs) == 4 and all(len(ids) == 1 for ids in jobs.values())
    assert len({ids[0].split("_")[0] for ids in jobs.values()}) == 1
    manifest = read_manifest(on_slurm)
    assert manifest["runner"] == "slurm" and manifest["models"]["m"]["identity"] == f"api|{server.base_url}|m|chat"
    # The local runner's layout, plus the jobs' own folder.
    files = sorted(p.relative_to(on_slurm).as_posix() for p in on_slurm.rglob("*") if p.is_file())
    assert [f for f in files if not f.startswith("slurm/")] == sorted(
        p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    for path in on_slurm.rglob("*"):  # the key reached the jobs, and no file
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path

    # Resume: only the shards with missing records get a job, and it sends only what is missing.
    path = predictions_path(on_slurm, "m", DATASETS[1])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(lines[0])
    # The submitting process is killed once it has submitted; its jobs finish while nothing
    # watches them; `-r` then merges what they wrote and submits nothing.
    server.reset()
    resume = _args(server.base_url, tmp_path / "slurm", "--runner", "slurm", "-r", "latest")
    with server:  # the same server (another URL would be another model)
        submitter = _submitter(resume, tmp_path / "resume.log")
        try:
            _wait_for(lambda: sum(map(len, _jobs(on_slurm).values())) == 6, "the resumed run's two jobs")
        finally:
            submitter.kill()
            submitter.wait()
        name = json.loads((on_slurm / "slurm" / "jobs.json").read_text(encoding="utf-8"))["name"]
        _wait_for(lambda: not cluster.command("squeue", "--noheader", f"--name={name}").stdout.strip(),
                  "the jobs to leave the queue")
        assert main(resume) == 0
        assert len(server.post_requests()) == LIMIT - 1
    assert _conclusions(on_slurm) == _conclusions(local)
    again = _jobs(on_slurm)
    assert sorted(len(ids) for ids in again.values()) == [1, 1, 2, 2]

    # A job refusing the run (another model than the one that made its records) stops the run in one line.
    path.write_bytes(lines[0])
    with OpenAIServer(answers, model_ids=["m"], api_key=SECRET) as other:
        code = main(_args(other.base_url, tmp_path / "slurm", "--runner", "slurm", "-r", "latest"))
        assert not other.post_requests()
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: slurm job ") and "is not the model that made this run's records" in err


def test_a_cancelled_job_is_submitted_again_and_a_killed_submitter_finds_its_jobs(
    tmp_path: Path, cluster: SlurmCluster, answers: KnownAnswers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_TEST_KEY", SECRET)
    work, dataset = tmp_path / "work", DATASETS[0]
    with OpenAIServer(answers, model_ids=["m"], api_key=SECRET, latency=60.0) as server:
        argv = run_args(server.base_url, work, [dataset], LIMIT, "--no-cache", "--api-model", "m",
                        "--api-key-env", "SLURM_TEST_KEY", "--runner", "slurm", "--retry", "1")
        submitter = _submitter(argv, tmp_path / "submitter.log")
        try:
            # The job runs once its requests reach the server (they are held there).
            _wait_for(lambda: len(server.post_requests()) == LIMIT, "the first job's requests")
            run = only_run(work)
            (first,) = _jobs(run)["0"]
            assert cluster.command("scancel", first).returncode == 0  # as a preemption would
            # The submitter sees the job leave the queue unfinished and submits it again.
            _wait_for(lambda: len(_jobs(run)["0"]) == 2, "the job submitted again")
            second = _jobs(run)["0"][1]
            server.app.latency = 2.0
            _wait_for(lambda: len(server.post_requests()) > LIMIT, "the second job's requests")
        finally:
            submitter.send_signal(signal.SIGKILL)  # the submitting process dies; its job goes on
            submitter.wait()
        assert not (run / "predictions").exists() or not any((run / "predictions").rglob("*.jsonl"))
        # -r finds the queued job (no new submission), waits for it and merges what it wrote.
        assert main(["run", "-w", str(work), "-r", "latest"]) == 0
        assert _jobs(run)["0"] == [first, second]
        assert len(server.post_requests()) == 2 * LIMIT  # the cancelled job's, then its successor's: none twice
    records = read_records(run, "m", dataset)
    assert len(records) == LIMIT and not any(r["error"] for r in records)
    assert read_result(run, "m", dataset)["n_failed"] == 0
    log = (tmp_path / "submitter.log").read_text(encoding="utf-8")
    assert f"slurm job {first}" in log and "submitting it again (retry 1 of 1)" in log


def test_a_job_the_cluster_refuses_is_one_line_and_leaves_no_run(
    tmp_path: Path, cluster: SlurmCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_args("http://127.0.0.1:9/v1", tmp_path, "--runner", "slurm", "--partition", "nosuch"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0, err
    assert "sbatch refused the job" in err and "invalid partition" in err.lower() and "--partition" in err
    assert list(tmp_path.iterdir()) == []


def test_without_slurm_commands_the_error_says_so_before_a_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code = main(_args("http://127.0.0.1:9/v1", tmp_path / "work", "--runner", "slurm"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "sbatch, squeue, scancel not found on PATH" in err
    assert not (tmp_path / "work").exists()


def test_sbatch_options_follow_each_models_needs() -> None:
    from proctor.config.schema import ApiModelConfig, DatasetConfig, HFModelConfig, RunConfig
    from proctor.engine.slurm_runner import model_options
    from proctor.errors import ConfigError

    def config(**options: Any) -> RunConfig:
        return RunConfig(models=[ApiModelConfig(api_base="http://h/v1")], datasets=[DatasetConfig(abbr="d", benchmark="ceval")],
                         runner="slurm", **options)

    plain = config(slurm_partition="gpu", slurm_time="1:00:00", slurm_args="--qos=high --comment='a b'")
    assert model_options(plain, HFModelConfig(path="x", num_gpus=2)) == (
        "--partition=gpu", "--gres=gpu:2", "--time=1:00:00", "--qos=high", "--comment=a b")
    # An API model and a model on the CPU ask for no GPU; --gres replaces gpu:<num_gpus>.
    assert model_options(plain, ApiModelConfig(api_base="http://h/v1"))[:2] == ("--partition=gpu", "--time=1:00:00")
    assert not any(o.startswith("--gres") for o in model_options(plain, HFModelConfig(path="x", device="cpu")))
    assert "--gres=gpu:a100:1" in model_options(config(slurm_gres="gpu:a100:1"), HFModelConfig(path="x"))
    with pytest.raises(ConfigError, match="--slurm-args"):
        model_options(config(slurm_args="--comment='open"), HFModelConfig(path="x"))


def test_retry_counts_job_resubmissions_with_the_slurm_runner() -> None:
    from proctor.api import build_run_config

    def built(*runner: str, retry: int = 5) -> Any:
        return build_run_config(hf={"type": "hf", "path": "x"}, datasets=["ceval-computer_network"],
                                model_overrides={"retry": retry}, run_options={"runner": runner[0]} if runner else {})

    # No API model: --retry is only the jobs' (without the Slurm runner it would be refused).
    assert built("slurm").slurm_retry == 5
    with pytest.raises(ProctorError, match="--retry applies to"):
        built()


def test_taking_the_run_leaves_the_jobs_temporary_files_alone(tmp_path: Path) -> None:
    from proctor.engine.rundir import RunDir, remove_temp_files

    run = RunDir(tmp_path / "run")
    mine = run.root / ".manifest.json.abc.tmp"  # a killed submitter's: removed when the run is taken
    theirs = run.root / "slurm" / "out" / "0" / "7_0" / ".result.json.def.tmp"  # a running job's
    for path in (mine, theirs):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{", encoding="utf-8")
    assert remove_temp_files(run) == 1
    assert not mine.exists() and theirs.exists()


def test_a_local_model_in_slurm_jobs_matches_the_local_runner(
    tmp_path: Path, cluster: SlurmCluster, tiny_model_dir: Path
) -> None:
    def args(work: Path, *extra: str) -> list[str]:
        return model_run_args(["--hf-path", str(tiny_model_dir), "--device", "cpu"], work, DATASETS[:1], 2,
                              "--fewshot", "0", "--max-out-len", "3", "--no-cache", *extra)

    assert main(args(tmp_path / "local")) == 0
    assert main(args(tmp_path / "slurm", "--runner", "slurm")) == 0
    name = tiny_model_dir.name
    local, on_slurm = only_run(tmp_path / "local"), only_run(tmp_path / "slurm")

    def outputs(run: Path) -> list[tuple[str, str, str]]:
        return sorted((r["sample_id"], r["output"], json.dumps(r["prompt"])) for r in read_records(run, name, DATASETS[0]))

    assert read_result(on_slurm, name, DATASETS[0]) == read_result(local, name, DATASETS[0])
    assert outputs(on_slurm) == outputs(local) and len(outputs(local)) == 2
    assert read_manifest(on_slurm)["models"][name]["identity"] == read_manifest(local)["models"][name]["identity"]


def test_the_jobs_get_the_config_as_given_secrets_included() -> None:
    from proctor.config.schema import ApiModelConfig, DatasetConfig, HFModelConfig, RunConfig
    from proctor.engine.slurm_job import decode_config, encode_config

    # Built in Python: no `type` given (the union's default tag), a key and a password in the URL.
    config = RunConfig(models=[ApiModelConfig(api_base="http://u:pw@h/v1", api_key=SECRET), HFModelConfig(path="x")],
                       datasets=[DatasetConfig(abbr="d", benchmark="ceval")], runner="slurm")
    encoded = encode_config(config)
    api, hf = decode_config(encoded).models
    assert api.api_key is not None and api.api_key.get_secret_value() == SECRET and api.api_base == "http://u:pw@h/v1"
    # Unset stays unset: a default that depends on it (a reasoning model's answer budget) is the same.
    assert "max_out_len" not in api.model_fields_set and isinstance(hf, HFModelConfig)


def test_slurm_flags_without_the_slurm_runner_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_args("http://127.0.0.1:9/v1", tmp_path, "--partition", "gpu")) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --partition applies to --runner slurm (this run's runner is local)"
    assert list(tmp_path.iterdir()) == []


def test_a_job_out_of_retries_leaves_its_samples_unanswered_and_exit_1(
    tmp_path: Path, cluster: SlurmCluster, answers: KnownAnswers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLURM_TEST_KEY", SECRET)
    work = tmp_path / "work"
    with OpenAIServer(answers, model_ids=["m"], api_key=SECRET, latency=60.0) as server:
        argv = run_args(server.base_url, work, DATASETS[:1], LIMIT, "--no-cache", "--api-model", "m",
                        "--api-key-env", "SLURM_TEST_KEY", "--runner", "slurm", "--slurm-retry", "0")
        submitter = _submitter(argv, tmp_path / "submitter.log")
        try:
            _wait_for(lambda: len(server.post_requests()) == LIMIT, "the job's requests")
            (job,) = _jobs(only_run(work))["0"]
            assert cluster.command("scancel", job).returncode == 0
            assert submitter.wait(30) == 1
        finally:
            if submitter.poll() is None:
                submitter.kill()
                submitter.wait()
    log = (tmp_path / "submitter.log").read_text(encoding="utf-8")
    assert f"slurm job {job}" in log and "no retries left: its samples stay unanswered" in log
    assert f"error: {LIMIT} samples have no answer" in log.replace("\n", " ")
    result = read_result(only_run(work), "m", DATASETS[0])
    assert (result["n"], result["n_failed"]) == (0, LIMIT)  # nothing scored from a job that never finished


def test_a_task_is_submitted_again_when_its_prompts_changed() -> None:
    from types import SimpleNamespace

    from proctor.config.schema import DatasetConfig
    from proctor.engine.prepare import prepare_dataset
    from proctor.engine.slurm_job import JobTask
    from proctor.engine.slurm_runner import _needs_work

    def prepared(fewshot: int) -> Any:
        config = DatasetConfig(abbr=DATASETS[0], benchmark="ceval", subject="computer_network", limit=LIMIT,
                               fewshot=fewshot)
        return prepare_dataset(config, str(SHARED_DATASETS))

    now = prepared(1)
    task = JobTask("m", 0, DATASETS[0], 0, LIMIT)
    answered = {item.id: SimpleNamespace(failed=False) for item in now.items}
    made_with = {"datasets": {DATASETS[0]: {"prompt_version": now.version, "fewshot": 1}}}
    assert not _needs_work(task, now, answered, made_with)
    assert _needs_work(task, now, {**answered, now.items[-1].id: SimpleNamespace(failed=True)}, made_with)
    # Answers made with another few-shot count are sent again (as the local runner does).
    assert _needs_work(task, prepared(2), answered, made_with)
