"""The wording of a prompt preset, as a spec gives it, and filling user templates."""

from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any, Mapping

from proctor.core import Sample
from proctor.errors import ConfigError
from proctor.templating import Syntax, TemplateProblem, is_jinja, render_jinja


@dataclass(frozen=True)
class Wording:
    instruction: str = ""  # formatted with {subject}
    answer_cue: str = ""  # ends the question block; the answer follows it
    template: str | None = None  # a question block template ({question}, {A}, any field)
    shot_answer: str | None = None  # how an example answers ({answer}, any field)
    shot_separator: str = "\n\n"
    prefix: str = ""  # fills {prefix}: e.g. the task's exemplars read from a file (BBH)
    syntax: Syntax = "auto"  # the templates' syntax: Jinja or the `{field}` form (see proctor.templating)


def _names(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def fill(template: str, sample: Sample, options: Mapping[str, str], syntax: Syntax = "auto", **more: Any) -> str:
    """`template` with {question}, option labels ({A}), the row's other fields and `more` filled in.

    Only named placeholders are replaced (a literal `{}` in a user's template stays), and
    a placeholder that names no field is a one-line error naming the sample. A Jinja
    template also sees `choices` (the option texts) and `labels` (the letters shown).
    """
    values: dict[str, Any] = {**sample.fields, **options, "question": sample.question, **more}
    if "answer" not in values:
        values["answer"] = sample.target
    if is_jinja(template, syntax):
        values.setdefault("choices", list(sample.choices))
        values.setdefault("labels", list(sample.labels))
        try:
            return render_jinja(template, values)
        except TemplateProblem as err:
            raise ConfigError(f"prompt template, sample {sample.id!r}: {err}") from None
    missing = sorted(_names(template) - set(values))
    if missing:
        raise ConfigError(
            f"prompt template names {{{missing[0]}}}, which sample {sample.id!r} does not have; "
            f"fields: {', '.join(sorted(values))}"
        )
    out = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        out.append(literal)
        if name is not None:
            value = values[name] if name else "{}"
            out.append(format(value, spec or "") if name else value)
    return "".join(out)
