"""Red team: a server's log-probs decide a multiple-choice answer, so one that is not a
log-probability (NaN, null inside the continuation, positive, a bool) must fail the request,
never pick the option: a null was left out of the sum, a positive value won every question."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, default_logprob_fn
from run_helpers import only_run, read_records, run_args
from shared_data import needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data


@pytest.mark.parametrize("bad", [3.0, None, float("nan"), True])
def test_a_bad_log_prob_fails_the_item_instead_of_choosing_its_option(tmp_path: Path, bad: Any) -> None:
    def logprob_fn(prompt: str):  # type: ignore[no-untyped-def]
        tokens, offsets, logprobs = default_logprob_fn(prompt)
        if prompt.endswith(" B"):
            logprobs = [*logprobs[:-1], bad]
        return tokens, offsets, logprobs

    with OpenAIServer(logprob_fn=logprob_fn, model_ids=["scorer"]) as server:
        code = main(run_args(server.base_url, tmp_path, ["mmlu-abstract_algebra_ppl"], 4, "--retry", "0"))
    assert code == 1  # failed requests, not answers
    records = read_records(only_run(tmp_path), "scorer", "mmlu-abstract_algebra_ppl")
    assert len(records) == 4
    assert all(r["error"] and "log-probability" in r["error"] for r in records)
    assert not any(r.get("prediction") == "B" for r in records)
    result = json.loads(next(only_run(tmp_path).glob("results/*/*.json")).read_text(encoding="utf-8"))
    assert result["n_failed"] == 4


@pytest.mark.parametrize("shape", ["backwards", "past_the_end"])
def test_offsets_that_cannot_be_placed_fail_the_item(tmp_path: Path, shape: str) -> None:
    """Offsets past the text left the continuation with no token: its sum 0.0 beat every option."""
    def logprob_fn(prompt: str):  # type: ignore[no-untyped-def]
        tokens, offsets, logprobs = default_logprob_fn(prompt)
        if prompt.endswith(" B"):
            if shape == "backwards":
                offsets = [*offsets[:-1], 0]
            else:
                offsets = [offsets[0]] + [len(prompt) + 5 + i for i in range(len(offsets) - 1)]
        return tokens, offsets, logprobs

    with OpenAIServer(logprob_fn=logprob_fn, model_ids=["scorer"]) as server:
        code = main(run_args(server.base_url, tmp_path, ["mmlu-abstract_algebra_ppl"], 4, "--retry", "0"))
    assert code == 1
    records = read_records(only_run(tmp_path), "scorer", "mmlu-abstract_algebra_ppl")
    assert all(r["error"] for r in records) and not any(r.get("prediction") == "B" for r in records)
