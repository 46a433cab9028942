"""Scoring a response into a record: letters, option texts (acc_norm), failures."""

from __future__ import annotations

from pathlib import Path

import pytest

from proctor.core import Request, Response, Sample
from proctor.engine.scoring import make_record, rescore
from proctor.prompts import build_request

SAMPLE = Sample(
    id="7",
    fields={"question": "Which is a prime?", "options": {"A": "a very long composite number", "B": "2", "C": "9", "D": "15"}},
    target="B",
)


def test_option_texts_add_a_length_normalised_prediction() -> None:
    request = build_request(SAMPLE, (), language="en", subject="math", mode="ppl", chat=False, max_tokens=1,
                            continuations="options")
    assert request.continuations == (" a very long composite number", " 2", " 9", " 15")
    # Raw log-likelihood picks B (-1.0); per byte A wins (-3/29 = -0.10 against B's -1/2).
    record = make_record(SAMPLE, request, Response(loglikelihoods=(-3.0, -1.0, -5.0, -6.0)))
    assert record.prediction == "B" and record.correct
    assert record.extra == {"prediction_norm": "A", "correct_norm": False}
    lls = (-2.0, -2.5, -5.0, -6.0)  # raw: A wins; per byte: A -2/29 = -0.07 beats B -1.25
    record = make_record(SAMPLE, request, Response(loglikelihoods=lls))
    assert record.prediction == "A" and record.correct is False
    assert record.extra == {"prediction_norm": "A", "correct_norm": False}
    lls = (-9.0, -0.1, -5.0, -6.0)  # B wins both ways
    record = make_record(SAMPLE, request, Response(loglikelihoods=lls))
    assert (record.prediction, record.extra["prediction_norm"]) == ("B", "B") and record.extra["correct_norm"]
    assert rescore(record, "loglikelihood", SAMPLE).extra == record.extra


def test_letters_need_no_normalising() -> None:
    request = build_request(SAMPLE, (), language="en", subject="math", mode="ppl", chat=False, max_tokens=1)
    record = make_record(SAMPLE, request, Response(loglikelihoods=(-1.0, -0.5, -2.0, -3.0)))
    assert record.prediction == "B" and record.extra == {}


def test_failed_response_is_never_scored() -> None:
    request = Request(kind="generate", prompt="q", max_tokens=4)
    record = make_record(SAMPLE, request, Response(error="HTTP 500: boom", attempts=4))
    assert record.correct is None and record.prediction is None and record.failed


def test_option_continuations_end_to_end_report_acc_norm(tmp_path: Path, tiny_model_dir: Path) -> None:
    from run_helpers import only_run, read_records, read_result, read_summary

    from proctor.cli import main

    code = main(["run", "--hf-path", str(tiny_model_dir), "--datasets", "demo_ppl", "--ppl-continuations", "options",
                 "--limit", "3", "--fewshot", "1", "-w", str(tmp_path)])
    assert code == 0
    run = only_run(tmp_path)
    result = read_result(run, tiny_model_dir.name, "mmlu-astronomy_ppl_options")
    assert "acc_norm" in result["extra_metrics"]
    records = read_records(run, tiny_model_dir.name, "mmlu-astronomy_ppl_options")
    assert all(len(r["prompt"]["continuations"]) == 4 and "correct_norm" in r["extra"] for r in records)
    summary = read_summary(run)
    assert "acc_norm" in summary and "mmlu_ppl_options" in summary


@pytest.mark.parametrize("continuations", ["letters", "options"])
def test_versions_differ_by_continuations(continuations: str) -> None:
    from proctor.prompts import prompt_version

    assert prompt_version("en", "ppl", continuations).endswith("p" if continuations == "letters" else "o")


OPTIONS_ZH = {"A": "物理层", "B": "传输层", "C": "网络层", "D": "应用层"}
OPTIONS_EN = {"A": "15", "B": "150", "C": "a prime number", "D": "None of the above"}


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("传输层", OPTIONS_ZH, "B"),
        ("答案是传输层。", OPTIONS_ZH, "B"),
        ("  a Prime number. ", OPTIONS_EN, "C"),
        ("150", OPTIONS_EN, "B"),  # "15" is inside "150": the containing option is meant
        ("15", OPTIONS_EN, "A"),
        ("物理层和传输层都不对", OPTIONS_ZH, None),  # two options: no guess
        ("", OPTIONS_ZH, None),
        ("我不知道", OPTIONS_ZH, None),
        ("传输层" + "，因为" + "它负责端到端的可靠传输，这是教科书上的标准定义和解释" * 2, OPTIONS_ZH, None),  # long essay
    ],
)
def test_match_option_text(text: str, options: dict, expected: str | None) -> None:
    from proctor.metrics import match_option_text

    assert match_option_text(text, options) == expected


def test_generated_option_text_is_scored_and_rescored_alike() -> None:
    sample = Sample(id="1", fields={"question": "哪一层负责端到端传输？", "options": OPTIONS_ZH}, target="B")
    request = Request(kind="generate", prompt="q", max_tokens=8)
    record = make_record(sample, request, Response(text="传输层"))
    assert record.prediction == "B" and record.correct
    assert rescore(record, "generate", sample) == record
    letter = make_record(sample, request, Response(text="答案：C，不是传输层"))
    assert letter.prediction == "C"  # an explicit letter always wins over option text
