"""proctor.datasets readers and field map: every file format, the default field names, one-line errors.

Real files from shared/datasets where one exercises a format (GSM8K JSON Lines, BBH's
`{"examples": [...]}`, HumanEval's .jsonl.gz, MATH-500); small files in tmp_path for the rest.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
from pathlib import Path
from typing import Any

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.core import Sample
from proctor.datasets import DataSource, FieldMap, SourceSpec, format_of, read_file_samples, read_rows
from proctor.errors import DataError

GSM8K_TEST = SHARED_DATASETS / "gsm8k" / "grade_school_math" / "data" / "test.jsonl"
HUMANEVAL = SHARED_DATASETS / "humaneval" / "data" / "HumanEval.jsonl.gz"
BBH = SHARED_DATASETS / "bbh" / "bbh"
MATH500 = SHARED_DATASETS / "math500" / "prm800k" / "math_splits" / "test.jsonl"


def load(path: Path, fields: FieldMap | None = None, **source: Any) -> list[Sample]:
    """The Samples of one file, as a spec with this source and field map reads it."""
    spec = SourceSpec(layouts=(str(path),), **source)
    return read_file_samples(path, DataSource("t", "T", spec, ("",), ("test",)), fields or FieldMap(), "")


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[list[Any]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def error_of(path: Path, fields: FieldMap | None = None, **source: Any) -> str:
    with pytest.raises(DataError) as info:
        load(path, fields, **source)
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- formats


def test_format_from_the_file_name_or_declared(tmp_path: Path) -> None:
    names = {"a.csv": "csv", "b.JSONL": "jsonl", "c.json": "json", "d.jsonl.gz": "jsonl.gz", "e.json.gz": "json.gz"}
    assert {n: format_of(Path(n)) for n in names} == names
    assert format_of(Path("data.txt"), "jsonl") == "jsonl"
    with pytest.raises(DataError, match=r"^data\.txt: unknown data file type; use one of \.csv, \.jsonl, \.json, "):
        format_of(Path("data.txt"))


def test_csv_with_header(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "q.csv", [
        ["id", "question", "A", "B", "C", "answer", "note"],
        ["q1", "First line\r\nsecond line", "x", "y", "z", "C", "kept"],
        [],  # a blank line is skipped
        ["q2", "Plain", "1", "2", "3", "A", ""],
    ])
    rows = read_rows(path)
    # The row as a spreadsheet counts it; the line where it ends (row 2 spans lines 2-3).
    assert [(r.index, r.where) for r in rows] == [(0, f"{path}: row 2 (line 3)"), (1, f"{path}: row 3 (line 5)")]
    assert rows[0].data["question"] == "First line\r\nsecond line"  # CR LF inside quotes kept as written
    first, second = load(path)
    assert (first.id, first.question, first.choices, first.target) == ("q1", "First line\r\nsecond line", ("x", "y", "z"), "C")
    assert first.fields == {"note": "kept"}  # columns the field map does not use stay available to prompts
    assert (second.id, second.target, second.fields) == ("q2", "A", {"note": ""})


def test_csv_without_header_names_columns_in_order(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "h.csv", [["What?", "a", "b", "c", "d", "D"], ["Why?", "a", "b", "c", "d", "B"]])
    columns = ("question", "A", "B", "C", "D", "answer")
    samples = load(path, header=False, columns=columns)
    assert [(s.id, s.question, s.target) for s in samples] == [("0", "What?", "D"), ("1", "Why?", "B")]
    assert read_rows(path, header=False, columns=columns)[1].where == f"{path}: row 2 (line 2)"
    # Read with a header, the first question would be taken for column names.
    assert error_of(path).startswith(f"{path}: row 2 (line 2): no question field")


def test_jsonl_skips_blank_lines_and_counts_lines(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"question": "a\u2028b", "answer": "1"}\n\n  \n{"question": "c", "answer": 2}\r\n', encoding="utf-8")
    rows = read_rows(path)
    assert [(r.index, r.where) for r in rows] == [(0, f"{path}: line 1"), (1, f"{path}: line 4")]
    assert [(s.id, s.question, s.target) for s in load(path)] == [("0", "a\u2028b", "1"), ("1", "c", 2)]


def test_json_list_and_gzip(tmp_path: Path) -> None:
    rows = [{"question": "q0", "answer": "x"}, {"question": "q1", "answer": "y"}]
    (tmp_path / "l.json").write_text(json.dumps(rows), encoding="utf-8")
    (tmp_path / "l.json.gz").write_bytes(gzip.compress(json.dumps(rows).encode("utf-8")))
    (tmp_path / "l.jsonl.gz").write_bytes(gzip.compress("\n".join(map(json.dumps, rows)).encode("utf-8")))
    for name in ("l.json", "l.json.gz", "l.jsonl.gz"):
        samples = load(tmp_path / name)
        assert [(s.id, s.question, s.target) for s in samples] == [("0", "q0", "x"), ("1", "q1", "y")], name
    assert read_rows(tmp_path / "l.json")[1].where == f"{tmp_path / 'l.json'}: row 2"


def test_json_object_holding_the_rows(tmp_path: Path) -> None:
    path = tmp_path / "o.json"
    path.write_text(json.dumps({"version": 2, "data": [{"q": "x", "a": "1"}], "extra": ["not rows"]}), encoding="utf-8")
    # Two lists: the reader cannot guess; records_key names the one.
    assert "name the one holding the rows in source.records_key" in error_of(path, FieldMap(question="q", answer="a"))
    (sample,) = load(path, FieldMap(question="q", answer="a"), records_key="data")
    assert (sample.question, sample.target) == ("x", "1")
    assert error_of(path, records_key="rows").startswith(f"{path}: no key 'rows' holding the rows; found ")


@needs_shared_data
def test_bbh_object_with_examples() -> None:
    # {"canary": str, "examples": [{"input", "target"}, ...]}: the only list is the rows.
    snarks = load(BBH / "snarks.json")
    raw = json.loads((BBH / "snarks.json").read_text(encoding="utf-8"))["examples"]
    assert len(snarks) == len(raw) == 178
    assert [s.question for s in snarks] == [r["input"] for r in raw]
    assert [s.target for s in snarks] == [r["target"] for r in raw]
    assert snarks[0].target == "(B)" and snarks[0].choices == ()  # options live in the text: free-form
    assert [s.id for s in snarks[:3]] == ["0", "1", "2"]
    counts = {p.stem: len(load(p)) for p in sorted(BBH.glob("*.json"))}
    assert len(counts) == 27 and sum(counts.values()) == 6511
    assert (counts["causal_judgement"], counts["penguins_in_a_table"], counts["word_sorting"]) == (187, 146, 250)
    assert load(BBH / "object_counting.json")[0].target == "8"


@needs_shared_data
def test_humaneval_jsonl_gz() -> None:
    # No default answer column in HumanEval: the field map names it; ids from task_id.
    message = error_of(HUMANEVAL)
    assert message.startswith(f"{HUMANEVAL}: line 1: no answer field (answer or target or label or output or solution or answerKey)")
    assert "'canonical_solution'" in message
    samples = load(HUMANEVAL, FieldMap(answer="canonical_solution", id="task_id"))
    assert len(samples) == 164
    assert [s.id for s in samples] == [f"HumanEval/{i}" for i in range(164)]
    first = samples[0]
    assert first.question.startswith("from typing import List\n\n\ndef has_close_elements(")  # from `prompt`
    assert first.fields["entry_point"] == "has_close_elements" and "def check(candidate)" in first.fields["test"]
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        raw = [json.loads(line) for line in handle]
    assert [s.target for s in samples] == [r["canonical_solution"].strip() for r in raw]


@needs_shared_data
def test_gsm8k_answer_after_marker() -> None:
    samples = load(GSM8K_TEST, FieldMap(answer_after="####"))
    raw = [json.loads(line) for line in GSM8K_TEST.read_text(encoding="utf-8").splitlines()]
    assert len(samples) == len(raw) == 1319
    assert [s.target for s in samples] == [r["answer"].split("####")[-1].strip() for r in raw]
    assert (samples[0].target, samples[-1].target) == ("18", "14")
    assert samples[0].question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert [s.id for s in samples[:3]] == ["0", "1", "2"] and samples[-1].id == "1318"
    # Without the marker the worked solution is the target, as written.
    assert load(GSM8K_TEST)[0].target == raw[0]["answer"].strip()


@needs_shared_data
def test_math500_fields_and_meta() -> None:
    samples = load(MATH500, FieldMap(id="unique_id", meta=("subject", "level")))
    assert len(samples) == 500
    first = samples[0]
    assert first.id == "test/precalculus/807.json"
    assert first.question.startswith("Convert the point $(0,3)$ in rectangular coordinates")  # from `problem`
    assert first.target == "\\left( 3, \\frac{\\pi}{2} \\right)"  # `answer` wins over `solution`
    assert first.meta == {"subject": "Precalculus", "level": 2}  # the int level stays an int
    assert set(first.fields) == {"solution"}
    assert sum(s.meta["level"] == 5 for s in samples) == 134
    assert sum(s.meta["subject"] == "Algebra" for s in samples) == 124


# ---------------------------------------------------------------- field map defaults


@pytest.mark.parametrize("n", [2, 5, 10])
def test_options_from_letter_columns(tmp_path: Path, n: int) -> None:
    labels = "ABCDEFGHIJ"[:n]
    rows = [{"question": f"Q{i}", **{label: f"opt {label}{i}" for label in labels}, "answer": labels[i % n]}
            for i in range(3)]
    samples = load(jsonl(tmp_path / "mc.jsonl", rows))
    assert [s.choices for s in samples] == [tuple(f"opt {label}{i}" for label in labels) for i in range(3)]
    assert [s.target for s in samples] == [labels[i % n] for i in range(3)]
    assert all(s.labels == labels and s.fields == {} for s in samples)


def test_options_from_a_choices_list_or_mapping(tmp_path: Path) -> None:
    samples = load(jsonl(tmp_path / "c.jsonl", [
        {"question": "q0", "choices": ["red", "green", "blue"], "answer": "C"},
        {"question": "q1", "options": ["yes", "no"], "answer": "A"},
        {"question": "q2", "choices": {"B": "two", "A": "one"}, "answer": "B"},
    ]))
    assert [(s.choices, s.target) for s in samples] == [
        (("red", "green", "blue"), "C"), (("yes", "no"), "A"), (("one", "two"), "B")]
    assert all(s.fields == {} for s in samples)
    # A named column and an explicit list of option columns.
    (named,) = load(jsonl(tmp_path / "n.jsonl", [{"question": "q", "opts": ["a", "b", "c"], "answer": "b"}]),
                    FieldMap(choices="opts"))
    assert (named.choices, named.target) == (("a", "b", "c"), "B")
    (listed,) = load(jsonl(tmp_path / "l.jsonl", [{"question": "q", "o1": "x", "o2": "y", "A": "ignored", "answer": 1}]),
                     FieldMap(choices=["o1", "o2"]))
    assert (listed.choices, listed.target, listed.fields) == (("x", "y"), "B", {"A": "ignored"})


@pytest.mark.parametrize(
    ("answer", "target"),
    [("C", "C"), ("c", "C"), ("(C)", "C"), ("C.", "C"), (2, "C"), ("2", "C"), ("gamma", "C"), (" gamma ", "C")],
)
def test_answer_as_letter_index_or_text(tmp_path: Path, answer: Any, target: str) -> None:
    row = {"question": "q", "choices": ["alpha", "beta", "gamma", "delta"], "answer": answer}
    (sample,) = load(jsonl(tmp_path / "a.jsonl", [row]))
    assert sample.target == target


def test_answer_format_is_strict_when_declared(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "a.jsonl", [{"question": "q", "choices": ["alpha", "beta", "gamma"], "answer": "beta"}])
    assert load(path, FieldMap(answer_format="text"))[0].target == "B"
    assert error_of(path, FieldMap(answer_format="letter")) == f"{path}: line 1: answer 'beta' is not one of A/B/C"
    assert error_of(path, FieldMap(answer_format="index")) == f"{path}: line 1: answer 'beta' is not an index 0-2"
    index = jsonl(tmp_path / "i.jsonl", [{"question": "q", "choices": ["alpha", "beta", "gamma"], "answer": 1}])
    assert load(index, FieldMap(answer_format="index"))[0].target == "B"
    assert error_of(index, FieldMap(answer_format="letter")) == f"{index}: line 1: answer '1' is not one of A/B/C"


def test_free_form_targets(tmp_path: Path) -> None:
    samples = load(jsonl(tmp_path / "f.jsonl", [
        {"question": "Capital of France?", "answer": "  Paris \n"},
        {"question": "2+2?", "answer": 4},
        {"question": "pi to 2 places?", "answer": 3.14},
        {"question": "A prime below 4?", "answer": ["2", " 3 "]},
        {"question": "Zero?", "answer": 0},
    ]))
    assert [s.target for s in samples] == ["Paris", 4, 3.14, ["2", "3"], 0]
    assert all(s.choices == () and s.labels == "" for s in samples)
    # Other answer column names, tried in order, and "####" applied to each acceptable answer.
    (marked,) = load(jsonl(tmp_path / "m.jsonl", [{"input": "q", "target": ["x #### 7", "8"]}]), FieldMap(answer_after="####"))
    assert marked.target == ["7", "8"]
    # A csv cell is text: a number stays a string.
    (cell,) = load(write_csv(tmp_path / "f.csv", [["problem", "solution"], ["1+1?", "2"]]))
    assert (cell.question, cell.target) == ("1+1?", "2")


def test_choices_empty_list_means_free_form(tmp_path: Path) -> None:
    # `choices: []` in a field map: free-form even when the row has letter columns.
    path = jsonl(tmp_path / "f.jsonl", [{"question": "Which letter?", "A": "x", "B": "y", "answer": "B"}])
    assert load(path)[0].choices == ("x", "y")
    (sample,) = load(path, FieldMap(choices=[]))
    assert (sample.choices, sample.target, sample.fields) == ((), "B", {"A": "x", "B": "y"})


def test_ids_from_a_column_or_the_row_number(tmp_path: Path) -> None:
    rows = [{"question": "a", "answer": "1", "idx": 7}, {"question": "b", "answer": "2", "idx": None},
            {"question": "c", "answer": "3", "idx": "x-9 "}]
    assert [s.id for s in load(jsonl(tmp_path / "i.jsonl", rows))] == ["7", "1", "x-9"]
    named = [{"question": "a", "answer": "1", "key": "k1"}, {"question": "b", "answer": "2", "key": "k2"}]
    samples = load(jsonl(tmp_path / "k.jsonl", named), FieldMap(id="key"))
    assert [s.id for s in samples] == ["k1", "k2"] and samples[0].fields == {}
    none = [{"question": "a", "answer": "1"}, {"question": "b", "answer": "2"}]
    assert [s.id for s in load(jsonl(tmp_path / "n.jsonl", none))] == ["0", "1"]


def test_column_names_match_case_insensitively(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [["ID", "Question", "a", "b", "Answer"], ["7", "q", "x", "y", "b"]])
    (sample,) = load(path)
    assert (sample.id, sample.question, sample.choices, sample.target) == ("7", "q", ("x", "y"), "B")


# ---------------------------------------------------------------- errors name file, row and field


def test_missing_question_column(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "q.jsonl", [{"text": "q", "answer": "1"}])
    assert error_of(path) == (f"{path}: line 1: no question field (question or input or problem or prompt or query or question_stem); "
                              "found ['answer', 'text']")
    assert error_of(path, FieldMap(question="stem")) == f"{path}: line 1: no question field (stem); found ['answer', 'text']"
    csv_path = write_csv(tmp_path / "q.csv", [["question", "answer"], ["ok", "1"], ["", "2"]])
    assert error_of(csv_path) == f"{csv_path}: row 3 (line 3): the question ('question') is empty"


def test_eleven_options(tmp_path: Path) -> None:
    labels = "ABCDEFGHIJK"
    columns = jsonl(tmp_path / "c.jsonl", [{"question": "q", **{label: label.lower() for label in labels}, "answer": "A"}])
    assert error_of(columns) == f"{columns}: line 1: 11 options (columns A-K); a question needs 2 to 10"
    listed = jsonl(tmp_path / "l.jsonl", [{"question": "q", "choices": list(labels), "answer": "A"},
                                          {"question": "q", "choices": list(labels) + ["L"], "answer": "A"}])
    assert error_of(listed) == f"{listed}: line 1: 11 options; a question needs 2 to 10"
    one = jsonl(tmp_path / "o.jsonl", [{"question": "q", "choices": ["only"], "answer": "A"}])
    assert error_of(one) == f"{one}: line 1: 1 options; a question needs 2 to 10"


def test_option_columns_with_a_gap(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "g.csv", [["question", "A", "B", "C", "E", "answer"], ["q", "1", "2", "3", "5", "E"]])
    assert error_of(path) == f"{path}: row 2 (line 2): option column 'E' follows 'C' without 'D' between them"


def test_answer_not_a_label(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", [["question", "A", "B", "C", "D", "answer"],
                                          ["q", "1", "2", "3", "4", "B"], ["q2", "1", "2", "3", "4", "E"]])
    assert error_of(path) == f"{path}: row 3 (line 3): answer 'E' is not one of A/B/C/D, an index or an option text"
    listed = jsonl(tmp_path / "a.jsonl", [{"question": "q", "choices": ["x", "y"], "answer": 2}])
    assert error_of(listed) == f"{listed}: line 1: answer '2' is not one of A/B, an index or an option text"


def test_missing_or_empty_answer(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "a.jsonl", [{"question": "q", "answer": "1"}, {"question": "q2", "answer": " "}])
    assert error_of(path) == f"{path}: line 2: the answer ('answer') is empty"
    named = jsonl(tmp_path / "n.jsonl", [{"question": "q", "gold": "1"}])
    assert error_of(named, FieldMap(answer="label")) == f"{named}: line 1: no answer field (label); found ['gold', 'question'] (this split may have no public answers)"


def test_bad_choices_field(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "c.jsonl", [{"question": "q", "choices": "A or B", "answer": "A"}])
    assert error_of(path) == f"{path}: line 1: field 'choices' must be a list of options, got str"
    named = jsonl(tmp_path / "n.jsonl", [{"question": "q", "answer": "A"}])
    assert error_of(named, FieldMap(choices=["o1", "o2"])) == f"{named}: line 1: no option column 'o1' (field map choices: ['o1', 'o2'])"


def test_bad_json_line(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text('{"question": "q", "answer": "1"}\n{"question": "q2", "answer": "2"}\n{"question": "q3", answer: 3}\n',
                    encoding="utf-8")
    assert re.fullmatch(rf"{re.escape(str(path))}: line 3: not valid JSON \(Expecting property name .*\)", error_of(path))
    array = tmp_path / "a.jsonl"
    array.write_text('["q", "1"]\n', encoding="utf-8")
    assert error_of(array) == f"{array}: line 1: expected a JSON object, got list"
    whole = tmp_path / "w.json"
    whole.write_text('[{"question": "q", "answer": "1"},\n {"question": "q2"', encoding="utf-8")
    assert re.fullmatch(rf"{re.escape(str(whole))}: not valid JSON \(.*line 2 column \d+.*\)", error_of(whole))
    scalar = tmp_path / "s.json"
    scalar.write_text('[{"question": "q", "answer": "1"}, 5]', encoding="utf-8")
    assert error_of(scalar) == f"{scalar}: row 2: expected an object, got int"


def test_non_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("question,answer\nok,1\ncaf\u00e9,2\n".encode("latin-1"))
    assert error_of(path) == (f"{path}: line 3: not UTF-8 text (invalid continuation byte: byte e9 at offset 24); "
                              "save the file as UTF-8")
    gz = tmp_path / "g.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"question": "q", "answer": "1"}\n{"question": "\xff", "answer": "2"}\n'))
    assert error_of(gz).startswith(f"{gz}: line 2: not UTF-8 text (invalid start byte: byte ff at offset ")
    # A UTF-8 BOM (Excel, Notepad) is not an error.
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + b'{"question": "q", "answer": "1"}\n')
    assert load(bom)[0].question == "q"


def test_unreadable_files(tmp_path: Path) -> None:
    assert error_of(tmp_path / "gone.jsonl") == f"{tmp_path / 'gone.jsonl'}: no such file"
    fake = tmp_path / "f.jsonl.gz"
    fake.write_bytes(b'{"question": "not gzip"}\n')
    assert error_of(fake).startswith(f"{fake}: cannot be read (Not a gzipped file")
    empty = tmp_path / "e.csv"
    empty.write_text("", encoding="utf-8")
    assert error_of(empty) == f"{empty}: the file is empty (no header row)"
    twice = write_csv(tmp_path / "t.csv", [["question", "answer", "answer"], ["q", "1", "2"]])
    assert error_of(twice) == f"{twice}: row 1: the header names column 'answer' twice"
    header_only = write_csv(tmp_path / "h.csv", [["question", "answer"]])
    assert read_rows(header_only) == []
    assert error_of(header_only) == f"{header_only}: the file holds no rows"
    (tmp_path / "none.json").write_text("[]", encoding="utf-8")
    assert error_of(tmp_path / "none.json") == f"{tmp_path / 'none.json'}: the file holds no rows"
    short = write_csv(tmp_path / "s.csv", [["question", "answer"], ["q", "1", "extra"]])
    assert error_of(short) == f"{short}: row 2 (line 2): 3 fields, expected 2"


def test_duplicate_ids(tmp_path: Path) -> None:
    path = jsonl(tmp_path / "d.jsonl", [{"id": 1, "question": "a", "answer": "x"}, {"id": "1", "question": "b", "answer": "y"}])
    assert error_of(path) == f"{path}: line 2: duplicate id '1'"


def test_an_answer_that_reads_two_ways_is_refused_not_guessed() -> None:
    from proctor.datasets import FieldMap, row_to_sample
    from proctor.errors import DataError

    row = {"question": "1 + 1 = ?", "choices": ["1", "2", "3"], "answer": "2"}
    with pytest.raises(DataError, match=r"q.jsonl: line 3: answer '2' is ambiguous \(as a 0-based index it is C, "
                                        r"as an option text it is B\); set the field map's answer_format"):
        row_to_sample(row, 2, FieldMap(), "q.jsonl: line 3")
    assert row_to_sample(row, 2, FieldMap(answer_format="text"), "x").target == "B"
    assert row_to_sample(row, 2, FieldMap(answer_format="index"), "x").target == "C"
    # "3" is no index of three options: only the text reading fits, and it is used.
    assert row_to_sample({**row, "answer": "3"}, 2, FieldMap(), "x").target == "C"
