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
    assert rescore(record, "loglikelihood").extra == record.extra


def test_letters_need_no_normalising() -> None:
    request = build_request(SAMPLE, (), language="en", subject="math", mode="ppl", chat=False, max_tokens=1)
    record = make_record(SAMPLE, request, Response(loglikelihoods=(-1.0, -0.5, -2.0, -3.0)))
    assert record.prediction == "B" and record.extra == {}


def test_failed_response_is_never_scored() -> None:
    request = Request(kind="generate", prompt="q", max_tokens=4)
    record = make_record(SAMPLE, request, Response(error="HTTP 500: boom", attempts=4))
    assert record.correct is None and record.prediction is None and record.failed


def test_option_continuations_end_to_end_report_acc_norm(tmp_path: Path, tiny_model_dir: Path) -> None:
    import json

    from run_helpers import only_run

    from proctor.cli import main

    code = main(["run", "--hf-path", str(tiny_model_dir), "--datasets", "demo_ppl", "--ppl-continuations", "options",
                 "--limit", "3", "--fewshot", "1", "-w", str(tmp_path)])
    assert code == 0
    run = only_run(tmp_path)
    result = json.loads((run / "results" / tiny_model_dir.name / "mmlu-astronomy_ppl_options.json").read_text())
    assert "acc_norm" in result["extra_metrics"]
    records = [json.loads(line) for line in
               (run / "predictions" / tiny_model_dir.name / "mmlu-astronomy_ppl_options.jsonl").read_text().splitlines()]
    assert all(len(r["prompt"]["continuations"]) == 4 and "correct_norm" in r["extra"] for r in records)
    summary = (run / "summary" / "summary.txt").read_text(encoding="utf-8")
    assert "acc_norm" in summary and "mmlu_ppl_options" in summary


@pytest.mark.parametrize("continuations", ["letters", "options"])
def test_versions_differ_by_continuations(continuations: str) -> None:
    from proctor.prompts import prompt_version

    assert prompt_version("en", "ppl", continuations).endswith("p" if continuations == "letters" else "o")
