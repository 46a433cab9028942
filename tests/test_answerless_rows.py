"""Answerless rows (IFEval): the field map reads them with target None, only for a scorer that needs no answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from proctor.datasets import DataSource, FieldMap, SourceSpec, read_file_samples
from proctor.errors import ConfigError, DataError
from proctor.tasks.load import spec_from_dict

ROW = {"key": 1000, "prompt": "Write a poem. Do not use any commas.", "instruction_id_list": ["punctuation:no_comma"],
       "kwargs": [{}]}


def _load(path: Path, fields: FieldMap) -> list:
    source = DataSource("t", "T", SourceSpec(layouts=(str(path),)), ("",), ("test",))
    return read_file_samples(path, source, fields, "")


def test_answerless_rows_keep_their_other_columns(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    # Before `answerless`, such a row was refused: it has no answer column.
    with pytest.raises(DataError, match="no answer field"):
        _load(path, FieldMap(question="prompt", id="key"))
    [sample] = _load(path, FieldMap(question="prompt", id="key", answerless=True))
    assert (sample.id, sample.question, sample.target, sample.choices) == (
        "1000", "Write a poem. Do not use any commas.", None, ())
    assert sample.fields == {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}


def test_answerless_with_an_answer_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(ROW) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row.*answer column \('key'\).*answerless"):
        _load(path, FieldMap(question="prompt", answer="key", answerless=True))


def test_answerless_spec_needs_a_scorer_without_answers() -> None:
    spec = {"name": "x", "source": {"layouts": ["x.jsonl"]}, "fields": {"question": "prompt", "answerless": True},
            "prompt": {"preset": "free_form"}, "scorer": {"name": "exact"}}
    with pytest.raises(ConfigError, match="fields.answerless.*scorer 'exact' compares with one"):
        spec_from_dict(spec, "x.yaml")


def test_a_subsets_own_answerless_fields_need_a_scorer_without_answers() -> None:
    """A subset's own field map may say answerless too: its scorer must then need no answer (it
    was let through, every output compared with None)."""
    spec = {"name": "x", "source": {"layouts": ["{subset}.jsonl"]}, "prompt": {"preset": "free_form"},
            "scorer": {"name": "exact"},
            "subsets": [{"name": "a"}, {"name": "b", "fields": {"question": "prompt", "answerless": True}}]}
    with pytest.raises(ConfigError, match=r"subsets\.1\.fields\.answerless.*scorer 'exact' compares with one"):
        spec_from_dict(spec, "x.yaml")
