"""The `regex` scorer: a user pattern pulls the answer out of the output; compared like `exact`."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar, Literal

from proctor.core import Record, Sample, Score
from proctor.errors import ConfigError
from proctor.scoring.base import BaseScorer, register
from proctor.scoring.exact import compare
from proctor.scoring.text import strip_invisible


@register
@dataclass(frozen=True)
class RegexScorer(BaseScorer):
    """`pattern` is searched in the output (the `last` or `first` match); its `group` (default:
    1 if the pattern has groups, else the whole match) is the answer. `ignore_case` applies both
    to matching and to the comparison with the target."""

    name: ClassVar[str] = "regex"
    revision: ClassVar[int] = 2

    pattern: str
    group: int | str | None = None
    match: Literal["last", "first"] = "last"
    ignore_case: bool = False
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Checked here, at config time, not on the first record of a long run.
        try:
            compiled = re.compile(self.pattern, re.IGNORECASE if self.ignore_case else 0)
        except re.error as error:
            raise ConfigError(
                f"scorer 'regex': pattern {self.pattern!r} is not a valid regular expression: {error}"
            ) from None
        group = self.group
        if isinstance(group, int) and not 0 <= group <= compiled.groups:
            raise ConfigError(
                f"scorer 'regex': pattern {self.pattern!r} has {compiled.groups} group(s), no group {group}"
            )
        if isinstance(group, str) and group not in compiled.groupindex:
            raise ConfigError(f"scorer 'regex': pattern {self.pattern!r} has no group named {group!r}")
        object.__setattr__(self, "_compiled", compiled)

    @property
    def _group(self) -> int | str:
        if self.group is not None:
            return self.group
        return 1 if self._compiled.groups else 0

    def score(self, sample: Sample, record: Record) -> Score:
        # Invisible marks would split a word the pattern reads; NFKC is left to the comparison,
        # since a user pattern may spell full-width text.
        matches = list(self._compiled.finditer(strip_invisible(record.output or "")))
        if not matches:
            return Score(value=0.0)
        found = matches[-1] if self.match == "last" else matches[0]
        result = compare(found.group(self._group), sample.target, ignore_case=self.ignore_case)
        return Score(value=result.value, answer=result.answer, rule="regex" if result.answer is not None else None)
