"""Red team: a conversation whose first turn the server withheld (content filter, refusal) must
not break the whole evaluation of a judged benchmark (MT-Bench), and its second turn is never
judged as if it had an earlier answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, Reply
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data


@pytest.mark.parametrize("withheld", [Reply(None, finish_reason="content_filter"),
                                      Reply(None, fields=(("refusal", "I can't help with that."),))])
def test_a_withheld_first_turn_does_not_stop_mt_bench(tmp_path: Path, withheld: Reply) -> None:
    questions = [json.loads(line) for line in
                 (SHARED_DATASETS / "mt_bench/fastchat/llm_judge/data/mt_bench/question.jsonl")
                 .read_text(encoding="utf-8").splitlines()[:4]]
    blocked = {q["turns"][0] for q in questions[::2]}  # the first turn of questions 1 and 3

    after_withheld: list[str] = []

    def model(body: dict[str, Any]) -> Reply:
        users = [m["content"] for m in body["messages"] if m["role"] == "user"]
        if len(users) == 1 and users[0] in blocked:
            return withheld
        if users[0] in blocked:
            after_withheld.append(users[0])
        return Reply(f"An answer to turn {len(users)}.")

    judged: list[str] = []

    def judge(body: dict[str, Any]) -> str:
        judged.append(body["messages"][-1]["content"])
        return "Fine.\nRating: [[6]]"

    work = tmp_path / "w"
    with OpenAIServer(model, model_ids=["m"]) as m, OpenAIServer(judge, model_ids=["j"]) as j:
        code = main(["run", "--api-base", m.base_url, "--datasets", "mt_bench", "--data-dir", str(SHARED_DATASETS),
                     "-w", str(work), "--judge-api-base", j.base_url, "--limit", "4", "--no-cache"])
    assert code in (0, 1)  # not 2: nothing the user did is wrong
    (result_file,) = work.glob("*/results/m/mt_bench.json")
    result = json.loads(result_file.read_text(encoding="utf-8"))
    assert result["value"] == 6.0
    # The two answered conversations are judged in both turns, the blocked ones in neither.
    assert len(judged) == 4
    assert not any(q in prompt for q in blocked for prompt in judged)
    assert result["extra_metrics"]["no_answer"] == 2.0
    assert not after_withheld  # a second turn is never asked after a withheld first turn
