"""Templates for prompts and field maps: Jinja2 with strict undefined, beside the older `{field}` form.

A template is Jinja when it holds a `{{ name ... }}` expression, a `{% ... %}` tag or a
`{# ... #}` comment (or when the spec says `syntax: jinja`); otherwise it is the `{field}` form
of Proctor 0.1, filled exactly as before. Jinja templates are rendered in a sandbox with
`StrictUndefined` (a missing field is an error naming it, never an empty string) and refuse
to print a list, a mapping or a null: `{{ test_list }}` would put a Python repr in the prompt,
`{{ test_list | join("\\n") }}` is what was meant.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Literal, Mapping

Syntax = Literal["auto", "format", "jinja"]

# `{{ name` or `{{ (`: an expression, not a `{{` that escapes a brace in the
# `{field}` form (`{{"a": 1}}`, `\\boxed{{}}`).
_JINJA = re.compile(r"\{\{-?\s*[A-Za-z_(]|\{%|\{#")


class TemplateProblem(Exception):
    """A template that cannot be rendered; the message is one line, without the caller's context."""


def is_jinja(template: str, syntax: Syntax = "auto") -> bool:
    """Whether `template` is rendered by Jinja (see the module docstring)."""
    if syntax != "auto":
        return syntax == "jinja"
    return bool(_JINJA.search(template))


class _Unprintable(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def _finalize(value: Any) -> Any:
    """What `{{ expr }}` prints: text and numbers as they are; never a repr of a container or None."""
    kind = _kind(value)
    if kind is not None:
        raise _Unprintable(kind)
    return value


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    # Sandboxed: a spec (or a user's meta file) can call filters, not reach Python internals.
    return ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, keep_trailing_newline=True, finalize=_finalize, autoescape=False
    )


@lru_cache(maxsize=512)
def _compiled(template: str) -> Any:
    from jinja2 import TemplateSyntaxError

    try:
        return _environment().from_string(template)
    except TemplateSyntaxError as err:
        raise TemplateProblem(f"not a valid Jinja template (line {err.lineno}: {err.message})") from None


def variables(template: str) -> set[str]:
    """The top-level names a Jinja template reads."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(_environment().parse(template)))


def render_jinja(template: str, values: Mapping[str, Any]) -> str:
    """`template` rendered over `values`; TemplateProblem (one line) names the field at fault."""
    from jinja2 import TemplateError, UndefinedError

    compiled = _compiled(template)
    try:
        return str(compiled.render(**values))
    except UndefinedError as err:
        names = ", ".join(sorted(str(k) for k in values))
        raise TemplateProblem(f"{err.message}; fields: {names}") from None
    except _Unprintable as err:
        culprits = sorted(n for n in variables(template) if _kind(values.get(n)) == err.kind)
        what = f"field {culprits[0]!r}" if culprits else "an expression"
        hint = " (use a filter such as join)" if err.kind != "null" else ""
        raise TemplateProblem(f"{what} is a {err.kind}, not text{hint}") from None
    except TemplateError as err:
        raise TemplateProblem(f"cannot render the template ({err})") from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError) as err:
        raise TemplateProblem(f"cannot render the template ({type(err).__name__}: {err})") from None


def _kind(value: Any) -> str | None:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "mapping"
    if isinstance(value, (list, tuple, set)):
        return "list"
    return None
