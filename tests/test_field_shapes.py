"""The field map on the row shapes real benchmarks ship in: each row becomes the right Sample or
is refused with one line naming the file, the row and the field; never a question or an option
holding a repr of a dict or a list.

The expected Samples are written out here, from the rows as a person reads them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from shared_data import SHARED_DATASETS, needs_shared_data

from proctor.core import Sample
from proctor.datasets import DataSource, FieldMap, SourceSpec, read_file_samples
from proctor.errors import ConfigError, DataError

# Marks of a Python or JSON repr of a container turned into text.
REPR = re.compile(r"[\[{]\s*['\"]|['\"]\s*[\]}]|['\"]\s*:\s")


def load(path: Path, fields: FieldMap | None = None) -> list[Sample]:
    spec = SourceSpec(layouts=(str(path),))
    return read_file_samples(path, DataSource("t", "T", spec, ("",), ("test",)), fields or FieldMap(), "")


def write(tmp_path: Path, rows: list[Any], name: str = "rows.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def one(tmp_path: Path, row: dict[str, Any], **fields: Any) -> Sample:
    (sample,) = load(write(tmp_path, [row]), FieldMap(**fields))
    assert not REPR.search(sample.question), sample.question
    assert not any(REPR.search(c) for c in sample.choices), sample.choices
    return sample


def refused(tmp_path: Path, rows: list[dict[str, Any]], **fields: Any) -> str:
    path = write(tmp_path, rows)
    with pytest.raises(DataError) as info:
        load(path, FieldMap(**fields))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: line {len(rows)}: "), message
    return message.removeprefix(f"{path}: line {len(rows)}: ")


ARC = {
    "id": "Mercury_7175875",
    "question": {
        "stem": "An astronomer observes that a planet rotates faster after a meteorite impact. Which is the most likely effect of this increase in rotation?",
        "choices": [
            {"text": "Planetary density will decrease.", "label": "A"},
            {"text": "Planetary years will become longer.", "label": "B"},
            {"text": "Planetary days will become shorter.", "label": "C"},
            {"text": "Planetary gravity will become stronger.", "label": "D"},
        ],
    },
    "answerKey": "C",
}
ARC_TEXTS = ("Planetary density will decrease.", "Planetary years will become longer.",
             "Planetary days will become shorter.", "Planetary gravity will become stronger.")


def test_arc_nested_row_without_a_spec(tmp_path: Path) -> None:
    sample = one(tmp_path, ARC)
    assert sample.question == ARC["question"]["stem"]
    assert (sample.id, sample.choices, sample.target) == ("Mercury_7175875", ARC_TEXTS, "C")


def test_arc_numeric_labels_are_the_rows_own_not_an_index(tmp_path: Path) -> None:
    # ARC writes labels 1-4 for some questions: answerKey "1" is the first option (A), not B.
    row = json.loads(json.dumps(ARC))
    for i, choice in enumerate(row["question"]["choices"]):
        choice["label"] = str(i + 1)
    for key, letter in (("1", "A"), ("3", "C"), ("4", "D")):
        row["answerKey"] = key
        sample = one(tmp_path, row)
        assert (sample.target, sample.choices) == (letter, ARC_TEXTS)
        assert sample.meta["source_labels"] == ["1", "2", "3", "4"]
    row["answerKey"] = "5"
    assert refused(tmp_path, [row]) == "answer '5' is not one of the row's labels 1/2/3/4 or an option text"


def test_five_lettered_options_with_labels(tmp_path: Path) -> None:
    row = {"question": {"stem": "Pick E.", "choices": [{"label": l, "text": f"t{l}"} for l in "ABCDE"]}, "answerKey": "E"}
    sample = one(tmp_path, row)
    assert (sample.choices, sample.target) == (("tA", "tB", "tC", "tD", "tE"), "E")


def test_hugging_face_dict_of_lists(tmp_path: Path) -> None:
    row = {"id": "q1", "question": "Which gas do plants take in?",
           "choices": {"text": ["oxygen", "carbon dioxide", "helium"], "label": ["A", "B", "C"]}, "answerKey": "B"}
    sample = one(tmp_path, row)
    assert (sample.question, sample.choices, sample.target) == (
        "Which gas do plants take in?", ("oxygen", "carbon dioxide", "helium"), "B")
    # OpenBookQA on the hub: labels 1-3, named question field.
    row = {"id": "7-980", "question_stem": "Q?", "choices": {"text": ["x", "y", "z"], "label": ["1", "2", "3"]},
           "answerKey": "2"}
    sample = one(tmp_path, row)
    assert (sample.id, sample.question, sample.target, sample.fields) == ("7-980", "Q?", "B", {})


def test_hugging_face_list_with_an_integer_answer_is_0_based(tmp_path: Path) -> None:
    # MMLU on the hub: `answer` is a ClassLabel, 0-based.
    row = {"question": "2 + 2 = ?", "subject": "math", "choices": ["3", "4", "5", "6"], "answer": 1}
    sample = one(tmp_path, row)
    assert (sample.choices, sample.target, sample.fields) == (("3", "4", "5", "6"), "B", {"subject": "math"})


def test_declared_index_bases(tmp_path: Path) -> None:
    row = {"question": "Q?", "choices": ["w", "x", "y", "z"], "answer": 1}
    assert one(tmp_path, row, answer_format="index").target == "B"
    assert one(tmp_path, row, answer_format="index1").target == "A"
    assert one(tmp_path, {**row, "answer": "4"}, answer_format="index1").target == "D"
    assert refused(tmp_path, [{**row, "answer": 0}], answer_format="index1") == "answer '0' is not an index 1-4"
    assert refused(tmp_path, [{**row, "answer": 4}], answer_format="index") == "answer '4' is not an index 0-3"


def test_answer_as_option_text_and_label_format(tmp_path: Path) -> None:
    row = {"question": "Capital of France?", "choices": ["Lyon", "Paris"], "answer": "Paris"}
    assert one(tmp_path, row, answer_format="text").target == "B"
    assert refused(tmp_path, [row], answer_format="label") == (
        "answer_format label, but the options carry no labels of their own; use letter, index, index1 or text")


def test_labels_from_their_own_field(tmp_path: Path) -> None:
    row = {"question": "Q?", "options": ["p", "q", "r"], "keys": ["x", "y", "z"], "gold": "z"}
    assert one(tmp_path, row, labels="keys", answer="gold").target == "C"


def test_paths_and_list_items(tmp_path: Path) -> None:
    row = {"item": {"q": "Which?", "opts": [["first"], ["second"]]}, "gold": {"idx": 1}, "meta": {"subject": "s"}}
    sample = one(tmp_path, row, question="item.q", choices=["item.opts[0][0]", "item.opts[1][0]"],
                 answer="gold.idx", answer_format="index", meta=["meta.subject"])
    assert (sample.question, sample.choices, sample.target) == ("Which?", ("first", "second"), "B")
    assert sample.meta == {"meta.subject": "s"}


def test_piqa_style_solution_columns(tmp_path: Path) -> None:
    row = {"goal": "To open a jar", "sol1": "twist the lid", "sol2": "shake it", "label": 1}
    sample = one(tmp_path, row, question="goal", choices=["sol1", "sol2"], answer="label", answer_format="index")
    assert (sample.question, sample.choices, sample.target) == ("To open a jar", ("twist the lid", "shake it"), "B")


def test_jinja_field_templates(tmp_path: Path) -> None:
    row = {"passage": "Tom has 3 apples.", "question": "How many apples?", "answer": "3"}
    sample = one(tmp_path, row, question="{{ passage }}\n{{ question }}", choices=[])
    assert sample.question == "Tom has 3 apples.\nHow many apples?"
    assert refused(tmp_path, [row], question="{{ pasage }}\n{{ question }}").startswith(
        "field map question: 'pasage' is undefined; fields: answer, passage, question")


@pytest.mark.parametrize(
    ("row", "fields", "expected"),
    [
        # null options are refused, not read as empty options
        ({"question": "Q", "A": "x", "B": None, "C": "z", "answer": "A"}, {}, "option 'B' is null"),
        ({"question": "Q", "choices": ["x", None], "answer": 0}, {}, "option 'choices[1]' is null"),
        ({"question": "Q", "choices": {"text": ["x", None], "label": ["A", "B"]}, "answer": "A"}, {},
         "option 'choices.text[1]' is null"),
        # a mapping or a list where text is expected
        ({"question": {"text": "Q", "extra": 1}, "choices": ["a", "b"], "answer": 0}, {"question": "question"},
         "field 'question' is a mapping (keys text, extra), not text; name a path into it, e.g. question.text"),
        ({"question": ["Q1", "Q2"], "choices": ["a", "b"], "answer": 0}, {},
         "field 'question' is a list of 2, not text; name one item (e.g. question[0]) or join it in a template"),
        ({"question": "Q", "choices": [["a"], ["b"]], "answer": 0}, {},
         "field 'choices[0]' is a list of 1, not text"),
        ({"question": "Q", "choices": [{"label": "A"}, {"label": "B"}], "answer": "A"}, {},
         "field 'choices[0]' has no 'text' (keys label)"),
        ({"question": "Q", "choices": ["a", "b"], "answer": ["A", "B"]}, {},
         "field 'answer' is a list; a multiple-choice row needs one answer"),
        ({"question": "Q", "answer": {"value": 3}}, {"choices": []},
         "field 'answer' is a mapping (keys value), not text"),
        ({"id": ["x"], "question": "Q", "answer": "1"}, {"choices": []}, "field 'id' is a list of 1, not text"),
        # missing fields
        ({"question": {"text": "Q"}, "answer": "1"}, {"question": "question.stem"},
         "no question field (question.stem); found ['answer', 'question']"),
        ({"question": "Q", "choices": ["a", "b"]}, {"answer": "gold.key"},
         "no answer field (gold.key); found ['choices', 'question'] (this split may have no public answers)"),
        ({"question": "Q", "choices": ["a", "b"], "answer": None}, {}, "the answer ('answer') is empty"),
        # labels that cannot name one option each
        ({"question": "Q", "choices": {"text": ["a", "b"], "label": ["A", "A"]}, "answer": "A"}, {},
         "the option labels ['A', 'A'] are not distinct"),
        ({"question": "Q", "choices": {"text": ["a", "b"], "label": ["A"]}, "answer": "A"}, {},
         "field 'choices.label' must be a list of 2 labels, one per option"),
    ],
)
def test_refused_with_one_line_naming_row_and_field(tmp_path: Path, row: dict[str, Any], fields: dict[str, Any],
                                                     expected: str) -> None:
    message = refused(tmp_path, [row], **fields)
    assert message.startswith(expected), message


def test_bad_row_is_named_by_its_line(tmp_path: Path) -> None:
    rows = [{"question": "Q1", "choices": ["a", "b"], "answer": 0}, {"question": "Q2", "choices": ["a", {"t": 1}], "answer": 0}]
    assert refused(tmp_path, rows) == "field 'choices[1]' is a mapping (keys t), not text; name a path into it, e.g. choices[1].t"


def test_answerless_rows(tmp_path: Path) -> None:
    row = {"key": 1000, "prompt": "Write a haiku.", "instruction_id_list": ["punctuation:no_comma"]}
    sample = one(tmp_path, row, choices=[], answerless=True, id="key")
    assert (sample.id, sample.question, sample.target) == ("1000", "Write a haiku.", None)
    assert sample.fields == {"instruction_id_list": ["punctuation:no_comma"]}


def test_hook_rewrites_rows(tmp_path: Path) -> None:
    hook = tmp_path / "myhook.py"
    hook.write_text("def row(r):\n    r['question'] = r.pop('q').upper()\n    return r\n", encoding="utf-8")
    sample = one(tmp_path, {"q": "why?", "answer": "because"}, choices=[], hook=f"{hook}:row")
    assert (sample.question, sample.target) == ("WHY?", "because")
    bad = tmp_path / "badhook.py"
    bad.write_text("def row(r):\n    return r['nope']\n", encoding="utf-8")
    assert refused(tmp_path, [{"q": "x", "answer": "y"}], hook=f"{bad}:row") == f"hook {bad}:row failed: KeyError: 'nope'"
    with pytest.raises(ConfigError, match="has no function 'nothere'"):
        load(write(tmp_path, [{"question": "x", "answer": "y"}]), FieldMap(hook=f"{hook}:nothere"))


def test_field_map_validates_paths_and_hooks() -> None:
    with pytest.raises(ValueError, match="is not a field path"):
        FieldMap(question="a..b")
    with pytest.raises(ValueError, match="must be written module:function"):
        FieldMap(hook="just_a_module")


# ---------------------------------------------------------------- real questions in the ARC and HF shapes


@needs_shared_data
@pytest.mark.parametrize("shape", ["arc", "arc_numeric", "hf", "hf_index"])
def test_real_mmlu_questions_in_other_shapes_read_the_same(tmp_path: Path, shape: str) -> None:
    """MMLU astronomy rewritten in the ARC and Hugging Face shapes: the same Samples as from the CSV."""
    from proctor.tasks import load_samples
    from proctor.tasks.custom import spec_of_path

    truth = load_samples("mmlu", "astronomy", "test", str(SHARED_DATASETS))
    rows = []
    for s in truth:
        labels = ["1", "2", "3", "4"] if shape == "arc_numeric" else list("ABCD")
        key = labels["ABCD".index(s.target)]
        if shape.startswith("arc"):
            rows.append({"id": s.id, "question": {"stem": s.question, "choices": [
                {"text": c, "label": l} for c, l in zip(s.choices, labels)]}, "answerKey": key})
        elif shape == "hf":
            rows.append({"id": s.id, "question": s.question, "choices": {"text": list(s.choices), "label": labels},
                         "answerKey": key})
        else:
            rows.append({"question": s.question, "subject": "astronomy", "choices": list(s.choices),
                         "answer": "ABCD".index(s.target)})
    path = write(tmp_path, rows, f"{shape}_like.jsonl")
    spec, _ = spec_of_path(str(path))
    assert spec.multiple_choice
    got = read_file_samples(path, spec.data_source(), spec.fields, "")
    assert [(g.question, g.choices, g.target) for g in got] == [(t.question, t.choices, t.target) for t in truth]
    assert len(got) == 152


@needs_shared_data
def test_arc_and_hf_shaped_files_score_like_the_truth(tmp_path: Path) -> None:
    """`proctor run --datasets ./arc_like.jsonl ./hf_like.jsonl`: real MMLU questions rewritten in the
    ARC shape (labels 1-4) and the hub's dict-of-lists; the score is the one the CSV's gold gives."""
    from openai_server import OpenAIServer, last_user_message
    from run_helpers import only_run, read_result

    from proctor.cli import main
    from proctor.tasks import load_samples

    truth = load_samples("mmlu", "astronomy", "test", str(SHARED_DATASETS))[:30]
    arc = [{"id": f"q{i}", "question": {"stem": s.question, "choices": [
        {"text": c, "label": str(k + 1)} for k, c in enumerate(s.choices)]}, "answerKey": str("ABCD".index(s.target) + 1)}
        for i, s in enumerate(truth)]
    hf = [{"question": s.question, "choices": {"text": list(s.choices), "label": list("ABCD")}, "answerKey": s.target}
          for s in truth]
    write(tmp_path, arc, "arc_like.jsonl")
    write(tmp_path, hf, "hf_like.jsonl")
    right = {s.question: i % 3 != 0 for i, s in enumerate(truth)}

    def respond(body: dict[str, Any]) -> str:
        prompt = last_user_message(body)
        s = next(s for s in truth if prompt.startswith(s.question))
        for k, c in enumerate(s.choices):  # the options are shown as A-D whatever the file's labels
            assert f"\n{'ABCD'[k]}. {c.strip()}\n" in prompt
        letter = s.target if right[s.question] else "ABCD"[("ABCD".index(s.target) + 1) % 4]
        return f"The answer is {letter}."

    with OpenAIServer(respond, model_ids=["m"]) as server:
        code = main(["run", "--api-base", server.base_url, "--datasets", str(tmp_path / "arc_like.jsonl"),
                     str(tmp_path / "hf_like.jsonl"), "-w", str(tmp_path / "out")])
    assert code == 0
    run = only_run(tmp_path / "out")
    expected = 100.0 * sum(right.values()) / len(truth)
    assert read_result(run, "m", "arc_like")["value"] == pytest.approx(expected)
    assert read_result(run, "m", "hf_like")["value"] == pytest.approx(expected)
