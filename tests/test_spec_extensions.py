"""Extension points a spec names: metrics and prompt presets (registries checked at load), a row
hook (its code is part of the dataset's version), subsets with their own fields/scorer/language,
Parquet files and files joined beside the data (PIQA's labels)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from proctor.config.schema import DatasetConfig
from proctor.core import Item, Score
from proctor.datasets import DataSource, FieldMap, SourceSpec, read_file_samples
from proctor.datasets.load import data_files, load_samples
from proctor.errors import ConfigError, DataError
from proctor.metrics import get_metric
from proctor.tasks import load_spec_file

MINIMAL = "name: mybench\nsource: {layouts: [data.jsonl]}\n"


def spec_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "mybench.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_spec_file(path)
    message = str(info.value)
    assert "\n" not in message
    return message.removeprefix(f"{path}: ")


def test_unknown_metric_is_refused_at_load_with_close_matches(tmp_path: Path) -> None:
    from proctor.metrics import metric_names

    assert spec_error(tmp_path, MINIMAL + "metrics: [f1_bogus]\n") == (
        "metrics.0: unknown metric 'f1_bogus'; known metrics: " + ", ".join(metric_names()))
    assert {"accuracy", "pass@k", "weighted_accuracy"} <= set(metric_names())
    assert spec_error(tmp_path, MINIMAL + "metrics: [acuracy]\n").startswith(
        "metrics.0: unknown metric 'acuracy'; did you mean: accuracy?")
    assert spec_error(tmp_path, MINIMAL + "metrics: []\n") == "metrics: name at least one (the first is the headline)"


def test_unknown_preset_is_refused_at_load(tmp_path: Path) -> None:
    assert spec_error(tmp_path, MINIMAL + "prompt: {preset: free_from}\n").startswith(
        "prompt.preset: unknown prompt preset 'free_from'; did you mean: free_form?")


def test_subset_scorer_is_checked_too(tmp_path: Path) -> None:
    assert spec_error(tmp_path, MINIMAL + "subsets: [{name: a, scorer: {name: exactt}}]\n").startswith(
        "subsets.0.scorer: unknown scorer 'exactt'; did you mean: exact?")


def test_weighted_accuracy_counts_each_sub_question() -> None:
    # One question of 1 blank (right) and one of 3 blanks (1 of 3 right): 2 of 4 blanks = 50 %.
    items = [Item(id=i, sample=None, sample_id=i) for i in ("a", "b")]  # type: ignore[arg-type]
    scores = {"a": Score(1.0, extra={"weight": 1}), "b": Score(1 / 3, extra={"weight": 3})}
    result = get_metric("weighted_accuracy").aggregate(items, scores, "m", "d")
    assert result.value == pytest.approx(50.0) and result.n == 2
    assert result.extra_metrics["question_accuracy"] == pytest.approx(100 * (1 + 1 / 3) / 2)


def write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_labels_file_joined_row_by_row(tmp_path: Path) -> None:
    data = write_rows(tmp_path / "valid.jsonl", [{"goal": "g1", "sol1": "a", "sol2": "b"},
                                                 {"goal": "g2", "sol1": "c", "sol2": "d"}])
    (tmp_path / "valid-labels.lst").write_text("1\n0\n", encoding="utf-8")
    source = SourceSpec(layouts=("valid.jsonl",), joins=[{"layout": "{split}-labels.lst", "fields": {"label": "line"}}])
    ds = DataSource("p", "P", source, ("",), ("valid",))
    fields = FieldMap(question="goal", choices=["sol1", "sol2"], answer="label", answer_format="index")
    samples = load_samples(ds, fields, "", "valid", tmp_path)
    assert [(s.question, s.choices, s.target) for s in samples] == [("g1", ("a", "b"), "B"), ("g2", ("c", "d"), "A")]
    assert data_files(ds, "", "valid", tmp_path) == [data.resolve(), (tmp_path / "valid-labels.lst").resolve()]
    (tmp_path / "valid-labels.lst").write_text("1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"valid-labels.lst: 1 records, but .*valid.jsonl has 2 rows"):
        load_samples(ds, fields, "", "valid", tmp_path)
    clash = source.model_copy(update={"joins": (source.joins[0].model_copy(update={"fields": {"goal": "line"}}),)})
    (tmp_path / "valid-labels.lst").write_text("1\n0\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"line 1: joined field 'goal' .* is already a field of the row"):
        load_samples(DataSource("p", "P", clash, ("",), ("valid",)), fields, "", "valid", tmp_path)


def test_record_joined_by_match(tmp_path: Path) -> None:
    write_rows(tmp_path / "math.jsonl", [{"question": "1+1", "answer": ["B"]}])
    (tmp_path / "prompts.json").write_text(json.dumps({"examples": [
        {"keyword": "math", "type": "single_choice", "prefix_prompt": "Solve: "},
        {"keyword": "bio", "type": "multi_choice", "prefix_prompt": "Pick: "}]}), encoding="utf-8")
    join = {"layout": "prompts.json", "records_key": "examples", "match": {"keyword": "{subset}"},
            "fields": {"prefix_prompt": "prefix_prompt", "question_type": "type"}}
    ds = DataSource("g", "G", SourceSpec(layouts=("{subset}.jsonl",), joins=[join]), ("math",), ("test",))
    (sample,) = load_samples(ds, FieldMap(choices=[]), "math", "test", tmp_path)
    assert sample.fields == {"prefix_prompt": "Solve: ", "question_type": "single_choice"}
    write_rows(tmp_path / "chem.jsonl", [{"question": "x", "answer": "y"}])
    ds = DataSource("g", "G", SourceSpec(layouts=("{subset}.jsonl",), joins=[join]), ("chem",), ("test",))
    with pytest.raises(DataError, match=r"prompts.json: no record with keyword='chem' .*exactly one is needed"):
        load_samples(ds, FieldMap(choices=[]), "chem", "test", tmp_path)


def test_parquet_rows_with_nested_columns(tmp_path: Path) -> None:
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "hf.parquet"
    pq.write_table(pa.table({"question": ["Q1", "Q2"],
                             "choices": [{"text": ["x", "y"], "label": ["A", "B"]}, {"text": ["u", "v"], "label": ["A", "B"]}],
                             "answerKey": ["B", "A"]}), path)
    ds = DataSource("t", "T", SourceSpec(layouts=(str(path),)), ("",), ("test",))
    samples = read_file_samples(path, ds, FieldMap(), "")
    assert [(s.question, s.choices, s.target) for s in samples] == [("Q1", ("x", "y"), "B"), ("Q2", ("u", "v"), "A")]
    (tmp_path / "bad.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"bad.parquet: not a readable Parquet file"):
        read_file_samples(tmp_path / "bad.parquet", ds, FieldMap(), "")


def test_parquet_without_pyarrow_names_the_extra(tmp_path: Path) -> None:
    # A child process where pyarrow cannot be imported: one line naming the extra.
    code = ("import sys; sys.modules['pyarrow'] = None; sys.modules['pyarrow.parquet'] = None\n"
            "from pathlib import Path\nfrom proctor.datasets import read_rows\nfrom proctor.errors import DataError\n"
            "try:\n    read_rows(Path(sys.argv[1]))\nexcept DataError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.parquet")], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == f"{tmp_path / 'x.parquet'}: reading Parquet needs pyarrow; pip install 'proctor[parquet]'"


def test_hook_in_a_spec_is_relative_to_it_and_part_of_the_version(tmp_path: Path) -> None:
    from proctor.engine.prepare import prepare_dataset

    write_rows(tmp_path / "data.jsonl", [{"q": "why?", "a": "because"}])
    hook = tmp_path / "rows.py"
    hook.write_text("def fix(r):\n    return {'question': r['q'], 'answer': r['a']}\n", encoding="utf-8")
    spec = tmp_path / "hooked.yaml"
    spec.write_text("name: hooked\nsource: {layouts: [./data.jsonl]}\nfields: {choices: [], hook: ./rows.py:fix}\n"
                    "prompt: {preset: free_form, fewshot: 0}\nscorer: {name: exact}\n", encoding="utf-8")
    config = DatasetConfig(abbr="hooked", benchmark="hooked", spec_path=str(spec), mode="gen")
    first = prepare_dataset(config, None)
    assert first.samples[0].question == "why?" and hook.resolve() in first.files
    hook.write_text("def fix(r):\n    return {'question': r['q'].upper(), 'answer': r['a']}\n", encoding="utf-8")
    import os

    os.utime(hook, ns=(hook.stat().st_mtime_ns + 10**9,) * 2)  # a new mtime even on a coarse clock
    second = prepare_dataset(config, None)
    assert second.samples[0].question == "WHY?" and second.version != first.version


def test_a_subsets_own_hook_is_relative_to_the_spec_too(tmp_path: Path) -> None:
    (tmp_path / "rows.py").write_text("def fix(r):\n    return r\n", encoding="utf-8")
    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("name: s\nsource: {layouts: ['./{subset}.jsonl']}\nprompt: {preset: free_form}\n"
                         "scorer: {name: exact}\nsubsets: [{name: a, fields: {choices: [], hook: ./rows.py:fix}}, {name: b}]\n",
                         encoding="utf-8")
    spec = load_spec_file(spec_path)
    assert spec.fields_for("a").hook == f"{(tmp_path / 'rows.py').resolve()}:fix"
    assert spec.fields_for("b").hook is None
