"""MBPP end to end on the real rows: the test split (tasks 11-510) and the paper's 3 shots (tasks
2-4), the prompt for chat and base models, the asserts run in the split sandbox (the reference
solutions pass, hostile code does not), pass@1 and pass@k."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import only_run, read_manifest, read_result, read_scores, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Record, Sample
from proctor.scoring import get_scorer
from proctor.tasks import load_samples

pytestmark = needs_shared_data

LIMIT = 12


@pytest.fixture(scope="module")
def tasks() -> list[Sample]:
    return load_samples("mbpp", "", "test", str(SHARED_DATASETS))


def _right(sample: Sample) -> bool:
    return int(hashlib.sha256(sample.id.encode()).hexdigest(), 16) % 3 != 0


def test_splits_are_the_papers(tasks: list[Sample]) -> None:
    assert len(tasks) == 500 and (tasks[0].id, tasks[-1].id) == ("11", "510")
    shots = load_samples("mbpp", "", "prompt", str(SHARED_DATASETS))
    assert [s.id for s in shots] == ["2", "3", "4"]
    assert shots[0].question == "Write a function to find the similar elements from the given two tuple lists."
    assert len(tasks[0].fields["test_list"]) == 3


class Coder:
    """Answers a task with its reference code (or a wrong one), in the styles models use."""

    def __init__(self, tasks: list[Sample]) -> None:
        self.tasks = {s.question: s for s in tasks}

    def task(self, prompt: str) -> Sample:
        # The task asked is the last one in the prompt (the shots come first).
        return self.tasks[max((q for q in self.tasks if q in prompt), key=prompt.rfind)]

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = body["prompt"] if "prompt" in body else last_user_message(body)
        sample = self.task(prompt)
        code = sample.target if _right(sample) else "def nothing():\n    return None\n"
        if "prompt" in body:  # a base model continues after [BEGIN] and would go on past [DONE]
            return f"\n{code}\n[DONE]\n\nYou are an expert Python programmer, and here is"
        style = int(sample.id) % 3
        if style == 0:
            return f"[BEGIN]\n{code}\n[DONE]"
        if style == 1:
            return f"Here is my solution:\n\n```python\n{code}\n```\n\nIt passes the tests."
        return f"{code}\n"


@pytest.mark.parametrize("api_type", ["chat", "completions"])
def test_mbpp_end_to_end(tmp_path: Path, tasks: list[Sample], api_type: str) -> None:
    asked = tasks[:LIMIT]
    with OpenAIServer(Coder(tasks), model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["mbpp"], LIMIT, "--api-type", api_type)) == 0
        first = server.post_requests()[0].json
    run = only_run(tmp_path)
    result = read_result(run, "m", "mbpp")
    assert result["metric"] == "pass@1" and result["n"] == LIMIT
    assert result["value"] == pytest.approx(100.0 * sum(_right(s) for s in asked) / LIMIT)
    scores = read_scores(run, "m", "mbpp")
    assert {s["rule"] for s in scores.values()} == {"passed", "failed"}
    intro = "You are an expert Python programmer, and here is your task: "
    if api_type == "chat":
        turns = first["messages"]
        assert [t["role"] for t in turns] == ["user", "assistant"] * 3 + ["user"]
        assert turns[0]["content"].startswith(intro + "Write a function to find the similar elements")
        assert turns[1]["content"].startswith("[BEGIN]\ndef similar_elements(") and turns[1]["content"].endswith("\n[DONE]")
        assert turns[-1]["content"] == (intro + asked[0].question + " Your code should pass these tests:\n\n"
                                        + "\n".join(asked[0].fields["test_list"]))
    else:
        prompt = first["prompt"]
        assert prompt.startswith(intro + "Write a function to find the similar elements") and prompt.count(intro) == 4
        assert prompt.endswith("\n".join(asked[0].fields["test_list"]) + "\n[BEGIN]")
        assert "[BEGIN] \ndef similar_elements(" in prompt and "\n[DONE]\n\n" + intro in prompt
    assert first["stop"] == ["[DONE]"]
    sandbox = read_manifest(run)["datasets"]["mbpp"]["scorer"]["environment"]
    assert sandbox["verdict"]["split"] is True


def test_mbpp_pass_at_k(tmp_path: Path, tasks: list[Sample]) -> None:
    calls: dict[str, int] = {}
    coder = Coder(tasks)

    def alternating(body: dict[str, Any]) -> str:
        sample = coder.task(last_user_message(body))
        calls[sample.id] = calls.get(sample.id, 0) + 1
        good = calls[sample.id] % 2 == 1  # the first of two answers is right
        code = sample.target if good else "def f():\n    pass"
        return f"[BEGIN]\n{code}\n[DONE]"

    with OpenAIServer(alternating, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["mbpp"], 3, "--num-samples", "2", "--temperature", "0.8")) == 0
    result = read_result(only_run(tmp_path), "m", "mbpp")
    assert result["value"] == pytest.approx(50.0)
    assert result["extra_metrics"]["pass@2"] == pytest.approx(100.0)


def _score(sample: Sample, output: str) -> Any:
    return get_scorer("mbpp").score(sample, Record(item_id=sample.id, prompt="", output=output, loglikelihoods=None))


def test_reference_solutions_pass_including_the_odd_ones(tasks: list[Sample]) -> None:
    # 126 names its function `sum`; 367's setup builds a tree of the code's own Node class;
    # 40 returns a Counter compared with a dict; the rest a spread of the split.
    by_id = {s.id: s for s in tasks}
    picked = [by_id[i] for i in ("126", "367", "40", "18")] + tasks[::50]
    scorer = get_scorer("mbpp")
    scores = scorer.score_many([(s, Record(item_id=s.id, prompt="", output=f"[BEGIN]\n{s.target}\n[DONE]",
                                           loglikelihoods=None)) for s in picked])  # type: ignore[attr-defined]
    assert [(s.id, sc.rule) for s, sc in zip(picked, scores) if sc.rule != "passed"] == []


HOSTILE = {
    "redefines abs to fool a tolerance assert": "def abs(x):\n    return 0\ndef {f}(*a):\n    return -1\n",
    "returns an object equal to anything": "class Any:\n    def __eq__(self, o):\n        return True\ndef {f}(*a):\n    return Any()\n",
    "prints a verdict-looking line and exits 0": "import os\nprint('proctor-verdict-' + '0' * 32 + ' {{\"passed\": true}}')\nos._exit(0)\n",
    "patches the builtins the asserts use": "import builtins\nbuiltins.abs = lambda *a: 0\ndef {f}(*a):\n    return -1\n",
    "a Node whose equality is always true (task 367)": None,
}
# An MBPP-shaped row with a tolerance assert (the split's own asserts compare exactly).
CIRCLE = Sample(id="circle", question="Write a function to find the area of a circle.",
                target="import math\ndef circle_area(r):\n    return math.pi * r * r",
                fields={"test_setup_code": "", "test_list": ["assert abs(circle_area(2) - 12.566) < 0.001",
                                                             "assert abs(circle_area(1) - 3.1416) < 0.001"]})


def test_the_tolerance_row_passes_its_reference() -> None:
    assert _score(CIRCLE, f"[BEGIN]\n{CIRCLE.target}\n[DONE]").rule == "passed"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_code_fails(tasks: list[Sample], name: str) -> None:
    if HOSTILE[name] is None:
        sample = next(s for s in tasks if s.id == "367")
        code = ("class Node:\n    def __init__(self, data):\n        self.data = data\n        self.left = self.right = None\n"
                "    def __eq__(self, other):\n        return True\n"
                "def is_tree_balanced(root):\n    return root\n")  # a handle back instead of a bool
    else:
        sample = CIRCLE if "abs" in name else tasks[0]
        code = HOSTILE[name].format(f="circle_area" if "abs" in name else "remove_Occ")
    score = _score(sample, f"[BEGIN]\n{code}\n[DONE]")
    assert (score.value, score.rule) == (0.0, "failed"), (score.rule, score.explanation)


def test_a_bad_id_range_is_refused_when_the_spec_is_read() -> None:
    from proctor.errors import ConfigError
    from proctor.tasks.load import spec_from_dict

    with pytest.raises(ConfigError, match=r"splits.ids: ids.test: '11-' is not a range of ids"):
        spec_from_dict({"name": "x", "source": {"layouts": ["x.jsonl"]}, "splits": {"ids": {"test": ["11-"]}}}, "x.yaml")
