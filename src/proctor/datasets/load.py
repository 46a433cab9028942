"""The public loading functions: the Samples of one (subset, split) of a benchmark, and their files."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any, Callable, Mapping

from proctor.core import Sample
from proctor.datasets.fields import EmptyAnswer, FieldMap, row_to_sample
from proctor.datasets.locate import find_file
from proctor.datasets.paths import MISSING, lookup
from proctor.datasets.readers import Row, read_rows, read_text
from proctor.datasets.source import DataSource, JoinSpec, SourceSpec
from proctor.errors import DataError

log = logging.getLogger("proctor.datasets")


def _join_path(data: DataSource, join: JoinSpec, data_file: Path, subset: str, split: str,
               data_dir: str | Path | None) -> Path:
    """Where a joined file is: a bare file name (`{split}-labels.lst`) beside the data file, a
    path under the data roots (or absolute) as layouts are."""
    if "/" not in join.layout and "\\" not in join.layout:
        path = data_file.parent / join.layout.format(subset=subset, split=split)
        if not path.is_file():
            raise DataError(f"no {data.title} file {path} to join to {data_file} (it belongs beside it)")
        return path.resolve()
    source = DataSource(data.name, data.title, SourceSpec(layouts=(join.layout,)), data.subsets, data.splits)
    return find_file(source, subset, split, data_dir).resolve()


def data_files(data: DataSource, subset: str, split: str, data_dir: str | Path | None = None,
               fields: FieldMap | None = None) -> list[Path]:
    """The files `load_samples` reads for these arguments (for the run manifest's hashes): the
    data file, the files joined to it, then, with a field map's `question_file`, each row's
    question file."""
    path = find_file(data, subset, split, data_dir).resolve()
    files = [path]
    for join in data.source.joins:
        joined = _join_path(data, join, path, subset, split, data_dir)
        if joined not in files:  # several joins may read one file (MT-Bench's judge prompts)
            files.append(joined)
    if fields is None or not fields.question_file:
        return files
    rows = read_rows(path, data.source.format, header=data.source.header, columns=data.source.columns,
                     records_key=data.source.records_key)
    return [*files, *(question_path(path, fields.question_file, row) for row in rows)]


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def question_path(data_file: Path, pattern: str, row: Row) -> Path:
    """The question file a row names: `pattern` with its `{column}` placeholders filled, under the
    data file's folder (never outside it: a row is data, not a path to anywhere)."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in row.data:
            raise DataError(f"{row.where}: the question file {pattern!r} names column {name!r}, which the row "
                            f"does not have; columns: {', '.join(sorted(map(str, row.data)))}")
        raw = row.data[name]
        if raw is None or isinstance(raw, (Mapping, list, tuple, bool)):  # "None", a repr: never a file name
            raise DataError(f"{row.where}: column {name!r} is {'null' if raw is None else type(raw).__name__}; "
                            f"the question file {pattern!r} needs a name or number there")
        text = str(raw).strip()
        if not text or any(c in text for c in "/\\") or text in (".", ".."):
            raise DataError(f"{row.where}: column {name!r} ({text!r}) cannot name a question file")
        return text

    return data_file.parent / _PLACEHOLDER.sub(value, pattern)


def _with_question_file(path: Path, pattern: str, row: Row, column: str) -> Row:
    if column in row.data:
        raise DataError(f"{row.where}: the row has a {column!r} column and the field map reads the question "
                        f"from {pattern!r}; drop one of the two")
    question = question_path(path, pattern, row)
    if not question.is_file():
        raise DataError(f"{row.where}: no question file {question}")
    return Row(row.index, row.where, {**row.data, column: read_text(question)})


def _join_format(path: Path, join: JoinSpec) -> str | None:
    if join.format is not None:
        return join.format
    return "lines" if path.name.lower().endswith((".lst", ".txt")) else None


def _single_record(path: Path, fmt: str) -> list[Row]:
    """A `text` or `yaml` join: the file as one record."""
    text = read_text(path)
    if fmt == "text":
        return [Row(0, str(path), {"text": text})]
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise DataError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: a yaml join must hold a mapping, got {type(data).__name__}")
    return [Row(0, str(path), data)]


def _keyed(rows: list[Row], records: list[Row], join: JoinSpec, join_path: Path) -> list[Row | None]:
    """The partner of each row by the shared field `join.key` (None: none, with `optional`)."""
    key = join.key or ""
    by_key: dict[str, Row] = {}
    for record in records:
        if key not in record.data:
            raise DataError(f"{record.where}: no field {key!r} to join on")
        value = str(record.data[key])
        if value in by_key:
            raise DataError(f"{record.where}: {key} {value!r} is in {join_path} twice; a join key must be unique")
        by_key[value] = record
    partners: list[Row | None] = []
    for row in rows:
        if key not in row.data:
            raise DataError(f"{row.where}: no field {key!r} to join {join_path} on")
        partner = by_key.get(str(row.data[key]))
        if partner is None and not join.optional:
            raise DataError(f"{row.where}: {join_path} has no record with {key} {row.data[key]!r}")
        partners.append(partner)
    return partners


def _joined(rows: list[Row], path: Path, join: JoinSpec, join_path: Path, subset: str, split: str) -> list[Row]:
    """`rows` with the fields of the joined file added (see JoinSpec)."""
    fmt = _join_format(join_path, join)
    if fmt in ("text", "yaml"):
        records = _single_record(join_path, fmt)
    else:
        records = read_rows(join_path, fmt, records_key=join.records_key)
    partners: list[Row | None]
    if fmt in ("text", "yaml"):
        partners = [records[0]] * len(rows)
    elif join.key:
        partners = _keyed(rows, records, join, join_path)
    elif join.match:
        wanted = {k: v.format(subset=subset, split=split) for k, v in join.match.items()}
        found = [r for r in records if all(str(r.data.get(k)) == v for k, v in wanted.items())]
        shown = ", ".join(f"{k}={v!r}" for k, v in wanted.items())
        if len(found) != 1:
            raise DataError(f"{join_path}: {'no record' if not found else f'{len(found)} records'} with {shown} "
                            f"(joined to {path}); exactly one is needed")
        partners = [found[0]] * len(rows)
    else:
        if len(records) != len(rows):
            raise DataError(f"{join_path}: {len(records)} records, but {path} has {len(rows)} rows; "
                            "the two files are joined row by row and must have as many")
        partners = records
    out = []
    for row, partner in zip(rows, partners):
        if partner is None:  # an optional keyed join without a record for this row
            out.append(row)
            continue
        names = join.fields or {k: k for k in partner.data}
        added: dict[str, Any] = {}
        for name, source in names.items():
            value = partner.data[source] if source in partner.data else lookup(partner.data, source)[0]
            if value is MISSING:
                raise DataError(f"{partner.where}: no field {source!r} to join (found {sorted(map(str, partner.data))})")
            if name in row.data:
                raise DataError(f"{row.where}: joined field {name!r} (from {join_path}) is already a field of the row")
            added[name] = value
        out.append(Row(row.index, row.where, {**row.data, **added}))
    return out


def read_file_samples(path: Path, data: DataSource, fields: FieldMap, subset: str, *, split: str = "",
                      data_dir: str | Path | None = None, joined: Mapping[int, Path] | None = None,
                      check: Callable[[Sample], None] | None = None) -> list[Sample]:
    """The Samples of one file, in file order; DataError names the file, row and field of a bad row.

    `check` (the scorer's): refuses a sample it could never score, named by its row, so a bad
    gold stops the run when the file is read rather than after every request was sent.

    `joined`: the files of `data.source.joins` by position (found under the data roots when not given).
    """
    source = data.source
    rows = read_rows(path, source.format, header=source.header, columns=source.columns,
                     records_key=source.records_key)
    if not rows:
        # A header and nothing else (a failed export): scoring it would report no score and exit 0.
        raise DataError(f"{path}: the file holds no rows")
    for i, join in enumerate(source.joins):
        join_path = (joined or {}).get(i) or _join_path(data, join, path, subset, split, data_dir)
        rows = _joined(rows, path, join, join_path, subset, split)
    samples: list[Sample] = []
    seen: set[str] = set()
    meta = {"subject": subset} if subset else {}
    if fields.question_file:
        column = fields.question or "question"
        rows = [_with_question_file(path, fields.question_file, row, column) for row in rows]
    for row in rows:
        try:
            sample = row_to_sample(row.data, row.index, fields, row.where, meta)
        except EmptyAnswer as err:
            if not fields.skip_unanswered:
                raise
            log.warning("%s; left out (the field map says skip_unanswered)", err)
            continue
        if check is not None:
            try:
                check(sample)
            except DataError as err:
                raise DataError(f"{row.where}: {str(err).removeprefix(f'sample {sample.id}: ')}") from None
        if sample.id in seen:
            raise DataError(f"{row.where}: duplicate id {sample.id!r}")
        seen.add(sample.id)
        samples.append(sample)
    return samples


def load_samples(
    data: DataSource, fields: FieldMap, subset: str, split: str, data_dir: str | Path | None = None,
    check: Callable[[Sample], None] | None = None,
) -> list[Sample]:
    """The Samples of one subset and split, in file order.

    Raises DataError for missing or malformed files (naming the file, row and field).
    """
    path, *joins = data_files(data, subset, split, data_dir)
    return read_file_samples(path, data, fields, subset, split=split, data_dir=data_dir, joined=dict(enumerate(joins)),
                             check=check)
