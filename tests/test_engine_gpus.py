"""Planning, GPU assignment, and local models in GPU-pinned worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from openai_server import OpenAIServer
from run_helpers import model_run_args, only_run, read_manifest, read_records, read_result
from shared_data import needs_shared_data

from proctor.cli import main
from proctor.config.schema import ApiModelConfig, HFModelConfig, RunConfig
from proctor.core import Request, Response
from proctor.engine.gpus import GpuPool, check_fits, replicas_for, visible_gpus
from proctor.engine.local_runner import uses_gpu_workers
from proctor.engine.plan import describe_plan, make_plan
from proctor.engine.procworker import ProcessReplica
from proctor.errors import BackendError, ConfigError
from proctor.models.api import ApiBackend


def test_plan_splits_large_datasets_into_near_equal_shards() -> None:
    plan = make_plan(["a", "b"], [("big", 10), ("small", 3), ("empty", 0)], 4, {"a": 2})
    assert [(t.model, t.dataset, t.start, t.end) for t in plan if t.model == "a"] == [
        ("a", "big", 0, 3), ("a", "big", 3, 7), ("a", "big", 7, 10), ("a", "small", 0, 3), ("a", "empty", 0, 0),
    ]
    assert {t.num_gpus for t in plan if t.model == "a"} == {2} and {t.num_gpus for t in plan if t.model == "b"} == {0}
    # Every sample is in exactly one task.
    covered = sorted(i for t in plan if t.model == "b" and t.dataset == "big" for i in range(t.start, t.end))
    assert covered == list(range(10))
    assert [t.label for t in plan[:4]] == ["a/big[0:3]", "a/big[3:7]", "a/big[7:10]", "a/small"]
    assert make_plan(["a"], [("big", 10)], None)[0].label == "a/big"
    lines = describe_plan(plan[:2], {plan[0]: 1})
    assert lines[0] == "plan: 2 tasks, 7 samples"
    assert lines[1] == "  a/big[0:3]  (3 samples, 1 to do, 2 GPUs)"


def test_visible_gpus_reads_cuda_visible_devices_like_cuda() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,3"}) == ["0", "1", "3"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2,-1,3"}) == ["2"]  # CUDA stops at the first invalid id
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "GPU-8a1b,GPU-77c2"}) == ["GPU-8a1b", "GPU-77c2"]


def test_replicas_and_fit() -> None:
    assert replicas_for(1, 8, 20, None) == 8  # data parallel: one copy per GPU
    assert replicas_for(2, 8, 20, None) == 4
    assert replicas_for(1, 8, 3, None) == 3  # never more copies than tasks
    assert replicas_for(1, 8, 20, 2) == 2  # --max-num-workers caps it
    assert replicas_for(0, 8, 20, None) == 1 and replicas_for(1, 0, 20, None) == 1
    check_fits("m", 2, 2)
    with pytest.raises(ConfigError, match="num_gpus=4 but 2 GPU"):
        check_fits("m", 4, 2)


def test_gpu_pool_hands_out_disjoint_sets_first_come_first_served() -> None:
    async def scenario() -> list[object]:
        pool = GpuPool(["0", "1", "2", "3"])
        events: list[object] = []
        a = await pool.acquire(2)
        b = await pool.acquire(1)
        events += [a, b]
        big = asyncio.ensure_future(pool.acquire(3))  # must wait for a and b
        await asyncio.sleep(0)
        small = asyncio.ensure_future(pool.acquire(1))  # one GPU is free, but `big` asked first
        cancelled = asyncio.ensure_future(pool.acquire(1))
        await asyncio.sleep(0.01)
        events.append((big.done(), small.done()))
        cancelled.cancel()
        await asyncio.sleep(0)
        pool.release(a)
        await asyncio.sleep(0)
        events.append((big.done(), small.done()))
        events.append(sorted(await big))
        pool.release(b)
        events.append(await small)
        events.append(sorted(pool.free))
        return events

    a, b, waiting, after_a, big, small, free = asyncio.run(scenario())
    assert a == ["0", "1"] and b == ["2"]
    # GPU 3 was free all along, but `small` queued behind `big` (no starvation of large requests).
    assert waiting == (False, False)
    assert after_a == (True, False) and big == ["0", "1", "3"]
    assert small == ["2"] and free == []


def test_gpu_workers_only_when_there_are_gpus_to_share() -> None:
    hf = HFModelConfig(path="x")
    two = RunConfig(models=[hf, HFModelConfig(path="y", abbr="y")], datasets=[])
    one = RunConfig(models=[hf], datasets=[])
    assert uses_gpu_workers(one, ["0", "1"])  # one model, two GPUs: two replicas
    assert not uses_gpu_workers(one, ["0"])  # one model, one GPU: in this process
    assert uses_gpu_workers(two, ["0"])  # two models take turns on one GPU
    assert not uses_gpu_workers(two, [])
    assert not uses_gpu_workers(RunConfig(models=[hf], datasets=[], debug=True), ["0", "1"])
    cpu = RunConfig(models=[HFModelConfig(path="x", device="cpu")], datasets=[])
    assert not uses_gpu_workers(cpu, ["0", "1"])
    api = RunConfig(models=[ApiModelConfig(api_base="http://h/v1")], datasets=[])
    assert not uses_gpu_workers(api, ["0", "1"])


def test_worker_process_answers_like_the_backend_in_process_and_fails_clearly() -> None:
    config = ApiModelConfig(api_base="http://placeholder/v1")
    requests = [Request(kind="generate", prompt=f"question {i}", max_tokens=4) for i in range(5)]

    async def scenario(base: str) -> tuple[object, ...]:
        cfg = config.model_copy(update={"api_base": base})
        direct = ApiBackend(cfg)
        await direct.start()
        replica = ProcessReplica(cfg, "w")
        info = await replica.start(["5", "7"])
        got: dict[int, Response] = {}
        await replica.process(requests, lambda i, r: got.__setitem__(i, r))
        identity = direct.identity
        await direct.close()
        # The worker dies mid-task: the task fails with one clear line.
        stuck = asyncio.ensure_future(replica.process(requests, lambda i, r: None))
        await asyncio.sleep(0.3)
        os.kill(replica.pid, signal.SIGKILL)
        with pytest.raises(BackendError, match="exited unexpectedly") as info_err:
            await stuck
        await replica.close()
        return info, identity, got, str(info_err.value)

    with OpenAIServer(lambda body: body["messages"][-1]["content"].upper(), latency=0.5, model_ids=["w-model"]) as s:
        info, identity, got, message = asyncio.run(scenario(s.base_url))
    assert info.identity == identity and info.name == "w-model" and info.chat is True
    assert info.devices == "5,7"  # the worker saw only its GPUs
    assert [got[i].text for i in range(5)] == [f"QUESTION {i}" for i in range(5)]
    assert "\n" not in message


def test_worker_that_cannot_load_its_model_says_why(tmp_path: Path) -> None:
    async def scenario() -> None:
        replica = ProcessReplica(HFModelConfig(path=str(tmp_path / "missing")), "w")
        try:
            await replica.start(["0"])
        finally:
            await replica.close()

    with pytest.raises(BackendError) as info:
        asyncio.run(scenario())
    assert "missing" in str(info.value) and "\n" not in str(info.value)


@needs_shared_data
def test_local_model_on_two_gpus_runs_two_pinned_replicas_with_the_same_answers(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CUDA_VISIBLE_DEVICES declares two GPUs; this machine has none, so each worker runs its copy
    # on the CPU, but the assignment is the real one.
    datasets = ["ceval-computer_network", "mmlu-abstract_algebra"]

    def args(work: Path, *extra: str) -> list[str]:
        return model_run_args(["--hf-path", str(tiny_model_dir)], work, datasets, 2, "--fewshot", "0",
                              "--max-out-len", "3", "--no-cache", *extra)

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    # Four one-sample tasks on two replicas: each worker loads the model once and serves two tasks.
    assert main(args(tmp_path / "pinned", "--max-partition-size", "1")) == 0
    assert main(args(tmp_path / "debug", "--debug")) == 0  # one process
    pinned, debug = only_run(tmp_path / "pinned"), only_run(tmp_path / "debug")
    name = tiny_model_dir.name
    manifest = read_manifest(pinned)
    assert manifest["models"][name]["devices"] == ["0", "1"]
    assert "devices" not in read_manifest(debug)["models"][name]
    log = (pinned / "logs" / name / f"{datasets[0]}.log").read_text(encoding="utf-8")
    assert f"{name}/{datasets[0]}[0:1]" in log and f"{name}/{datasets[0]}[1:2]" in log
    for dataset in datasets:
        assert read_result(pinned, name, dataset) == read_result(debug, name, dataset)
        assert sorted((r["sample_id"], r["output"]) for r in read_records(pinned, name, dataset)) == sorted(
            (r["sample_id"], r["output"]) for r in read_records(debug, name, dataset)
        )
