"""An API model's limits hold across all its datasets; --debug runs tasks one by one."""

from __future__ import annotations

from pathlib import Path

import pytest
from openai_server import OpenAIServer, RecordedRequest, last_user_message
from run_helpers import KnownAnswers, dataset_names, dataset_of, only_run, read_result, run_args, slice_fixtures
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.api import evaluate
from proctor.cli import main

pytestmark = needs_shared_data

SUBJECTS = [("ceval", "computer_network", "val"), ("cmmlu", "anatomy", "test"), ("mmlu", "abstract_algebra", "test")]
DATASETS = dataset_names(SUBJECTS)
LIMIT = 8

slices, answers = slice_fixtures(SUBJECTS, LIMIT)


def _dataset_of(request: RecordedRequest, answers: KnownAnswers, slices: dict[str, list]) -> str:
    return dataset_of(slices, answers.sample_for(last_user_message(request.json)))


def test_two_models_keep_their_own_limits_across_all_datasets(
    tmp_path: Path, answers: KnownAnswers, slices: dict[str, list]
) -> None:
    qps = 10.0
    with OpenAIServer(answers, latency=0.1, model_ids=["capped"]) as a, OpenAIServer(
        answers, latency=0.02, model_ids=["metered"]
    ) as b:
        outcome = evaluate(
            [
                {"type": "api", "api_base": a.base_url, "max_concurrency": 4},
                {"type": "api", "api_base": b.base_url, "qps": qps},
            ],
            DATASETS,
            limit=LIMIT,
            data_dir=str(SHARED_DATASETS),
            work_dir=str(tmp_path),
            cache=False,
        )
        capped, metered = a.post_requests(), b.post_requests()
        capped_stats = a.stats()
    assert outcome.failed == 0
    assert len(capped) == len(metered) == LIMIT * len(DATASETS)
    # The concurrency limit is per endpoint: the three datasets' tasks run at once (limits per task
    # would open 12), yet never more than 4 requests are open, and the limit is used fully.
    assert capped_stats.max_in_flight == 4
    assert {_dataset_of(r, answers, slices) for r in capped} == set(DATASETS)
    # The rate limit too: in any window of T seconds at most burst + qps * T requests (burst = qps),
    # give or take one request of rounding and a request reaching the server up to `late` s after
    # its slot (timers; two servers and the run share one process, so one GIL, on a busy box).
    late = 0.25
    arrivals = sorted(r.arrived for r in metered)
    for i, start in enumerate(arrivals):
        for j in range(i, len(arrivals)):
            assert j - i + 1 <= qps + qps * (arrivals[j] - start + late) + 1
    # ... and the 14 requests after the burst took about 1.4 s (without the limit: ~0.1 s).
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - qps) / qps - late
    run = only_run(tmp_path)
    for model in ("capped", "metered"):
        for dataset, samples in slices.items():
            assert read_result(run, model, dataset)["value"] == pytest.approx(answers.expected_accuracy(samples))


def test_debug_runs_tasks_one_after_another_in_plan_order(
    tmp_path: Path, answers: KnownAnswers, slices: dict[str, list]
) -> None:
    with OpenAIServer(answers, latency=0.01, model_ids=["m"]) as server:
        code = main(run_args(server.base_url, tmp_path, DATASETS, LIMIT, "--debug", "--no-cache",
                             "--max-partition-size", "5"))
        requests = server.post_requests()
    assert code == 0
    order = [_dataset_of(r, answers, slices) for r in requests]
    # Grouped by dataset, in the order given: no two tasks overlap.
    assert order == [d for d in DATASETS for _ in range(LIMIT)]
    shards = [(0, 4), (4, 8)]  # 8 samples in shards of at most 5: two of 4
    for dataset in DATASETS:
        log = (only_run(tmp_path) / "logs" / "m" / f"{dataset}.log").read_text(encoding="utf-8").splitlines()
        assert [line.split(": ")[0] for line in log] == [f"m/{dataset}[{a}:{b}]" for a, b in shards]
