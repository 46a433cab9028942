"""Reasoning benchmarks end to end against the real test server on real rows: GSM8K (chat: zero-shot
with \\boxed{}; base: Wei et al.'s 8-shot chain of thought with its stop sequences)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from openai_server import OpenAIServer, last_user_message
from run_helpers import only_run, read_records, read_result, read_summary, run_args
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.cli import main
from proctor.core import Sample
from proctor.tasks import load_samples

pytestmark = needs_shared_data

LIMIT = 12


def _right(sample: Sample) -> bool:
    return int(hashlib.sha256(sample.question.encode()).hexdigest(), 16) % 3 != 0


def _said(sample: Sample) -> str:
    """The number the simulated model concludes: the gold, or the gold plus one."""
    gold = int(str(sample.target).replace(",", ""))
    return str(gold if _right(sample) else gold + 1)


class Reasoner:
    """Reasons in a few lines, then concludes in a style chat or base models use; a base model
    goes on with a new question, which the server cuts at the request's stop sequences."""

    def __init__(self, samples: list[Sample]) -> None:
        self.samples = samples

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = body["prompt"] if "prompt" in body else last_user_message(body)
        sample = max((s for s in self.samples if s.question in prompt), key=lambda s: prompt.rfind(s.question))
        n = _said(sample)
        styles = [
            f"Let me compute step by step.\n3 + 4 = 7 and 2024 is a year.\nSo the total is {n}.\n\\boxed{{{n}}}",
            f"First, 10 * 2 = 20.\nThe answer is {n}.",
            f"We add the parts: 5 + 6 = 11.\n#### {n}",
            f"Working: 12 / 4 = 3.\n**Answer:** {n}",
        ]
        text = styles[int(hashlib.sha256(sample.id.encode()).hexdigest(), 16) % len(styles)]
        if "prompt" in body:  # a base model does not stop by itself
            text = f" {text}\n\nQ: A new question with 99 apples?\nA: It has 99 apples. The answer is 99."
        for stop in body.get("stop") or []:
            text = text.split(stop)[0]
        return text


@pytest.fixture(scope="module")
def gsm8k() -> list[Sample]:
    from proctor.tasks import get_spec  # noqa: F401  (the spec must exist)

    return load_samples("gsm8k", "", "test", str(SHARED_DATASETS))[:LIMIT]


def test_gsm8k_gold_is_the_number_after_the_hashes(gsm8k: list[Sample]) -> None:
    assert gsm8k[0].target == "18" and gsm8k[0].id == "0"
    assert len(load_samples("gsm8k", "", "test", str(SHARED_DATASETS))) == 1319
    assert all(re.fullmatch(r"-?[\d,]+", str(s.target)) for s in gsm8k)


@pytest.mark.parametrize("api_type", ["chat", "completions"])
def test_gsm8k_end_to_end(tmp_path: Path, gsm8k: list[Sample], api_type: str) -> None:
    with OpenAIServer(Reasoner(gsm8k), model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["gsm8k"], LIMIT, "--api-type", api_type)) == 0
        bodies = [r.json for r in server.post_requests()]
    run = only_run(tmp_path)
    result = read_result(run, "m", "gsm8k")
    expected = 100.0 * sum(_right(s) for s in gsm8k) / LIMIT
    assert result["value"] == pytest.approx(expected) and result["n"] == LIMIT
    assert result["extra_metrics"]["extraction_rate"] == pytest.approx(100.0)
    first = bodies[0]
    if api_type == "chat":
        # Zero-shot, the \boxed{} instruction, room to reason.
        assert len(first["messages"]) == 1 and first["max_tokens"] == 512
        assert first["messages"][0]["content"].endswith("put your final answer within \\boxed{}.")
    else:
        prompt = first["prompt"]
        assert prompt.count("\nA: ") == 8 and prompt.startswith("Q: There are 15 trees in the grove.")
        assert prompt.endswith("\nA:") and first["stop"] == ["\n\nQ:", "\n\nQuestion:"]
    records = read_records(run, "m", "gsm8k")
    assert all("A new question" not in r["output"] for r in records)  # cut at the next question
    assert "gsm8k" in read_summary(run)


def test_several_answers_per_question_give_pass_at_k(
    tmp_path: Path, gsm8k: list[Sample], capsys: pytest.CaptureFixture[str]
) -> None:
    seen: dict[str, int] = {}

    def sometimes_right(body: dict[str, Any]) -> str:
        # The j-th answer to a question is right when j < (how many it gets right): 0..3 of 3.
        prompt = last_user_message(body)
        sample = next(s for s in gsm8k if s.question in prompt)
        j = seen[sample.id] = seen.get(sample.id, -1) + 1
        gold = int(str(sample.target).replace(",", ""))
        return f"\\boxed{{{gold if j < int(sample.id) % 4 else gold + 1}}}"

    with OpenAIServer(sometimes_right, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path / "t0", ["gsm8k"], 4, "--num-samples", "3")) == 2
        assert "at temperature 0" in capsys.readouterr().err
        assert main(run_args(server.base_url, tmp_path, ["gsm8k"], 4, "--num-samples", "3", "--temperature", "0.8",
                             "--no-cache")) == 0
        assert len(server.post_requests()) == 12
    run = only_run(tmp_path)
    result = read_result(run, "m", "gsm8k")
    right = [min(int(s.id) % 4, 3) for s in gsm8k[:4]]  # ids 0..3: 0, 1, 2, 3 of 3 right
    assert result["metric"] == "avg@3" and result["n"] == 4  # --num-samples is --repeats
    assert result["value"] == pytest.approx(100 * sum(c / 3 for c in right) / 4)
    assert result["extra_metrics"]["pass@3"] == pytest.approx(100 * sum(c > 0 for c in right) / 4)
    ids = sorted(r["item_id"] for r in read_records(run, "m", "gsm8k"))
    assert ids[:3] == ["0#k0", "0#k1", "0#k2"]


# ---------------------------------------------------------------- MATH-500


def test_math500_end_to_end_with_subject_and_level_rows(tmp_path: Path) -> None:
    pytest.importorskip("math_verify", reason="the math_equiv scorer needs proctor[math]")
    samples = load_samples("math500", "", "test", str(SHARED_DATASETS))[:LIMIT]

    def solver(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        sample = next(s for s in samples if s.question in prompt)
        # Right answers in another form than the gold where one exists (0.5 for \frac12 ...).
        answer = sample.target if _right(sample) else "1000001"
        return f"We work it out carefully.\nTherefore the answer is $\\boxed{{{answer}}}$."

    with OpenAIServer(solver, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["math500"], LIMIT)) == 0
    run = only_run(tmp_path)
    result = read_result(run, "m", "math500")
    assert result["value"] == pytest.approx(100.0 * sum(_right(s) for s in samples) / LIMIT)
    levels = {f"level={s.fields['level']}" for s in samples}
    subjects = {f"subject={s.fields['subject']}" for s in samples}
    assert levels | subjects <= set(result["extra_metrics"])
    level = sorted(levels)[0]
    members = [s for s in samples if f"level={s.fields['level']}" == level]
    assert result["extra_metrics"][level] == pytest.approx(100.0 * sum(_right(s) for s in members) / len(members))
    assert level in read_summary(run)


# ---------------------------------------------------------------- BBH


def test_bbh_end_to_end_with_both_means(tmp_path: Path) -> None:
    subsets = {"navigate": 6, "date_understanding": 3}
    samples = {name: load_samples("bbh", name, "test", str(SHARED_DATASETS))[:n] for name, n in subsets.items()}
    every = [s for rows in samples.values() for s in rows]

    def thinker(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        sample = max((s for s in every if s.question in prompt), key=lambda s: prompt.rfind(s.question))
        wrong = {"Yes": "No", "No": "Yes"}.get(sample.target, "(A)" if sample.target != "(A)" else "(B)")
        return f"Step one. Step two (A) is tempting.\nSo the answer is {sample.target if _right(sample) else wrong}."

    with OpenAIServer(thinker, model_ids=["m"]) as server:
        assert main(run_args(server.base_url, tmp_path, ["bbh-navigate"], 6)) == 0
        assert main(run_args(server.base_url, tmp_path / "b", ["bbh-navigate", "bbh-date_understanding"], 3)) == 0
        first = [r.json for r in server.post_requests()][0]
    content = first["messages"][0]["content"]
    assert content.startswith("Follow the given examples and answer the question.\nGiven a series of navigation")
    assert "canary" not in content and content.endswith("A: Let's think step by step.")
    assert content.count("\n\nQ: ") == 4  # three exemplars, then the question
    nav = read_result(only_run(tmp_path), "m", "bbh-navigate")
    assert nav["value"] == pytest.approx(100.0 * sum(_right(s) for s in samples["navigate"]) / 6)
    run = only_run(tmp_path / "b")
    values = {n: read_result(run, "m", f"bbh-{n}")["value"] for n in subsets}
    summary = read_summary(run)
    assert "bbh (2/27 subjects)" in summary and "mean of subjects" in summary and "mean of questions" in summary
    expected = {n: 100.0 * sum(_right(s) for s in samples[n][:3]) / 3 for n in subsets}
    assert values == pytest.approx(expected)


def test_choice_option_text_is_never_read_from_an_unclosed_thought():
    """A record scored directly (not through the eval stage): the letter and the option text
    are both read from the answer part, so a thought that never closed gives no answer."""
    from proctor.core import Record, Sample
    from proctor.scoring.choice import ChoiceScorer

    sample = Sample(id="1", question="q", target="A", choices=("Paris", "London"))
    record = Record(item_id="1", prompt="p", output="<think>Paris", loglikelihoods=None)
    assert ChoiceScorer().score(sample, record).answer is None
    closed = Record(item_id="1", prompt="p", output="<think>hm</think>Paris", loglikelihoods=None)
    assert ChoiceScorer().score(sample, closed).answer == "A"


def test_ifeval_drops_the_blank_line_after_a_thought_of_a_record_stored_unsplit():
    """An older record with its `<think>` block in `output`: the eval stage's answer record keeps
    the thought beside the answer, so ifeval still drops the blank line that follows it."""
    from proctor.core import Record, Sample
    from proctor.engine.evaluate import answer_record
    from proctor.scoring import get_scorer

    sample = Sample(id="1", question="q", target=None, fields={
        "instruction_id_list": ["length_constraints:nth_paragraph_first_word"],
        "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "hello"}]})
    record = Record(item_id="1", prompt="p", output="<think>hm</think>\n\nHello there.\n\nBye now.",
                    loglikelihoods=None)
    scorer = get_scorer("ifeval", {})
    assert scorer.score(sample, record).value == 1.0
    assert scorer.score(sample, answer_record(record)).value == 1.0


def test_ifeval_drops_the_blank_lines_after_an_empty_thought():
    """`<think>\\n\\n</think>\\n\\n...` (a thought with nothing in it) leaves no reasoning, but its
    blank lines are no first paragraph of the answer: nth_paragraph_first_word passes."""
    from proctor.core import Record, Sample
    from proctor.engine.evaluate import answer_record
    from proctor.scoring import get_scorer

    sample = Sample(id="1", question="q", target=None, fields={
        "instruction_id_list": ["length_constraints:nth_paragraph_first_word"],
        "kwargs": [{"num_paragraphs": 2, "nth_paragraph": 1, "first_word": "hello"}]})
    record = Record(item_id="1", prompt="p", output="<think>\n\n</think>\n\nHello there.\n\nBye now.",
                    loglikelihoods=None)
    scorer = get_scorer("ifeval", {})
    assert scorer.score(sample, record).value == 1.0
    assert scorer.score(sample, answer_record(record)).value == 1.0
