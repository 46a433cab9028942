"""`proctor compare A B --judge-api-base URL`: two runs' open-ended answers judged pair by pair in
both orders (a scripted judge on a real HTTP server), B's win rate over A computed here by hand."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main

pytestmark = needs_shared_data
N = 16
KINDS = ["b_strong", "b", "tie", "a", "bias_a", "unparsed", "b", "a_strong"]
PROMPT = re.compile(r"<\|User Prompt\|>\n(.*)\n\n<\|The Start of Assistant A's Answer\|>\n(.*)\n"
                    r"<\|The End of Assistant A's Answer\|>\n\n<\|The Start of Assistant B's Answer\|>\n(.*)\n"
                    r"<\|The End of Assistant B's Answer\|>\Z", re.S)


def kind(question: str) -> str:
    return KINDS[int(hashlib.sha256(question.encode()).hexdigest()[:8], 16) % len(KINDS)]


def verdict(k: str, b_is: str) -> str:
    a_is = "B" if b_is == "A" else "A"
    return {"b_strong": f"[[{b_is}>>{a_is}]]", "b": f"[[{b_is}>{a_is}]]", "tie": "[[A=B]]",
            "a": f"[[{a_is}>{b_is}]]", "a_strong": f"[[{a_is}>>{b_is}]]", "bias_a": "[[A>B]]",
            "unparsed": "no idea"}[k]


class Judge:
    def __init__(self) -> None:
        self.asked = 0

    def __call__(self, body: dict[str, Any]) -> str:
        self.asked += 1
        match = PROMPT.match(body["messages"][-1]["content"])
        assert match
        question, a, b = match.groups()
        assert {a.split(":")[0], b.split(":")[0]} == {"run A", "run B"}  # one answer of each run
        return verdict(kind(question), "A" if a.startswith("run B") else "B")


def expected(questions: list[str]) -> tuple[float, int]:
    """B's share of the battles (strong verdicts 3, ties half; a question with an unparsed game out)."""
    battles: list[float] = []
    for q in questions:
        k = kind(q)
        if k == "unparsed":
            continue
        for b_is in ("B", "A"):  # game 1: A's answer as assistant A; game 2: swapped
            v = verdict(k, b_is)
            label = v[2:-2]
            strong = ">>" in label
            b_won = 0.5 if "=" in label else float(label[0] == b_is)
            battles += [b_won] * (3 if strong else 1)
    return 100 * sum(battles) / len(battles), sum(1 for q in questions if kind(q) != "unparsed")


def test_compare_judges_two_runs_in_both_orders(tmp_path: Path, capsys: Any) -> None:
    work = tmp_path / "w"
    for name in ("A", "B"):
        with OpenAIServer(lambda body, n=name: f"run {n}: about {body['messages'][-1]['content'][:30]}",
                          model_ids=["m"]) as server:
            assert main(["run", "--api-base", server.base_url, "--datasets", "arena_hard", "--limit", str(N),
                         "--data-dir", str(SHARED_DATASETS), "-w", str(work), "--mode", "infer"]) == 0
    judge = Judge()
    with OpenAIServer(judge, model_ids=["judge-model"]) as j:
        argv = ["compare", "latest~1", "latest", "-w", str(work), "--judge-api-base", j.base_url,
                "--data-dir", str(SHARED_DATASETS)]
        assert main(argv) == 0
        assert judge.asked == 2 * N
        out = capsys.readouterr().out
        assert main(argv) == 0  # judged again: every pair is on disk, nothing is asked
        assert judge.asked == 2 * N
    other = Judge()
    with OpenAIServer(other, model_ids=["judge-2"]) as j2:  # another judge is asked everything
        assert main([*argv[:6], j2.base_url, *argv[7:], "--no-cache"]) == 0
        assert other.asked == 2 * N
    questions = [json.loads(line)["prompt"] for line in
                 (SHARED_DATASETS / "arena_hard/data/arena-hard-v0.1/question.jsonl").read_text().split("\n")[:N]]
    want, n = expected(questions)
    later = max(p for p in work.iterdir() if (p / "compare_judged.json").is_file())
    (row,) = json.loads((later / "compare_judged.json").read_text(encoding="utf-8"))["rows"]
    assert row["dataset"] == "arena_hard" and row["n"] == n
    assert row["b_win_rate"] == pytest.approx(want)
    assert row["ci95_low"] <= row["b_win_rate"] <= row["ci95_high"]
    assert row["judge_unparsed"] == pytest.approx(100 * (N - n) / N)
    assert f"arena_hard: m vs m: {want:.1f}" in out
