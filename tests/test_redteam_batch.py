"""Red team: a Batch API output file that holds two different results for one custom id gives
that request no answer (it is asked again online), never whichever line came first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from batch_server import BatchServer
from run_helpers import KnownAnswers, load_slices, model_run_args, only_run, read_records
from shared_data import needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data
SUBJECTS = [("ceval", "computer_network", "val")]
KEY = "sk-redteam-batch-0123456789"


def test_two_results_for_one_request_are_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RT_BATCH_KEY", KEY)
    answers = KnownAnswers.of_slices(load_slices(SUBJECTS, 4))
    with BatchServer(answers, api_key=KEY) as srv:
        app = srv.app
        finish = app._finish
        forged: list[str] = []

        async def finish_with_a_duplicate(batch: Any) -> None:
            await finish(batch)
            lines = [json.loads(x) for x in app.files[batch.output_file_id].splitlines()]
            first = json.loads(json.dumps(lines[0]))
            first["response"]["body"]["choices"][0]["message"]["content"] = "答案：Z"  # another answer, first
            forged.append(first["custom_id"])
            app.files[batch.output_file_id] = "".join(json.dumps(x) + "\n" for x in [first, *lines]).encode("utf-8")

        app._finish = finish_with_a_duplicate
        config = tmp_path / "cfg.yaml"  # JSON is YAML
        config.write_text(json.dumps({"models": [{
            "type": "api", "api_base": srv.base_url, "model": "test-model", "api_key_env": "RT_BATCH_KEY",
            "batch_poll_s": 0.02, "batch_poll_max_s": 0.05}]}), encoding="utf-8")
        argv = model_run_args([str(config)], tmp_path / "w", ["ceval-computer_network"], 4, "--no-cache",
                              "--api-batch", "--batch-retry", "online")
        assert main(argv) == 0
        assert forged and app.online == 1  # the request with two results was asked again, online
    records = read_records(only_run(tmp_path / "w"), "test-model", "ceval-computer_network")
    assert not any("Z" in (r["output"] or "") for r in records)
