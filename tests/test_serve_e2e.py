"""`proctor run --api-base` against `proctor serve` equals a direct `--hf-path` run."""

from __future__ import annotations

from pathlib import Path

import pytest
from run_helpers import model_run_args, read_records, read_result, run_new
from serve_helpers import served_model
from shared_data import needs_shared_data

pytestmark = needs_shared_data

DATASETS = ["ceval-computer_network", "mmlu-abstract_algebra"]


def _run(work: Path, *model_args: str, datasets: list[str]) -> Path:
    argv = model_run_args(model_args, work, datasets, 2, "--fewshot", "1", "--max-out-len", "12", "--no-cache")
    return run_new(argv, work)


@pytest.mark.parametrize("mode", ["gen", "ppl"])
def test_served_model_scores_like_the_direct_run(tmp_path: Path, tiny_model_dir: Path, mode: str) -> None:
    datasets = DATASETS if mode == "gen" else [f"{d}_ppl" for d in DATASETS]
    with served_model(tiny_model_dir, served_model_name="tiny-served") as base_url:
        # No --api-model: the model id comes from GET /v1/models, as in the OpenCompass tutorial.
        over_http = _run(tmp_path / "http", "--api-base", base_url, datasets=datasets)
    direct = _run(tmp_path / "direct", "--hf-path", str(tiny_model_dir), datasets=datasets)
    for dataset in datasets:
        # Records are written in completion order; compare them sample by sample.
        http_records = sorted(read_records(over_http, "tiny-served", dataset), key=lambda r: r["sample_id"])
        direct_records = sorted(read_records(direct, tiny_model_dir.name, dataset), key=lambda r: r["sample_id"])
        assert len(http_records) == len(direct_records) == 2
        for a, b in zip(http_records, direct_records):
            assert a["sample_id"] == b["sample_id"]
            assert a["error"] is None and b["error"] is None
            if mode == "gen":
                assert a["output"] == b["output"]
                assert a["finish_reason"] == b["finish_reason"] and a["finish_reason"] in ("stop", "length")
            else:
                assert a["loglikelihoods"] == pytest.approx(b["loglikelihoods"], abs=1e-5)
            assert a["prediction"] == b["prediction"]
        assert read_result(over_http, "tiny-served", dataset)["value"] == read_result(direct, tiny_model_dir.name, dataset)["value"]
