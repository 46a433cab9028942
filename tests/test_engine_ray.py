"""--runner ray on a local Ray instance (2 CPUs): the same records and results as the local runner."""

from __future__ import annotations

import json
import sys
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
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.config.schema import ApiModelConfig, HFModelConfig
from proctor.engine.ray_runner import ray_gpu_request
from proctor.errors import ConfigError

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("cmmlu", "anatomy", "test"), ("mmlu", "abstract_algebra", "test")]
DATASETS = dataset_names(SUBJECTS)
LIMIT = 10
SECRET = "sk-ray-test-0c1d2e3f"


@pytest.fixture(scope="module")
def ray_instance() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the Ray runner needs the [ray] extra")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


slices, answers = slice_fixtures(SUBJECTS, LIMIT)


def _api_args(base_url: str, work: Path, *extra: str) -> list[str]:
    return run_args(base_url, work, DATASETS, LIMIT, "--no-cache", "--max-concurrency", "3",
                    "--max-partition-size", "4", "--api-key-env", "RAY_TEST_KEY", *extra)


def _conclusions(run: Path, model: str, datasets: list[str]) -> dict[str, Any]:
    """Per dataset: the result and each sample's output and verdict (no timings)."""
    return {
        d: (
            read_result(run, model, d),
            sorted((r["sample_id"], r["output"], r["prediction"], r["correct"], json.dumps(r["prompt"]))
                   for r in read_records(run, model, d)),
        )
        for d in datasets
    }


def test_ray_runner_gives_the_local_runners_results_and_keeps_the_limit(
    tmp_path: Path, ray_instance: Any, answers: KnownAnswers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_TEST_KEY", SECRET)
    with OpenAIServer(answers, latency=0.05, model_ids=["m"], api_key=SECRET) as server:
        assert main(_api_args(server.base_url, tmp_path / "local")) == 0
        server.reset()
        assert main(_api_args(server.base_url, tmp_path / "ray", "--runner", "ray")) == 0
        stats = server.stats()
        # One actor per API model: all 9 tasks (3 datasets x 3 shards) share its 3 connections.
        assert stats.n_requests == LIMIT * len(DATASETS) and stats.max_in_flight == 3
    local, on_ray = only_run(tmp_path / "local"), only_run(tmp_path / "ray")
    assert _conclusions(on_ray, "m", DATASETS) == _conclusions(local, "m", DATASETS)
    manifest = read_manifest(on_ray)
    assert manifest["runner"] == "ray" and manifest["models"]["m"]["identity"] == f"api|{server.base_url}|m|chat"
    # The same run folder layout.
    assert sorted(p.relative_to(on_ray).as_posix() for p in on_ray.rglob("*") if p.is_file()) == sorted(
        p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()
    )

    for path in on_ray.rglob("*"):  # the key reached the actor, and no file
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path

    # Resume on Ray: only what has no record is sent.
    path = predictions_path(on_ray, "m", DATASETS[1])
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:3]))
    with OpenAIServer(answers, model_ids=["m"], api_key=SECRET, port=server.port) as server:  # the same endpoint
        assert main(_api_args(server.base_url, tmp_path / "ray", "--runner", "ray", "-r", "latest")) == 0
        assert len(server.post_requests()) == LIMIT - 3
    assert _conclusions(on_ray, "m", DATASETS)[DATASETS[1]][1] == _conclusions(local, "m", DATASETS)[DATASETS[1]][1]


def test_local_model_on_ray_loads_in_an_actor_and_matches(
    tmp_path: Path, ray_instance: Any, tiny_model_dir: Path
) -> None:
    datasets = DATASETS[:2]

    def args(work: Path, *extra: str) -> list[str]:
        return model_run_args(["--hf-path", str(tiny_model_dir)], work, datasets, 2, "--fewshot", "0",
                              "--max-out-len", "3", "--no-cache", *extra)

    assert main(args(tmp_path / "local")) == 0
    assert main(args(tmp_path / "ray", "--runner", "ray")) == 0
    name = tiny_model_dir.name
    assert _conclusions(only_run(tmp_path / "ray"), name, datasets) == _conclusions(
        only_run(tmp_path / "local"), name, datasets
    )


def test_without_ray_installed_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when it is absent
    code = main(run_args("http://127.0.0.1:9/v1", tmp_path, DATASETS[:1], 1, "--api-model", "m", "--runner", "ray"))
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "proctor[ray]" in err
    assert list(tmp_path.iterdir()) == []  # no run folder for a run that could not start


def test_gpu_requests_to_ray_fit_the_cluster() -> None:
    hf = HFModelConfig(path="x", num_gpus=2)
    assert ray_gpu_request(hf, 8) == 2
    assert ray_gpu_request(ApiModelConfig(api_base="http://h/v1"), 8) == 0
    assert ray_gpu_request(HFModelConfig(path="x", device="cpu"), 8) == 0
    assert ray_gpu_request(hf, 0) == 0  # no GPU in the cluster: the model runs on CPU, with a warning
    with pytest.raises(ConfigError, match="has no GPUs"):
        ray_gpu_request(HFModelConfig(path="x", device="cuda:0"), 0)
    with pytest.raises(ConfigError, match="num_gpus=2 but the Ray cluster has 1"):
        ray_gpu_request(hf, 1)
