"""The reasoning benchmarks' specs (aime2024, aime2025, amc23, gpqa_diamond) against the real files.

GPQA must never be published: these tests assert shapes, counts and shuffling invariants only,
as booleans, so that no question or option can appear in a failure message.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.engine.prepare import prepare_dataset
from proctor.errors import DataError
from proctor.tasks import resolve_datasets

pytestmark = needs_shared_data


def _prepared(name: str, **overrides: object) -> list:  # type: ignore[type-arg]
    return [prepare_dataset(c, str(SHARED_DATASETS)) for c in resolve_datasets([name], **overrides)]


def test_aime_and_amc_sizes_answers_and_prompts() -> None:
    (aime24,) = _prepared("aime2024")
    parts = _prepared("aime2025")
    (amc,) = _prepared("amc23")
    assert len(aime24.samples) == 30 and len(amc.samples) == 40
    assert [p.config.abbr for p in parts] == ["aime2025-I", "aime2025-II"]
    assert [len(p.samples) for p in parts] == [15, 15]
    for prepared in (aime24, *parts):
        assert all(0 <= int(s.target) <= 999 for s in prepared.samples)
    assert all(float(s.target).is_integer() for s in amc.samples)
    # AIME 2025: the answers are MathArena's answers.csv; each question is its problems/<id>.tex, whole.
    for part, prepared in zip(("I", "II"), parts):
        folder = SHARED_DATASETS / "aime" / "matharena" / "data" / "aime" / f"aime_2025_{part}"
        with (folder / "answers.csv").open(encoding="utf-8") as f:
            answers = {row["id"]: row["answer"] for row in csv.DictReader(f)}
        assert {s.id: s.target for s in prepared.samples} == answers
        assert all(s.question == (folder / "problems" / f"{s.id}.tex").read_text(encoding="utf-8")
                   for s in prepared.samples)
        assert len(prepared.files) == 16  # answers.csv and the 15 problem files, hashed in the manifest
        request = prepared.request(prepared.items[0], chat=True, max_tokens=1, temperature=0.0)
        assert request.messages[0].content.startswith(
            "Please reason step by step, and put your final answer within \\boxed{}.\n"
            "The answer is an integer between 0 and 999 inclusive.\n\n")
    request = aime24.request(aime24.items[0], chat=True, max_tokens=1, temperature=0.0)
    assert request.messages[-1].content.endswith("\nPlease reason step by step, and put your final answer within \\boxed{}.")
    assert request.max_tokens == 8192 and aime24.task.repeats == 1


def test_gpqa_diamond_options_are_shuffled_per_question_with_a_fixed_seed() -> None:
    (gpqa,) = _prepared("gpqa_diamond")
    with (SHARED_DATASETS / "gpqa" / "gpqa_diamond.csv").open(encoding="utf-8", newline="") as f:
        rows = {row["Record ID"]: row for row in csv.DictReader(f)}
    samples = gpqa.samples
    assert len(samples) == 198 and len(rows) == 198
    assert Counter(s.meta["High-level domain"] for s in samples) == {"Chemistry": 93, "Physics": 86, "Biology": 19}
    columns = ("Correct Answer", "Incorrect Answer 1", "Incorrect Answer 2", "Incorrect Answer 3")
    same_options = all(sorted(s.choices) == sorted(rows[s.id][c] for c in columns) for s in samples)
    gold_follows = all(s.option(s.target) == rows[s.id]["Correct Answer"] for s in samples)
    assert same_options and gold_follows
    letters = Counter(s.target for s in samples)
    assert set(letters) == set("ABCD") and max(letters.values()) < 70  # not the file's "right one first"
    # The same order in every run, and whatever part of the file is selected.
    (again,) = _prepared("gpqa_diamond", range="[150:160]")
    orders = {s.id: s.choices for s in samples}
    assert all(orders[s.id] == s.choices for s in again.samples) and len(again.samples) == 10
    request = gpqa.request(gpqa.items[0], chat=True, max_tokens=1, temperature=0.0)
    lines = request.messages[0].content.splitlines()
    shape = (lines[0].startswith("Answer the following multiple choice question."), [x[:3] for x in lines[-4:]])
    assert shape == (True, ["A) ", "B) ", "C) ", "D) "])


def test_the_gpqa_answer_pattern_reads_the_last_answer_line() -> None:
    from proctor.core import Record, Sample
    from proctor.scoring import get_scorer

    (gpqa,) = _prepared("gpqa_diamond", limit=1)
    scorer = get_scorer(gpqa.task.scorer, gpqa.task.scorer_params)
    sample = Sample(id="x", question="q", target="C", choices=("1", "2", "3", "4"))

    def score(output: str) -> tuple[float, object]:
        s = scorer.score(sample, Record(item_id="x", prompt="", output=output, loglikelihoods=None))
        return s.value, s.answer if s.answer is None else str(s.answer).upper()  # compared case-blind

    assert score("Not A, not B.\nAnswer: C") == (1.0, "C")
    assert score("Answer: B at first... on reflection\nAnswer: $C$") == (1.0, "C")
    assert score("answer: c")[0] == 1.0
    assert score("The answer is C")[1] is None  # not the asked format


def test_a_question_file_must_stay_in_its_folder(tmp_path: Path) -> None:
    from proctor.datasets import DataSource, FieldMap, SourceSpec, load_samples

    (tmp_path / "problems").mkdir()
    (tmp_path / "problems" / "1.tex").write_text("What is 1+1?", encoding="utf-8")
    (tmp_path / "answers.csv").write_text("id,answer\n1,2\n../x,3\n", encoding="utf-8")
    source = DataSource("t", "T", SourceSpec(layouts=(str(tmp_path / "answers.csv"),)), ("",), ("test",))
    fields = FieldMap(question_file="problems/{id}.tex", choices=())
    with pytest.raises(DataError, match=r"answers.csv: row 3 .*column 'id' \('../x'\) cannot name a question file"):
        load_samples(source, fields, "", "test")
    (tmp_path / "answers.csv").write_text("id,answer\n1,2\n", encoding="utf-8")
    (sample,) = load_samples(source, fields, "", "test")
    assert (sample.question, sample.target) == ("What is 1+1?", "2")


def test_a_null_column_names_no_question_file(tmp_path: Path) -> None:
    """`{id}` null in a JSON row was read as the file `problems/None.tex`: refused, naming the row."""
    from proctor.datasets import DataSource, FieldMap, SourceSpec, load_samples

    (tmp_path / "problems").mkdir()
    (tmp_path / "problems" / "None.tex").write_text("Not this row's question", encoding="utf-8")
    (tmp_path / "answers.jsonl").write_text('{"id": null, "answer": "2"}\n', encoding="utf-8")
    source = DataSource("t", "T", SourceSpec(layouts=(str(tmp_path / "answers.jsonl"),)), ("",), ("test",))
    fields = FieldMap(question_file="problems/{id}.tex", choices=())
    with pytest.raises(DataError, match=r"answers.jsonl: line 1: column 'id' is null"):
        load_samples(source, fields, "", "test")
