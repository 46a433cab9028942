"""HumanEval end to end against the real test server: code in the styles chat and base models
answer in, run in the sandbox, scored pass@1 (and pass@k), the sandbox recorded in the manifest."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import only_run, read_manifest, read_result, read_scores, read_summary, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Sample
from proctor.tasks import load_samples

pytestmark = needs_shared_data

LIMIT = 8


def _right(sample: Sample) -> bool:
    return int(hashlib.sha256(sample.id.encode()).hexdigest(), 16) % 3 != 0


@pytest.fixture(scope="module")
def problems() -> list[Sample]:
    return load_samples("humaneval", "", "test", str(SHARED_DATASETS))[:LIMIT]


class Coder:
    """Answers with the canonical solution (or a wrong body) in a style real models use."""

    def __init__(self, problems: list[Sample]) -> None:
        self.problems = problems

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = body["prompt"] if "prompt" in body else last_user_message(body)
        sample = next(s for s in self.problems if s.question in prompt)
        solution = sample.fields["canonical_solution"] if _right(sample) else "    return None\n"
        if "prompt" in body:  # a base model continues the function, then writes more code
            text = solution + "\n\ndef unrelated():\n    pass\n"
            for stop in body.get("stop") or []:
                text = text.split(stop)[0]
            return text
        style = int(sample.id.split("/")[1]) % 3
        whole = sample.question + solution
        if style == 0:
            return f"Here is the implementation:\n\n```python\n{whole}```\n\nIt handles the edge cases."
        if style == 1:
            return f"```\n{whole}"  # an unclosed fence, no language tag
        return f"{whole}<|im_end|>"


@pytest.mark.parametrize("api_type", ["chat", "completions"])
def test_humaneval_pass_at_1(tmp_path: Path, problems: list[Sample], api_type: str) -> None:
    with OpenAIServer(Coder(problems), model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["humaneval"], LIMIT, "--api-type", api_type)) == 0
        first = server.post_requests()[0].json
    run = only_run(tmp_path)
    result = read_result(run, "m", "humaneval")
    assert result["metric"] == "pass@1" and result["n"] == LIMIT
    assert result["value"] == pytest.approx(100.0 * sum(_right(s) for s in problems) / LIMIT)
    scores = read_scores(run, "m", "humaneval")
    assert {s["rule"] for s in scores.values()} == {"passed", "failed"}
    if api_type == "completions":
        assert first["prompt"] == problems[0].question  # the raw prompt
        assert first["stop"] == ["\nclass", "\ndef", "\n#", "\nif", "\nprint"]
    else:
        assert first["messages"][0]["content"].startswith("Read the following function signature and docstring")
    sandbox = read_manifest(run)["datasets"]["humaneval"]["scorer"]["environment"]["sandbox"]
    assert sandbox["mode"] in ("root", "userns", "none")
    assert "pass@1" in read_summary(run)


def test_humaneval_pass_at_k(tmp_path: Path, problems: list[Sample]) -> None:
    calls: dict[str, int] = {}

    def alternating(body: dict[str, Any]) -> str:
        sample = next(s for s in problems if s.question in last_user_message(body))
        calls[sample.id] = calls.get(sample.id, 0) + 1
        good = calls[sample.id] % 2 == 1  # the first of two answers is right
        body_code = sample.fields["canonical_solution"] if good else "    return None\n"
        return f"```python\n{sample.question}{body_code}```"

    with OpenAIServer(alternating, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["humaneval"], 3, "--num-samples", "2",
                             "--temperature", "0.8")) == 0
    result = read_result(only_run(tmp_path), "m", "humaneval")
    assert result["value"] == pytest.approx(50.0)
    assert result["extra_metrics"]["pass@2"] == pytest.approx(100.0)
