"""Scoring as its own stage: records hold raw outputs, the `choice` scorer reads them (letters,
option texts with acc_norm), failures are never scored, and scores follow the asked option order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proctor.core import Item, Request, Response, Sample
from proctor.engine.records import make_record
from proctor.prompts import PromptPlan, Wording
from proctor.scoring import get_scorer

SAMPLE = Sample(id="7", question="Which is a prime?", choices=("a very long composite number", "2", "9", "15"),
                target="B")
ITEM = Item(id="7", sample=SAMPLE, sample_id="7")
WORDING = Wording(instruction="The following are multiple choice questions (with answers) about {subject}.",
                  answer_cue="Answer:")


def _plan(continuations: str) -> PromptPlan:
    return PromptPlan(preset="multiple_choice", wording=WORDING, subject="math", kind="loglikelihood",
                      continuations=continuations)  # type: ignore[arg-type]


def _score(request: Request, response: Response, sample: Sample = SAMPLE):  # type: ignore[no-untyped-def]
    return get_scorer("choice").score(sample, make_record(ITEM, request, response))


def test_option_texts_add_a_length_normalised_answer() -> None:
    request = _plan("options").request(SAMPLE, (), chat=False, max_tokens=1, temperature=0.0)
    assert request.continuations == (" a very long composite number", " 2", " 9", " 15")
    # Raw log-likelihood picks B (-1.0); per byte A wins (-3/29 = -0.10 against B's -1/2).
    score = _score(request, Response(loglikelihoods=(-3.0, -1.0, -5.0, -6.0)))
    assert (score.answer, score.correct) == ("B", True)
    assert score.extra == {"answer_norm": "A", "correct_norm": False}
    score = _score(request, Response(loglikelihoods=(-9.0, -0.1, -5.0, -6.0)))  # B wins both ways
    assert (score.answer, score.extra["answer_norm"], score.extra["correct_norm"]) == ("B", "B", True)


def test_letters_need_no_normalising() -> None:
    request = _plan("letters").request(SAMPLE, (), chat=False, max_tokens=1, temperature=0.0)
    assert request.continuations == (" A", " B", " C", " D")
    score = _score(request, Response(loglikelihoods=(-1.0, -0.5, -2.0, -3.0)))
    assert score.answer == "B" and score.correct and dict(score.extra) == {}


def test_a_record_keeps_the_raw_output_and_the_item() -> None:
    request = Request(kind="generate", prompt="q", max_tokens=4)
    record = make_record(Item(id="7#r2", sample=SAMPLE, sample_id="7"), request, Response(error="HTTP 500: boom", attempts=4))
    assert record.failed and record.output is None
    assert (record.item_id, record.sample_id, record.attempts) == ("7#r2", "7", 4)
    assert not hasattr(record, "correct")  # scoring is a later stage


def test_option_continuations_end_to_end_report_acc_norm(tmp_path: Path, tiny_model_dir: Path) -> None:
    from run_helpers import only_run, read_records, read_result, read_summary

    from proctor.cli import main

    code = main(["run", "--hf-path", str(tiny_model_dir), "--datasets", "demo_ppl", "--ppl-continuations", "options",
                 "--limit", "3", "--fewshot", "1", "-w", str(tmp_path)])
    assert code == 0
    run = only_run(tmp_path)
    model, dataset = tiny_model_dir.name, "mmlu-astronomy_ppl_options"
    records = {r["item_id"]: r for r in read_records(run, model, dataset)}
    scores = [json.loads(line) for line in (run / "scores" / model / f"{dataset}.jsonl").read_text().splitlines()]
    assert len(records) == len(scores) == 3
    # acc_norm recomputed by hand from the stored log-likelihoods, per byte of each option text.
    right = 0
    for score in scores:
        record = records[score["item_id"]]
        conts = record["prompt"]["continuations"]
        per_byte = [ll / len(c.encode()) for ll, c in zip(record["loglikelihoods"], conts)]
        best = "ABCD"[per_byte.index(max(per_byte))]
        assert score["extra"]["answer_norm"] == best
        right += best == score["target"]
    result = read_result(run, model, dataset)
    assert result["extra_metrics"]["acc_norm"] == pytest.approx(100.0 * right / 3)
    summary = read_summary(run)
    assert "acc_norm" in summary and "mmlu_ppl_options" in summary


@pytest.mark.parametrize("continuations", ["letters", "options"])
def test_versions_differ_by_continuations(continuations: str) -> None:
    assert _plan(continuations).version.endswith("p" if continuations == "letters" else "o")


OPTIONS_ZH = ("物理层", "传输层", "网络层", "应用层")


def test_generated_option_text_is_scored() -> None:
    sample = Sample(id="1", question="哪一层负责端到端传输？", choices=OPTIONS_ZH, target="B")
    request = Request(kind="generate", prompt="q", max_tokens=8)
    score = _score(request, Response(text="传输层"), sample)
    assert (score.answer, score.correct, score.rule) == ("B", True, "option_text")
    letter = _score(request, Response(text="答案：C，不是传输层"), sample)
    assert letter.answer == "C"  # an explicit letter always wins over option text
