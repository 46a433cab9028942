"""Where a benchmark's files are and how they are read (the `source` part of a task spec)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, model_validator


class HubArchive(BaseModel):
    """The official data archive of a benchmark on the Hugging Face hub (a dataset repo)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    repo_id: str
    filename: str
    # Tried in order; a later one is used only when the file is not at an earlier one
    # (e.g. an archive removed from `main` but kept in history).
    revisions: tuple[str, ...] = ("main",)


class JoinSpec(BaseModel):
    """Another file whose fields are added to each row of the data file.

    Row by row (`match` empty): the n-th record of the joined file goes with the n-th row, and
    the counts must agree (PIQA ships its labels as `valid-labels.lst`, one per line, beside
    `valid.jsonl`). By match: the one record whose fields equal `match` (values formatted with
    `{subset}` and `{split}`) goes with every row (GAOKAO-Bench's prompt per question file).
    `fields` maps a name in the row to a field of the joined record (empty: all of them; a
    `lines` file has one field, `line`). A name the row already has is refused, never overwritten.
    `layout`: a bare file name is looked for beside the data file; a path as `layouts` are.
    By key (`key`): the record whose field `key` equals the row's (Arena-Hard's baseline answers by
    `uid`); each key once in the joined file; with `optional`, a row without one gets no fields
    (MT-Bench's reference answers exist for 30 of its 80 questions), else it is refused.
    A field of `fields` may be a path into the record (`messages[-1].content.answer`).
    Formats `text` (the whole file as field `text`) and `yaml` (the file's mapping) are one record
    joined to every row (a judge's prompt template, a benchmark's judge config).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    layout: str
    format: Literal["csv", "jsonl", "json", "jsonl.gz", "json.gz", "parquet", "lines", "text", "yaml"] | None = None
    records_key: str | None = None
    match: dict[str, str] = {}
    fields: dict[str, str] = {}
    key: str | None = None  # (not `on`: YAML reads a bare `on` as true)
    optional: bool = False


class SourceSpec(BaseModel):
    """`layouts`: paths under a data root with `{split}` and `{subset}` placeholders, tried in
    order (the first is what `proctor data fetch` writes); absolute paths are used as they are."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layouts: tuple[str, ...]
    format: Literal["csv", "jsonl", "json", "jsonl.gz", "json.gz", "parquet"] | None = None  # None: from the file name
    header: bool = True
    columns: tuple[str, ...] = ()  # field names of a csv without a header row, in order
    records_key: str | None = None  # json: the key holding the list of rows
    archive: HubArchive | None = None
    joins: tuple[JoinSpec, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> "SourceSpec":
        if not self.layouts:
            raise ValueError("`layouts` needs at least one path")
        if not self.header and not self.columns:
            raise ValueError("a csv without a header row needs `columns`")
        return self


@dataclass(frozen=True)
class DataSource:
    """What the data side needs to know of a benchmark: its files, subsets and splits."""

    name: str  # "ceval": used in `proctor data fetch <name>` hints
    title: str  # "C-Eval"
    source: SourceSpec
    subsets: tuple[str, ...]  # ("",) for a benchmark without subsets
    splits: tuple[str, ...]

    def candidates(self, subset: str, split: str) -> tuple[str, ...]:
        """The relative (or absolute) paths where the file of (subset, split) may be, in search order."""
        return tuple(layout.format(subset=subset, split=split) for layout in self.source.layouts)
