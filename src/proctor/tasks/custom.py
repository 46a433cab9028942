"""A user's own file as a benchmark: a spec file, or a data file read with default field names.

A data file (`.jsonl`, `.csv`, `.json`, `.jsonl.gz`) is multiple choice when its rows have
option columns (`A`, `B`, ... or a `choices` list), free-form QA otherwise. OpenCompass's
`<file>.meta.json` (`abbr`, `data_type`, `infer_method`, `human_prompt`, `bot_prompt`,
`input_columns`, `output_column`, `options`) is honoured when it is beside the file.
"""

from __future__ import annotations

import json
import re
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from proctor.config.schema import DatasetConfig
from proctor.core import CHOICE_LABELS
from proctor.datasets import FieldMap, SourceSpec, format_of, read_rows, row_choices, row_to_sample
from proctor.datasets.fields import QUESTION_COLUMNS
from proctor.datasets.readers import Row
from proctor.errors import ConfigError, DataError
from proctor.tasks.load import load_spec_file, spec_from_dict
from proctor.tasks.spec import TaskSpec

META_SUFFIX = ".meta.json"
_META_KEYS = {"abbr", "data_type", "infer_method", "human_prompt", "bot_prompt", "input_columns",
              "output_column", "options", "path", "meta_path"}


def spec_of_path(name: str, meta_path: str | None = None, data_type: str | None = None) -> tuple[TaskSpec, Path]:
    """The spec of a user's file and its resolved path; ConfigError/DataError name the file."""
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"dataset file {name} does not exist")
    meta = str(Path(meta_path).expanduser().resolve()) if meta_path else None
    # The files' modification times are part of the cache key: an edited file (in a notebook,
    # between two `proctor.evaluate` calls) is read again.
    meta_file = Path(meta) if meta else path.with_name(path.name + META_SUFFIX)
    stamps = (_mtime(path), _mtime(meta_file))
    return _spec_of(path, meta, data_type, stamps), path


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


@lru_cache(maxsize=64)
def _spec_of(path: Path, meta_path: str | None, data_type: str | None, _stamps: Any = None) -> TaskSpec:
    if path.name.lower().endswith((".yaml", ".yml")):
        return load_spec_file(path)
    meta = _read_meta(path, meta_path)
    if data_type:
        meta["data_type"] = data_type
    return data_file_spec(path, meta)


def custom_dataset_configs(
    path: str, *, meta: str | None = None, data_type: str | None = None, infer_method: str | None = None
) -> list[DatasetConfig]:
    """`--custom-dataset-path` and its companions as dataset configs (OpenCompass's flags)."""
    from proctor.tasks.names import dataset_abbr

    spec, resolved = spec_of_path(path, meta, data_type)
    mode = infer_method or ("ppl" if spec.request.kind == "loglikelihood" else "gen")
    if mode not in spec.modes:
        raise ConfigError(f"{path}: infer method {mode} needs multiple-choice data")
    return [
        DatasetConfig(
            abbr=dataset_abbr(spec.name, "", mode), benchmark=spec.name, spec_path=str(resolved),
            meta_path=str(Path(meta).expanduser().resolve()) if meta else None, data_type=data_type, mode=mode,  # type: ignore[arg-type]
        )
    ]


def _read_meta(path: Path, meta_path: str | None) -> dict[str, Any]:
    meta_file = Path(meta_path) if meta_path else path.with_name(path.name + META_SUFFIX)
    if not meta_file.is_file():
        if meta_path:
            raise ConfigError(f"meta file {meta_file} does not exist")
        return {}
    try:
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{meta_file}: not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{meta_file}: expected a JSON object")
    unknown = sorted(set(meta) - _META_KEYS)
    if unknown:
        from proctor.config.suggest import did_you_mean

        raise ConfigError(f"{meta_file}: unknown key {unknown[0]!r}{did_you_mean(unknown[0], _META_KEYS)}; "
                          f"expected some of {', '.join(sorted(_META_KEYS))}")
    for key in ("abbr", "human_prompt", "bot_prompt", "output_column"):
        if key in meta and not isinstance(meta[key], str):
            raise ConfigError(f"{meta_file}: {key} must be a string, got {type(meta[key]).__name__}")
    for key in ("input_columns", "options"):
        if key in meta and not (isinstance(meta[key], list) and all(isinstance(v, str) for v in meta[key])):
            raise ConfigError(f"{meta_file}: {key} must be a list of column names")
    for key in ("data_type", "infer_method"):
        allowed = {"data_type": ("mcq", "qa"), "infer_method": ("gen", "ppl")}[key]
        if key in meta and meta[key] not in allowed:
            raise ConfigError(f"{meta_file}: {key} must be one of {', '.join(allowed)}, got {meta[key]!r}")
    meta["_file"] = str(meta_file)
    return meta


def _abbr(path: Path, meta: dict[str, Any]) -> str:
    stem = path.name
    for suffix in (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".csv", ".parquet"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    name = str(meta.get("abbr") or stem)
    # A spec name is one path part without separators; keep it readable.
    clean = re.sub(r"[^A-Za-z0-9_.]+", "_", name).strip("_.") or "custom"
    return clean if clean[0].isalnum() else f"d{clean}"


def data_file_spec(path: Path, meta: dict[str, Any]) -> TaskSpec:
    """A spec for a data file: multiple choice or free-form, decided from its first row or the meta."""
    fmt = format_of(path)
    source = SourceSpec(layouts=(str(path),), format=fmt)  # type: ignore[arg-type]
    name = _abbr(path, meta)
    options = meta.get("options")
    fields: dict[str, Any] = {}
    if meta.get("output_column"):
        fields["answer"] = meta["output_column"]
    input_columns = meta.get("input_columns") or []
    # OpenCompass lists every column the prompt uses (`[context, question, A, B]`): the question
    # column is the usual one when it is listed, else the first.
    if input_columns and not any(c.lower() in QUESTION_COLUMNS for c in input_columns):
        fields["question"] = input_columns[0]
    if options:
        fields["choices"] = list(options)
    first = _first_row(path, source)
    where = meta.get("_file", str(path))
    choices = row_choices(first.data, FieldMap(**fields), first.where)
    data_type = meta.get("data_type") or ("mcq" if choices else "qa")
    if data_type == "mcq" and not choices:
        raise ConfigError(f"{where}: data_type mcq, but {first.where} has no options "
                          "(columns A, B, ... or a `choices` list; or name the option columns in `options`)")
    if data_type == "qa":
        fields["choices"] = []
    prompt: dict[str, Any] = {"language": "en", "fewshot": 0}
    texts: dict[str, Any] = {}
    if data_type == "mcq":
        prompt["preset"] = "multiple_choice"
        texts = {"answer_cue": "Answer:"}
    else:
        prompt["preset"] = "free_form"
        texts = {"template": "{question}"}
    labels = CHOICE_LABELS[: len(choices)] if data_type == "mcq" else ""
    for key, text_key in (("human_prompt", "template"), ("bot_prompt", "shot_answer")):
        if meta.get(key):
            texts[text_key] = _template(meta[key], f"{where}: {key}", first, FieldMap(**fields), labels)
    if meta.get("human_prompt") or meta.get("bot_prompt"):
        texts["syntax"] = "format"  # OpenCompass prompts are `{column}` templates, braces escaped as {{ }}
    prompt["texts"] = {"en": texts}
    infer = meta.get("infer_method", "gen")
    if infer == "ppl" and data_type != "mcq":
        raise ConfigError(f"{where}: infer_method ppl needs multiple-choice data (data_type mcq)")
    data = {
        "name": name,
        "title": name,
        "description": f"user data file {path}",
        "source": source.model_dump(),
        "splits": {"eval": "test"},
        "fields": fields,
        "prompt": prompt,
        "request": {"kind": "loglikelihood" if infer == "ppl" else "generate"},
        "modes": ["gen", "ppl"] if data_type == "mcq" else ["gen"],
        "scorer": {"name": "choice" if data_type == "mcq" else "exact"},
    }
    return spec_from_dict(data, where)


def _first_row(path: Path, source: SourceSpec) -> Row:
    rows = read_rows(path, source.format, header=source.header, columns=source.columns)
    if not rows:
        raise DataError(f"{path}: the file holds no rows")
    return rows[0]


def _template(template: str, where: str, first: Row, fields: FieldMap, labels: str) -> str:
    """An OpenCompass prompt as a Proctor template: `{<question column>}` becomes `{question}`, the
    output column `{answer}`, option columns their labels; a placeholder the rows lack is an error."""
    sample = row_to_sample(first.data, first.index, fields, first.where)
    renames: dict[str, str] = {}
    for fixed, column in (("question", fields.question), ("answer", fields.answer)):
        if column:
            renames[column] = fixed
    if isinstance(fields.choices, tuple):
        renames.update(zip(fields.choices, labels))
    known = {"question", "answer", *labels, *sample.fields}
    out: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as err:
        raise ConfigError(f"{where}: not a valid template ({err}); write a literal brace as {{{{ or }}}}") from None
    for literal, field_name, spec, conversion in parsed:
        out.append(literal.replace("{", "{{").replace("}", "}}"))
        if field_name is None:
            continue
        name = renames.get(field_name, field_name)
        if field_name and name not in known:
            raise ConfigError(f"{where}: names {{{field_name}}}, which {first.where} does not have; "
                              f"its fields: {', '.join(sorted(known))}")
        out.append("{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}")
    return "".join(out)
